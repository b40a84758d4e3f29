//! Argument parsing and wiring: each subcommand lives in its own file and calls the engine.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod average;
mod demo;
mod doctor;
mod eval;
mod explore;
mod export;
mod list;
mod progress;
mod signals;
mod sweep;

#[derive(Parser, Debug)]
#[command(
    name = "lawa",
    version,
    about = "Explore latest-weight averaging of checkpoints along LLM training runs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Work from the Hugging Face cache only, never the network (same as HF_HUB_OFFLINE=1)
    #[arg(long, global = true)]
    pub offline: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the checkpoints and metrics of a trajectory
    List(list::Args),
    /// Average a window of checkpoints into a new model dir
    Average(average::Args),
    /// Evaluate a model's perplexity on text or tokens
    Eval(eval::Args),
    /// Train the built-in demo trajectory
    Demo(demo::Args),
    /// Open the interactive explorer on a trajectory
    Explore(explore::Args),
    /// Evaluate the raw checkpoint and each window's average at every step, into the store
    /// the explorer reads (locally, or as a Slurm job array)
    Sweep(sweep::Args),
    /// Run one array task of a sweep submitted with `lawa sweep --slurm` (Slurm calls this;
    /// a Kubernetes Indexed Job can too)
    #[command(name = "sweep-task")]
    SweepTask(sweep::TaskArgs),
    /// Export charts and tables from cached results
    Export(export::Args),
    /// Check the compute path on this machine's device (fused kernels, model vs CPU)
    Doctor(doctor::Args),
}

pub fn main() -> ExitCode {
    // `lawa list | head`: a closed stdout ends the process quietly, as for any Unix filter,
    // instead of a "Broken pipe" panic (Rust ignores SIGPIPE by default).
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    if cli.offline {
        lawa::source::hub::set_offline(true);
    }
    let result: anyhow::Result<()> = match cli.command {
        // `lawa` alone: the explorer on the demo trajectory, trained first (with its progress).
        None => explore::run_demo(|| match Cli::try_parse_from(["lawa", "demo"]) {
            Ok(Cli {
                command: Some(Command::Demo(a)),
                ..
            }) => demo::run(a),
            Ok(_) => anyhow::bail!("internal: `lawa demo` did not parse as the demo command"),
            Err(e) => Err(e.into()),
        }),
        Some(Command::List(a)) => list::run(a),
        Some(Command::Average(a)) => average::run(a),
        Some(Command::Eval(a)) => eval::run(a),
        Some(Command::Demo(a)) => demo::run(a),
        Some(Command::Explore(a)) => explore::run(a),
        Some(Command::Sweep(a)) => sweep::run(a),
        Some(Command::SweepTask(a)) => sweep::run_task(a),
        Some(Command::Export(a)) => export::run(a),
        Some(Command::Doctor(a)) => doctor::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if signals::received().is_some() {
                signals::exit_cancelled(&one_line(&e));
            }
            // One line: the outermost context first, then the causes; file-derived parts
            // escaped so that they can neither break the line nor drive the terminal.
            let _ = writeln!(
                std::io::stderr(),
                "error: {}",
                lawa::display::escape(&one_line(&e))
            );
            ExitCode::FAILURE
        }
    }
}

/// A command-line mistake as one line (clap's own is several: tip, usage, help hint); help and
/// version requests are printed as clap writes them.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let _ = writeln!(std::io::stderr(), "{}", usage_line(&e.render().to_string()));
    ExitCode::from(2)
}

/// The first paragraph of clap's message on one line, with a pointer to `--help`.
fn usage_line(rendered: &str) -> String {
    let first: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let text = first.join(" ");
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    format!("error: {} (see --help)", lawa::display::escape(text))
}

/// `a: b: c` from an error chain, so every failure is a single line on stderr.
pub fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_are_one_line() {
        for args in [
            vec!["lawa", "average", "run"],
            vec!["lawa", "list", "--bogus", "x"],
            vec![
                "lawa", "average", "r", "--at", "x", "--last", "2", "--out", "o",
            ],
        ] {
            let e = Cli::try_parse_from(&args).unwrap_err();
            let line = usage_line(&e.render().to_string());
            assert_eq!(line.lines().count(), 1, "{line}");
            assert!(
                line.starts_with("error: ") && !line.contains("error: error"),
                "{line}"
            );
        }
        let e = Cli::try_parse_from(["lawa", "average", "run"]).unwrap_err();
        let line = usage_line(&e.render().to_string());
        assert!(line.contains("--out"), "{line}");
    }
}

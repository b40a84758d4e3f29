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
    // The environment is read here, once; everything below is told.
    let config = lawa::Config::builder()
        .env(lawa::Env::from_process())
        .offline(cli.offline)
        .build();
    let config = &config;
    let result: anyhow::Result<()> = match cli.command {
        // `lawa` alone: the explorer on the demo trajectory, trained first (with its progress).
        None => explore::run_demo(config, || demo::run(demo::Args::default(), config)),
        Some(Command::List(a)) => list::run(a, config),
        Some(Command::Average(a)) => average::run(a, config),
        Some(Command::Eval(a)) => eval::run(a, config),
        Some(Command::Demo(a)) => demo::run(a, config),
        Some(Command::Explore(a)) => explore::run(a, config),
        Some(Command::Sweep(a)) => sweep::run(a, config),
        Some(Command::SweepTask(a)) => sweep::run_task(a, config),
        Some(Command::Export(a)) => export::run(a, config),
        Some(Command::Doctor(a)) => doctor::run(a, config),
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
    format!(
        "error: {} (see --help)",
        lawa::display::escape(&unrepeated(text))
    )
}

/// clap's "invalid value 'V' for '--flag <X>': CAUSE" without the flag and value said again at
/// the start of CAUSE (our parsers' messages name them, as the library's callers need).
fn unrepeated(text: &str) -> String {
    let Some(rest) = text.strip_prefix("invalid value '") else {
        return text.to_string();
    };
    let Some((value, rest)) = rest.split_once("' for '") else {
        return text.to_string();
    };
    let Some((flag, cause)) = rest.split_once("': ") else {
        return text.to_string();
    };
    let name = flag.split(' ').next().unwrap_or(flag);
    let again = [format!("{name} '{value}': "), format!("'{value}': ")];
    match again.iter().find_map(|a| cause.strip_prefix(a.as_str())) {
        Some(why) => format!("invalid value '{value}' for '{flag}': {why}"),
        None => text.to_string(),
    }
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

    /// clap's own checks of every subcommand (two flags of one name, a `conflicts_with` naming
    /// nothing): they run only when a command is parsed, so a command no test parses would
    /// panic in the user's hands.
    #[test]
    fn every_command_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

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

    #[test]
    fn a_bad_value_is_named_once_with_why() {
        for (flag, value, why) in [
            (
                "--weights",
                "ema:-1",
                "the EMA half-life must be a positive number of steps",
            ),
            ("--dtype", "int8", "expected keep, f32, f16 or bf16"),
            ("--shard-size", "5XB", "unknown size unit"),
        ] {
            let args = [
                "lawa", "average", "r", "--at", "1", "--last", "2", "--out", "o", flag, value,
            ];
            let e = Cli::try_parse_from(args).unwrap_err();
            let line = usage_line(&e.render().to_string());
            assert!(
                line.starts_with(&format!("error: invalid value '{value}' for '{flag} <")),
                "{line}"
            );
            assert!(line.contains(why), "{line}");
            assert_eq!(line.matches(value).count(), 1, "{line}");
        }
        let e = Cli::try_parse_from(["lawa", "sweep", "r", "--weights", "1,x"]).unwrap_err();
        let line = usage_line(&e.render().to_string());
        assert!(
            line.contains("a list of numbers") && line.matches("1,x").count() == 1,
            "{line}"
        );
    }

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(args).unwrap().command.unwrap()
    }

    /// The defaults built in code (`lawa` alone trains the demo and opens the explorer without
    /// parsing a command line) are the ones clap gives the same commands with no flags.
    #[test]
    fn defaults_in_code_match_the_parsed_defaults() {
        let Command::Demo(a) = parse(&["lawa", "demo"]) else {
            panic!("not demo")
        };
        assert_eq!(a, demo::Args::default());
        let Command::Explore(a) = parse(&["lawa", "explore", "run"]) else {
            panic!("not explore")
        };
        assert_eq!(a, explore::Args::for_source("run".into()));
        let Command::Sweep(a) = parse(&["lawa", "sweep", "run"]) else {
            panic!("not sweep")
        };
        assert_eq!(a.eval, args::EvalArgs::default());
    }

    /// `eval`, `explore` and `sweep` share one set of eval flags: the same types and defaults;
    /// only `eval` requires data.
    #[test]
    fn eval_flags_are_shared() {
        let flags = ["--text", "t.txt", "--ctx", "64", "--max-tokens", "1000"];
        fn with<'a>(cmd: &[&'a str], flags: &[&'a str]) -> Vec<&'a str> {
            [cmd, flags].concat()
        }
        let Command::Eval(e) = parse(&with(&["lawa", "eval", "model"], &flags)) else {
            panic!("not eval")
        };
        let Command::Explore(x) = parse(&with(&["lawa", "explore", "run"], &flags)) else {
            panic!("not explore")
        };
        let Command::Sweep(s) = parse(&with(&["lawa", "sweep", "run"], &flags)) else {
            panic!("not sweep")
        };
        assert_eq!(e.eval, x.eval);
        assert_eq!(e.eval, s.eval);
        assert_eq!(e.eval.batch, args::DEFAULT_BATCH);
        assert_eq!(e.eval.max_tokens_len(), Some(1000));
        assert!(Cli::try_parse_from(["lawa", "eval", "model"]).is_err());
        assert!(Cli::try_parse_from(["lawa", "sweep", "run"]).is_ok());
    }
}

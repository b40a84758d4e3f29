//! Argument parsing and wiring: each subcommand lives in its own file and calls the engine.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod average;
mod demo;
mod doctor;
mod eval;
mod explore;
mod export;
mod list;
mod progress;

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
    /// Export charts and tables from cached results
    Export(export::Args),
    /// Check the compute path on this machine's device (fused kernels, model vs CPU)
    Doctor(doctor::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Some(Command::Export(a)) => export::run(a),
        Some(Command::Doctor(a)) => doctor::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context first, then the causes.
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `a: b: c` from an error chain, so every failure is a single line on stderr.
pub fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

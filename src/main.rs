//! The `lawa` binary: command-line interface and terminal explorer over the `lawa` engine.

mod cli;
mod tui;

fn main() -> std::process::ExitCode {
    cli::main()
}

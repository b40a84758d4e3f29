//! `lawa demo`: train the built-in demo trajectory.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`lawa demo` is not built yet")
}

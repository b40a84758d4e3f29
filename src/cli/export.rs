//! `lawa export`: export charts and tables from cached results.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`lawa export` is not built yet")
}

//! `lawa explore`: open the interactive explorer on a trajectory.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`lawa explore` is not built yet")
}

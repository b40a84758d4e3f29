//! `lawa list`: list the checkpoints and metrics of a trajectory.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`lawa list` is not built yet")
}

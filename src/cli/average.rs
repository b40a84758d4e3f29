//! `lawa average`: average a window of checkpoints into a new model dir.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`lawa average` is not built yet")
}

//! `lawa eval`: evaluate a model's perplexity on text or tokens.

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`lawa eval` is not built yet")
}

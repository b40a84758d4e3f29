//! `lawa demo`: train the built-in demo trajectory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use lawa::progress::{CancelToken, Reporter};
use lawa::train::{self, DemoConfig};

/// Every field is optional, so `Args::default()` is `lawa demo` with no flags.
#[derive(clap::Args, Debug, Default, PartialEq)]
pub struct Args {
    /// Where to write the demo (default: $LAWA_HOME/demo, else the platform data dir's lawa/demo)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Retrain even if a complete demo with the same settings exists
    #[arg(long)]
    pub force: bool,
    /// Train on this UTF-8 text file instead of the built-in novels (its last 5% is held out)
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<PathBuf>,
    /// Optimizer steps (default 1200); checkpoints stay about 60
    #[arg(long, value_name = "N")]
    pub steps: Option<u64>,
    /// Seed for the corpus, initialisation and batches
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// The demo config the arguments ask for.
pub fn config(args: &Args) -> DemoConfig {
    let mut cfg = DemoConfig::default();
    if let Some(steps) = args.steps {
        let default = DemoConfig::default();
        let n_ckpt = default.steps / default.checkpoint_every;
        cfg.steps = steps.max(1);
        cfg.checkpoint_every = cfg.steps.div_ceil(n_ckpt).max(1);
        cfg.warmup_steps = default.warmup_steps.min(cfg.steps / 10);
        // A declared surge stays at the same fraction of the run.
        if let Some(s) = cfg.lr_surge.as_mut() {
            s.step = (s.step * cfg.steps / default.steps).max(1);
        }
    }
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    if let Some(c) = &args.corpus {
        cfg.corpus = Some(std::path::absolute(c).unwrap_or_else(|_| c.clone()));
    }
    cfg
}

pub fn run(args: Args, lawa_config: &lawa::Config) -> anyhow::Result<()> {
    // Measured on 2 shared cores: one thread is faster than two for this tiny model (candle's
    // thread pool spins while the other core is busy). Set before any pool starts.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let cfg = config(&args);
    let out = match &args.out {
        Some(o) => o.clone(),
        None => lawa_config.demo_dir()?,
    };
    if !args.force && train::existing_config(&out).as_ref() == Some(&cfg) {
        eprintln!(
            "a complete demo is already at {} (use --force to retrain)",
            out.display()
        );
        println!("{}", out.display());
        return Ok(());
    }

    let bar = ProgressBar::new(cfg.steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} [{elapsed_precise}] {wide_bar} {pos}/{len} steps  {msg}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix("demo");
    bar.enable_steady_tick(Duration::from_millis(200));
    let cancel = CancelToken::new();
    super::signals::cancel_on_signals(cancel.clone());
    let b = bar.clone();
    let reporter = Reporter::new(cancel, move |p| {
        if p.total.is_some() {
            b.set_position(p.done);
            b.set_message(p.detail.unwrap_or_default());
        } else {
            b.set_message(p.stage);
        }
    });
    let result = train::train_into(&cfg, &out, &reporter);
    bar.finish_and_clear();
    let summary = result.with_context(|| format!("lawa demo into {}", out.display()))?;
    eprintln!(
        "trained {} steps in {:.0} s: {} checkpoints, final train loss {:.3}",
        cfg.steps,
        summary.seconds,
        summary.checkpoint_steps.len(),
        summary.final_loss
    );
    if let Some(s) = &summary.lr_surge {
        eprintln!(
            "note: the learning rate is multiplied by {} for steps {}..{} on purpose ({})",
            s.factor,
            s.step,
            s.step + s.steps - 1,
            s.why
        );
    }
    println!("{}", out.display());
    Ok(())
}

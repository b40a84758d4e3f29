//! `lawa doctor`: checks the compute path on this machine's device and prints one table.

use std::path::PathBuf;

use lawa::device::{self, DevicePref};
use lawa::doctor;
use lawa::eval::{EvalData, TokenDType};
use lawa::progress::CancelToken;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Device to check: auto (the GPU when this build has CUDA and one is present), cpu, cuda
    #[arg(long, value_enum, default_value_t = DevicePref::Auto)]
    pub device: DevicePref,
    /// Also compare a model's logits and eval NLL on the device with the CPU (a model dir)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Text for the model check (tokenised with the model's tokenizer.json)
    #[arg(long, conflicts_with = "tokens")]
    pub text: Option<PathBuf>,
    /// Pre-tokenised ids for the model check (.bin/.u16 = uint16, .u32, .npy)
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, config: &lawa::Config) -> anyhow::Result<()> {
    let dev = device::select(args.device)?;
    let data = match (&args.text, &args.tokens) {
        (Some(t), _) => Some(EvalData::Text(t.clone())),
        (None, Some(t)) => Some(match TokenDType::from_extension(t) {
            Some(w) => EvalData::TokensAs(t.clone(), w),
            None => EvalData::Tokens(t.clone()),
        }),
        (None, None) => None,
    };
    let model = match (&args.model, &data) {
        (Some(m), Some(d)) => Some((m.as_path(), d)),
        (Some(_), None) => anyhow::bail!("--model needs --text FILE or --tokens FILE"),
        (None, _) => None,
    };
    let (reporter, bar) = super::progress::reporter(CancelToken::new());
    let report = doctor::run(&dev, config.fused, model, &reporter);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "device {} (cuda in this build: {}, fused kernels: {}); kernels ready in {:.1}s",
            report.device,
            if report.cuda_built { "yes" } else { "no" },
            if report.fused_enabled {
                "on"
            } else {
                "off (LAWA_FUSED=0)"
            },
            report.prepare_seconds
        );
        println!(
            "{:<40} {:<38} {:>10} {:>10}  result",
            "check", "against", "diff", "tolerance"
        );
        for c in &report.checks {
            println!(
                "{:<40} {:<38} {:>10.3e} {:>10.1e}  {}",
                c.name,
                c.against,
                c.diff,
                c.tolerance,
                if c.pass { "ok" } else { "FAIL" }
            );
        }
    }
    if !report.passed() {
        let failed = report.checks.iter().filter(|c| !c.pass).count();
        anyhow::bail!("{failed} of {} checks failed", report.checks.len());
    }
    Ok(())
}

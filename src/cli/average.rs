//! `lawa average`: average a window of checkpoints into a new model dir.

use std::path::PathBuf;

use anyhow::Context;
use lawa::average::{
    average, select_steps, weights, window_ending_at, AverageInput, AverageOptions, OutDType,
    Scheme,
};
use lawa::checkpoint::DEFAULT_SHARD_SIZE;
use lawa::device::{describe, select, DevicePref};
use lawa::progress::CancelToken;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("window").required(true).args(["at", "steps"])))]
pub struct Args {
    /// The trajectory: a run folder, an HF cache repo folder, or a hub repo
    pub path: String,
    /// The newest step of the window (with --last)
    #[arg(long, requires = "last")]
    pub at: Option<u64>,
    /// How many checkpoints, ending at --at
    #[arg(long, requires = "at")]
    pub last: Option<usize>,
    /// Explicit steps to average, e.g. 1000,2000,3000
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["at", "last"])]
    pub steps: Option<Vec<u64>>,
    /// uniform | ema:HALF_LIFE_STEPS | linear | w1,w2,... (oldest first)
    #[arg(long, default_value = "uniform")]
    pub weights: Scheme,
    /// Use the weights as given instead of scaling them to sum to 1
    #[arg(long)]
    pub no_normalize: bool,
    /// Output dtype of the averaged weights: keep | f32 | f16 | bf16
    #[arg(long, default_value = "keep")]
    pub dtype: OutDType,
    /// Where to accumulate
    #[arg(long, value_enum, default_value_t = DevicePref::Auto)]
    pub device: DevicePref,
    /// Shard the output above this size (bytes, or with a suffix: 500MB, 5GB, 2GiB)
    #[arg(long, default_value_t = DEFAULT_SHARD_SIZE, value_parser = size_in_bytes)]
    pub shard_size: u64,
    /// Average tensors holding NaN/Inf instead of failing
    #[arg(long)]
    pub allow_nonfinite: bool,
    /// Replace --out if it exists
    #[arg(long)]
    pub force: bool,
    /// The output model dir
    #[arg(long)]
    pub out: PathBuf,
    /// Print a machine-readable summary on stdout
    #[arg(long)]
    pub json: bool,
}

/// Validates a size (the value is kept as text so `--help` shows it as typed).
/// `1000`, `500MB`, `5GB`, `2GiB` → bytes.
fn size_in_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "'{s}': unknown size unit (use B, KB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    let bytes = n * mult as f64;
    if !(bytes >= 1.0 && bytes.is_finite()) {
        return Err(format!("'{s}': the shard size must be at least 1 byte"));
    }
    Ok(bytes as u64)
}

pub fn run(args: Args, config: &lawa::Config) -> anyhow::Result<()> {
    let (scheme, dtype, shard_size) = (args.weights, args.dtype, args.shard_size);
    let traj = lawa::source::open(&args.path, &config.hub)?;
    let all = traj.steps();
    let chosen = match (&args.steps, args.at, args.last) {
        (Some(steps), _, _) => select_steps(&all, steps),
        (None, Some(at), Some(k)) => window_ending_at(&all, at, k),
        _ => unreachable!("clap requires --at/--last or --steps"),
    }
    .with_context(|| traj.source.clone())?;
    let ws = weights(&scheme, &chosen, !args.no_normalize)?;
    let device = select(args.device)?;

    let token = CancelToken::new();
    super::signals::cancel_on_signals(token.clone());
    let (reporter, bar) = super::progress::reporter(token);
    let mut inputs = Vec::with_capacity(chosen.len());
    for (&step, &weight) in chosen.iter().zip(&ws) {
        let ckpt = traj
            .checkpoint(step)
            .expect("chosen from the trajectory's steps");
        let path = lawa::source::local_path(ckpt, &config.hub, &reporter)?;
        inputs.push(AverageInput { path, step, weight });
    }
    let opts = AverageOptions {
        dtype,
        device: device.clone(),
        fused: config.fused,
        shard_size,
        allow_nonfinite: args.allow_nonfinite,
        force: args.force,
        scheme: scheme.clone(),
    };
    let result = average(&inputs, &args.out, &opts, &reporter);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = result.map_err(|e| match e {
        lawa::average::AverageError::Cancelled(_) => anyhow::anyhow!(
            "average into {}: cancelled by {} before it was complete; nothing written there",
            args.out.display(),
            super::signals::received().unwrap_or("a signal")
        ),
        e => e.into(),
    })?;
    for n in &summary.notes {
        eprintln!("note: {}", lawa::display::escape(n));
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        let steps: Vec<String> = chosen.iter().map(|s| s.to_string()).collect();
        println!(
            "averaged {} checkpoints (steps {}, {scheme}) on {} into {}: {} tensors ({} averaged, {} copied), {:.1} MB read, {:.1} MB written in {:.1}s",
            inputs.len(),
            steps.join(","),
            describe(&device),
            lawa::display::escape(&summary.out.display().to_string()),
            summary.tensors,
            summary.averaged,
            summary.copied,
            summary.bytes_read as f64 / 1e6,
            summary.bytes_written as f64 / 1e6,
            summary.seconds
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(size_in_bytes("1000").unwrap(), 1000);
        assert_eq!(size_in_bytes("5GB").unwrap(), 5_000_000_000);
        assert_eq!(size_in_bytes("500 MB").unwrap(), 500_000_000);
        assert_eq!(size_in_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(size_in_bytes("1.5kb").unwrap(), 1500);
        for bad in ["", "0", "x", "5 parsecs", "-1"] {
            assert!(size_in_bytes(bad).is_err(), "{bad}");
        }
    }
}

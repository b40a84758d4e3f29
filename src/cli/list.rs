//! `lawa list`: list the checkpoints and metrics of a trajectory.
//!
//! Reads checkpoint headers only (format, dtype, parameter count, size), never tensor data.

use anyhow::Context;
use rayon::prelude::*;
use serde::Serialize;

use lawa::checkpoint::WeightsReader;
use lawa::source::{Location, Series, Trajectory};
use lawa::spikes::{self, SpikeParams, SpikeRegion};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run folder, Hugging Face cache repo (`ORG/NAME` or its `models--ORG--NAME` folder), or
    /// `hf:ORG/NAME`
    pub source: String,
    /// Print the listing as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tokens: super::args::TokensPerStepArg,
}

/// One checkpoint as listed.
#[derive(Serialize, Debug)]
struct Row {
    step: u64,
    tokens: Option<u64>,
    name: String,
    location: Location,
    format: Option<String>,
    /// Bytes of tensor data.
    size_bytes: Option<u64>,
    dtype: Option<String>,
    parameters: Option<u64>,
    /// Why the headers could not be read (the row is still listed).
    error: Option<String>,
}

#[derive(Serialize, Debug)]
struct SeriesSummary {
    count: usize,
    first_step: u64,
    last_step: u64,
    last: f64,
}

fn summarize(s: &Series) -> Option<SeriesSummary> {
    let (last_step, last) = s.iter().last()?;
    Some(SeriesSummary {
        count: s.len(),
        first_step: s.steps[0],
        last_step,
        last,
    })
}

#[derive(Serialize, Debug)]
struct MetricsSummary {
    files: Vec<String>,
    loss: Option<SeriesSummary>,
    lr: Option<SeriesSummary>,
    grad_norm: Option<SeriesSummary>,
    tokens: Option<SeriesSummary>,
}

#[derive(Serialize, Debug)]
struct Listing {
    name: String,
    source: String,
    tokens_per_step: Option<u64>,
    checkpoints: Vec<Row>,
    metrics: MetricsSummary,
    /// Spike regions of the training loss (default detector settings).
    spikes: Vec<SpikeRegion>,
    warnings: Vec<String>,
    notes: Vec<String>,
}

fn describe(t: &Trajectory) -> Listing {
    let checkpoints = t
        .checkpoints
        .par_iter()
        .map(|c| {
            let mut row = Row {
                step: c.step,
                tokens: c.tokens,
                name: c.name.clone(),
                location: c.location.clone(),
                format: None,
                size_bytes: None,
                dtype: None,
                parameters: None,
                error: None,
            };
            if let Location::Local { path } = &c.location {
                match WeightsReader::open(path) {
                    Ok(r) => {
                        row.format = Some(r.format().to_string());
                        row.size_bytes = Some(r.data_bytes());
                        row.dtype = r.main_dtype().map(|d| d.to_string());
                        row.parameters = Some(r.parameter_count());
                    }
                    Err(e) => row.error = Some(e.to_string()),
                }
            }
            row
        })
        .collect();
    let m = &t.metrics;
    let spikes = spikes::detect(&m.loss.steps, &m.loss.values, &SpikeParams::default());
    Listing {
        name: t.name.clone(),
        source: t.source.clone(),
        tokens_per_step: t.tokens_per_step,
        checkpoints,
        metrics: MetricsSummary {
            files: m.files.iter().map(|f| f.display().to_string()).collect(),
            loss: summarize(&m.loss),
            lr: summarize(&m.lr),
            grad_norm: summarize(&m.grad_norm),
            tokens: summarize(&m.tokens),
        },
        spikes,
        warnings: t.warnings.clone(),
        notes: t.notes.clone(),
    }
}

/// 1234567 → `1.23M` (counts: parameters, tokens).
fn compact(n: u64) -> String {
    const UNITS: [(f64, &str); 4] = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")];
    let x = n as f64;
    for (scale, unit) in UNITS {
        if x >= scale {
            let v = x / scale;
            return if v >= 100.0 {
                format!("{v:.0}{unit}")
            } else if v >= 10.0 {
                format!("{v:.1}{unit}")
            } else {
                format!("{v:.2}{unit}")
            };
        }
    }
    n.to_string()
}

/// Bytes in decimal units (`925.1 KB`, `1.42 GB`).
fn bytes(n: u64) -> String {
    const UNITS: [(f64, &str); 4] = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB")];
    let x = n as f64;
    for (scale, unit) in UNITS {
        if x >= scale {
            return format!("{:.1} {unit}", x / scale);
        }
    }
    format!("{n} B")
}

/// A float for the summary: short, but keeps small values like learning rates readable.
fn num(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-3 {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

/// A file-derived string made safe for one table cell or line.
fn esc(s: &str) -> String {
    lawa::display::escape(s).into_owned()
}

fn table(l: &Listing) -> String {
    let dash = || "-".to_string();
    let header = [
        "STEP", "TOKENS", "FORMAT", "SIZE", "DTYPE", "PARAMS", "NAME",
    ];
    let rows: Vec<[String; 7]> = l
        .checkpoints
        .iter()
        .map(|r| {
            [
                r.step.to_string(),
                r.tokens.map(compact).unwrap_or_else(dash),
                r.format.clone().unwrap_or_else(|| match r.location {
                    Location::Hub { .. } => "remote".into(),
                    Location::Local { .. } => dash(),
                }),
                r.size_bytes.map(bytes).unwrap_or_else(dash),
                r.dtype.clone().unwrap_or_else(dash),
                r.parameters.map(compact).unwrap_or_else(dash),
                esc(&r.name),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else if matches!(i, 0 | 1 | 3 | 5) {
                // Numbers right-aligned.
                s.push_str(&format!("{cell:>w$}  "));
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };

    let mut out = String::new();
    let per_step = l
        .tokens_per_step
        .map(|k| format!(", {k} tokens/step"))
        .unwrap_or_default();
    out.push_str(&format!(
        "{}  ({})  {} checkpoints{per_step}\n",
        esc(&l.name),
        esc(&l.source),
        l.checkpoints.len()
    ));
    out.push_str(&line(&header.map(String::from)));
    out.push('\n');
    for (row, r) in rows.iter().zip(&l.checkpoints) {
        out.push_str(&line(row));
        if let Some(e) = &r.error {
            out.push_str(&format!("  (unreadable: {})", esc(e)));
        }
        out.push('\n');
    }

    out.push('\n');
    let m = &l.metrics;
    if m.files.is_empty() {
        out.push_str("metrics: none found\n");
    } else {
        out.push_str(&format!("metrics: {}\n", esc(&m.files.join(", "))));
        for (label, s) in [
            ("loss", &m.loss),
            ("lr", &m.lr),
            ("grad_norm", &m.grad_norm),
            ("tokens", &m.tokens),
        ] {
            if let Some(s) = s {
                let last = if label == "tokens" && s.last.is_finite() && s.last >= 0.0 {
                    compact(s.last as u64)
                } else {
                    num(s.last)
                };
                out.push_str(&format!(
                    "  {label:<9} {} points, steps {}-{}, last {last} (step {})\n",
                    s.count, s.first_step, s.last_step, s.last_step
                ));
            }
        }
        if m.loss.is_some() {
            if l.spikes.is_empty() {
                out.push_str("  no loss spikes detected\n");
            } else {
                out.push_str(&format!("  loss spikes: {}\n", l.spikes.len()));
                for s in &l.spikes {
                    let height = if s.height.is_finite() {
                        format!("+{}", num(s.height))
                    } else {
                        "non-finite loss".to_string()
                    };
                    out.push_str(&format!(
                        "    steps {}-{}, peak at {} ({height})\n",
                        s.start_step, s.end_step, s.peak_step
                    ));
                }
            }
            for n in &l.notes {
                out.push_str(&format!("  note: {}\n", esc(n)));
            }
        }
    }
    if !l.warnings.is_empty() {
        out.push_str(&format!("\nwarnings ({}):\n", l.warnings.len()));
        for w in &l.warnings {
            out.push_str(&format!("  {}\n", esc(w)));
        }
    }
    out
}

pub fn run(args: Args, config: &lawa::Config) -> anyhow::Result<()> {
    let t = args.tokens.open(&args.source, config)?;
    let listing = describe(&t);
    if args.json {
        let text = serde_json::to_string_pretty(&listing).context("writing JSON")?;
        println!("{text}");
    } else {
        print!("{}", table(&listing));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_numbers_and_bytes() {
        assert_eq!(compact(999), "999");
        assert_eq!(compact(1_000), "1.00K");
        assert_eq!(compact(231_424), "231K");
        assert_eq!(compact(70_426_624), "70.4M");
        assert_eq!(compact(2_097_152), "2.10M");
        assert_eq!(compact(299_892_736_000), "300B");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(925_100), "925.1 KB");
        assert_eq!(bytes(1_420_000_000), "1.4 GB");
        assert_eq!(num(3.21456), "3.2146");
        assert_eq!(num(0.0003), "3.000e-4");
    }
}

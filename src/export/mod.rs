//! Charts (PNG, SVG) and tables (CSV, JSON) from results.
//!
//! The chart is drawn from the same [`crate::chart::ChartModel`] the explorer shows. Every file is
//! written under a temporary name in the output dir and renamed into place, so a failed export
//! never leaves a half-written file behind.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::results::ResultRecord;

mod plot;
pub mod verdict;

pub use plot::{write_png, write_svg, PNG_SIZE};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: drawing the chart failed: {msg}", path.display())]
    Draw { path: PathBuf, msg: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A file name stem from a trajectory name: `EleutherAI/pythia-70m` → `EleutherAI_pythia-70m`.
pub fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches('.').to_string();
    if s.is_empty() {
        "lawa".into()
    } else {
        s
    }
}

/// The temporary name a file is written under before it is renamed to `path`; keeps the
/// extension (the PNG encoder picks the format from it).
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".tmp-{}-{name}", std::process::id()))
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path)(e));
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The results as CSV, one row per record; list fields are space-separated.
pub fn results_csv(records: &[ResultRecord]) -> String {
    let mut out = String::from(
        "source,end_step,scheme,k,spike_aware,steps,weights,data,data_hash,ctx,max_tokens,\
         dtype,device,mean_nll,ppl,bits_per_byte,predicted_tokens,tool_version,unix_time,\
         task,acc,acc_norm,task_n\n",
    );
    // A task result has no perplexity: empty cells, not NaN.
    let finite = |x: f64| {
        if x.is_finite() {
            x.to_string()
        } else {
            String::new()
        }
    };
    for r in records {
        let task = r.task.as_ref();
        let row = [
            csv_field(&r.source),
            r.end_step.to_string(),
            csv_field(&r.scheme_label()),
            r.k.to_string(),
            r.spike_aware.to_string(),
            join(&r.steps),
            join(&r.weights),
            csv_field(&r.data),
            csv_field(&r.data_hash),
            r.ctx.to_string(),
            r.max_tokens.map(|m| m.to_string()).unwrap_or_default(),
            r.dtype.to_string(),
            csv_field(&r.device),
            finite(r.mean_nll),
            finite(r.ppl),
            r.bits_per_byte.map(|b| b.to_string()).unwrap_or_default(),
            r.predicted_tokens.to_string(),
            csv_field(&r.tool_version),
            r.unix_time.to_string(),
            task.map(|t| t.task.to_string()).unwrap_or_default(),
            task.map(|t| t.acc.to_string()).unwrap_or_default(),
            task.and_then(|t| t.acc_norm)
                .map(|a| a.to_string())
                .unwrap_or_default(),
            task.map(|t| t.n.to_string()).unwrap_or_default(),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// Writes `<stem>.png`, `<stem>.svg`, `<stem>-results.csv` and `<stem>-results.json` into `dir`
/// (created if needed) and returns their paths.
pub fn export_all(
    model: &crate::chart::ChartModel,
    records: &[ResultRecord],
    verdicts: &[verdict::Verdict],
    dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>, ExportError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let csv = dir.join(format!("{stem}-results.csv"));
    let json = dir.join(format!("{stem}-results.json"));
    write_png(model, &png, PNG_SIZE)?;
    write_svg(model, &svg)?;
    write_atomic(&csv, results_csv(records).as_bytes())?;
    let js = serde_json::to_vec_pretty(records).map_err(|e| ExportError::Draw {
        path: json.clone(),
        msg: e.to_string(),
    })?;
    write_atomic(&json, &js)?;
    let mut files = vec![png, svg, csv, json];
    if !verdicts.is_empty() {
        let txt = dir.join(format!("{stem}-verdict.txt"));
        let lines: String = verdicts.iter().map(|v| format!("{v}\n")).collect();
        write_atomic(&txt, lines.as_bytes())?;
        files.push(txt);
    }
    Ok(files)
}

#[cfg(test)]
mod tests;

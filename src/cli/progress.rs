//! One progress bar on stderr for every CLI command, fed by the engine's `Progress` reports.
//!
//! A job may pass through stages with different units (a hub download in bytes, then averaging
//! in tensors), so the bar's template follows the stage and unit of the latest report.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use lawa::progress::{CancelToken, Progress, Reporter, Unit};

fn unit_name(unit: Unit) -> &'static str {
    match unit {
        Unit::Tensors => "tensors",
        Unit::Bytes => "bytes",
        Unit::Windows => "windows",
        Unit::Steps => "steps",
        Unit::Files => "files",
    }
}

fn style(unit: Unit) -> ProgressStyle {
    let template = if unit == Unit::Bytes {
        "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {wide_msg}"
            .to_string()
    } else {
        format!(
            "{{prefix:>12}} [{{bar:30}}] {{pos}}/{{len}} {} {{elapsed}} eta {{eta}} {{wide_msg}}",
            unit_name(unit)
        )
    };
    ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A reporter drawing a bar on stderr when it is a terminal, and silent otherwise: scripts and
/// logs get only the result on stdout and, on failure, the one error line on stderr.
pub fn reporter(token: CancelToken) -> (Reporter, Option<ProgressBar>) {
    if !std::io::stderr().is_terminal() {
        return (Reporter::new(token, |_| {}), None);
    }
    let last: Mutex<Option<(String, Unit)>> = Mutex::new(None);
    let bar = ProgressBar::new(0);
    let b = bar.clone();
    let reporter = Reporter::new(token, move |p: Progress| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() != Some(&(p.stage.clone(), p.unit)) {
            b.set_style(style(p.unit));
            b.set_prefix(p.stage.clone());
            *last = Some((p.stage, p.unit));
        }
        if let Some(total) = p.total {
            b.set_length(total);
        }
        b.set_position(p.done);
        if let Some(d) = p.detail {
            b.set_message(d);
        }
    });
    (reporter, Some(bar))
}

//! Training metrics beside the checkpoints: `metrics.jsonl`, `*.csv`, HF `trainer_state.json`.
//!
//! Every reader is tolerant: extra keys and columns are ignored, a bad line becomes a warning
//! naming the file and line, and the good lines are kept. Within one file a step logged twice
//! keeps its last value (a resumed run logs again from its checkpoint); across files the first
//! file read wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Metrics, Series, SourceError};

/// Names the step goes by in the logs we read.
const STEP_KEYS: &[&str] = &[
    "step",
    "global_step",
    "iter",
    "iteration",
    "trainer/global_step",
];
const LOSS_KEYS: &[&str] = &["loss", "train_loss", "train/loss", "loss/train", "lm_loss"];
const LR_KEYS: &[&str] = &["lr", "learning_rate", "train/lr", "train/learning_rate"];
const GRAD_NORM_KEYS: &[&str] = &["grad_norm", "gradient_norm", "train/grad_norm", "grad-norm"];
const TOKENS_KEYS: &[&str] = &[
    "tokens",
    "tokens_seen",
    "num_tokens",
    "num_input_tokens_seen",
    "train/tokens",
];

/// Which series a metric value belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Loss,
    Lr,
    GradNorm,
    Tokens,
}

const KINDS: [(Kind, &[&str]); 4] = [
    (Kind::Loss, LOSS_KEYS),
    (Kind::Lr, LR_KEYS),
    (Kind::GradNorm, GRAD_NORM_KEYS),
    (Kind::Tokens, TOKENS_KEYS),
];

/// The metrics of one file being read, per series in log order; sorted at the end.
#[derive(Default)]
struct Collector {
    series: [Vec<(u64, f64)>; 4],
}

impl Collector {
    fn put(&mut self, kind: Kind, step: u64, value: f64) {
        self.series[kind as usize].push((step, value));
    }

    /// Sorts each series by step; a step logged more than once keeps its last value.
    fn finish(self, label: &str, warnings: &mut Vec<String>) -> Metrics {
        let mut repeated = 0;
        let [loss, lr, grad_norm, tokens] = self.series.map(|mut pts| {
            // Stable: equal steps stay in log order, so the last one logged is kept.
            pts.sort_by_key(|p| p.0);
            let mut out = Series::default();
            for (step, v) in pts {
                if out.steps.last() == Some(&step) {
                    repeated += 1;
                    *out.values.last_mut().expect("values follow steps") = v;
                } else {
                    out.steps.push(step);
                    out.values.push(v);
                }
            }
            out
        });
        if repeated > 0 {
            warnings.push(format!(
                "{label}: {repeated} values logged again for a step already logged (a resumed run?); kept the last"
            ));
        }
        Metrics {
            loss,
            lr,
            grad_norm,
            tokens,
            files: Vec::new(),
        }
    }
}

/// A JSON value as a metric: numbers, and the strings Python writes for non-finite floats.
fn json_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_float(s),
        _ => None,
    }
}

/// A float as written by Python, numpy or a CSV writer (`nan`, `inf`, `-Infinity` included).
fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "nan" | "+nan" | "-nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => t.parse().ok(),
    }
}

/// A step: a non-negative integer (`1000` or `1000.0`).
fn parse_step_value(v: f64) -> Option<u64> {
    (v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1e18).then_some(v as u64)
}

/// Python's `json.dumps` writes bare `NaN`, `Infinity`, `-Infinity`, which are not JSON:
/// quote them (outside strings) so serde_json can read the line.
fn quote_nonstandard_floats(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            rest = &rest[1..];
            continue;
        }
        let token = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.push('"');
            out.push_str(t);
            out.push('"');
            rest = &rest[t.len()..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The value of the first of `keys` present in `obj`.
fn first_key<'a>(obj: &'a serde_json::Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| obj.get(*k))
}

/// Every key [`parse_jsonl`] knows, as plain numbers: the common line (`{"step": 1, "loss": 2.5,
/// ...}`) is read without building a JSON map, several times faster on long logs.
#[derive(serde::Deserialize)]
struct KnownKeys {
    step: Option<f64>,
    global_step: Option<f64>,
    iter: Option<f64>,
    iteration: Option<f64>,
    #[serde(rename = "trainer/global_step")]
    trainer_global_step: Option<f64>,
    loss: Option<f64>,
    train_loss: Option<f64>,
    #[serde(rename = "train/loss")]
    train_slash_loss: Option<f64>,
    #[serde(rename = "loss/train")]
    loss_slash_train: Option<f64>,
    lm_loss: Option<f64>,
    lr: Option<f64>,
    learning_rate: Option<f64>,
    #[serde(rename = "train/lr")]
    train_lr: Option<f64>,
    #[serde(rename = "train/learning_rate")]
    train_learning_rate: Option<f64>,
    grad_norm: Option<f64>,
    gradient_norm: Option<f64>,
    #[serde(rename = "train/grad_norm")]
    train_grad_norm: Option<f64>,
    #[serde(rename = "grad-norm")]
    grad_dash_norm: Option<f64>,
    tokens: Option<f64>,
    tokens_seen: Option<f64>,
    num_tokens: Option<f64>,
    num_input_tokens_seen: Option<f64>,
    #[serde(rename = "train/tokens")]
    train_tokens: Option<f64>,
}

/// Reads `line` through [`KnownKeys`]; `false` when the line needs the general path (not plain
/// numbers, a null, a missing or fractional step, duplicate keys ...), which also words the
/// warning.
fn fast_line(line: &str, c: &mut Collector) -> bool {
    let Ok(k) = serde_json::from_str::<KnownKeys>(line) else {
        return false;
    };
    let first = |vals: &[Option<f64>]| vals.iter().find_map(|v| *v);
    let step = [
        k.step,
        k.global_step,
        k.iter,
        k.iteration,
        k.trainer_global_step,
    ];
    let metrics = [
        (
            Kind::Loss,
            [
                k.loss,
                k.train_loss,
                k.train_slash_loss,
                k.loss_slash_train,
                k.lm_loss,
            ],
        ),
        (
            Kind::Lr,
            [
                k.lr,
                k.learning_rate,
                k.train_lr,
                k.train_learning_rate,
                None,
            ],
        ),
        (
            Kind::GradNorm,
            [
                k.grad_norm,
                k.gradient_norm,
                k.train_grad_norm,
                k.grad_dash_norm,
                None,
            ],
        ),
        (
            Kind::Tokens,
            [
                k.tokens,
                k.tokens_seen,
                k.num_tokens,
                k.num_input_tokens_seen,
                k.train_tokens,
            ],
        ),
    ];
    // Nulls look like absent keys here; let the general path judge lines that have them.
    if line.contains("null") {
        return false;
    }
    let Some(step) = first(&step).and_then(parse_step_value) else {
        return false;
    };
    for (kind, vals) in metrics {
        if let Some(x) = first(&vals) {
            c.put(kind, step, x);
        }
    }
    true
}

/// `metrics.jsonl` text: one JSON object per line with a step and any of the metrics.
pub fn parse_jsonl(text: &str, label: &str, warnings: &mut Vec<String>) -> Metrics {
    let mut c = Collector::default();
    let mut bad: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if fast_line(line, &mut c) {
            continue;
        }
        let parsed = serde_json::from_str::<Value>(line)
            .or_else(|_| serde_json::from_str::<Value>(&quote_nonstandard_floats(line)));
        let obj = match parsed {
            Ok(Value::Object(obj)) => obj,
            Ok(_) => {
                bad.push(format!("line {n}: not a JSON object"));
                continue;
            }
            Err(_) => {
                bad.push(format!("line {n}: not JSON"));
                continue;
            }
        };
        let Some(step_value) = first_key(&obj, STEP_KEYS) else {
            bad.push(format!("line {n}: no step"));
            continue;
        };
        let Some(step) = json_f64(step_value).and_then(parse_step_value) else {
            bad.push(format!("line {n}: step {step_value} is not a whole number"));
            continue;
        };
        for (kind, keys) in KINDS {
            if let Some(v) = first_key(&obj, keys) {
                match json_f64(v) {
                    Some(x) => c.put(kind, step, x),
                    None if v.is_null() => {}
                    None => bad.push(format!("line {n}: {} = {v} is not a number", keys[0])),
                }
            }
        }
    }
    push_bad_lines(label, bad, warnings);
    c.finish(label, warnings)
}

/// Many bad lines make one warning, not thousands: the first few are named.
fn push_bad_lines(label: &str, bad: Vec<String>, warnings: &mut Vec<String>) {
    const SHOWN: usize = 5;
    match bad.len() {
        0 => {}
        n if n <= SHOWN => warnings.extend(bad.into_iter().map(|b| format!("{label}: {b}"))),
        n => warnings.push(format!(
            "{label}: {n} unreadable lines, skipped ({}, ...)",
            bad[..SHOWN].join("; ")
        )),
    }
}

/// Splits one CSV record; handles quoted fields with `""` escapes.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// A CSV with a header naming a step column and at least one metric column, or `None` (with no
/// warning) when the header does not look like training metrics.
pub fn parse_csv(text: &str, label: &str, warnings: &mut Vec<String>) -> Option<Metrics> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next()?;
    let columns: Vec<String> = split_csv(header)
        .into_iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let find = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| columns.iter().position(|c| c == k))
    };
    let step_col = find(STEP_KEYS)?;
    let metric_cols: Vec<(Kind, usize, &str)> = KINDS
        .iter()
        .filter_map(|&(kind, keys)| find(keys).map(|i| (kind, i, keys[0])))
        .collect();
    if metric_cols.is_empty() {
        return None;
    }
    let mut c = Collector::default();
    let mut bad = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let fields = split_csv(line);
        let Some(step) = fields
            .get(step_col)
            .and_then(|f| parse_float(f))
            .and_then(parse_step_value)
        else {
            bad.push(format!("line {n}: no whole-number step"));
            continue;
        };
        for &(kind, col, name) in &metric_cols {
            let Some(field) = fields.get(col).map(|f| f.trim()) else {
                continue;
            };
            if field.is_empty() {
                continue;
            }
            match parse_float(field) {
                Some(x) => c.put(kind, step, x),
                None => bad.push(format!("line {n}: {name} = {field:?} is not a number")),
            }
        }
    }
    push_bad_lines(label, bad, warnings);
    Some(c.finish(label, warnings))
}

/// HF Trainer's `trainer_state.json`: the training entries of `log_history` (those with a
/// `loss`; eval entries and the final summary, whose `train_loss` is a run average, are not
/// training-loss points).
pub fn parse_trainer_state(
    text: &str,
    label: &str,
    warnings: &mut Vec<String>,
) -> Result<Metrics, String> {
    let v: Value = serde_json::from_str(text)
        .or_else(|_| serde_json::from_str(&quote_nonstandard_floats(text)))
        .map_err(|e| format!("not JSON ({e})"))?;
    let history = v
        .get("log_history")
        .and_then(Value::as_array)
        .ok_or("no log_history list")?;
    let mut c = Collector::default();
    let mut bad = Vec::new();
    for (i, entry) in history.iter().enumerate() {
        let Some(obj) = entry.as_object() else {
            bad.push(format!("log_history[{i}]: not an object"));
            continue;
        };
        let Some(step) = obj
            .get("step")
            .and_then(json_f64)
            .and_then(parse_step_value)
        else {
            bad.push(format!("log_history[{i}]: no step"));
            continue;
        };
        let fields = [
            (Kind::Loss, "loss"),
            (Kind::Lr, "learning_rate"),
            (Kind::GradNorm, "grad_norm"),
            (Kind::Tokens, "num_input_tokens_seen"),
        ];
        if obj.get("loss").is_none() {
            continue;
        }
        for (kind, key) in fields {
            if let Some(x) = obj.get(key).and_then(json_f64) {
                c.put(kind, step, x);
            }
        }
    }
    push_bad_lines(label, bad, warnings);
    Ok(c.finish(label, warnings))
}

/// Merges `more` into `into`: steps already present keep their value (the first file wins).
fn merge(into: &mut Metrics, more: Metrics) {
    fn merge_series(a: &mut Series, b: Series) {
        if b.is_empty() {
            return;
        }
        let mut m: BTreeMap<u64, f64> = b.iter().collect();
        m.extend(a.iter());
        a.steps = m.keys().copied().collect();
        a.values = m.values().copied().collect();
    }
    merge_series(&mut into.loss, more.loss);
    merge_series(&mut into.lr, more.lr);
    merge_series(&mut into.grad_norm, more.grad_norm);
    merge_series(&mut into.tokens, more.tokens);
    into.files.extend(more.files);
}

fn has_any(m: &Metrics) -> bool {
    !(m.loss.is_empty() && m.lr.is_empty() && m.grad_norm.is_empty() && m.tokens.is_empty())
}

/// The text of a line-oriented file, each line that is not valid UTF-8 left empty (so that
/// later line numbers stay true) and named in a warning.
fn utf8_lines(bytes: Vec<u8>, label: &str, warnings: &mut Vec<String>) -> String {
    let bytes = match String::from_utf8(bytes) {
        Ok(text) => return text,
        Err(e) => e.into_bytes(),
    };
    let mut text = String::with_capacity(bytes.len());
    let mut bad = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            text.push('\n');
        }
        match std::str::from_utf8(line) {
            Ok(l) => text.push_str(l),
            Err(_) => bad.push(format!("line {}: not UTF-8", i + 1)),
        }
    }
    push_bad_lines(label, bad, warnings);
    text
}

/// Reads one metrics file by its kind (`.jsonl`, `.csv`, `trainer_state.json`). `Ok(None)` when
/// the file holds no training metrics (a CSV of something else).
pub fn read_file(path: &Path, warnings: &mut Vec<String>) -> Result<Option<Metrics>, SourceError> {
    let label = path.display().to_string();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let text = if name.ends_with(".jsonl") || name.ends_with(".csv") {
        // Line-oriented: a line that is not UTF-8 is skipped like any other garbage line.
        let bytes = std::fs::read(path).map_err(|e| SourceError::io(path, e))?;
        utf8_lines(bytes, &label, warnings)
    } else {
        std::fs::read_to_string(path).map_err(|e| SourceError::io(path, e))?
    };
    let mut m = if name.ends_with(".jsonl") {
        let mut w = Vec::new();
        let m = parse_jsonl(&text, &label, &mut w);
        let none = [&m.loss, &m.lr, &m.grad_norm, &m.tokens]
            .iter()
            .all(|s| s.is_empty());
        // Another JSONL beside the checkpoints (a task file such as the demo's cloze.jsonl,
        // eval samples) with no metric on any line is not a metrics file: like a CSV of
        // something else it is not read, and its lines are not "unreadable".
        if none && name != "metrics.jsonl" {
            None
        } else {
            warnings.extend(w);
            Some(m)
        }
    } else if name.ends_with(".csv") {
        parse_csv(&text, &label, warnings)
    } else if name == "trainer_state.json" {
        Some(
            parse_trainer_state(&text, &label, warnings).map_err(|message| {
                SourceError::Invalid {
                    path: path.to_path_buf(),
                    message,
                }
            })?,
        )
    } else {
        None
    };
    if let Some(m) = &mut m {
        m.files.push(path.to_path_buf());
    }
    Ok(m)
}

/// The metrics files directly in `dir`, in the order they are read: `metrics.jsonl` first,
/// then other `*.jsonl`, `*.csv`, and `trainer_state.json` last.
pub fn candidate_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(u8, String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let lower = name.to_ascii_lowercase();
            let rank = if lower == "metrics.jsonl" {
                0
            } else if lower.ends_with(".jsonl") {
                1
            } else if lower.ends_with(".csv") {
                2
            } else if lower == "trainer_state.json" {
                3
            } else {
                return None;
            };
            Some((rank, name, e.path()))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, _, p)| p).collect()
}

/// Reads and merges the metrics of `files`; unreadable files become warnings.
pub fn read_all(files: &[PathBuf], warnings: &mut Vec<String>) -> Metrics {
    let mut all = Metrics::default();
    for f in files {
        match read_file(f, warnings) {
            Ok(Some(m)) if has_any(&m) => merge(&mut all, m),
            Ok(Some(_)) => warnings.push(format!("{}: no metrics in it", f.display())),
            Ok(None) => {}
            Err(e) => warnings.push(e.to_string()),
        }
    }
    all
}

/// Tokens per step when the logged tokens grow by the same whole number every step
/// (`tokens = t0 + (step - s0) * k` at every logged point).
pub fn tokens_per_step(tokens: &Series) -> Option<u64> {
    let pts: Vec<(u64, f64)> = tokens.iter().filter(|(_, t)| t.is_finite()).collect();
    let (&(s0, t0), &(s1, t1)) = (pts.first()?, pts.last()?);
    if s1 <= s0 || t1 <= t0 {
        return None;
    }
    let k = (t1 - t0) / (s1 - s0) as f64;
    if k.fract() != 0.0 {
        return None;
    }
    pts.iter()
        .all(|&(s, t)| t == t0 + (s - s0) as f64 * k)
        .then_some(k as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One byte that is not UTF-8 costs its line only, in a jsonl and in a CSV.
    #[test]
    fn a_line_that_is_not_utf8_is_skipped_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("metrics.jsonl");
        std::fs::write(
            &jsonl,
            b"{\"step\": 1, \"loss\": 4.0}\n{\"step\": 2, \"loss\": \xff3.0}\n{\"step\": 3, \"loss\": 2.0}\n",
        )
        .unwrap();
        let csv = dir.path().join("log.csv");
        std::fs::write(&csv, b"step,loss\n1,4.0\n2,\xfe\n3,2.0\n").unwrap();
        for (f, line) in [(&jsonl, 2), (&csv, 3)] {
            let mut w = Vec::new();
            let m = read_file(f, &mut w).unwrap().unwrap();
            assert_eq!(m.loss.steps, vec![1, 3], "{}", f.display());
            assert_eq!(m.loss.values, vec![4.0, 2.0]);
            assert_eq!(w, vec![format!("{}: line {line}: not UTF-8", f.display())]);
        }
    }

    #[test]
    fn a_jsonl_of_something_else_is_not_read_as_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let cloze = dir.path().join("cloze.jsonl");
        std::fs::write(
            &cloze,
            "{\"text\": \"she said to Anne\"}\n{\"text\": \"x y\"}\n",
        )
        .unwrap();
        let mut w = Vec::new();
        assert_eq!(read_file(&cloze, &mut w).unwrap(), None);
        assert!(w.is_empty(), "{w:?}");
        // metrics.jsonl itself still says what is wrong with it.
        let m = dir.path().join("metrics.jsonl");
        std::fs::write(&m, "{\"text\": \"no step\"}\n").unwrap();
        assert!(read_file(&m, &mut w).unwrap().is_some());
        assert!(w.iter().any(|x| x.contains("line 1: no step")), "{w:?}");
    }

    #[test]
    fn jsonl_with_extra_keys_bad_lines_and_python_nan() {
        let text = r#"{"step": 2, "loss": 3.5, "lr": 0.001, "tokens": 2048, "grad_norm": 1.5, "epoch": 0}
{"step": 1, "loss": 4.0}
not json
[1, 2]
{"loss": 3.0}

{"step": 3, "loss": NaN, "note": "has NaN inside \"quotes\""}
{"step": 4.0, "train/loss": 2.5, "lr": null}
{"step": 4.5, "loss": 2.0}
{"step": 5, "loss": "high"}
"#;
        let mut w = Vec::new();
        let m = parse_jsonl(text, "m.jsonl", &mut w);
        assert_eq!(m.loss.steps, vec![1, 2, 3, 4]);
        assert_eq!(m.loss.values[0], 4.0);
        assert_eq!(m.loss.values[1], 3.5);
        assert!(m.loss.values[2].is_nan());
        assert_eq!(m.loss.values[3], 2.5);
        assert_eq!(m.lr.steps, vec![2]);
        assert_eq!(m.tokens.values, vec![2048.0]);
        assert_eq!(m.grad_norm.values, vec![1.5]);
        assert_eq!(
            w,
            vec![
                "m.jsonl: line 3: not JSON",
                "m.jsonl: line 4: not a JSON object",
                "m.jsonl: line 5: no step",
                "m.jsonl: line 9: step 4.5 is not a whole number",
                "m.jsonl: line 10: loss = \"high\" is not a number",
            ]
        );
    }

    #[test]
    fn fast_and_general_paths_agree() {
        // Every alias, once through the typed fast path and once forced through the general
        // path (a string field the fast path cannot take).
        let aliases = [
            ("step", "loss", "lr", "grad_norm", "tokens"),
            (
                "global_step",
                "train_loss",
                "learning_rate",
                "gradient_norm",
                "tokens_seen",
            ),
            (
                "iter",
                "train/loss",
                "train/lr",
                "train/grad_norm",
                "num_tokens",
            ),
            (
                "iteration",
                "loss/train",
                "train/learning_rate",
                "grad-norm",
                "num_input_tokens_seen",
            ),
            (
                "trainer/global_step",
                "lm_loss",
                "lr",
                "grad_norm",
                "train/tokens",
            ),
        ];
        for (s, l, r, g, t) in aliases {
            let line =
                format!(r#"{{"{s}": 7, "{l}": 2.5, "{r}": 0.1, "{g}": 1.5, "{t}": 70, "x": 1}}"#);
            let slow = line.replace(r#""x": 1"#, r#""x": null"#);
            let mut w = Vec::new();
            let mut c = Collector::default();
            assert!(fast_line(&line, &mut c), "{line}");
            assert!(!fast_line(&slow, &mut Collector::default()), "{slow}");
            let a = parse_jsonl(&line, "a", &mut w);
            let b = parse_jsonl(&slow, "b", &mut w);
            assert_eq!(a, b, "{line}");
            assert_eq!(a.loss.values, vec![2.5], "{line}");
            assert_eq!(a.lr.values, vec![0.1], "{line}");
            assert_eq!(a.grad_norm.values, vec![1.5], "{line}");
            assert_eq!(a.tokens.values, vec![70.0], "{line}");
            assert_eq!(a.loss.steps, vec![7], "{line}");
            assert!(w.is_empty(), "{w:?}");
        }
    }

    #[test]
    fn repeated_steps_keep_the_last_and_warn_once() {
        let text = "{\"step\":1,\"loss\":5}\n{\"step\":2,\"loss\":4}\n{\"step\":2,\"loss\":3}\n";
        let mut w = Vec::new();
        let m = parse_jsonl(text, "m.jsonl", &mut w);
        assert_eq!(m.loss.values, vec![5.0, 3.0]);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("kept the last"), "{w:?}");
    }

    #[test]
    fn many_bad_lines_are_one_warning() {
        let text = "x\n".repeat(100);
        let mut w = Vec::new();
        parse_jsonl(&text, "m.jsonl", &mut w);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("m.jsonl: 100 unreadable lines"), "{w:?}");
    }

    #[test]
    fn csv_with_header_quotes_and_gaps() {
        let text = "Step,loss,learning_rate,\"note, with comma\"\n\
                    10,3.0,0.1,\"a \"\"b\"\"\"\n\
                    5,3.5,,x\n\
                    abc,1,1,1\n\
                    20,nan,0.05\n\
                    30,oops,0.01\n";
        let mut w = Vec::new();
        let m = parse_csv(text, "log.csv", &mut w).unwrap();
        assert_eq!(m.loss.steps, vec![5, 10, 20]);
        assert_eq!(m.loss.values[..2], [3.5, 3.0]);
        assert!(m.loss.values[2].is_nan());
        assert_eq!(m.lr.steps, vec![10, 20, 30]);
        assert_eq!(
            w,
            vec![
                "log.csv: line 4: no whole-number step",
                "log.csv: line 6: loss = \"oops\" is not a number",
            ]
        );
        // Not metrics: no step column, or no metric column.
        assert!(parse_csv("a,b\n1,2\n", "x.csv", &mut w).is_none());
        assert!(parse_csv("step,accuracy\n1,2\n", "x.csv", &mut w).is_none());
        assert!(parse_csv("", "x.csv", &mut w).is_none());
    }

    #[test]
    fn trainer_state_log_history() {
        let text = r#"{"best_metric": null, "global_step": 30, "log_history": [
            {"epoch": 0.1, "grad_norm": 2.0, "learning_rate": 5e-05, "loss": 4.2, "step": 10},
            {"epoch": 0.2, "eval_loss": 3.9, "step": 10},
            {"epoch": 0.2, "grad_norm": 1.0, "learning_rate": 4e-05, "loss": 3.1, "step": 20, "num_input_tokens_seen": 40960},
            {"epoch": 0.3, "step": 30, "train_loss": 3.6, "train_runtime": 12.0},
            {"epoch": 0.3, "loss": 3.0}
        ]}"#;
        let mut w = Vec::new();
        let m = parse_trainer_state(text, "trainer_state.json", &mut w).unwrap();
        assert_eq!(m.loss.steps, vec![10, 20]);
        assert_eq!(m.loss.values, vec![4.2, 3.1]);
        assert_eq!(m.lr.values, vec![5e-5, 4e-5]);
        assert_eq!(m.grad_norm.values, vec![2.0, 1.0]);
        assert_eq!(m.tokens.steps, vec![20]);
        assert_eq!(w, vec!["trainer_state.json: log_history[4]: no step"]);
        assert!(parse_trainer_state("{}", "t", &mut w).is_err());
        assert!(parse_trainer_state("{", "t", &mut w).is_err());
    }

    #[test]
    fn merging_keeps_the_first_file() {
        let mut w = Vec::new();
        let mut a = parse_jsonl(
            "{\"step\":1,\"loss\":1}\n{\"step\":2,\"loss\":2}",
            "a",
            &mut w,
        );
        let b = parse_jsonl(
            "{\"step\":2,\"loss\":20}\n{\"step\":3,\"loss\":30}",
            "b",
            &mut w,
        );
        merge(&mut a, b);
        assert_eq!(a.loss.steps, vec![1, 2, 3]);
        assert_eq!(a.loss.values, vec![1.0, 2.0, 30.0]);
    }

    #[test]
    fn tokens_per_step_from_logged_tokens() {
        let s = |pts: &[(u64, f64)]| Series {
            steps: pts.iter().map(|p| p.0).collect(),
            values: pts.iter().map(|p| p.1).collect(),
        };
        assert_eq!(
            tokens_per_step(&s(&[(1, 1024.0), (2, 2048.0), (10, 10240.0)])),
            Some(1024)
        );
        // Logged before the step (offset) still gives the per-step rate.
        assert_eq!(
            tokens_per_step(&s(&[(1, 0.0), (2, 512.0), (3, 1024.0)])),
            Some(512)
        );
        // Uneven growth (variable batch): no single rate.
        assert_eq!(
            tokens_per_step(&s(&[(1, 100.0), (2, 250.0), (3, 300.0)])),
            None
        );
        assert_eq!(tokens_per_step(&s(&[(1, 100.0)])), None);
        assert_eq!(tokens_per_step(&Series::default()), None);
    }
}

//! Zero-shot tasks, computed as lm-evaluation-harness 0.4 computes them.
//!
//! A task file is the public dataset's own JSONL (nothing is downloaded). [`docs`] turns each
//! line into a [`Doc`]: a context and one or more continuations, with the harness's prompt
//! template, target delimiter and text preprocessing for that task name. [`score`] takes each
//! (context, continuation) pair's log-likelihood the harness's way (`_encode_pair`, left
//! truncation to the model's context, greedy check) and aggregates `acc`, `acc_norm` (summed
//! log-likelihood over the continuation's length in characters), their standard errors, and
//! for `lambada_openai` the perplexity of the last word.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod docs;
pub mod score;

pub use docs::{read_docs, Doc};
pub use score::{evaluate_task, TaskResult};

/// The task names lawa computes, as lm-evaluation-harness names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskName {
    LambadaOpenai,
    Piqa,
    ArcEasy,
    ArcChallenge,
    Hellaswag,
    Sciq,
}

impl TaskName {
    pub const ALL: [TaskName; 6] = [
        TaskName::LambadaOpenai,
        TaskName::Piqa,
        TaskName::ArcEasy,
        TaskName::ArcChallenge,
        TaskName::Hellaswag,
        TaskName::Sciq,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskName::LambadaOpenai => "lambada_openai",
            TaskName::Piqa => "piqa",
            TaskName::ArcEasy => "arc_easy",
            TaskName::ArcChallenge => "arc_challenge",
            TaskName::Hellaswag => "hellaswag",
            TaskName::Sciq => "sciq",
        }
    }

    /// Multiple choice (acc, acc_norm) or the last-word cloze (acc, perplexity).
    pub fn is_cloze(self) -> bool {
        self == TaskName::LambadaOpenai
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskName {
    type Err = TaskError;
    fn from_str(s: &str) -> Result<Self, TaskError> {
        TaskName::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| TaskError::UnknownTask {
                name: s.to_string(),
                supported: TaskName::ALL.map(TaskName::as_str).join(", "),
            })
    }
}

/// `NAME=FILE`, as `--task` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    pub name: TaskName,
    pub file: PathBuf,
}

impl FromStr for TaskSpec {
    type Err = TaskError;
    fn from_str(s: &str) -> Result<Self, TaskError> {
        let (name, file) = s
            .split_once('=')
            .filter(|(_, f)| !f.is_empty())
            .ok_or_else(|| TaskError::Spec(s.to_string()))?;
        Ok(TaskSpec {
            name: name.parse()?,
            file: PathBuf::from(file),
        })
    }
}

/// Scores the task file `spec` on a loaded model with its dir's `tokenizer.json`, `batch`
/// requests per forward pass, at the model's full context (the harness's `max_length`).
/// Cancellable between batches.
pub fn evaluate_model(
    model: &crate::model::LoadedModel,
    spec: &TaskSpec,
    batch: usize,
    reporter: &crate::progress::Reporter,
) -> Result<TaskResult, TaskError> {
    let docs = read_docs(spec.name, &spec.file)?;
    evaluate_docs(model, spec.name, &docs, batch, reporter)
}

/// As [`evaluate_model`], on documents already read (a sweep reads its task file once).
pub fn evaluate_docs(
    model: &crate::model::LoadedModel,
    name: TaskName,
    docs: &[Doc],
    batch: usize,
    reporter: &crate::progress::Reporter,
) -> Result<TaskResult, TaskError> {
    let tok_path = model.dir.join("tokenizer.json");
    let tok = tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| TaskError::Io {
        path: tok_path.clone(),
        msg: crate::model::one_line(&e.to_string()),
    })?;
    let encode = encoder(&tok);
    // The harness conditions an empty context on the EOS token (its `prefix_token_id`).
    let prefix = eos_token_id(&model.dir).unwrap_or(0);
    let mut forward = |x: &candle_core::Tensor| model.model.forward(x);
    evaluate_task(
        name,
        docs,
        &encode,
        prefix,
        model.config.max_position_embeddings,
        batch,
        model.model.device(),
        &mut forward,
        reporter,
    )
}

/// A tokenizer as the harness's `tok_encode` uses it: no special tokens added.
pub fn encoder(tok: &tokenizers::Tokenizer) -> impl Fn(&str) -> Result<Vec<u32>, String> + '_ {
    move |s: &str| {
        Ok(tok
            .encode(s, false)
            .map_err(|e| e.to_string())?
            .get_ids()
            .to_vec())
    }
}

/// `eos_token_id` of the model dir's `config.json` (a number, or the first of a list).
fn eos_token_id(dir: &Path) -> Option<u32> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).ok()?).ok()?;
    let e = v.get("eos_token_id")?;
    e.as_u64()
        .or_else(|| e.as_array()?.first()?.as_u64())
        .and_then(|n| u32::try_from(n).ok())
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("unknown task {name:?}: lawa computes {supported}")]
    UnknownTask { name: String, supported: String },
    #[error("--task {0:?}: expected NAME=FILE, e.g. piqa=piqa_validation.jsonl")]
    Spec(String),
    #[error("{}: {msg}", path.display())]
    Io { path: PathBuf, msg: String },
    #[error("{}:{line}: {msg}", path.display())]
    Doc {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{}: no documents", path.display())]
    Empty { path: PathBuf },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("compute: {0}")]
    Compute(String),
    #[error("cancelled")]
    Cancelled(#[from] crate::progress::Cancelled),
}

impl TaskError {
    fn io(path: &Path, e: impl fmt::Display) -> Self {
        TaskError::Io {
            path: path.to_path_buf(),
            msg: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_what_is_expected() {
        let s: TaskSpec = "piqa=data/piqa.jsonl".parse().unwrap();
        assert_eq!(s.name, TaskName::Piqa);
        assert_eq!(s.file, PathBuf::from("data/piqa.jsonl"));
        for t in TaskName::ALL {
            assert_eq!(t.as_str().parse::<TaskName>().unwrap(), t);
        }
        let e = "mmlu=x.jsonl".parse::<TaskSpec>().unwrap_err().to_string();
        assert!(
            e.contains("unknown task \"mmlu\"") && e.contains("hellaswag"),
            "{e}"
        );
        let e = "piqa".parse::<TaskSpec>().unwrap_err().to_string();
        assert!(e.contains("NAME=FILE"), "{e}");
        assert!("piqa=".parse::<TaskSpec>().is_err());
    }
}

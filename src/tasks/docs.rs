//! Task files (the public datasets' own JSONL schemas) into documents with the harness's prompts.
//!
//! Each task's `doc_to_text`, `doc_to_choice`, `doc_to_target` and target delimiter (" ") are
//! those of lm-evaluation-harness 0.4's task YAMLs of the same name (`lm_eval/tasks/...`).

use std::path::Path;

use serde_json::Value;

use super::{TaskError, TaskName};

/// One document: the context, the continuations it is scored with (the target delimiter
/// already in front), and the index of the right one. A cloze doc has one continuation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doc {
    pub context: String,
    pub continuations: Vec<String>,
    /// The choices without the delimiter: `acc_norm` divides by their length in characters.
    pub choices: Vec<String>,
    pub gold: usize,
}

/// Reads `path` (one JSON object per line; blank lines skipped) as `task`'s documents. A bad
/// line is an error naming the file, the line and what is wrong with it.
pub fn read_docs(task: TaskName, path: &Path) -> Result<Vec<Doc>, TaskError> {
    let text = std::fs::read_to_string(path).map_err(|e| TaskError::io(path, e))?;
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |msg: String| TaskError::Doc {
            path: path.to_path_buf(),
            line: i + 1,
            msg,
        };
        let v: Value = serde_json::from_str(line).map_err(|e| err(format!("not JSON: {e}")))?;
        docs.push(doc(task, &v).map_err(err)?);
    }
    if docs.is_empty() {
        return Err(TaskError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(docs)
}

/// One line's document (the error says which field is missing or wrong).
pub fn doc(task: TaskName, v: &Value) -> Result<Doc, String> {
    let s = |k: &str| -> Result<String, String> {
        match v.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("field \"{k}\" is not a string")),
            None => Err(format!("missing field \"{k}\" ({task} needs it)")),
        }
    };
    let index = |k: &str| -> Result<usize, String> {
        match v.get(k) {
            Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(_) => None,
            None => return Err(format!("missing field \"{k}\" ({task} needs it)")),
        }
        .ok_or_else(|| format!("field \"{k}\" is not a choice index"))
    };
    let (context, choices, gold) = match task {
        TaskName::LambadaOpenai => {
            // doc_to_text: text.split(' ')[:-1]|join(' '); doc_to_target: ' ' + last piece.
            let text = s("text")?;
            let (context, target) = text
                .rsplit_once(' ')
                .ok_or("field \"text\" has no space: no last word to predict")?;
            return Ok(Doc {
                context: context.to_string(),
                continuations: vec![format!(" {target}")],
                choices: vec![format!(" {target}")],
                gold: 0,
            });
        }
        TaskName::Piqa => (
            format!("Question: {}\nAnswer:", s("goal")?),
            vec![s("sol1")?, s("sol2")?],
            index("label")?,
        ),
        TaskName::ArcEasy | TaskName::ArcChallenge => {
            let choices = v.get("choices").ok_or("missing field \"choices\"")?;
            let list = |k: &str| -> Result<Vec<String>, String> {
                choices
                    .get(k)
                    .and_then(Value::as_array)
                    .ok_or(format!("missing field \"choices.{k}\""))?
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .ok_or(format!("\"choices.{k}\" holds a non-string"))
                    })
                    .collect()
            };
            let (texts, labels) = (list("text")?, list("label")?);
            let key = s("answerKey")?;
            let gold = labels.iter().position(|l| *l == key).ok_or(format!(
                "answerKey {key:?} is not one of choices.label {labels:?}"
            ))?;
            (
                format!("Question: {}\nAnswer:", s("question")?),
                texts,
                gold,
            )
        }
        TaskName::Hellaswag => {
            let endings = v
                .get("endings")
                .and_then(Value::as_array)
                .ok_or("missing field \"endings\" (hellaswag needs it)")?
                .iter()
                .map(|e| e.as_str().map(hellaswag_preprocess))
                .collect::<Option<Vec<_>>>()
                .ok_or("\"endings\" holds a non-string")?;
            let ctx = format!("{} {}", s("ctx_a")?, py_capitalize(&s("ctx_b")?));
            let query = hellaswag_preprocess(&format!("{}: {ctx}", s("activity_label")?));
            (query, endings, index("label")?)
        }
        TaskName::Sciq => (
            format!(
                "{}\nQuestion: {}\nAnswer:",
                s("support")?.trim_start(),
                s("question")?
            ),
            vec![
                s("distractor1")?,
                s("distractor2")?,
                s("distractor3")?,
                s("correct_answer")?,
            ],
            3,
        ),
    };
    if gold >= choices.len() {
        return Err(format!(
            "the answer index {gold} is out of range ({} choices)",
            choices.len()
        ));
    }
    Ok(Doc {
        context,
        continuations: choices.iter().map(|c| format!(" {c}")).collect(),
        choices,
        gold,
    })
}

/// The harness's hellaswag `preprocess`: strip, ` [title]` → `. `, drop `[...]`, `"  "` → `" "`.
pub fn hellaswag_preprocess(text: &str) -> String {
    let text = text.trim().replace(" [title]", ". ");
    // re.sub("\\[.*?\\]", "", text): each `[` up to the nearest `]` goes.
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('[') {
        match rest[open..].find(']') {
            Some(close) => {
                out.push_str(&rest[..open]);
                rest = &rest[open + close + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out.replace("  ", " ")
}

/// Python's `str.capitalize()`: the first character upper-cased, all the others lower-cased.
pub fn py_capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompts_are_the_harness_templates() {
        let d = doc(
            TaskName::LambadaOpenai,
            &json!({"text": "she said to Anne"}),
        )
        .unwrap();
        assert_eq!(
            (d.context.as_str(), d.continuations[0].as_str()),
            ("she said to", " Anne")
        );
        let d = doc(
            TaskName::Piqa,
            &json!({"goal": "Boil water", "sol1": "use a pot", "sol2": "use a sieve", "label": 0}),
        )
        .unwrap();
        assert_eq!(d.context, "Question: Boil water\nAnswer:");
        assert_eq!(d.continuations, vec![" use a pot", " use a sieve"]);
        assert_eq!(d.choices, vec!["use a pot", "use a sieve"]);
        let d = doc(
            TaskName::ArcEasy,
            &json!({"question": "Q?", "choices": {"text": ["a", "b", "c"], "label": ["A", "B", "C"]}, "answerKey": "C"}),
        )
        .unwrap();
        assert_eq!((d.context.as_str(), d.gold), ("Question: Q?\nAnswer:", 2));
        let d = doc(
            TaskName::Sciq,
            &json!({"question": "Q?", "distractor1": "x", "distractor2": "y", "distractor3": "z",
                    "correct_answer": "w", "support": "  Facts."}),
        )
        .unwrap();
        assert_eq!(
            (d.context.as_str(), d.gold),
            ("Facts.\nQuestion: Q?\nAnswer:", 3)
        );
        let d = doc(
            TaskName::Hellaswag,
            &json!({"activity_label": "Baking cookies", "ctx_a": "A woman mixes flour.",
                    "ctx_b": "she THEN", "endings": ["adds [header] eggs.", " bakes  them. "],
                    "label": "1"}),
        )
        .unwrap();
        assert_eq!(d.context, "Baking cookies: A woman mixes flour. She then");
        assert_eq!(d.choices, vec!["adds eggs.", "bakes them."]);
        assert_eq!(d.gold, 1);
    }

    #[test]
    fn hellaswag_preprocessing_matches_the_harness() {
        // Outputs of lm_eval/tasks/hellaswag/utils.py's preprocess on the same strings.
        assert_eq!(
            hellaswag_preprocess(" Home [title] How to bake [step] Mix it. "),
            "Home. How to bake Mix it."
        );
        assert_eq!(hellaswag_preprocess("a [b] [c"), "a [c");
        assert_eq!(py_capitalize("hELLO World"), "Hello world");
    }

    #[test]
    fn bad_lines_name_the_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("piqa.jsonl");
        std::fs::write(
            &p,
            "{\"goal\":\"g\",\"sol1\":\"a\",\"sol2\":\"b\",\"label\":1}\n\n{\"goal\":\"g\",\"sol1\":\"a\",\"label\":0}\n",
        )
        .unwrap();
        let e = read_docs(TaskName::Piqa, &p).unwrap_err().to_string();
        assert!(
            e.ends_with("piqa.jsonl:3: missing field \"sol2\" (piqa needs it)"),
            "{e}"
        );
        std::fs::write(
            &p,
            "{\"goal\":\"g\",\"sol1\":\"a\",\"sol2\":\"b\",\"label\":2}\n",
        )
        .unwrap();
        let e = read_docs(TaskName::Piqa, &p).unwrap_err().to_string();
        assert!(
            e.contains(":1: the answer index 2 is out of range (2 choices)"),
            "{e}"
        );
        std::fs::write(&p, "not json\n").unwrap();
        let e = read_docs(TaskName::Piqa, &p).unwrap_err().to_string();
        assert!(e.contains("piqa.jsonl:1: not JSON"), "{e}");
        std::fs::write(&p, "\n").unwrap();
        assert!(read_docs(TaskName::Piqa, &p)
            .unwrap_err()
            .to_string()
            .ends_with("no documents"));
    }
}

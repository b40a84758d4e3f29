//! Editing a value at the prompt, checked against the model and the run in the prompt's own words.

use super::*;

impl State {
    pub(super) fn start_edit(&mut self, field: Field) {
        let buffer = match field {
            Field::Param => match &self.scheme {
                Scheme::Uniform | Scheme::Linear => self.k.to_string(),
                Scheme::Ema { half_life } => format!("{half_life}"),
                Scheme::Custom(w) => w
                    .iter()
                    .map(|x| format!("{x}"))
                    .collect::<Vec<_>>()
                    .join(","),
            },
            Field::Ctx => self
                .eval
                .ctx_asked
                .map(|c| c.to_string())
                .unwrap_or_default(),
            Field::MaxTokens => self
                .eval
                .max_tokens
                .map(|c| c.to_string())
                .unwrap_or_default(),
        };
        self.edit = Some(Edit { field, buffer });
    }

    /// The prompt of a field being edited.
    pub fn edit_prompt(&self, field: Field) -> &'static str {
        match field {
            Field::Param => match self.scheme {
                Scheme::Uniform | Scheme::Linear => "window size k",
                Scheme::Ema { .. } => "EMA half-life (steps)",
                Scheme::Custom(_) => "weights, oldest first (w1,w2,...)",
            },
            Field::Ctx => "eval context length (empty: model default)",
            Field::MaxTokens => "eval max tokens (empty: all)",
        }
    }

    /// The longest half-life that means anything: the run's span of checkpoint steps.
    pub(super) fn run_span(&self) -> f64 {
        let steps = self.steps();
        match (steps.first(), steps.last()) {
            (Some(a), Some(b)) if b > a => (b - a) as f64,
            _ => 1.0,
        }
    }

    /// Checks a typed value against the model and the run, in the prompt's own words; on
    /// success the status line says the new value (and an old error goes away).
    pub(super) fn finish_edit(&mut self) -> Vec<Effect> {
        let Some(Edit { field, buffer }) = self.edit.take() else {
            return Vec::new();
        };
        let prompt = self.edit_prompt(field);
        let text = buffer.trim();
        let n = self.traj.checkpoints.len().max(1);
        let bad = |rule: String| Some(format!("{prompt}: {rule}, not {text:?}"));
        let span = self.run_span();
        match field {
            Field::Param => match &mut self.scheme {
                Scheme::Uniform | Scheme::Linear => match text.parse::<usize>() {
                    Ok(k) if (1..=n).contains(&k) => {
                        self.k = k;
                        self.message = Some(format!("window size k: {k}"));
                    }
                    _ => {
                        self.message =
                            bad(format!("a whole number from 1 to {n} (the checkpoints)"))
                    }
                },
                Scheme::Ema { half_life } => match text.parse::<f64>() {
                    Ok(h) if h > 0.0 && h <= span => {
                        *half_life = h;
                        self.message = Some(format!("scheme: ema:{h} (half-life {h} steps)"));
                    }
                    _ => {
                        self.message = bad(format!(
                            "a number of steps above 0 and at most {span} (the run's span)"
                        ))
                    }
                },
                Scheme::Custom(w) => {
                    let parsed: Result<Vec<f64>, _> =
                        text.split(',').map(|p| p.trim().parse::<f64>()).collect();
                    match parsed {
                        Ok(v)
                            if !v.is_empty()
                                && v.len() <= n
                                && v.iter().all(|x| x.is_finite() && *x >= 0.0)
                                && v.iter().sum::<f64>() > 0.0 =>
                        {
                            self.k = v.len();
                            *w = v;
                            self.message = Some(format!("scheme: custom weights {}", self.scheme));
                        }
                        _ => {
                            self.message = bad(format!(
                                "1 to {n} weights (the checkpoints), each 0 or more, not all 0"
                            ))
                        }
                    }
                }
            },
            Field::Ctx | Field::MaxTokens => {
                let v: Result<Option<u64>, ()> = if text.is_empty() {
                    Ok(None)
                } else {
                    text.parse::<u64>().map(Some).map_err(|_| ())
                };
                let max_ctx = self.eval.max_ctx;
                let rule = if field == Field::Ctx {
                    match max_ctx {
                        Some(m) => format!("empty or a whole number from 2 to {m} (the model's max_position_embeddings)"),
                        None => "empty or a whole number from 2".to_string(),
                    }
                } else {
                    match self.eval.data_tokens_max {
                        Some(m) => {
                            format!("empty or a whole number from 2 to {m} (the eval data's size)")
                        }
                        None => "empty or a whole number from 2".to_string(),
                    }
                };
                let ok = match (field, &v) {
                    (_, Err(_)) => false,
                    (Field::Ctx, Ok(Some(c))) => *c >= 2 && max_ctx.is_none_or(|m| *c <= m as u64),
                    (_, Ok(Some(c))) => {
                        *c >= 2 && self.eval.data_tokens_max.is_none_or(|m| *c <= m)
                    }
                    (_, Ok(None)) => true,
                };
                let (true, Ok(v)) = (ok, v) else {
                    self.message = bad(rule);
                    return Vec::new();
                };
                if field == Field::Ctx {
                    self.eval.ctx_asked = v.map(|x| x as usize);
                } else {
                    self.eval.max_tokens = v;
                }
                self.redetect_spikes();
                self.message = Some(format!("eval settings: {}", self.eval.describe()));
                return vec![Effect::SetEval {
                    ctx: self.eval.ctx(),
                    max_tokens: self.eval.max_tokens,
                }];
            }
        }
        Vec::new()
    }

    pub(super) fn on_edit_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(edit) = &mut self.edit else {
            return Vec::new();
        };
        match key.code {
            KeyCode::Enter => return self.finish_edit(),
            KeyCode::Esc => self.edit = None,
            KeyCode::Backspace => {
                edit.buffer.pop();
            }
            KeyCode::Char(c)
                if !key.modifiers.contains(KeyModifiers::CONTROL) && edit.buffer.len() < 200 =>
            {
                edit.buffer.push(c);
            }
            _ => {}
        }
        Vec::new()
    }
}

//! Log-likelihoods of (context, continuation) pairs and the task metrics, the harness's way.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{Doc, TaskError, TaskName};
use crate::progress::{Reporter, Unit};

/// What a task gives: `acc` for every task, `acc_norm` for multiple choice, `perplexity` (of
/// the last word) for `lambada_openai`. Standard errors as the harness computes them (sample
/// standard deviation over √n).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub task: TaskName,
    pub n: usize,
    pub acc: f64,
    pub acc_stderr: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc_norm_stderr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<f64>,
}

/// The harness's `_encode_pair` for a causal model: trailing whitespace of the context moves to
/// the continuation, and the continuation's tokens are those of the whole string after the
/// context's. An empty context is the prefix token (the harness's `prefix_token_id`, the EOS).
pub fn encode_pair(
    context: &str,
    continuation: &str,
    prefix_token: u32,
    encode: &dyn Fn(&str) -> Result<Vec<u32>, String>,
) -> Result<(Vec<u32>, Vec<u32>), String> {
    if context.is_empty() {
        return Ok((vec![prefix_token], encode(continuation)?));
    }
    let trimmed = context.trim_end();
    let (context, continuation) = if trimmed.len() < context.len() {
        (
            trimmed,
            format!("{}{continuation}", &context[trimmed.len()..]),
        )
    } else {
        (context, continuation.to_string())
    };
    let whole = encode(&format!("{context}{continuation}"))?;
    let context_enc = encode(context)?;
    let cont = whole.get(context_enc.len()..).unwrap_or_default().to_vec();
    Ok((context_enc, cont))
}

/// One scored pair: the model input (left-truncated to `max_length`) and where in it the
/// continuation's predictions are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub input: Vec<u32>,
    pub targets: Vec<u32>,
}

impl Request {
    /// `(context + continuation)[-(max_length + 1):][:-1]`, the harness's window.
    pub fn new(context: &[u32], continuation: &[u32], max_length: usize) -> Request {
        let whole: Vec<u32> = context.iter().chain(continuation).copied().collect();
        let from = whole.len().saturating_sub(max_length + 1);
        let window = &whole[from..];
        let input = window[..window.len() - 1].to_vec();
        let n = continuation.len().min(input.len());
        Request {
            input,
            targets: continuation[continuation.len() - n..].to_vec(),
        }
    }
}

/// The log-likelihood of each request's targets, and whether each target token is the argmax
/// (the harness's `is_greedy`). Requests are run longest first in batches of at most `batch`,
/// right-padded: the model is causal, so padding after a sequence changes none of its logits.
pub fn loglikelihoods(
    requests: &[Request],
    batch: usize,
    device: &Device,
    forward: &mut dyn FnMut(&Tensor) -> candle_core::Result<Tensor>,
    reporter: &Reporter,
    stage: &str,
) -> Result<Vec<(f64, bool)>, TaskError> {
    let compute =
        |e: candle_core::Error| TaskError::Compute(crate::model::one_line(&e.to_string()));
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(requests[i].input.len()));
    let mut out = vec![(0.0, false); requests.len()];
    let mut done = 0u64;
    for chunk in order.chunks(batch.max(1)) {
        reporter.check()?;
        let t = chunk
            .iter()
            .map(|&i| requests[i].input.len())
            .max()
            .unwrap_or(1);
        let mut ids = vec![0u32; chunk.len() * t];
        for (row, &i) in chunk.iter().enumerate() {
            ids[row * t..row * t + requests[i].input.len()].copy_from_slice(&requests[i].input);
        }
        let x = Tensor::from_vec(ids, (chunk.len(), t), device).map_err(compute)?;
        let logits = forward(&x).map_err(compute)?;
        for (row, &i) in chunk.iter().enumerate() {
            let r = &requests[i];
            let n = r.targets.len();
            let start = r.input.len() - n;
            let rows = logits
                .get(row)
                .and_then(|l| l.narrow(0, start, n))
                .and_then(|l| l.to_dtype(DType::F32))
                .and_then(|l| candle_nn::ops::log_softmax(&l, 1))
                .and_then(|l| l.to_vec2::<f32>())
                .map_err(compute)?;
            let mut ll = 0f64;
            let mut greedy = true;
            for (lp, &tok) in rows.iter().zip(&r.targets) {
                ll += lp[tok as usize] as f64;
                let best = lp
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (j, &v)| if v > b.1 { (j, v) } else { b },
                    );
                greedy &= best.0 == tok as usize;
            }
            out[i] = (ll, greedy);
        }
        done += chunk.len() as u64;
        // Each request is one scored window.
        reporter.report(stage, done, Some(requests.len() as u64), Unit::Windows);
    }
    Ok(out)
}

/// Scores `docs` of `task` with a model given as its `forward` (ids `[B, T]` → logits
/// `[B, T, V]`) and its tokenizer's `encode`; `max_length` is the model's context.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_task(
    task: TaskName,
    docs: &[Doc],
    encode: &dyn Fn(&str) -> Result<Vec<u32>, String>,
    prefix_token: u32,
    max_length: usize,
    batch: usize,
    device: &Device,
    forward: &mut dyn FnMut(&Tensor) -> candle_core::Result<Tensor>,
    reporter: &Reporter,
) -> Result<TaskResult, TaskError> {
    let mut requests = Vec::new();
    for d in docs {
        for c in &d.continuations {
            let (ctx, cont) =
                encode_pair(&d.context, c, prefix_token, encode).map_err(TaskError::Tokenizer)?;
            requests.push(Request::new(&ctx, &cont, max_length));
        }
    }
    let stage = format!("task {task}");
    let lls = loglikelihoods(&requests, batch, device, forward, reporter, &stage)?;
    let mut acc = Vec::with_capacity(docs.len());
    let mut acc_norm = Vec::with_capacity(docs.len());
    let mut word_ll = Vec::new();
    let mut at = 0;
    for d in docs {
        let these = &lls[at..at + d.continuations.len()];
        at += d.continuations.len();
        if task.is_cloze() {
            acc.push(f64::from(u8::from(these[0].1)));
            word_ll.push(these[0].0);
            continue;
        }
        let ll: Vec<f64> = these.iter().map(|x| x.0).collect();
        let norm: Vec<f64> = ll
            .iter()
            .zip(&d.choices)
            .map(|(l, c)| l / c.chars().count() as f64)
            .collect();
        acc.push(f64::from(u8::from(argmax(&ll) == d.gold)));
        acc_norm.push(f64::from(u8::from(argmax(&norm) == d.gold)));
    }
    let (a, a_se) = mean_and_stderr(&acc);
    let norm = (!task.is_cloze()).then(|| mean_and_stderr(&acc_norm));
    Ok(TaskResult {
        task,
        n: docs.len(),
        acc: a,
        acc_stderr: a_se,
        acc_norm: norm.map(|x| x.0),
        acc_norm_stderr: norm.map(|x| x.1),
        perplexity: task
            .is_cloze()
            .then(|| (-word_ll.iter().sum::<f64>() / word_ll.len() as f64).exp()),
    })
}

/// numpy's argmax: the first index of the maximum.
pub fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// The mean and the harness's `mean_stderr` (sample standard deviation, n − 1, over √n).
pub fn mean_and_stderr(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Result<Vec<u32>, String> {
        Ok(s.chars().map(|c| c as u32).collect())
    }

    #[test]
    fn trailing_space_moves_to_the_continuation() {
        let (c, x) = encode_pair("Answer: ", "yes", 0, &chars).unwrap();
        assert_eq!(c, chars("Answer:").unwrap());
        assert_eq!(x, chars(" yes").unwrap());
        let (c, x) = encode_pair("", "yes", 7, &chars).unwrap();
        assert_eq!((c, x), (vec![7], chars("yes").unwrap()));
        // A tokenizer that merges across the boundary: the continuation is the rest of the whole.
        let merge = |s: &str| -> Result<Vec<u32>, String> {
            Ok(s.replace("ab", "X").chars().map(|c| c as u32).collect())
        };
        let (c, x) = encode_pair("za", "bc", 0, &merge).unwrap();
        assert_eq!((c, x), (vec!['z' as u32, 'a' as u32], vec!['c' as u32]));
    }

    #[test]
    fn requests_truncate_on_the_left_to_the_context() {
        let r = Request::new(&[1, 2, 3, 4], &[5, 6], 4);
        assert_eq!(r.input, vec![2, 3, 4, 5]);
        assert_eq!(r.targets, vec![5, 6]);
        let r = Request::new(&[1], &[5, 6], 8);
        assert_eq!((r.input, r.targets), (vec![1, 5], vec![5, 6]));
    }

    #[test]
    fn metrics_follow_numpy_and_the_harness() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        let (m, se) = mean_and_stderr(&[1.0, 0.0, 1.0, 1.0]);
        assert_eq!(m, 0.75);
        assert!((se - 0.25).abs() < 1e-12, "{se}");
    }

    #[test]
    fn loglikelihoods_of_a_known_model() {
        // A "model" whose logits at every position favour token (input + 1) % 4.
        let mut forward = |x: &Tensor| -> candle_core::Result<Tensor> {
            let ids = x.to_vec2::<u32>()?;
            let (b, t) = (ids.len(), ids[0].len());
            let mut v = vec![0f32; b * t * 4];
            for (i, row) in ids.iter().enumerate() {
                for (j, &id) in row.iter().enumerate() {
                    v[(i * t + j) * 4 + ((id as usize + 1) % 4)] = 2.0;
                }
            }
            Tensor::from_vec(v, (b, t, 4), &Device::Cpu)
        };
        let reqs = vec![
            Request::new(&[0], &[1, 2], 8),
            Request::new(&[0, 1, 2], &[0], 8),
        ];
        let got = loglikelihoods(
            &reqs,
            1,
            &Device::Cpu,
            &mut forward,
            &Reporter::silent(),
            "t",
        )
        .unwrap();
        let hit = (2f64.exp() / (2f64.exp() + 3.0)).ln();
        let miss = (1.0 / (2f64.exp() + 3.0)).ln();
        assert!((got[0].0 - 2.0 * hit).abs() < 1e-5 && got[0].1);
        assert!((got[1].0 - miss).abs() < 1e-5 && !got[1].1);
        // Batched with padding: the same numbers.
        let batched = loglikelihoods(
            &reqs,
            8,
            &Device::Cpu,
            &mut forward,
            &Reporter::silent(),
            "t",
        )
        .unwrap();
        assert_eq!(batched, got);
    }
}

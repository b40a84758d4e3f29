//! The training step encoded in a checkpoint's name (pure).
//!
//! Runs name their checkpoints in many ways: `step1000`, `checkpoint-1000` (HF Trainer),
//! `global_step1000` (DeepSpeed), `iter_0001000` (Megatron), `ckpt_1000.pt`, `model_01000.bin`,
//! `epoch=0-step=1000.ckpt` (Lightning), `step1000-tokens4B` (OLMo). The rule: an explicit
//! `step` word followed by digits wins; otherwise the name (extension removed) must be a
//! word prefix made of letters, `_` and `-` followed by the digits, or digits alone.
//! Shard names (`model-00001-of-00002`) never parse, so a shard is never taken for a step.

/// File extensions a single-file checkpoint may have.
pub const WEIGHTS_EXTENSIONS: &[&str] = &["safetensors", "pt", "pth", "bin", "ckpt"];

/// The extension of `name` when it is one of [`WEIGHTS_EXTENSIONS`] (case-insensitive).
pub fn weights_extension(name: &str) -> Option<&'static str> {
    let (_, ext) = name.rsplit_once('.')?;
    WEIGHTS_EXTENSIONS
        .iter()
        .copied()
        .find(|e| e.eq_ignore_ascii_case(ext))
}

/// `name` without a weights extension (a folder name is returned unchanged).
pub fn strip_weights_extension(name: &str) -> &str {
    match weights_extension(name) {
        Some(ext) => &name[..name.len() - ext.len() - 1],
        None => name,
    }
}

/// The step in a checkpoint folder or file name, if the name carries one.
pub fn parse_step(name: &str) -> Option<u64> {
    let stem = strip_weights_extension(name);
    if stem.is_empty() {
        return None;
    }
    step_after_step_word(stem).or_else(|| step_after_prefix(stem))
}

/// `...step<sep?><digits>...` where `step` starts the name or follows a non-letter, and the
/// digits end the name or are followed by a non-digit (`epoch=0-step=1000`, `step1000-tokens4B`).
fn step_after_step_word(stem: &str) -> Option<u64> {
    let lower = stem.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("step") {
        let start = from + pos;
        from = start + 4;
        // `global_step` and `train_step` count (the word follows `_`), `mystep` does not.
        if start > 0 && bytes[start - 1].is_ascii_alphabetic() {
            continue;
        }
        let mut i = start + 4;
        if i < bytes.len() && matches!(bytes[i], b'_' | b'-' | b'=' | b'.') {
            i += 1;
        }
        let digits_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits_start {
            continue;
        }
        if i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            // `step1000x` is not a step.
            continue;
        }
        return lower[digits_start..i].parse().ok();
    }
    None
}

/// `<letters/_/-><digits>` exactly, or `<digits>` alone.
fn step_after_prefix(stem: &str) -> Option<u64> {
    let digits_start = stem
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_digit())
        .last()
        .map(|(i, _)| i)?;
    let (prefix, digits) = stem.split_at(digits_start);
    let prefix_ok = prefix
        .chars()
        .all(|c| c.is_ascii_alphabetic() || c == '_' || c == '-')
        && !prefix.starts_with(['_', '-']);
    if !prefix_ok {
        return None;
    }
    digits.parse().ok()
}

/// Tokens seen as a checkpoint's name states them (OLMo: `stage1-step1000-tokens4B`,
/// `step1000-tokens4194B`): the count and the unit it is rounded to (`4B` → 4e9 to within
/// 1e9, `4.5B` → 4.5e9 to within 1e8). Suffixes K, M, B (or G), T; none means tokens.
pub fn parse_tokens(name: &str) -> Option<(u64, u64)> {
    let stem = strip_weights_extension(name);
    let lower = stem.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("tokens") {
        let start = from + pos;
        from = start + 6;
        if start > 0 && bytes[start - 1].is_ascii_alphabetic() {
            continue;
        }
        let mut i = start + 6;
        if i < bytes.len() && matches!(bytes[i], b'_' | b'-' | b'=') {
            i += 1;
        }
        let num_start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let num = &lower[num_start..i];
        if num.is_empty()
            || num.starts_with('.')
            || num.ends_with('.')
            || num.matches('.').count() > 1
        {
            continue;
        }
        let scale: u64 = match bytes.get(i) {
            Some(b'k') => 1_000,
            Some(b'm') => 1_000_000,
            Some(b'b' | b'g') => 1_000_000_000,
            Some(b't') => 1_000_000_000_000,
            None | Some(b'_' | b'-' | b'.') => 1,
            Some(_) => continue,
        };
        let after = i + usize::from(scale != 1);
        if after < bytes.len() && bytes[after].is_ascii_alphanumeric() {
            continue;
        }
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        // Names come from anywhere: no digit count may overflow the arithmetic below.
        if int.len() + frac.len() > 24 || frac.len() > 12 {
            return None;
        }
        let value: u128 = format!("{int}{frac}").parse().ok()?;
        let frac_scale = 10u128.pow(frac.len() as u32);
        let unit = (scale as u128 / frac_scale).max(1);
        let count = value.checked_mul(scale as u128)? / frac_scale;
        return Some((u64::try_from(count).ok()?, u64::try_from(unit).ok()?));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_olmo_names() {
        let cases: &[(&str, Option<(u64, u64)>)] = &[
            (
                "stage1-step1000-tokens4B",
                Some((4_000_000_000, 1_000_000_000)),
            ),
            (
                "step1000-tokens4194B",
                Some((4_194_000_000_000, 1_000_000_000)),
            ),
            (
                "stage2-ingredient1-step11931-tokens100B",
                Some((100_000_000_000, 1_000_000_000)),
            ),
            ("step5-tokens4.5B", Some((4_500_000_000, 100_000_000))),
            ("step5-tokens20M", Some((20_000_000, 1_000_000))),
            ("step5-tokens_1234", Some((1234, 1))),
            (
                "step5-tokens3T.safetensors",
                Some((3_000_000_000_000, 1_000_000_000_000)),
            ),
            ("step1000", None),
            ("step1000-tokens", None),
            ("step1000-tokensXB", None),
            ("step1000-tokens4Bx", None),
            ("mytokens4B", None),
            ("step1-tokens99999999999999999999999B", None),
            (
                "step1-tokens1.00000000000000000000000000000000000000001B",
                None,
            ),
            (
                "step1-tokens999999999999999999999999999999999999999999T",
                None,
            ),
        ];
        for (name, want) in cases {
            assert_eq!(parse_tokens(name), *want, "{name}");
        }
    }

    #[test]
    fn names_in_every_style() {
        let cases: &[(&str, Option<u64>)] = &[
            // folders
            ("step1000", Some(1000)),
            ("step0", Some(0)),
            ("checkpoint-1000", Some(1000)),
            ("global_step1000", Some(1000)),
            ("iter_0001000", Some(1000)),
            ("ckpt_1000", Some(1000)),
            ("step-1000", Some(1000)),
            ("step_1000", Some(1000)),
            ("Step1000", Some(1000)),
            ("step1000-tokens4194B", Some(1000)),
            ("step1000-unsharded", Some(1000)),
            ("1000", Some(1000)),
            ("0001000", Some(1000)),
            // files
            ("step_1000.safetensors", Some(1000)),
            ("ckpt_1000.pt", Some(1000)),
            ("model_01000.bin", Some(1000)),
            ("checkpoint-250.pth", Some(250)),
            ("epoch=0-step=1000.ckpt", Some(1000)),
            ("epoch_2_step_300.pt", Some(300)),
            ("iter_0000050.SAFETENSORS", Some(50)),
            // not steps
            ("main", None),
            ("model.safetensors", None),
            ("pytorch_model.bin", None),
            ("pytorch_model-00001-of-00002.bin", None),
            ("model-00001-of-00003.safetensors", None),
            ("training_args.bin", None),
            ("optimizer.pt", None),
            ("step", None),
            ("stepx", None),
            ("step1000x", None),
            ("v2_1000", None),
            ("_1000", None),
            ("", None),
            (".pt", None),
            ("final", None),
            ("checkpoint-99999999999999999999999", None),
        ];
        for (name, want) in cases {
            assert_eq!(parse_step(name), *want, "{name}");
        }
    }

    #[test]
    fn extensions() {
        assert_eq!(weights_extension("a.safetensors"), Some("safetensors"));
        assert_eq!(weights_extension("a.PT"), Some("pt"));
        assert_eq!(weights_extension("a.json"), None);
        assert_eq!(weights_extension("step1000"), None);
        assert_eq!(strip_weights_extension("ckpt_1.pt"), "ckpt_1");
        assert_eq!(strip_weights_extension("ckpt_1.PT"), "ckpt_1");
        assert_eq!(strip_weights_extension("step1000"), "step1000");
    }
}

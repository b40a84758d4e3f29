//! Byte-level BPE trained with the tokenizers crate, GPT-NeoX style: `<|endoftext|>` is id 0,
//! the 256 byte symbols are always in the vocabulary (any UTF-8 text encodes), no prefix space.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

use super::TrainError;

/// GPT-NeoX's end-of-text token; id 0, also used as BOS/EOS in `config.json`.
pub const EOS: &str = "<|endoftext|>";

/// Trains a byte-level BPE of (at most) `vocab_size` tokens on `text`. Deterministic: the
/// trainer breaks count ties by pair ids, which come from the sorted byte alphabet.
pub fn train(text: &str, vocab_size: usize) -> Result<Tokenizer, TrainError> {
    let err = |e: tokenizers::Error| TrainError::Tokenizer(e.to_string());
    let byte_level = ByteLevel::default().add_prefix_space(false);
    let mut tok = TokenizerBuilder::<BPE, _, ByteLevel, ByteLevel, ByteLevel>::new()
        .with_model(BPE::default())
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_pre_tokenizer(Some(byte_level))
        .with_post_processor(Some(byte_level))
        .with_decoder(Some(byte_level))
        .build()
        .map_err(err)?;
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(2)
        .special_tokens(vec![AddedToken::from(EOS, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    tok.train(&mut trainer, chunks(text)).map_err(err)?;
    Ok(Tokenizer::from(tok))
}

/// Encodes `text` into ids, equal to those of encoding the whole text at once (what `lawa eval`
/// does with `heldout.txt`). The tokenizers crate's byte-level regex costs about 1 s per MB on
/// this machine, so ASCII text is split by [`split_ascii`] (the same GPT-2 pattern, by hand)
/// and each distinct piece is encoded once; anything else goes through the tokenizer in chunks
/// cut where the pre-tokenizer splits anyway.
pub fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>, TrainError> {
    let err = |e: tokenizers::Error| TrainError::Tokenizer(e.to_string());
    let mut ids = Vec::with_capacity(text.len() / 3);
    let mut cache: HashMap<&str, Vec<u32>> = HashMap::new();
    for chunk in chunks(text) {
        if !chunk.is_ascii() {
            ids.extend_from_slice(tok.encode(chunk, false).map_err(err)?.get_ids());
            continue;
        }
        for piece in split_ascii(chunk) {
            if let Some(known) = cache.get(piece) {
                ids.extend_from_slice(known);
            } else {
                let enc = tok.encode(piece, false).map_err(err)?;
                ids.extend_from_slice(enc.get_ids());
                cache.insert(piece, enc.get_ids().to_vec());
            }
        }
    }
    Ok(ids)
}

/// `\s` of the regex, on ASCII (note: includes vertical tab, unlike `is_ascii_whitespace`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

#[derive(PartialEq, Clone, Copy)]
enum Class {
    Letter,
    Digit,
    Other,
    Space,
}

fn class(b: u8) -> Class {
    if b.is_ascii_alphabetic() {
        Class::Letter
    } else if b.is_ascii_digit() {
        Class::Digit
    } else if is_space(b) {
        Class::Space
    } else {
        Class::Other
    }
}

/// The pre-tokens of ASCII `text` under the GPT-2 pattern the byte-level pre-tokenizer uses:
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
pub fn split_ascii(text: &str) -> impl Iterator<Item = &str> {
    let b = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= b.len() {
            return None;
        }
        let start = i;
        let run = |from: usize, c: Class| {
            let mut j = from;
            while j < b.len() && class(b[j]) == c {
                j += 1;
            }
            j
        };
        const CONTRACTIONS: [&str; 7] = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];
        if let Some(c) = CONTRACTIONS
            .iter()
            .find(|c| b[i..].starts_with(c.as_bytes()))
        {
            i += c.len();
        } else {
            // ` ?X+` for letters, digits, other: an optional single space, then a run.
            let body = if b[i] == b' ' && i + 1 < b.len() && class(b[i + 1]) != Class::Space {
                i + 1
            } else {
                i
            };
            match class(b[body]) {
                Class::Space => {
                    let end = run(i, Class::Space);
                    // `\s+(?!\S)` leaves the last space for the word after it, when that
                    // still leaves at least one; otherwise `\s+` takes the whole run.
                    i = if end < b.len() && end - i >= 2 {
                        end - 1
                    } else {
                        end
                    };
                }
                c => i = run(body, c),
            }
        }
        Some(&text[start..i])
    })
}

pub fn save(tok: &Tokenizer, path: &Path) -> Result<(), TrainError> {
    tok.save(path, false).map_err(|e| TrainError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Pieces of about 64 KiB or more, cut after a lone `\n` followed by an ASCII non-space.
fn chunks(text: &str) -> impl Iterator<Item = &str> {
    const TARGET: usize = 1 << 16;
    let bytes = text.as_bytes();
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= bytes.len() {
            return None;
        }
        let mut i = (start + TARGET).min(bytes.len());
        loop {
            if i >= bytes.len() {
                break;
            }
            // A lone `\n` between two non-spaces is a pre-token of its own in any context
            // (a run of whitespace is split before its last char when a word follows), and
            // the next byte being ASCII makes `i` a char boundary.
            let lone_newline = bytes[i - 1] == b'\n'
                && i >= 2
                && !bytes[i - 2].is_ascii_whitespace()
                && !bytes[i].is_ascii_whitespace()
                && bytes[i] < 0x80;
            // The middle of a paragraph break `\n\n` between non-spaces is a pre-token
            // boundary too: the first `\n` ends its chunk as `\s+` at the end of text would,
            // the second begins the next one as `\s` before a word does.
            let paragraph_break = i >= 2
                && i + 1 < bytes.len()
                && bytes[i - 1] == b'\n'
                && bytes[i] == b'\n'
                && !bytes[i - 2].is_ascii_whitespace()
                && !bytes[i + 1].is_ascii_whitespace()
                && bytes[i + 1] < 0x80;
            if lone_newline || paragraph_break {
                break;
            }
            i += 1;
        }
        let piece = &text[start..i];
        start = i;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::corpus;

    #[test]
    fn trains_a_byte_level_bpe_that_round_trips_any_text() {
        let c = corpus::austen(300_000, 20_000);
        let tok = train(&c.train, 600).unwrap();
        assert_eq!(tok.get_vocab_size(true), 600);
        assert_eq!(tok.token_to_id(EOS), Some(0));
        // Text it never saw, including non-ASCII, encodes and decodes back exactly.
        let text = "Zoë's naïve café — 東京 at 3pm.\n\nThe cats sleep.";
        let ids = encode(&tok, text).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        // BPE compresses the language it was trained on.
        let ids = encode(&tok, &c.heldout).unwrap();
        assert!(ids.len() * 2 < c.heldout.len(), "{} tokens", ids.len());
    }

    #[test]
    fn chunked_encoding_equals_whole_text_encoding() {
        let c = corpus::austen(200_000, 150_000);
        let tok = train(&c.train, 400).unwrap();
        let whole = tok.encode(c.heldout.as_str(), false).unwrap();
        assert!(chunks(&c.heldout).count() > 1);
        let got = encode(&tok, &c.heldout).unwrap();
        if let Some(i) = got.iter().zip(whole.get_ids()).position(|(a, b)| a != b) {
            let toks = whole.get_tokens();
            panic!(
                "differ at {i}: whole {:?} chunked {:?}",
                &toks[i.saturating_sub(3)..i + 3],
                got[i.saturating_sub(3)..i + 3]
                    .iter()
                    .map(|&t| tok.id_to_token(t).unwrap_or_default())
                    .collect::<Vec<_>>()
            );
        }
        assert_eq!(got.len(), whole.get_ids().len());
        // Every branch of the pattern, in ASCII (split by hand) and not (the tokenizer's path).
        for text in [
            "a\n\n  b\n c\nd \n\ne\n",
            "It's 'twas we're I've I'm you'll he'd 'S 'LL x'sy",
            "  lead\tand\t\ttabs,  \"quotes\"... (parens) [1999-2000]: 3.14 x2 2x!?\n",
            "trailing spaces   \n\n\n   \x0b\x0c\r\n end \x01\x7f~ ~~ ' '' 's",
            "",
            " ",
            "\n",
            "  ",
            "a  ",
            "'",
            "' s",
            "caf\u{e9} na\u{ef}ve \u{2014} ok\n\nThe end.",
        ] {
            let whole = tok.encode(text, false).unwrap();
            assert_eq!(encode(&tok, text).unwrap(), whole.get_ids(), "{text:?}");
        }
    }

    #[test]
    fn same_text_same_tokenizer_and_reloads_from_json() {
        let c = corpus::austen(100_000, 0);
        let a = train(&c.train, 500).unwrap();
        let b = train(&c.train, 500).unwrap();
        assert_eq!(a.to_string(false).unwrap(), b.to_string(false).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        save(&a, &p).unwrap();
        let back = Tokenizer::from_file(&p).unwrap();
        let s = "The old cats watched a river.";
        assert_eq!(
            back.encode(s, false).unwrap().get_ids(),
            a.encode(s, false).unwrap().get_ids()
        );
    }
}

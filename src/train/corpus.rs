//! The demo corpus: Jane Austen's six novels, real English prose a team recognises.
//!
//! The novels are public domain (Project Gutenberg's texts, as packaged in Debian's
//! `r-cran-janeaustenr`, MIT). `scripts/extract_austen.py` read them once out of that package's
//! R data files into `assets/austen/*.txt.gz`, which are embedded here, so the demo needs neither
//! R nor the package. Five novels are the train split; *Persuasion*, the last one Austen
//! finished, is held out whole: the held-out perplexity and the cloze task are measured on a
//! book the model never saw.

use std::io::Read;

/// The text of a demo run: a train split and a held-out split.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub train: String,
    pub heldout: String,
    /// Held-out text that the cloze task's passages are drawn from (for the novels, the whole
    /// held-out novel: more passages than `heldout` alone gives).
    pub cloze: String,
}

/// One embedded novel.
pub struct Novel {
    pub title: &'static str,
    gz: &'static [u8],
}

macro_rules! novel {
    ($title:expr, $file:expr) => {
        Novel {
            title: $title,
            gz: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/austen/",
                $file
            )),
        }
    };
}

/// The train split, in publication order.
pub const TRAIN_NOVELS: [Novel; 5] = [
    novel!("Sense and Sensibility", "sensesensibility.txt.gz"),
    novel!("Pride and Prejudice", "prideprejudice.txt.gz"),
    novel!("Mansfield Park", "mansfieldpark.txt.gz"),
    novel!("Emma", "emma.txt.gz"),
    novel!("Northanger Abbey", "northangerabbey.txt.gz"),
];

/// The held-out novel.
pub const HELDOUT_NOVEL: Novel = novel!("Persuasion", "persuasion.txt.gz");

impl Novel {
    /// The novel as paragraphs separated by blank lines, each paragraph on one line: the
    /// package keeps the printed line breaks, which are typesetting, not language.
    pub fn text(&self) -> String {
        let mut raw = String::new();
        flate2::read::GzDecoder::new(self.gz)
            .read_to_string(&mut raw)
            .expect("the embedded novels are valid gzip'd UTF-8 (assets/austen)");
        reflow(&raw)
    }
}

/// Joins the lines of each paragraph with single spaces; paragraphs end up separated by `\n\n`.
pub fn reflow(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for para in raw.split("\n\n") {
        let words: Vec<&str> = para.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&words.join(" "));
    }
    out.push('\n');
    out
}

/// The demo corpus: the first `train_bytes` of the train novels and the first `heldout_bytes`
/// of the held-out one, each cut at a paragraph break (so never more than asked, and never
/// empty while a paragraph fits).
pub fn austen(train_bytes: usize, heldout_bytes: usize) -> Corpus {
    let train: String = TRAIN_NOVELS
        .iter()
        .map(Novel::text)
        .collect::<Vec<_>>()
        .join("\n");
    let heldout = HELDOUT_NOVEL.text();
    Corpus {
        train: prefix_at_paragraph(&train, train_bytes).to_string(),
        heldout: prefix_at_paragraph(&heldout, heldout_bytes).to_string(),
        cloze: heldout,
    }
}

/// The longest prefix of at most `max` bytes that ends at a paragraph break (the whole text when
/// it fits; the first paragraph's prefix at a char boundary when not even that fits).
pub fn prefix_at_paragraph(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let cut = floor_char_boundary(text, max);
    match text[..cut].rfind("\n\n") {
        Some(i) => &text[..i + 1],
        None => &text[..cut],
    }
}

/// LAMBADA-style cloze passages from `text`, in the `lambada_openai` schema's `text` field: each
/// is a run of whole sentences of one paragraph, ending with its last word (the target) and
/// nothing after it (lambada_openai's target is what follows the last space).
///
/// LAMBADA's passages were chosen so that a reader needs the whole passage to guess the word;
/// the rule here is the mechanical part of that: the target (3+ letters) already appears earlier
/// in the passage, so the context can give it away. Passages are `min_chars..=max_chars` long,
/// do not overlap, and at most `max_items` are taken, in text order.
pub fn cloze_passages(
    text: &str,
    min_chars: usize,
    max_chars: usize,
    max_items: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let starts = sentence_starts(para);
        let mut free_from = 0; // passages of one paragraph do not overlap
        for &end in &sentence_ends(para) {
            if out.len() >= max_items {
                return out;
            }
            let Some(target_at) = target_start(&para[..end]) else {
                continue;
            };
            let target = &para[target_at..end];
            let start = starts.iter().copied().find(|&s| {
                s >= free_from && s < target_at && (min_chars..=max_chars).contains(&(end - s))
            });
            let Some(start) = start else {
                continue;
            };
            let context = &para[start..target_at];
            if context
                .split(|c: char| !c.is_alphabetic())
                .any(|w| w.eq_ignore_ascii_case(target))
            {
                out.push(para[start..end].to_string());
                free_from = end;
            }
        }
    }
    out
}

/// Where sentences of a paragraph start: its beginning, and after `.`, `!`, `?` or `;` (and any
/// closing quote) followed by a space.
fn sentence_starts(para: &str) -> Vec<usize> {
    let b = para.as_bytes();
    let mut starts = vec![0];
    for i in 0..b.len() {
        if matches!(b[i], b'.' | b'!' | b'?' | b';') && !ends_with_title(&para[..i]) {
            let mut j = i + 1;
            while j < b.len() && matches!(b[j], b'"' | b'\'' | b')') {
                j += 1;
            }
            if j < b.len() && b[j] == b' ' {
                starts.push(j + 1);
            }
        }
    }
    starts
}

/// The ends (exclusive) of the last word of each sentence: the word right before `.`, `!` or
/// `?`, and the paragraph's last word. Titles (`Mr.`, `Mrs.`, `Dr.`, `St.`) end no sentence.
fn sentence_ends(para: &str) -> Vec<usize> {
    let b = para.as_bytes();
    let mut ends = Vec::new();
    for i in 1..b.len() {
        if matches!(b[i], b'.' | b'!' | b'?')
            && b[i - 1].is_ascii_alphabetic()
            && !ends_with_title(&para[..i])
        {
            ends.push(i);
        }
    }
    let last = para.trim_end_matches(|c: char| !c.is_alphanumeric()).len();
    if last > 0 && ends.last() != Some(&last) {
        ends.push(last);
    }
    ends
}

fn ends_with_title(s: &str) -> bool {
    let word = s
        .rsplit(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    matches!(word, "Mr" | "Mrs" | "Dr" | "St")
}

/// Where the target word ending `s` starts: the trailing run of ASCII letters, 3 or more, that
/// stands right after a space.
fn target_start(s: &str) -> Option<usize> {
    let at = s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len();
    (s.len() - at >= 3 && s[..at].ends_with(' ')).then_some(at)
}

/// Splits arbitrary text (for `--corpus FILE`) into train and held-out parts: the last
/// `heldout_fraction` of its paragraphs (at least one paragraph break when there is one) is held out.
pub fn split_text(text: &str, heldout_fraction: f64) -> Corpus {
    let cut_at = ((text.len() as f64) * (1.0 - heldout_fraction)) as usize;
    // Cut at a paragraph break at or after the target, else a line break, else a char boundary.
    let cut = text[floor_char_boundary(text, cut_at)..]
        .find("\n\n")
        .or_else(|| text[floor_char_boundary(text, cut_at)..].find('\n'))
        .map(|i| floor_char_boundary(text, cut_at) + i)
        .unwrap_or_else(|| floor_char_boundary(text, cut_at));
    let heldout = text[cut..].trim_start().to_string();
    Corpus {
        train: text[..cut].to_string(),
        cloze: heldout.clone(),
        heldout,
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_novels_are_real_english_and_the_splits_are_disjoint() {
        let c = austen(usize::MAX, usize::MAX);
        assert!(
            c.train.starts_with("SENSE AND SENSIBILITY"),
            "{}",
            &c.train[..40]
        );
        assert!(c.train.contains("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife."));
        assert!(c.heldout.starts_with("Persuasion"), "{}", &c.heldout[..40]);
        assert!(!c.train.contains("Wentworth") && c.heldout.contains("Captain Wentworth"));
        // Five novels, about 3.5 MB; paragraphs on one line each.
        assert!(
            (3_000_000..4_000_000).contains(&c.train.len()),
            "{}",
            c.train.len()
        );
        assert!(!c.train.contains("possession\nof"));
        let words = c.heldout.split_whitespace().count();
        assert!(words > 80_000, "{words}");
    }

    #[test]
    fn sizes_are_respected_at_paragraph_breaks() {
        let c = austen(100_000, 5_000);
        assert!(
            c.train.len() <= 100_000 && c.train.len() > 90_000,
            "{}",
            c.train.len()
        );
        assert!(c.heldout.len() <= 5_000 && c.heldout.ends_with('\n'));
        let full = austen(usize::MAX, usize::MAX);
        assert!(full.train.starts_with(&c.train) && full.heldout.starts_with(&c.heldout));
        assert!(full.train[c.train.len()..].starts_with('\n'));
    }

    #[test]
    fn reflow_joins_lines_and_keeps_paragraphs() {
        assert_eq!(reflow("a b\nc\n\n\n\nd  e\n"), "a b c\n\nd e\n");
    }

    #[test]
    fn cloze_passages_end_at_a_word_that_the_context_contains() {
        let text = "She was happy. Anne looked at the sea, and thought of the sea.\n\n\
                    \"No,\" said he.\n\n\
                    The letter was long; it spoke of Bath, and of nothing but Bath!\"";
        let got = cloze_passages(text, 10, 60, 10);
        assert_eq!(
            got,
            vec![
                "Anne looked at the sea, and thought of the sea".to_string(),
                "it spoke of Bath, and of nothing but Bath".to_string(),
            ]
        );
        assert_eq!(cloze_passages(text, 10, 60, 1).len(), 1);
        // Sentences inside a paragraph end passages too; a title ends no sentence and starts
        // none; passages do not overlap.
        let text = "Anne met Mr. Elliot. She liked Elliot. Elliot smiled at Anne.";
        assert_eq!(
            cloze_passages(text, 5, 60, 10),
            vec!["Anne met Mr. Elliot. She liked Elliot".to_string()]
        );
        assert!(cloze_passages(text, 5, 30, 10).is_empty());
        let c = austen(0, 250_000);
        assert!(c.cloze.starts_with(&c.heldout) && c.cloze.len() > 400_000);
        let items = cloze_passages(&c.cloze, 60, 260, 1000);
        assert!(items.len() > 150, "{}", items.len());
        for p in &items {
            let last = p.rsplit(|c: char| !c.is_alphabetic()).next().unwrap();
            assert!(last.len() >= 3 && p.ends_with(last), "{p}");
            assert!((60..=260).contains(&p.len()), "{p}");
        }
    }

    #[test]
    fn split_text_cuts_at_a_paragraph_break() {
        let text = "aaa aaa\n\nbbb bbb\n\nccc ccc\n\nddd ddd\n";
        let c = split_text(text, 0.3);
        assert!(c.train.ends_with("ccc ccc"), "{:?}", c.train);
        assert_eq!(c.heldout, "ddd ddd\n");
        let text = "no breaks at all in here";
        let c = split_text(text, 0.5);
        assert!(!c.heldout.is_empty() && text.ends_with(&c.heldout));
        assert!(text.starts_with(&c.train) && c.train.len() >= 11);
    }
}

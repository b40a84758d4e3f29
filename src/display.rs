//! Strings from files (tensor names, pickle class names, folder names, metric lines) made safe to
//! print: control characters would otherwise break a one-line message (a newline can forge an
//! `error:` line) or drive the terminal (ANSI escape sequences clear the screen, move the cursor).

use std::borrow::Cow;

/// Whether `c` must not reach a terminal raw: C0 and C1 controls, DEL, and the bidirectional
/// overrides and isolates that make text display in an order other than its bytes.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every unsafe character written as an escape: `\n`, `\r`, `\t`, `\\x1b`-style `\x..`
/// for other ASCII controls, `\u{..}` otherwise. Borrowed (no copy) when nothing needs escaping,
/// which is every ordinary name. A backslash is left as is: the result is for reading, not for
/// parsing back.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(
            escape("gpt_neox.layers.0.attention.dense.weight"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(escape("ünïcödé 步 ✓"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nerror: forged"), "a\\nerror: forged");
        assert_eq!(escape("\x1b[2J\x1b[Hx"), "\\x1b[2J\\x1b[Hx");
        assert_eq!(escape("tab\there\r"), "tab\\there\\r");
        assert_eq!(escape("nul\0del\x7f"), "nul\\x00del\\x7f");
        assert_eq!(escape("c1\u{9b}31m"), "c1\\u{9b}31m");
        assert_eq!(escape("abc\u{202E}txt.exe"), "abc\\u{202e}txt.exe");
        // Nothing printable is left that a terminal would act on.
        let hostile: String = (0u8..=0x7f).map(char::from).collect();
        assert!(!escape(&hostile).chars().any(is_unsafe));
        assert_eq!(escape(&hostile).lines().count(), 1);
    }
}

//! Word splitting for the quality rules, and the Unicode character classes they use.
//!
//! The published rules count "words" as an English word tokenizer sees them: datatrove's
//! reference implementation uses spaCy's rule-based English tokenizer, which splits
//! punctuation, quotes, brackets and symbols off words (`"Hello,` → `"`, `Hello`, `,`),
//! contractions (`don't` → `do`, `n't`; `it's` → `it`, `'s`), hyphens and slashes
//! between letters (`e-mail` → `e`, `-`, `mail`), and keeps URLs, e-mail addresses,
//! numbers (`1,000`, `3.5`) and abbreviations with inner periods (`U.S.`) whole. This is
//! a re-implementation of those rules, not of spaCy's code; the differential test
//! measures how often the quality decisions agree (docs/text.md lists the differences).

use std::sync::LazyLock;

use regex_syntax::hir::{Class, HirKind};

/// A Unicode property as sorted code point ranges.
pub struct CharClass(Vec<(char, char)>);

impl CharClass {
    fn parse(pattern: &str) -> CharClass {
        // The patterns are constants that regex-syntax parses; a failure would leave the
        // class empty, which the unit tests catch.
        match regex_syntax::Parser::new()
            .parse(pattern)
            .map(|h| h.into_kind())
        {
            Ok(HirKind::Class(Class::Unicode(c))) => {
                CharClass(c.ranges().iter().map(|r| (r.start(), r.end())).collect())
            }
            _ => CharClass(Vec::new()),
        }
    }

    pub fn contains(&self, c: char) -> bool {
        self.0
            .binary_search_by(|(lo, hi)| {
                if *hi < c {
                    std::cmp::Ordering::Less
                } else if *lo > c {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }
}

/// Sentence-ending punctuation (`. ! ?` and their equivalents in other scripts): the
/// Unicode `Sentence_Terminal` property.
pub static TERMINAL: LazyLock<CharClass> =
    LazyLock::new(|| CharClass::parse(r"\p{Sentence_Terminal}"));
/// Letters, as Python's `str.isalpha` sees them (general category L).
static LETTER: LazyLock<CharClass> = LazyLock::new(|| CharClass::parse(r"\p{L}"));
/// Other symbols (arrows, box drawing, emoji): split off words like punctuation.
static ICON: LazyLock<CharClass> = LazyLock::new(|| CharClass::parse(r"\p{So}"));

pub fn is_alpha(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphabetic()
    } else {
        LETTER.contains(c)
    }
}

pub fn is_terminal(c: char) -> bool {
    if c.is_ascii() {
        matches!(c, '.' | '!' | '?')
    } else {
        TERMINAL.contains(c)
    }
}

/// Punctuation and control characters: a word made only of these is a "symbol word"
/// that the Gopher rules do not count as a word.
pub fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || c.is_control()
        || is_terminal(c)
        || matches!(
            c,
            '—' | '–'
                | '“'
                | '”'
                | '‘'
                | '’'
                | '„'
                | '«'
                | '»'
                | '…'
                | '►'
                | '〈'
                | '〉'
                | '《'
                | '》'
                | '「'
                | '」'
                | '【'
                | '】'
                | '、'
                | '，'
                | '；'
                | '：'
                | '（'
                | '）'
                | '´'
                | '％'
                | '～'
                | '━'
                | '∶'
                | '＄'
                | '．'
                | '１'
        )
}

/// Characters split off the start of a word: those split off the end, plus currency
/// signs, `§` and `=`.
fn is_prefix(c: char) -> bool {
    matches!(c, '§' | '=' | '$' | '£' | '€' | '¥' | '₹' | '₽') || is_suffix(c)
}

/// Characters split off the end of a word (a period has its own rule).
fn is_suffix(c: char) -> bool {
    matches!(
        c,
        '…' | ','
            | ':'
            | ';'
            | '!'
            | '?'
            | '¿'
            | '¡'
            | '('
            | ')'
            | '['
            | ']'
            | '{'
            | '}'
            | '<'
            | '>'
            | '_'
            | '#'
            | '*'
            | '&'
            | '\''
            | '"'
            | '“'
            | '”'
            | '`'
            | '‘'
            | '’'
            | '´'
            | '‚'
            | '„'
            | '»'
            | '«'
            | '「'
            | '」'
            | '『'
            | '』'
            | '（'
            | '）'
            | '【'
            | '】'
            | '《'
            | '》'
            | '〈'
            | '〉'
            | '%'
            | '—'
            | '–'
            | '·'
            | '。'
            | '？'
            | '！'
            | '，'
            | '、'
            | '；'
            | '：'
            | '～'
    ) || (!c.is_ascii() && ICON.contains(c))
}

/// Word pieces of `text`, in order, pushed to `out` (which is cleared first).
pub fn split_words<'a>(text: &'a str, out: &mut Vec<&'a str>) {
    out.clear();
    for chunk in text.split(char::is_whitespace) {
        if !chunk.is_empty() {
            split_chunk(chunk, out);
        }
    }
}

fn split_chunk<'a>(chunk: &'a str, out: &mut Vec<&'a str>) {
    // URLs and e-mail addresses stay whole (after outer brackets and quotes).
    let mut s = chunk;
    let mut tail: Vec<&'a str> = Vec::new();
    loop {
        if s.is_empty() {
            break;
        }
        if let Some(rest) = s.strip_prefix("...") {
            out.push(&s[..3]);
            s = rest.trim_start_matches('.');
            continue;
        }
        let Some(c) = s.chars().next() else { break };
        if is_prefix(c) {
            out.push(&s[..c.len_utf8()]);
            s = &s[c.len_utf8()..];
            continue;
        }
        break;
    }
    if s.is_empty() {
        return;
    }
    if is_url_or_email(s) {
        // spaCy splits suffixes off a URL as off any word (`<x@y.org>` → `x@y.org`, `>`);
        // only what is left must look like a URL to stay whole.
        let trimmed = s.trim_end_matches(|c: char| c == '.' || is_suffix(c));
        let (word, rest) = s.split_at(trimmed.len());
        out.push(word);
        for (i, _) in rest.char_indices() {
            out.push(&rest[i..i + 1]);
        }
        return;
    }
    // Suffixes, collected in reverse.
    loop {
        if s.is_empty() {
            break;
        }
        if let Some(stem) = s.strip_suffix("...") {
            let stem = stem.trim_end_matches('.');
            tail.push(&s[stem.len()..]);
            s = stem;
            continue;
        }
        if let Some(i) = contraction_suffix(s) {
            tail.push(&s[i..]);
            s = &s[..i];
            continue;
        }
        let Some(c) = s.chars().next_back() else {
            break;
        };
        let stem = &s[..s.len() - c.len_utf8()];
        if c == '.' && period_splits(stem) {
            tail.push(&s[stem.len()..]);
            s = stem;
            continue;
        }
        if is_suffix(c) {
            tail.push(&s[stem.len()..]);
            s = stem;
            continue;
        }
        break;
    }
    // spaCy's English exceptions with a slash stay whole.
    if matches!(s, "and/or" | "w/o") {
        out.push(s);
    } else if !s.is_empty() {
        split_infixes(s, out);
    }
    out.extend(tail.into_iter().rev());
}

fn is_url_or_email(s: &str) -> bool {
    s.contains("://")
        || s.starts_with("www.")
        || (s.contains('@')
            && s.split('@').nth(1).is_some_and(|d| d.contains('.'))
            && !s.starts_with('@'))
}

/// Byte index where a contraction suffix starts: `n't`, `'s`, `'re`, `'ve`, `'ll`,
/// `'m`, `'d` (with a straight or curly apostrophe), after a letter.
fn contraction_suffix(s: &str) -> Option<usize> {
    let lower = |x: &str| x.to_ascii_lowercase();
    for apos in ['\'', '’'] {
        for suffix in ["s", "re", "ve", "ll", "m", "d"] {
            let pat_len = apos.len_utf8() + suffix.len();
            if s.len() > pat_len && s.is_char_boundary(s.len() - pat_len) {
                let (stem, end) = s.split_at(s.len() - pat_len);
                if end.starts_with(apos)
                    && lower(&end[apos.len_utf8()..]) == suffix
                    && stem.chars().next_back().is_some_and(char::is_alphabetic)
                {
                    // n't: "don't" → "do", "n't".
                    return Some(s.len() - pat_len);
                }
            }
        }
        let nt = format!("n{apos}t");
        if s.len() > nt.len() && s.is_char_boundary(s.len() - nt.len()) {
            let (stem, end) = s.split_at(s.len() - nt.len());
            if end.eq_ignore_ascii_case(&nt)
                && stem.chars().next_back().is_some_and(char::is_alphabetic)
            {
                return Some(s.len() - nt.len());
            }
        }
    }
    None
}

/// spaCy splits a final period after a lowercase letter, a digit, punctuation, or two
/// capitals (`USA.`), but not after one capital with inner periods (`U.S.`, `A.`).
fn period_splits(stem: &str) -> bool {
    let mut back = stem.chars().rev();
    let Some(last) = back.next() else {
        return false;
    };
    if stem.contains('.') && stem.chars().all(|c| c == '.' || c.is_alphabetic()) {
        // An abbreviation such as U.S. or e.g.: kept whole.
        return false;
    }
    if back.clone().next().is_none() && last.is_ascii_alphabetic() {
        // A single letter and a period (`a.`, `B.`) is one of spaCy's exceptions.
        return false;
    }
    if last.is_lowercase() || last.is_ascii_digit() || is_punctuation(last) {
        return true;
    }
    last.is_uppercase() && back.next().is_some_and(char::is_uppercase)
}

/// Splits inside a word: hyphens, slashes, colons between letters; `,` between letters;
/// a period between a lowercase and an uppercase letter; arithmetic between digits;
/// ellipses; symbols.
fn split_infixes<'a>(s: &'a str, out: &mut Vec<&'a str>) {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        let prev = i.checked_sub(1).map(|j| chars[j].1);
        let next = chars.get(i + 1).map(|x| x.1);
        let letter = |x: Option<char>| x.is_some_and(char::is_alphabetic);
        let alnum = |x: Option<char>| x.is_some_and(|x| x.is_alphanumeric());
        let digit = |x: Option<char>| x.is_some_and(|x| x.is_ascii_digit());
        // ".." or "…" inside
        if c == '…' || (c == '.' && next == Some('.')) {
            let mut j = i;
            while j < chars.len() && (chars[j].1 == '.' || chars[j].1 == '…') {
                j += 1;
                if chars[j - 1].1 == '…' {
                    break;
                }
            }
            let end = chars.get(j).map_or(s.len(), |x| x.0);
            if at > start {
                out.push(&s[start..at]);
            }
            out.push(&s[at..end]);
            start = end;
            i = j;
            continue;
        }
        let split = match c {
            '-' | '–' | '—' | '~' => alnum(prev) && letter(next),
            '+' | '*' | '^' => digit(prev) && (digit(next) || next == Some('-')),
            ':' | '<' | '>' | '=' | '/' => alnum(prev) && letter(next),
            ',' => letter(prev) && letter(next),
            '.' => prev.is_some_and(char::is_lowercase) && next.is_some_and(char::is_uppercase),
            _ => !c.is_ascii() && ICON.contains(c),
        } || (c == '-' && digit(prev) && (digit(next) || next == Some('-')));
        if split && i > 0 {
            if at > start {
                out.push(&s[start..at]);
            }
            out.push(&s[at..at + c.len_utf8()]);
            start = at + c.len_utf8();
        }
        i += 1;
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
}

/// The number of sentences spaCy's sentencizer finds in a line of words: a sentence
/// ends after a run of sentence-ending punctuation tokens that is followed by another
/// token.
pub fn count_sentences(words: &[&str]) -> usize {
    if words.is_empty() {
        return 0;
    }
    let terminal = |w: &str| {
        let mut cs = w.chars();
        matches!((cs.next(), cs.next()), (Some(c), None) if is_terminal(c))
    };
    let mut n = 1;
    let mut seen_end = false;
    for w in words {
        if terminal(w) {
            seen_end = true;
        } else if seen_end {
            n += 1;
            seen_end = false;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(t: &str) -> Vec<&str> {
        let mut out = Vec::new();
        split_words(t, &mut out);
        out
    }

    /// Expected splits are what spaCy 3.8's blank English tokenizer gives.
    #[test]
    fn splits_like_the_english_rule_tokenizer() {
        assert_eq!(
            words(
                "Hello, world! It's a test: they're here, we'll see. Don't e-mail me at a@b.com (now)..."
            ),
            [
                "Hello", ",", "world", "!", "It", "'s", "a", "test", ":", "they", "'re", "here",
                ",", "we", "'ll", "see", ".", "Do", "n't", "e", "-", "mail", "me", "at", "a@b.com",
                "(", "now", ")", "..."
            ]
        );
        assert_eq!(
            words("The U.S. costs $20.50, 3.5% of 1,000. Zürich—naïve “quoted” text's end."),
            [
                "The", "U.S.", "costs", "$", "20.50", ",", "3.5", "%", "of", "1,000", ".",
                "Zürich", "—", "naïve", "“", "quoted", "”", "text", "'s", "end", "."
            ]
        );
        assert_eq!(
            words("Home | About\nline two #hash #tag ... ok…"),
            [
                "Home", "|", "About", "line", "two", "#", "hash", "#", "tag", "...", "ok", "…"
            ]
        );
        assert_eq!(
            words("word-with-hyphen and 12-15 and 'single' \"double\""),
            [
                "word", "-", "with", "-", "hyphen", "and", "12", "-", "15", "and", "'", "single",
                "'", "\"", "double", "\""
            ]
        );
    }

    /// What Debian's copyright files hold (found against datatrove on them): suffixes come
    /// off a URL or address as off any word; `and/or`, `w/o` are spaCy exceptions.
    #[test]
    fn addresses_in_brackets_and_slash_exceptions_split_like_spacy() {
        assert_eq!(
            words("<x@y.org> z x@y.org> <http://x.org/a> (x@y.org)"),
            [
                "<",
                "x@y.org",
                ">",
                "z",
                "x@y.org",
                ">",
                "<",
                "http://x.org/a",
                ">",
                "(",
                "x@y.org",
                ")"
            ]
        );
        assert_eq!(
            words("and/or w/o a/b 1/2"),
            ["and/or", "w/o", "a", "/", "b", "1/2"]
        );
    }

    #[test]
    fn sentences_end_at_terminal_runs() {
        assert_eq!(count_sentences(&words("One. Two! Three?! Four")), 4);
        assert_eq!(count_sentences(&words("Just one.")), 1);
        assert_eq!(
            count_sentences(&words("Ends with a. Wheel")),
            1,
            "a. is one token"
        );
        assert_eq!(count_sentences(&words("")), 0);
        assert!(is_terminal('।') && is_terminal('。') && !is_terminal(','));
        assert!(is_alpha('ß') && is_alpha('中') && !is_alpha('1'));
    }
}

//! `${VAR}` in quoted and block values of a pipeline file.
//!
//! serde-saphyr expands `${VAR}` (and `$$` as a literal `$`) in plain scalars only. The
//! same rules apply here to single-quoted, double-quoted and block (`|`, `>`) scalars,
//! found with the YAML parser serde-saphyr uses (so a `${` in a comment or a key is left
//! alone): each such scalar is expanded and written back into the text as a
//! double-quoted scalar over the same lines, so every later error still points at the
//! right line. Plain scalars are left to serde-saphyr, which resolves their type after
//! expansion (`threads: ${N}` is a number).

use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle};

/// `text` with `${...}` expanded in every quoted and block scalar, or an error message
/// with its line and column.
pub fn expand_quoted(text: &str, env: &HashMap<String, String>) -> Result<String, String> {
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        // A syntax error is serde-saphyr's to report, with its snippet.
        let Ok((event, span)) = next else { break };
        let Event::Scalar(value, style, _, _) = event else {
            continue;
        };
        if style == ScalarStyle::Plain || !value.contains('$') {
            continue;
        }
        let Some(mut range) = span.byte_range() else {
            continue;
        };
        // A block scalar's span is its content: take its `|` / `>` header line too.
        if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
            match text[..range.start].rfind(['|', '>']) {
                Some(header) => range.start = header,
                None => continue,
            }
        }
        let at = |e: String| {
            format!(
                "line {} column {}: {e}",
                span.start.line(),
                span.start.col() + 1
            )
        };
        let expanded = expand(&value, env, 0).map_err(at)?;
        if expanded == value.as_ref() {
            continue;
        }
        let with = rewrite(&text[range.clone()], &expanded);
        edits.push((range, with));
    }
    let mut out = text.to_string();
    for (range, with) in edits.into_iter().rev() {
        out.replace_range(range, &with);
    }
    Ok(out)
}

/// The expanded value as a double-quoted scalar spanning as many lines as `source`:
/// escaped line breaks (`\` at a line's end) add no characters, so the value is exact
/// and the lines after it keep their numbers. Trailing blank lines of a block scalar
/// stay outside the quotes.
fn rewrite(source: &str, value: &str) -> String {
    let body = source.trim_end();
    let tail = &source[body.len()..];
    let mut out = String::with_capacity(value.len() + source.len());
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    let lines: Vec<&str> = body.split('\n').skip(1).collect();
    // Continuation lines must be indented past their parent: the least indentation of
    // the scalar's own non-blank lines is.
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(1)
        .max(1);
    for _ in &lines {
        out.push_str("\\\n");
        out.push_str(&" ".repeat(indent));
    }
    out.push('"');
    out.push_str(tail);
    out
}

/// Expands `$$`, `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?message}` and
/// `${NAME?message}`, with the same meaning as serde-saphyr's braced syntax (and the
/// shell's); a default may itself hold `${...}`.
fn expand(s: &str, env: &HashMap<String, String>, depth: usize) -> Result<String, String> {
    if depth > 8 {
        return Err("`${...}` nested more than 8 deep".into());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = closing_brace(inner).ok_or_else(|| {
                format!("`${{{inner}` has no closing `}}`; write `$$` for a literal `$`")
            })?;
            out.push_str(&reference(&inner[..end], env, depth)?);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` that closes a reference whose text starts at `s`.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn reference(body: &str, env: &HashMap<String, String>, depth: usize) -> Result<String, String> {
    let name_end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, op) = body.split_at(name_end);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "`${{{body}}}` is not a variable reference; write `$$` for a literal `$`"
        ));
    }
    let value = env.get(name);
    let unset_hint = || {
        format!(
            "the environment variable {name} is not set; export it, or give a default: \
             ${{{name}:-default}}"
        )
    };
    let word = |w: &str| expand(w, env, depth + 1);
    match op {
        "" => value.cloned().ok_or_else(unset_hint),
        _ if op.starts_with(":-") => match value {
            Some(v) if !v.is_empty() => Ok(v.clone()),
            _ => word(&op[2..]),
        },
        _ if op.starts_with('-') => value.map_or_else(|| word(&op[1..]), |v| Ok(v.clone())),
        _ if op.starts_with(":?") || op.starts_with('?') => {
            let message = op.trim_start_matches(':')[1..].to_string();
            match value {
                Some(v) if !(v.is_empty() && op.starts_with(':')) => Ok(v.clone()),
                _ if message.is_empty() => Err(unset_hint()),
                _ => Err(format!("{name}: {}", word(&message)?)),
            }
        }
        _ => Err(format!(
            "`${{{body}}}`: expected `${{{name}}}`, `${{{name}:-default}}` or \
             `${{{name}:?message}}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        [("B", "bucket"), ("Q", "say \"hi\"\\"), ("EMPTY", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parsed(text: &str) -> serde_json::Value {
        let expanded = expand_quoted(text, &env()).expect("expands");
        serde_saphyr::from_str(&expanded).expect("still YAML")
    }

    #[test]
    fn quoted_flow_and_block_values_expand() {
        let v = parsed(
            "a: \"s3://${B}/x\"\nb: 's3://${B}/it''s'\nc: {uri: \"${B}/*.{jsonl,csv}\"}\n\
             d: [\"${B}\", '${MISSING:-dflt}']\ne: |\n  line ${B}\n  two\nf: \"${Q}\"\n",
        );
        assert_eq!(v["a"], "s3://bucket/x");
        assert_eq!(v["b"], "s3://bucket/it's");
        assert_eq!(v["c"]["uri"], "bucket/*.{jsonl,csv}");
        assert_eq!(v["d"], serde_json::json!(["bucket", "dflt"]));
        assert_eq!(v["e"], "line bucket\ntwo\n");
        assert_eq!(v["f"], "say \"hi\"\\");
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar_and_lines_keep_their_numbers() {
        let text = "a: \"$${B} costs $$5\"\nb: >\n  folded ${B}\n  text\n\nc: 1\n";
        let expanded = expand_quoted(text, &env()).expect("expands");
        assert_eq!(expanded.lines().count(), text.lines().count(), "{expanded}");
        assert_eq!(expanded.lines().nth(5), Some("c: 1"));
        let v: serde_json::Value = serde_saphyr::from_str(&expanded).expect("YAML");
        assert_eq!(v["a"], "${B} costs $5");
        assert_eq!(v["b"], "folded bucket text\n");
        assert_eq!(v["c"], 1);
    }

    #[test]
    fn unset_variables_and_bad_references_name_the_line() {
        let e = expand_quoted("x: 1\ny: \"${NOPE}\"\n", &env()).expect_err("unset");
        assert!(
            e.starts_with("line 2 column 4:") && e.contains("NOPE is not set"),
            "{e}"
        );
        let e = expand_quoted("y: '${B'\n", &env()).expect_err("unclosed");
        assert!(e.contains("no closing"), "{e}");
        let e = expand_quoted("y: '${EMPTY:?must be set}'\n", &env()).expect_err("empty");
        assert!(e.contains("EMPTY: must be set"), "{e}");
        // A comment or a plain value is not this pass's to touch.
        assert_eq!(
            expand_quoted("# ${NOPE}\na: ${NOPE}\n", &env()).expect("untouched"),
            "# ${NOPE}\na: ${NOPE}\n"
        );
    }
}

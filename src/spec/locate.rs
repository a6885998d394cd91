//! Where in the pipeline file a step's error is: line and column of the value it quotes.
//!
//! A step learns that its expression or option is wrong only when it is bound to the
//! schema, long after the YAML is gone. The error quotes the value (``expression `...` ``);
//! this finds that value under `steps[i]` with serde-saphyr's parser and, for an SQL
//! syntax error (sqlparser's "at Line: L, Column: C", relative to the expression), the
//! exact place of the fault.

use granit_parser::{Event, Parser, ScalarStyle};

/// 1-based line and column in `text` of what `message` (an error of the step at
/// 0-based `step`) is about: the longest scalar of that step quoted in the message, else
/// the step itself. `None` when the file has no such step.
pub fn step_error(text: &str, step: usize, message: &str) -> Option<(usize, usize)> {
    // Per open collection: is it a mapping, how many nodes it has had, its last key.
    let mut stack: Vec<(bool, usize, String)> = Vec::new();
    let mut item = None;
    let mut best: Option<(usize, (usize, usize))> = None;
    let mut parser = Parser::new_from_str(text);
    while let Some(Ok((event, span))) = parser.next_event() {
        let is_key = matches!(stack.last(), Some((true, n, _)) if n % 2 == 0);
        let in_step = !is_key && under_step(&stack, step);
        let at_item = under_step(&stack, step) && stack.len() == 2 && !is_key;
        let (line, col) = (span.start.line(), span.start.col() + 1);
        match event {
            Event::Scalar(value, style, _, _) => {
                if at_item {
                    item = Some((line, col));
                }
                if is_key {
                    if let Some(top) = stack.last_mut() {
                        top.2 = value.to_string();
                    }
                } else if in_step
                    && !value.is_empty()
                    && message.contains(&format!("`{value}`"))
                    && best.is_none_or(|(len, _)| value.len() > len)
                {
                    best = Some((value.len(), fault(&value, style, (line, col), message)));
                }
                advance(&mut stack);
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if at_item {
                    item = Some((line, col));
                }
                stack.push((matches!(event, Event::MappingStart(..)), 0, String::new()));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
                advance(&mut stack);
            }
            _ => {}
        }
    }
    best.map(|(_, at)| at).or(item)
}

/// The lines of each item of a block-style `steps` list: the 1-based line and column
/// where the item's node starts and the line after its last (the next item's, or the
/// next top-level key's). Stops at the first item whose end is unknown (a flow-style
/// list, or a YAML syntax error inside it).
pub fn step_items(text: &str) -> Vec<StepLines> {
    let mut stack: Vec<(bool, usize, String)> = Vec::new();
    let mut starts: Vec<(usize, usize)> = Vec::new();
    let mut in_steps = false;
    let mut parser = Parser::new_from_str(text);
    while let Some(Ok((event, span))) = parser.next_event() {
        let is_key = matches!(stack.last(), Some((true, n, _)) if n % 2 == 0);
        let at_item = !is_key
            && matches!(stack.as_slice(), [(true, _, key), (false, _, _)] if key == "steps");
        let (line, col) = (span.start.line(), span.start.col() + 1);
        if at_item
            && matches!(
                event,
                Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..)
            )
        {
            in_steps = true;
            starts.push((line, col));
        }
        // The first top-level key after the list ends its last item.
        if in_steps && stack.len() == 1 && is_key {
            starts.push((line, 0));
            in_steps = false;
        }
        match event {
            Event::Scalar(value, ..) => {
                if is_key && let Some(top) = stack.last_mut() {
                    top.2 = value.to_string();
                }
                advance(&mut stack);
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                stack.push((matches!(event, Event::MappingStart(..)), 0, String::new()));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
                advance(&mut stack);
                if stack.is_empty() && in_steps {
                    // The document ends the list: its last item runs to the end.
                    starts.push((text.lines().count() + 1, 0));
                    in_steps = false;
                }
            }
            _ => {}
        }
    }
    starts
        .windows(2)
        .map(|pair| ((pair[0].0, pair[0].1), pair[1].0))
        .take_while(|&((line, col), next)| col != 0 && next > line)
        .map(|((line, col), end)| StepLines { line, col, end })
        .collect()
}

/// Where one item of `steps` is in the file (see [`step_items`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLines {
    pub line: usize,
    pub col: usize,
    /// The line after the item's last.
    pub end: usize,
}

/// Whether the open collections are `steps[step]` or inside it.
fn under_step(stack: &[(bool, usize, String)], step: usize) -> bool {
    matches!(stack, [(true, _, key), (false, n, _), ..] if key == "steps" && *n == step)
}

fn advance(stack: &mut [(bool, usize, String)]) {
    if let Some(top) = stack.last_mut() {
        top.1 += 1;
    }
}

/// The place of an SQL syntax error inside an expression that starts at `start`, where
/// the lines of the value are the lines of the file (one-line values and `|` blocks).
fn fault(value: &str, style: ScalarStyle, start: (usize, usize), message: &str) -> (usize, usize) {
    let Some((l, c)) = sql_position(message) else {
        return start;
    };
    match style {
        ScalarStyle::Plain | ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted
            if l == 1 && !value.contains('\n') =>
        {
            let quote = usize::from(style != ScalarStyle::Plain);
            (start.0, start.1 + quote + c - 1)
        }
        ScalarStyle::Literal => (start.0 + l - 1, start.1 + c - 1),
        _ => start,
    }
}

/// sqlparser's "at Line: 1, Column: 15".
fn sql_position(message: &str) -> Option<(usize, usize)> {
    let rest = &message[message.find("Line: ")? + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "version: 1\nsteps:\n  - select: [a, b]\n  - filter: \"a >\"\n  - derive:\n      x: |\n        a +\n        b c\n";

    #[test]
    fn finds_the_quoted_value_of_the_right_step() {
        assert_eq!(
            step_error(
                FILE,
                1,
                "expression `a >`: Expected: an expression, found: EOF"
            ),
            Some((4, 13))
        );
        // With sqlparser's position, the fault itself.
        assert_eq!(
            step_error(
                FILE,
                1,
                "expression `a >`: Expected: an expression at Line: 1, Column: 3"
            ),
            Some((4, 16))
        );
        assert_eq!(
            step_error(
                FILE,
                2,
                "column `x`: expression `a +\nb c\n`: at Line: 2, Column: 3"
            ),
            Some((8, 11))
        );
        // Nothing quoted: the step's own line.
        assert_eq!(step_error(FILE, 0, "no column `zz`"), Some((3, 5)));
        assert_eq!(step_error(FILE, 7, "x"), None);
    }

    #[test]
    fn finds_the_lines_of_each_step() {
        let at = |line, col, end| StepLines { line, col, end };
        let items = step_items(FILE);
        assert_eq!(items, vec![at(3, 5, 4), at(4, 5, 5), at(5, 5, 9),]);
        let next = "steps:\n  - limit: 1\n  -\n    select: a\nsink: {uri: x}\n";
        assert_eq!(
            step_items(next),
            vec![
                // The next item's `-` line is not this item's: `neutral_step` keeps
                // lines shallower than the item.
                at(2, 5, 4),
                at(4, 5, 5),
            ]
        );
        // A flow-style list has no lines of its own per item.
        assert!(step_items("steps: [{limit: 1}, {limit: 2}]\n").is_empty());
    }
}

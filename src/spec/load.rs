//! Reading a pipeline file: YAML → [`Pipeline`], `${VAR}` expansion, `--set` overrides.

use std::collections::HashMap;
use std::path::Path;

use super::Pipeline;
use super::ordered::Tree;
use crate::error::{Error, Result};

/// Reads and checks the pipeline file at `path`, then applies `--set path=value` overrides.
///
/// `${VAR}` and `${VAR:-default}` in every value (plain, quoted, flow or block) expand
/// from the environment and `$$` is a literal `$`; an unset `${VAR}` without a default
/// is an error that names the line.
///
/// # Errors
/// [`Error::Spec`] naming the file, line and column, or [`Error::Usage`] for a bad
/// override.
pub fn load(path: &Path, overrides: &[String]) -> Result<Pipeline> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Error::Spec {
        file: file.clone(),
        message: format!("cannot read the pipeline file: {e}"),
    })?;
    load_str(&text, &file, overrides)
}

/// [`load`] on text already in memory; `file` names it in errors.
pub fn load_str(text: &str, file: &str, overrides: &[String]) -> Result<Pipeline> {
    let env: HashMap<String, String> = std::env::vars().collect();
    // Quoted and block values first (serde-saphyr expands plain ones), on the same lines.
    let expanded = super::interpolate::expand_quoted(text, &env).map_err(|m| Error::Spec {
        file: file.to_string(),
        message: m,
    })?;
    // Credentials in any URL the file spells out (or a quoted value expands to) are
    // secrets before anything can echo them (a YAML error quotes its line); the plain
    // values serde-saphyr expands are registered below.
    let words = overrides
        .iter()
        .flat_map(|o| o.split_once('=').map(|(_, v)| v));
    for word in expanded
        .split(|c: char| c.is_whitespace() || "\"'[]{},".contains(c))
        .chain(words)
    {
        if word.contains("://") {
            crate::secrets::register_uri(word);
        }
    }
    let parse = |text: &str| {
        let options = serde_saphyr::Options::default().with_properties(env.clone());
        serde_saphyr::from_str_with_options::<Pipeline>(text, options)
    };
    let mut pipeline: Pipeline = parse(&expanded).map_err(|e| {
        // An error the file has without the expansion is shown on the file as written
        // (its snippet then quotes `${VAR}`, not the value).
        let (shown, e) = match parse(text) {
            Err(raw) => (text, raw),
            Ok(_) => (expanded.as_str(), e),
        };
        let all: Vec<String> = every_error(shown, e, parse)
            .iter()
            .map(|(e, read)| restore_snippet(&yaml_message(&e.to_string(), file), read, shown))
            .collect();
        Error::Spec {
            file: file.to_string(),
            message: if all.len() == 1 {
                all.concat()
            } else {
                format!("{} errors:\n\n{}", all.len(), all.join("\n\n"))
            },
        }
    })?;
    for o in overrides {
        pipeline = apply_override(pipeline, o)?;
    }
    if let Ok(tree) = serde_json::to_value(&pipeline) {
        crate::secrets::register_uris_in(&tree);
    }
    check(&pipeline).map_err(|message| Error::Spec {
        file: file.to_string(),
        message,
    })?;
    Ok(pipeline)
}

/// Errors found in one reading of a file, at most.
const MAX_ERRORS: usize = 20;

/// Every error of the file, not only the first (as Vector reports every component's):
/// an error inside a step is kept, that step replaced by a neutral one over the same
/// lines (so later errors keep their line numbers), and the file read again. An error
/// outside `steps` ends the search: sections hold the fields the others need, so with
/// one left out the rest would fail for the wrong reason.
///
/// Each error comes with the text it was found in (for [`restore_snippet`]).
fn every_error<T>(
    text: &str,
    first: serde_saphyr::Error,
    parse: impl Fn(&str) -> std::result::Result<T, serde_saphyr::Error>,
) -> Vec<(serde_saphyr::Error, String)> {
    let mut errors = Vec::new();
    let mut text = text.to_string();
    let mut error = first;
    loop {
        let line = error.location().map(|l| l.line() as usize);
        let item = line.and_then(|line| {
            super::locate::step_items(&text)
                .into_iter()
                .find(|i| (i.line..i.end).contains(&line))
        });
        errors.push((error, text.clone()));
        let Some(item) = item else { break };
        if errors.len() == MAX_ERRORS {
            break;
        }
        text = neutral_step(&text, item);
        match parse(&text) {
            Ok(_) => break,
            Err(next) if next.location().map(|l| l.line() as usize) == line => break,
            Err(next) => error = next,
        }
    }
    errors
}

/// `message`'s snippet (`  7 |   - {limit: 1}`) with the lines of `read` that differ
/// from the file's (`original`) shown as the file has them: the user sees their file,
/// not the steps left out to find later errors.
fn restore_snippet(message: &str, read: &str, original: &str) -> String {
    if read == original {
        return message.to_string();
    }
    let (read, original): (Vec<&str>, Vec<&str>) =
        (read.lines().collect(), original.lines().collect());
    let mut out = Vec::new();
    for line in message.lines() {
        let restored = line.split_once(" | ").and_then(|(number, shown)| {
            let n: usize = number.trim().parse().ok()?;
            let (was, is) = (read.get(n.checked_sub(1)?)?, original.get(n - 1)?);
            (shown == *was && was != is).then(|| format!("{number} | {is}"))
        });
        out.push(restored.unwrap_or_else(|| line.to_string()));
    }
    out.join("\n")
}

/// `text` with the step at `item` replaced by `{limit: 1}` on its first line and its
/// other lines left blank.
fn neutral_step(text: &str, item: super::locate::StepLines) -> String {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let n = n + 1;
        let newline = if line.ends_with('\n') { "\n" } else { "" };
        if n == item.line {
            let at = line
                .char_indices()
                .nth(item.col - 1)
                .map_or(line.len(), |(i, _)| i);
            out.push_str(&line[..at]);
            out.push_str("{limit: 1}");
            out.push_str(newline);
        } else if n > item.line && n < item.end {
            // Lines of the item's node are indented at least as far as it starts; a
            // shallower line (the `-` of the next item) is not the item's.
            let indent = line.len() - line.trim_start_matches(' ').len();
            let body = line.trim();
            if body.is_empty() || body.starts_with('#') || indent >= item.col - 1 {
                out.push_str(newline);
            } else {
                out.push_str(line);
            }
        } else {
            out.push_str(line);
        }
    }
    out
}

/// serde-saphyr's message, with the snippet naming the file and a hint for unset
/// variables.
fn yaml_message(rendered: &str, file: &str) -> String {
    let mut msg = rendered
        .strip_prefix("error: ")
        .unwrap_or(rendered)
        .replace("--> <input>:", &format!("--> {file}:"));
    msg = suggest(&msg);
    if msg.contains("missing property") {
        msg.push_str("\nhint: the environment variable is not set; export it, or give a default: ${NAME:-default}");
    }
    msg
}

/// serde's "unknown variant `filtr`, expected one of select, drop, …" (every step, for a
/// misspelt step) with the nearest name put first: "unknown step `filtr`; did you mean
/// `filter`?". An unknown field keeps its (short) list of options after the suggestion.
fn suggest(msg: &str) -> String {
    rewrite_unknown(&rewrite_unknown(msg, "variant"), "field")
}

fn rewrite_unknown(msg: &str, kind: &str) -> String {
    let head = format!("unknown {kind} `");
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(at) = rest.find(&head) {
        out.push_str(&rest[..at]);
        let after = &rest[at + head.len()..];
        let Some((name, tail)) = after.split_once("`, expected one of ") else {
            out.push_str(&head);
            rest = after;
            continue;
        };
        let end = tail.find('\n').unwrap_or(tail.len());
        let options: Vec<&str> = tail[..end].split(", ").map(str::trim).collect();
        let nearest = options
            .iter()
            .map(|o| (strsim::jaro_winkler(name, o), *o))
            .filter(|(score, _)| *score >= 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, o)| o);
        let hint = nearest
            .map(|o| format!("; did you mean `{o}`?"))
            .unwrap_or_default();
        let steps = options.contains(&"filter") && options.contains(&"tokenize");
        if kind == "variant" && steps {
            out.push_str(&format!(
                "unknown step `{name}`{hint} (`kiln steps` lists all {})",
                options.len()
            ));
        } else if kind == "variant" {
            out.push_str(&format!(
                "unknown value `{name}`{hint} (one of: {})",
                options.join(", ")
            ));
        } else {
            out.push_str(&format!(
                "unknown field `{name}`{hint} (the fields: {})",
                options.join(", ")
            ));
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Applies one `dotted.path=value` override. The value is read as a YAML scalar or
/// flow collection (`4`, `true`, `[a, b]`, `{form: NFKC}`), else taken as a string.
fn apply_override(pipeline: Pipeline, arg: &str) -> Result<Pipeline> {
    let bad = |msg: String| Error::Usage(format!("--set {arg}: {msg}"));
    let (path, raw) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected `dotted.path=value`, e.g. `run.threads=4`".into()))?;
    let value: Tree = serde_saphyr::from_str(raw).unwrap_or_else(|_| Tree::String(raw.to_string()));
    // Through JSON text into a tree that keeps every mapping's order (see `ordered.rs`).
    let text = serde_json::to_string(&pipeline).map_err(|e| bad(e.to_string()))?;
    let mut tree: Tree = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let keys = override_keys(path, &tree);
    let mut node = &mut tree;
    for (i, key) in keys.iter().enumerate() {
        let key = key.as_str();
        let last = i + 1 == keys.len();
        node = match node {
            Tree::Map(map) => {
                if last {
                    // In place: an existing key keeps its position.
                    map.insert(key.to_string(), value);
                    break;
                }
                map.entry(key.to_string())
                    .or_insert_with(|| Tree::Map(Default::default()))
            }
            Tree::List(items) => {
                let len = items.len();
                let idx: usize = key
                    .parse()
                    .map_err(|_| bad(format!("`{key}` must be an index into a list of {len}")))?;
                let slot = items.get_mut(idx).ok_or_else(|| {
                    bad(format!("index {idx} is past the end of a list of {len}"))
                })?;
                if last {
                    *slot = value;
                    break;
                }
                slot
            }
            _ => {
                return Err(bad(format!(
                    "`{}` is not a mapping or a list",
                    keys[..i].join(".")
                )));
            }
        };
    }
    let text = serde_json::to_string(&tree).map_err(|e| bad(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
}

/// The keys of a dotted `--set` path. A step's name holds dots (`dedup.exact`), so under
/// a step the longest run of parts that names a key present there is one key:
/// `steps.0.dedup.exact.one_pass` is `steps`, `0`, `dedup.exact`, `one_pass`.
fn override_keys(path: &str, tree: &Tree) -> Vec<String> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut keys = Vec::new();
    let mut node = Some(tree);
    let mut i = 0;
    while i < parts.len() {
        let mut take = 1;
        if let Some(Tree::Map(map)) = node {
            for j in (i + 2..=parts.len()).rev() {
                if map.contains_key(&parts[i..j].join(".")) {
                    take = j - i;
                    break;
                }
            }
        }
        let key = parts[i..i + take].join(".");
        node = match node {
            Some(Tree::Map(map)) => map.get(&key),
            Some(Tree::List(items)) => key.parse().ok().and_then(|n: usize| items.get(n)),
            _ => None,
        };
        keys.push(key);
        i += take;
    }
    keys
}

/// Checks what the types alone cannot say.
fn check(p: &Pipeline) -> std::result::Result<(), String> {
    let mut errs = Vec::new();
    if p.version != 1 {
        errs.push(format!(
            "version: only version 1 exists, found {}",
            p.version
        ));
    }
    if p.name.trim().is_empty() {
        errs.push("name: must not be empty".to_string());
    }
    match (&p.source, p.sources.is_empty()) {
        (Some(_), false) => errs.push(
            "source and sources: give one input as `source`, or several named inputs as \
             `sources`, not both"
                .to_string(),
        ),
        (None, true) => errs.push(
            "source: missing; say where the data comes from (`source: { uri: ... }`, or \
             named inputs under `sources:`)"
                .to_string(),
        ),
        (Some(s), true) if !s.steps.is_empty() => errs.push(
            "source.steps: an input's own steps belong to `sources:`; with one `source`, \
             put them in the pipeline's `steps`"
                .to_string(),
        ),
        _ => {}
    }
    for (name, src) in p.inputs() {
        let at = match name {
            Some(n) => format!("sources.{n}"),
            None => "source".to_string(),
        };
        if src.uri.trim().is_empty() {
            errs.push(format!("{at}.uri: must not be empty"));
        }
        if src.infer_rows == 0 {
            errs.push(format!("{at}.infer_rows: must be at least 1"));
        }
        for (field, c) in [
            ("delimiter", src.csv.delimiter),
            ("quote", Some(src.csv.quote)),
            ("escape", src.csv.escape),
        ] {
            if let Some(c) = c
                && !c.is_ascii()
            {
                errs.push(format!(
                    "{at}.csv.{field}: `{c}` must be a single ASCII character"
                ));
            }
        }
    }
    if p.sink.uri.trim().is_empty() {
        errs.push("sink.uri: must not be empty".to_string());
    }
    let positive = [
        ("sink.max_rows", p.sink.max_rows),
        ("sink.max_bytes", p.sink.max_bytes.get()),
        ("sink.row_group_rows", p.sink.row_group_rows as u64),
        ("run.io_concurrency", p.run.io_concurrency as u64),
        ("run.batch_rows", p.run.batch_rows.unwrap_or(1) as u64),
        ("run.task_bytes", p.run.task_bytes.get()),
    ];
    for (name, v) in positive {
        if v == 0 {
            errs.push(format!("{name}: must be at least 1"));
        }
    }
    if p.run.memory_limit.get() < 16 * 1024 * 1024 {
        errs.push(format!(
            "run.memory_limit: {} is below the minimum of 16MiB",
            p.run.memory_limit
        ));
    }
    if !(0.0..=1.0).contains(&p.run.max_error_ratio) {
        errs.push(format!(
            "run.max_error_ratio: {} is outside 0..=1 (0.01 allows one bad record in a hundred)",
            p.run.max_error_ratio
        ));
    }
    if let Some(level) = p.sink.compression_level
        && !(1..=22).contains(&level)
    {
        errs.push(format!("sink.compression_level: {level} is outside 1..=22"));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "version: 1\nname: t\nsource:\n  uri: in/*.jsonl\nsink:\n  uri: out/\n";

    #[test]
    fn every_bad_step_is_reported_with_its_own_line() {
        // Block items, one whose node starts on the line after its `-`, a multi-line one.
        let text = "version: 1\nname: t\nsource:\n  uri: in/*.jsonl\nsteps:\n  - limt: 3\n  -\n    filtr: \"a > 1\"\n  - text.normalize:\n      column: text\n      frm: nfc\n  - limit: 1\nsink:\n  uri: out/\n";
        let Err(Error::Spec { message, .. }) = load_str(text, "p.yaml", &[]) else {
            panic!("accepted");
        };
        assert!(message.starts_with("3 errors:"), "{message}");
        for at in ["p.yaml:6:5", "p.yaml:8:5", "p.yaml:11:7"] {
            assert!(message.contains(at), "{at} in {message}");
        }
        assert!(!message.contains("{limit: 1}"), "{message}");
        // An error outside the steps ends the search; one error has no count.
        let text =
            "version: 1\nname: t\nsource:\n  ur: x\nsteps:\n  - limt: 3\nsink:\n  uri: out/\n";
        let Err(Error::Spec { message, .. }) = load_str(text, "p.yaml", &[]) else {
            panic!("accepted");
        };
        assert!(!message.contains("errors:"), "{message}");
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let p = load_str(MINIMAL, "t.yaml", &[]).expect("valid");
        assert_eq!(p.sink.max_rows, 1_000_000);
        assert_eq!(p.run.batch_rows, None);
    }

    #[test]
    fn set_overrides_nested_fields() {
        let p = load_str(
            MINIMAL,
            "t.yaml",
            &["run.threads=3".into(), "sink.max_bytes=1MiB".into()],
        )
        .expect("valid");
        assert_eq!(p.run.threads, super::super::Threads::Count(3));
        assert_eq!(p.sink.max_bytes.get(), 1 << 20);
    }

    /// Step names hold dots: `steps.0.dedup.exact.one_pass` reaches the option.
    #[test]
    fn set_reaches_the_options_of_a_step_whose_name_has_dots() {
        let text = "version: 1\nname: t\nsource:\n  uri: in/*.jsonl\nsteps:\n  - dedup.exact: { column: text }\n  - text.stats: { metrics: [n_words] }\nsink:\n  uri: out/\n";
        let p = load_str(
            text,
            "t.yaml",
            &[
                "steps.0.dedup.exact.one_pass=false".into(),
                "steps.1.text.stats.metrics=[n_chars]".into(),
            ],
        )
        .expect("valid");
        let tree = serde_json::to_value(&p).expect("json");
        assert_eq!(tree["steps"][0]["dedup.exact"]["one_pass"], false);
        assert_eq!(tree["steps"][0]["dedup.exact"]["column"], "text");
        assert_eq!(tree["steps"][1]["text.stats"]["metrics"][0], "n_chars");
    }

    /// A `--set` keeps the order of every mapping: split fractions are cut in order and
    /// derive's expressions see the ones before them.
    #[test]
    fn set_keeps_the_order_of_every_mapping() {
        let text = "version: 1\nname: t\nsource:\n  uri: in/*.jsonl\nsteps:\n  - split: { key: id, fractions: { train: 0.5, validation: 0.3, test: 0.2 } }\n  - derive: { z: \"1\", a: \"z + 1\" }\nsink:\n  uri: out/\n";
        let plain = load_str(text, "t.yaml", &[]).expect("valid");
        let set = load_str(
            text,
            "t.yaml",
            &["run.threads=1".into(), "steps.1.derive.b=\"a\"".into()],
        )
        .expect("valid");
        let order = |p: &Pipeline| serde_json::to_string(&p.steps).expect("json");
        let (a, b) = (order(&plain), order(&set));
        assert!(
            a.contains("\"train\":0.5,\"validation\":0.3,\"test\":0.2"),
            "{a}"
        );
        assert!(
            b.contains("\"train\":0.5,\"validation\":0.3,\"test\":0.2"),
            "{b}"
        );
        assert!(b.contains("\"z\":\"1\",\"a\":\"z + 1\",\"b\":\"a\""), "{b}");
    }

    #[test]
    fn set_with_unknown_field_is_a_usage_error() {
        let e = load_str(MINIMAL, "t.yaml", &["run.thread=3".into()]).expect_err("unknown");
        assert!(e.to_string().contains("unknown field `thread`"), "{e}");
    }

    #[test]
    fn a_misspelt_step_or_option_names_the_nearest() {
        let e = load_str(
            "version: 1\nname: t\nsource:\n  uri: in/*.jsonl\nsteps:\n  - filtr: a > 1\nsink:\n  uri: out/\n",
            "p.yaml",
            &[],
        )
        .expect_err("unknown step")
        .to_string();
        assert!(
            e.contains("unknown step `filtr`; did you mean `filter`? (`kiln steps` lists all"),
            "{e}"
        );
        assert!(
            !e.contains("image.to_tensor"),
            "the 32 names are not listed: {e}"
        );
        let e = load_str(
            "version: 1\nname: t\nsource:\n  uri: in/*.jsonl\nsink:\n  uri: out/\nrun:\n  on_error: skp\n",
            "p.yaml",
            &[],
        )
        .expect_err("unknown value")
        .to_string();
        assert!(
            e.contains("unknown value `skp`; did you mean `skip`?"),
            "{e}"
        );
    }

    #[test]
    fn quoted_and_flow_variables_expand_like_plain_ones() {
        let home = std::env::var("HOME").expect("HOME is set");
        let text = "version: 1\nname: q\nsource: {uri: \"${HOME}/in/*.{jsonl,csv}\"}\n\
                    sink:\n  uri: '${HOME}/out'\n  compression: zstd\nsteps:\n  - filter: \"a = '$$x'\"\n";
        let p = load_str(text, "p.yaml", &[]).expect("valid");
        assert_eq!(p.source().uri, format!("{home}/in/*.{{jsonl,csv}}"));
        assert_eq!(p.sink.uri, format!("{home}/out"));
        let e = load_str(
            "version: 1\nname: q\nsource:\n  uri: in\nsink:\n  uri: \"${KILN_TEST_UNSET_X}/o\"\n",
            "p.yaml",
            &[],
        )
        .expect_err("unset")
        .to_string();
        assert!(
            e.contains("p.yaml")
                && e.contains("line 6 column 8")
                && e.contains("KILN_TEST_UNSET_X"),
            "{e}"
        );
    }

    #[test]
    fn env_vars_expand_with_defaults() {
        let text = "version: 1\nname: ${KILN_TEST_UNSET_NAME:-fallback}\nsource:\n  uri: in\nsink:\n  uri: out\n";
        let p = load_str(text, "t.yaml", &[]).expect("valid");
        assert_eq!(p.name, "fallback");
    }
}

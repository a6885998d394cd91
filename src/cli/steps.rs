//! `kiln steps`: every registered step with its summary and example, or one step's
//! options as a table made from its JSON Schema.

use std::fmt::Write as _;

use super::print_out;
use crate::error::{Error, Result};

pub(super) fn cmd_steps(name: Option<&str>) -> Result<i32> {
    let mut s = String::new();
    match name {
        None => {
            let width = crate::steps::STEPS
                .iter()
                .map(|st| st.name.len())
                .max()
                .unwrap_or(8);
            for st in crate::steps::STEPS {
                let _ = writeln!(s, "{:<width$}  {}", st.name, st.summary);
                for line in st.example.lines() {
                    let _ = writeln!(s, "{:<width$}  {line}", "");
                }
                let _ = writeln!(s);
            }
            let _ = writeln!(s, "`kiln steps NAME` shows one step's options in full.");
        }
        Some(n) => {
            let st = crate::steps::STEPS
                .iter()
                .find(|st| st.name == n)
                .ok_or_else(|| {
                    let names: Vec<&str> = crate::steps::STEPS.iter().map(|s| s.name).collect();
                    Error::Usage(format!(
                        "no step `{n}`; the steps are: {}",
                        names.join(", ")
                    ))
                })?;
            let _ = writeln!(
                s,
                "{}: {}\n\nexample:\n  {}\n\n{}\n(`kiln schema` has the whole JSON Schema.)",
                st.name,
                st.summary,
                st.example.replace('\n', "\n  "),
                options_table(&serde_json::to_value((st.options_schema)()).unwrap_or_default())
            );
        }
    }
    print_out(&s)
}

/// A step's options as a table (option, type, default, first sentence of its doc) from
/// its JSON Schema, the way `--help` shows flags.
fn options_table(schema: &serde_json::Value) -> String {
    use serde_json::Value;
    let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
    let resolve = |v: &Value| -> Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .rsplit('/')
                .next()
                .and_then(|name| defs.get(name))
                .cloned()
                .unwrap_or_else(|| v.clone()),
            None => v.clone(),
        }
    };
    let type_of = |v: &Value| -> String {
        let v = resolve(v);
        if let Some(t) = v.get("type") {
            return match t {
                Value::Array(ts) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|t| *t != "null")
                    .collect::<Vec<_>>()
                    .join(" | "),
                Value::String(t) if t == "array" => {
                    let item = v
                        .pointer("/items/type")
                        .and_then(Value::as_str)
                        .unwrap_or("value");
                    format!("list of {item}")
                }
                other => other.as_str().unwrap_or("value").to_string(),
            };
        }
        if let Some(e) = v.get("enum").and_then(Value::as_array) {
            return e
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" | ");
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = v.get(key).and_then(Value::as_array) {
                let names: Vec<String> = alts
                    .iter()
                    .filter(|a| a.get("type") != Some(&Value::from("null")))
                    .map(|a| {
                        a.get("$ref")
                            .and_then(Value::as_str)
                            .and_then(|r| r.rsplit('/').next())
                            .map(str::to_string)
                            .or_else(|| a.get("const").and_then(Value::as_str).map(str::to_string))
                            .or_else(|| a.get("type").and_then(Value::as_str).map(str::to_string))
                            .unwrap_or_else(|| "value".into())
                    })
                    .collect();
                return names.join(" | ");
            }
        }
        v.get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
            .unwrap_or("value")
            .to_string()
    };
    let first_sentence = |v: &Value| -> String {
        let d = v
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .replace('\n', " ");
        // The first ". " that does not end an abbreviation (e.g., i.e.).
        let end = d
            .match_indices(". ")
            .map(|(i, _)| i)
            .find(|&i| !d[..i].ends_with("e.g") && !d[..i].ends_with("i.e"));
        match end {
            Some(i) => d[..=i].to_string(),
            None => d,
        }
    };
    let top = resolve(schema);
    let Some(props) = top.get("properties").and_then(Value::as_object) else {
        return format!("takes: {} — {}", type_of(&top), first_sentence(&top));
    };
    let required: Vec<&str> = top
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let rows: Vec<[String; 4]> = props
        .iter()
        .map(|(name, v)| {
            let default = match v.get("default") {
                Some(Value::Null) => "-".into(),
                Some(d) => d.to_string(),
                None if required.contains(&name.as_str()) => "required".into(),
                None => "-".into(),
            };
            [name.clone(), type_of(v), default, first_sentence(v)]
        })
        .collect();
    let w: Vec<usize> = (0..3)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(["option", "type", "default"][i].len())
                .min(40)
        })
        .collect();
    let mut out = format!(
        "{:<a$}  {:<b$}  {:<c$}  what\n",
        "option",
        "type",
        "default",
        a = w[0],
        b = w[1],
        c = w[2]
    );
    for r in rows {
        out.push_str(&format!(
            "{:<a$}  {:<b$}  {:<c$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            a = w[0],
            b = w[1],
            c = w[2]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_options_print_as_a_table() {
        let st = crate::steps::STEPS
            .iter()
            .find(|s| s.name == "tokenize")
            .expect("tokenize");
        let table = options_table(&serde_json::to_value((st.options_schema)()).expect("json"));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("option"), "{table}");
        assert!(table.contains("column"), "{table}");
        assert!(
            lines.len() < 30,
            "a line per option, not the raw schema:\n{table}"
        );
        assert!(!table.contains("\"$schema\""), "{table}");
    }
}

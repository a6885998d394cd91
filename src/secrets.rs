//! Credentials never leave the process in anything kiln writes for people or for the
//! sink: logs, errors, `kiln plan`/`status`/`inspect` output, the report, and the
//! pipeline stored in `_kiln/plan.json`, the manifest and the dataset card.
//!
//! The secrets are known values, not patterns: the values of environment variables
//! whose names say they are secret (`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `HF_TOKEN`, `DB_PASSWORD`, anything with SECRET, TOKEN, PASSWORD, PASSWD,
//! CREDENTIAL, PRIVATE, API_KEY, ACCESS_KEY, ACCOUNT_KEY or SAS in its name), so also
//! what a `${VAR}` of such a variable expanded to; the keys of an AWS profile file;
//! and the user, password and query of every URI the pipeline file or the environment
//! holds (`storage.endpoint: http://user:password@host`, a presigned URL's signature).
//! Each output replaces them with `***` — scrubbing what reaches the output, whatever
//! library put it there, rather than trusting every message on the way. Matching
//! ignores ASCII case, since libraries fold what they echo (SQL lowercases an unquoted
//! identifier before it names it in an error).

use std::borrow::Cow;
use std::sync::RwLock;

/// Shorter values are not treated as secrets: `***` in place of every `abc` would
/// garble the output, and a credential is never that short.
const MIN_LEN: usize = 8;

const REDACTED: &str = "***";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// True for an environment variable name that says its value is secret.
pub fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "SECRET",
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "PRIVATE",
        "API_KEY",
        "APIKEY",
        "ACCESS_KEY",
        "ACCOUNT_KEY",
        "SAS",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// Adds a value to the secrets every output is scrubbed of.
pub fn register(value: &str) {
    let value = value.trim();
    if value.len() < MIN_LEN {
        return;
    }
    let mut all = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    // Stored folded: `redact` compares with the text folded the same way. A value whose
    // Unicode lower case differs from its ASCII one is kept in both forms.
    for folded in [value.to_ascii_lowercase(), value.to_lowercase()] {
        if !all.contains(&folded) {
            all.push(folded);
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Registers the values of the environment's secret-named variables, and the
/// credentials of every URI an environment variable holds (`AWS_ENDPOINT_URL`).
pub fn register_env() {
    for (name, value) in std::env::vars() {
        if secret_name(&name) {
            register(&value);
        }
        if value.contains("://") {
            register_uri(&value);
        }
    }
}

/// Registers the credentials of every URI among the strings of `value` (a pipeline as
/// JSON): whichever field holds a URL, its user, password and query never reach an
/// output.
pub fn register_uris_in(value: &serde_json::Value) {
    match value {
        serde_json::Value::String(s) if s.contains("://") => register_uri(s),
        serde_json::Value::Array(items) => items.iter().for_each(register_uris_in),
        serde_json::Value::Object(map) => map.values().for_each(register_uris_in),
        _ => {}
    }
}

/// Registers the user, the password and the query (and each query value) of a URI.
pub fn register_uri(uri: &str) {
    let Some((_, rest)) = uri.split_once("://") else {
        return;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        match userinfo.split_once(':') {
            Some((user, password)) => {
                register(user);
                register(password);
                // As written, and as a client decodes it.
                for part in [user, password] {
                    if let Ok(decoded) = percent_encoding::percent_decode_str(part).decode_utf8() {
                        register(&decoded);
                    }
                }
            }
            None => register(userinfo),
        }
    }
    if let Some((_, query)) = rest.split_once('?') {
        let query = query.split('#').next().unwrap_or("");
        register(query);
        for pair in query.split('&') {
            if let Some((_, v)) = pair.split_once('=') {
                register(v);
            }
        }
    }
}

/// `text` with every secret replaced by `***`, whatever the ASCII case it is written in.
pub fn redact(text: &str) -> Cow<'_, str> {
    let all = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    if all.is_empty() {
        return Cow::Borrowed(text);
    }
    // ASCII folding keeps every byte offset (and so every char boundary) of `text`.
    let folded = text.to_ascii_lowercase();
    let mut hits: Vec<(usize, usize)> = Vec::new();
    for s in all.iter() {
        hits.extend(
            folded
                .match_indices(s.as_str())
                .map(|(i, m)| (i, i + m.len())),
        );
    }
    if hits.is_empty() {
        return Cow::Borrowed(text);
    }
    hits.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in hits {
        if end <= at {
            continue;
        }
        if start >= at {
            out.push_str(&text[at..start]);
            out.push_str(REDACTED);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// Every string in `value` redacted.
pub fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let Cow::Owned(r) = redact(s) {
                *s = r;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(redact_json),
        _ => {}
    }
}

/// A `tracing` writer for stderr that scrubs each event before it is written.
#[derive(Default)]
pub struct Stderr {
    buf: Vec<u8>,
}

impl std::io::Write for Stderr {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buf);
        let out = redact(&text).into_owned();
        self.buf.clear();
        std::io::Write::write_all(&mut std::io::stderr().lock(), out.as_bytes())
    }
}

impl Drop for Stderr {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_values_and_uris() {
        assert!(secret_name("AWS_SECRET_ACCESS_KEY") && secret_name("hf_token"));
        assert!(secret_name("AZURE_STORAGE_ACCOUNT_KEY") && secret_name("AWS_ACCESS_KEY_ID"));
        assert!(!secret_name("AWS_REGION") && !secret_name("KILN_OUT"));
        register("unit-test-secret-0001");
        register("short");
        register_uri("https://me:unit-test-pw-0002@host/x.jsonl?X-Amz-Signature=unit0003sig&a=1");
        assert_eq!(
            redact("key unit-test-secret-0001 and unit-test-pw-0002, short"),
            "key *** and ***, short"
        );
        assert_eq!(redact("s=unit0003sig"), "s=***");
        // Folded the way libraries fold what they echo.
        assert_eq!(
            redact("no field named UNIT-TEST-SECRET-0001"),
            "no field named ***"
        );
        register_uris_in(&serde_json::json!({"storage": {"endpoint":
            "http://unitcanaryuser:unit-canary-pw-0004@127.0.0.1:9000"}}));
        assert_eq!(
            redact("endpoint http://unitcanaryuser:unit-canary-pw-0004@127.0.0.1:9000 refused"),
            "endpoint http://***:***@127.0.0.1:9000 refused"
        );
        // Overlapping secrets are replaced once, as one.
        register("overlap-secret-abcdef");
        register("secret-abcdef-ghijkl");
        assert_eq!(redact("x overlap-secret-abcdef-ghijkl y"), "x *** y");
        let mut v = serde_json::json!({"a": ["x unit-test-secret-0001"], "b": 1});
        redact_json(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["x ***"], "b": 1}));
    }
}

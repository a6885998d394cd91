//! Credentials never leave the process in anything kiln writes for people or for the
//! sink: logs, errors, `kiln plan`/`status`/`inspect` output, the report, and the
//! pipeline stored in `_kiln/plan.json`, the manifest and the dataset card.
//!
//! The secrets are known values, not patterns: the values of environment variables
//! whose names say they are secret (`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `HF_TOKEN`, `DB_PASSWORD`, anything with SECRET, TOKEN, PASSWORD, PASSWD,
//! CREDENTIAL, PRIVATE, API_KEY, ACCESS_KEY, ACCOUNT_KEY or SAS in its name), so also
//! what a `${VAR}` of such a variable expanded to; the keys of an AWS profile file;
//! and the password and query of an `https://` URI (a presigned URL's signature). Each
//! output replaces them with `***` — scrubbing what reaches the output, whatever
//! library put it there, rather than trusting every message on the way.

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
    if !all.iter().any(|s| s == value) {
        all.push(value.to_string());
        // Longest first, so a secret that contains another is replaced whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Registers the values of the environment's secret-named variables.
pub fn register_env() {
    for (name, value) in std::env::vars() {
        if secret_name(&name) {
            register(&value);
        }
    }
}

/// Registers the password and the query (and each query value) of a URI.
pub fn register_uri(uri: &str) {
    let Some((_, rest)) = uri.split_once("://") else {
        return;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        register(password);
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

/// `text` with every secret replaced by `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let all = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    if !all.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for s in all.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
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
        let mut v = serde_json::json!({"a": ["x unit-test-secret-0001"], "b": 1});
        redact_json(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["x ***"], "b": 1}));
    }
}

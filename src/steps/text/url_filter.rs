//! `url.filter`: drop rows whose URL is on a block list, as datatrove's `URLFilter` does
//! for FineWeb, from lists the user gives.
//!
//! A list is a folder in the layout of the UT1 blacklists (the Université Toulouse 1
//! categories that squidGuard reads and datatrove ships): a `domains` file (one domain
//! per line) and an optional `urls` file (one URL per line, without scheme). `#` starts
//! a comment line. A domain blocks itself and every sub-domain (`example.com` blocks
//! `cdn.example.com`), matched label by label on the URL's host, lowercased, without a
//! port or a leading `www.`. A URL entry blocks that URL and everything below it
//! (`example.com/forum` blocks `example.com/forum/t/1`, not `example.com/forums`).
//! Word lists (`banned_words`, `soft_banned_words`) match the URL's words: its
//! lowercase ASCII letters and digits split at everything else. One banned word drops
//! the row; soft-banned words drop it from `soft_threshold` distinct ones on.
//!
//! Each drop is counted under the list or rule that made it (`<list>.domain`,
//! `<list>.url`, `banned_word`, `soft_banned_words`); a row without a URL is kept and
//! counted as `no_url`. The lists' bytes are part of the pipeline hash.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::{string_column, utf8, value};
use crate::steps::StepError;
use crate::steps::{Step, StepContext, StepOptions};

/// Options of `url.filter`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UrlFilterOptions {
    /// The URL column (default `url`).
    #[serde(default = "default_column")]
    pub column: String,
    /// Block lists by name: each a folder with a `domains` file and optionally a `urls`
    /// file (the UT1 layout), e.g. `{ adult: lists/adult, phishing: lists/phishing }`.
    #[serde(default)]
    pub lists: BTreeMap<String, PathBuf>,
    /// A file of words, one per line: a URL with one of them among its words is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banned_words: Option<PathBuf>,
    /// A file of words, one per line: a URL with `soft_threshold` distinct ones among
    /// its words is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_banned_words: Option<PathBuf>,
    /// Distinct soft-banned words that drop a URL (default 2, as datatrove's).
    #[serde(default = "default_soft_threshold")]
    pub soft_threshold: usize,
}

fn default_column() -> String {
    "url".into()
}

fn default_soft_threshold() -> usize {
    2
}

/// Lines of a list file: trimmed, without blanks and `#` comments.
fn read_lines(path: &Path, digest: &mut sha2::Sha256) -> Result<Vec<String>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read the list {}: {e}", path.display()))?;
    digest.update(path.to_string_lossy().as_bytes());
    digest.update(&bytes);
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

impl StepOptions for UrlFilterOptions {
    const SUMMARY: &'static str = "drop rows whose URL's domain, URL or words are on block lists (UT1 layout, as datatrove's URLFilter)";
    const EXAMPLE: &'static str = "- url.filter: { column: url, lists: { adult: sample-data/url-lists/adult }, banned_words: sample-data/url-lists/banned_words.txt }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let column = string_column(input, &self.column)?;
        if self.lists.is_empty() && self.banned_words.is_none() && self.soft_banned_words.is_none()
        {
            return Err(
                "nothing to block: give `lists`, `banned_words` or `soft_banned_words`".into(),
            );
        }
        if self.soft_threshold == 0 {
            return Err("soft_threshold must be at least 1".into());
        }
        let mut digest = sha2::Sha256::new();
        let mut lists = Vec::new();
        for (name, dir) in &self.lists {
            let domains = read_lines(&dir.join("domains"), &mut digest)?
                .into_iter()
                .map(|d| host_of(&d).to_string())
                .collect();
            let urls_file = dir.join("urls");
            let urls = if urls_file.exists() {
                read_lines(&urls_file, &mut digest)?
                    .iter()
                    .map(|u| normal_url(u).trim_end_matches('/').to_string())
                    .collect()
            } else {
                HashSet::new()
            };
            lists.push(BlockList {
                domain_counter: format!("{name}.domain"),
                url_counter: format!("{name}.url"),
                domains,
                urls,
            });
        }
        let words = |path: &Option<PathBuf>, digest: &mut sha2::Sha256| -> Result<_, String> {
            Ok(match path {
                Some(p) => read_lines(p, digest)?
                    .iter()
                    .flat_map(|w| words_of(w).map(str::to_string).collect::<Vec<_>>())
                    .collect(),
                None => HashSet::new(),
            })
        };
        let banned = words(&self.banned_words, &mut digest)?;
        let soft = words(&self.soft_banned_words, &mut digest)?;
        Ok(Arc::new(UrlFilter {
            column,
            name: self.column.clone(),
            schema: input.clone(),
            lists,
            banned,
            soft,
            soft_threshold: self.soft_threshold,
            fingerprint: format!("{:x}", digest.finalize()),
        }))
    }
}

#[derive(Debug)]
struct BlockList {
    domain_counter: String,
    url_counter: String,
    domains: HashSet<String>,
    urls: HashSet<String>,
}

#[derive(Debug)]
struct UrlFilter {
    column: usize,
    name: String,
    schema: SchemaRef,
    lists: Vec<BlockList>,
    banned: HashSet<String>,
    soft: HashSet<String>,
    soft_threshold: usize,
    fingerprint: String,
}

/// The URL without its scheme, user info and leading `www.`, the host lowercased.
fn normal_url(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest
        .split_once('@')
        .filter(|(user, _)| !user.contains('/'))
        .map_or(rest, |(_, r)| r);
    let (host, path) = rest
        .find(['/', '?', '#'])
        .map_or((rest, ""), |i| rest.split_at(i));
    format!("{}{path}", host_of(host))
}

/// The host of `authority` (or of a bare domain): lowercase, without port, trailing
/// dot and leading `www.`.
fn host_of(authority: &str) -> String {
    let host = authority.rsplit_once(':').map_or(authority, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            authority
        }
    });
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host.strip_prefix("www.")
        .map_or(host.clone(), str::to_string)
}

/// The words of a URL: runs of ASCII letters and digits, lowercased by the caller.
fn words_of(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
}

impl UrlFilter {
    /// The counter of the rule that blocks `url`, or None.
    fn blocked(&self, url: &str) -> Option<&str> {
        let normal = normal_url(url);
        let host = normal.split('/').next().unwrap_or_default();
        for list in &self.lists {
            // The host and each domain above it: a.b.example.com, b.example.com, ...
            let mut h = host;
            loop {
                if list.domains.contains(h) {
                    return Some(&list.domain_counter);
                }
                match h.split_once('.') {
                    Some((_, parent)) if parent.contains('.') => h = parent,
                    _ => break,
                }
            }
            // The URL and each path prefix of it at a `/`.
            let trimmed = normal.trim_end_matches('/');
            if list.urls.contains(trimmed)
                || trimmed
                    .match_indices('/')
                    .any(|(i, _)| list.urls.contains(&trimmed[..i]))
            {
                return Some(&list.url_counter);
            }
        }
        if self.banned.is_empty() && self.soft.is_empty() {
            return None;
        }
        let lower = url.to_ascii_lowercase();
        let words: BTreeSet<&str> = words_of(&lower).collect();
        if words.iter().any(|w| self.banned.contains(*w)) {
            return Some("banned_word");
        }
        if !self.soft.is_empty()
            && words.iter().filter(|w| self.soft.contains(**w)).count() >= self.soft_threshold
        {
            return Some("soft_banned_words");
        }
        None
    }
}

impl Step for UrlFilter {
    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn row_local(&self) -> bool {
        true
    }

    fn fingerprint(&self) -> Option<String> {
        Some(self.fingerprint.clone())
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        need.insert(self.name.clone());
        need
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let urls = utf8(batch.column(self.column))
            .map_err(|e| StepError::data(e).in_column(&self.name))?;
        let mut keep = Vec::with_capacity(urls.len());
        let mut no_url = 0;
        for i in 0..urls.len() {
            match value(&urls, i) {
                None => {
                    no_url += 1;
                    keep.push(true);
                }
                Some(url) => match self.blocked(url) {
                    Some(counter) => {
                        cx.count(counter, 1);
                        keep.push(false);
                    }
                    None => keep.push(true),
                },
            }
        }
        cx.count("no_url", no_url);
        Ok(filter_record_batch(&batch, &BooleanArray::from(keep))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray};

    fn lists(dir: &Path) -> UrlFilterOptions {
        let adult = dir.join("adult");
        std::fs::create_dir_all(&adult).expect("mkdir");
        std::fs::write(
            adult.join("domains"),
            "# UT1 adult (test)\nbad.example\nWWW.Naughty.test\n",
        )
        .expect("write");
        std::fs::write(adult.join("urls"), "good.example/private\n").expect("write");
        std::fs::write(dir.join("banned.txt"), "casino\n").expect("write");
        std::fs::write(dir.join("soft.txt"), "free\ncheap\npills\n").expect("write");
        serde_json::from_value(serde_json::json!({
            "lists": { "adult": adult },
            "banned_words": dir.join("banned.txt"),
            "soft_banned_words": dir.join("soft.txt"),
        }))
        .expect("options")
    }

    #[test]
    fn blocks_domains_subdomains_urls_and_words() {
        let dir = tempfile::tempdir().expect("tmp");
        let urls = [
            Some("https://bad.example/page"),           // domain
            Some("http://cdn.img.bad.example:8080/x"),  // sub-domain, port
            Some("https://www.naughty.test/"),          // www. and case
            Some("https://notbad.example/"),            // only a suffix of the name
            Some("https://good.example/private/a?b=1"), // below a blocked URL
            Some("https://good.example/privateer"),     // not below it
            Some("https://play-casino.test/"),          // banned word
            Some("https://free-pills.test/"),           // two soft words
            Some("https://free-shipping.test/"),        // one soft word
            None,
        ];
        let batch = RecordBatch::try_from_iter(vec![(
            "url",
            Arc::new(StringArray::from(urls.to_vec())) as ArrayRef,
        )])
        .expect("batch");
        let step = lists(dir.path()).bind(&batch.schema()).expect("binds");
        let mut cx = StepContext::default();
        let out = step.apply(batch, &mut cx).expect("apply");
        let kept: Vec<Option<&str>> = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("strings")
            .iter()
            .collect();
        assert_eq!(
            kept,
            vec![
                Some("https://notbad.example/"),
                Some("https://good.example/privateer"),
                Some("https://free-shipping.test/"),
                None
            ]
        );
        assert_eq!(cx.counts["adult.domain"], 3);
        assert_eq!(cx.counts["adult.url"], 1);
        assert_eq!(cx.counts["banned_word"], 1);
        assert_eq!(cx.counts["soft_banned_words"], 1);
        assert_eq!(cx.counts["no_url"], 1);
        assert!(step.fingerprint().is_some());
    }

    #[test]
    fn a_missing_list_or_nothing_to_block_is_refused() {
        let batch = RecordBatch::try_from_iter(vec![(
            "url",
            Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
        )])
        .expect("batch");
        let none: UrlFilterOptions = serde_json::from_value(serde_json::json!({})).expect("o");
        let e = none.bind(&batch.schema()).expect_err("nothing");
        assert!(e.contains("nothing to block"), "{e}");
        let missing: UrlFilterOptions =
            serde_json::from_value(serde_json::json!({"lists": {"x": "/nonexistent/x"}}))
                .expect("o");
        let e = missing.bind(&batch.schema()).expect_err("missing");
        assert!(e.contains("/nonexistent/x/domains"), "{e}");
    }
}

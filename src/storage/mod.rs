//! URIs → object stores. Every read and write goes through `object_store`: local disk is
//! `LocalFileSystem`, `s3://` is `AmazonS3`, `gs://` `GoogleCloudStorage`, `az://`
//! `MicrosoftAzure`, `https://` `HttpStore`; nothing downstream knows which.
//!
//! Credentials come from each cloud's own conventions, read by object_store's builders
//! (`AWS_*`, `GOOGLE_*`, `AZURE_*` variables, web identity, container and instance
//! credentials), plus AWS shared profiles (see [`profile`]); never from the pipeline
//! file, whose `storage:` block only says how to reach a store.

pub mod http;
pub mod profile;

use std::sync::Arc;

use futures::TryStreamExt;
use globset::{GlobBuilder, GlobMatcher};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::{Path, PathPart};
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, RetryConfig};

use crate::error::{Error, Result};
use crate::spec::Storage;

/// A place in a store: the store, a prefix inside it, and how to print it.
#[derive(Debug, Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// The prefix inside the store (a "directory").
    pub prefix: Path,
    /// The URI as the user should see it, ending in `/`.
    pub display: String,
    /// The location as a canonical URI ending in `/` (`file:///abs/dir/`,
    /// `s3://bucket/prefix/`): one location lies inside another when its identity starts
    /// with the other's.
    pub identity: String,
}

impl Location {
    /// The full path of `relative` below this location.
    pub fn child(&self, relative: &str) -> Path {
        join(&self.prefix, relative)
    }

    /// `relative` as a user-facing URI.
    pub fn display_child(&self, relative: &str) -> String {
        format!("{}{}", self.display, relative)
    }

    /// The path of `path` relative to this location's prefix.
    pub fn relative(&self, path: &Path) -> String {
        match path.prefix_match(&self.prefix) {
            Some(parts) => parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/"),
            None => path.to_string(),
        }
    }

    /// Whether `self` lies inside `other` (or is it).
    pub fn is_inside(&self, other: &Location) -> bool {
        self.identity.starts_with(&other.identity)
    }
}

/// `relative` (parts separated by `/`) below `base`, each part kept as written: the
/// object key or file name is exactly the text, with no percent-encoding added (a hive
/// folder `name=caf%C3%A9` stays that, and `café` stays `café`).
pub fn join(base: &Path, relative: &str) -> Path {
    let mut path = base.clone();
    for part in relative.split('/').filter(|p| !p.is_empty()) {
        path = match PathPart::parse(part) {
            Ok(p) => path.join(p),
            // `.`, `..` and control characters: encoded rather than taken literally.
            Err(_) => path.join(part),
        };
    }
    path
}

/// An object matched by a source URI.
#[derive(Debug, Clone)]
pub struct Object {
    pub path: Path,
    pub size: u64,
    /// The object as the user should see it in messages.
    pub display: String,
}

/// Splits a source URI into the directory to list and the glob over what is below it.
fn split_glob(uri: &str) -> (String, Option<String>) {
    let is_glob = |s: &str| s.contains(['*', '?', '[', '{']);
    let parts: Vec<&str> = uri.split('/').collect();
    match parts.iter().position(|p| is_glob(p)) {
        None => (uri.to_string(), None),
        Some(i) => (parts[..i].join("/"), Some(parts[i..].join("/"))),
    }
}

/// The schemes kiln reads and writes, for messages.
pub const SCHEMES: &str = "a local path, file://, s3://, gs://, az:// or https://";

/// Opens the store that holds `uri` (a directory-like prefix, or one object).
///
/// # Errors
/// [`Error::Plan`] for an unknown scheme, a URI without a bucket, or a store that cannot
/// be configured (a bad endpoint, an AWS profile that cannot be used).
pub fn open(uri: &str, cfg: &Storage) -> Result<Location> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return open_local(uri, uri);
    };
    if scheme == "file" {
        return open_local(uri, rest);
    }
    let bad = |why: String| Error::Plan(format!("`{uri}`: {why}"));
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad(format!(
            "no bucket in the URI; write {scheme}://BUCKET/prefix"
        )));
    }
    let key = key.trim_end_matches('/');
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" | "s3a" => Arc::new(
            s3_builder(cfg)?
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| bad(format!("cannot configure S3: {e}")))?,
        ),
        "gs" | "gcs" => {
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry_config(cfg))
                .with_http_connector(http::ObservedConnector::default());
            for (k, v) in client_settings(cfg) {
                b = b.with_config(GoogleConfigKey::Client(k), v);
            }
            Arc::new(
                b.build()
                    .map_err(|e| bad(format!("cannot configure Google Cloud Storage: {e}")))?,
            )
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_url(format!("{scheme}://{bucket}"))
                .with_retry(retry_config(cfg))
                .with_http_connector(http::ObservedConnector::default());
            for (k, v) in client_settings(cfg) {
                b = b.with_config(AzureConfigKey::Client(k), v);
            }
            Arc::new(
                b.build()
                    .map_err(|e| bad(format!("cannot configure Azure Blob Storage: {e}")))?,
            )
        }
        "http" | "https" => {
            let mut b = HttpBuilder::new()
                .with_url(format!("{scheme}://{bucket}"))
                .with_retry(retry_config(cfg))
                .with_http_connector(http::ObservedConnector::default());
            for (k, v) in client_settings(cfg) {
                b = b.with_config(k, v);
            }
            if scheme == "http" {
                b = b.with_config(ClientConfigKey::AllowHttp, "true");
            }
            Arc::new(
                b.build()
                    .map_err(|e| bad(format!("cannot configure the HTTP store: {e}")))?,
            )
        }
        other => {
            return Err(bad(format!(
                "the `{other}://` scheme is not supported; use {SCHEMES}"
            )));
        }
    };
    let prefix = Path::parse(key).map_err(|e| bad(format!("not a usable key prefix: {e}")))?;
    let mut display = uri.to_string();
    if !display.ends_with('/') {
        display.push('/');
    }
    let mut identity = format!("{scheme}://{bucket}/{prefix}");
    if !identity.ends_with('/') {
        identity.push('/');
    }
    Ok(Location {
        store,
        prefix,
        display,
        identity,
    })
}

fn open_local(uri: &str, local: &str) -> Result<Location> {
    let local = if local.is_empty() { "." } else { local };
    let abs = std::path::absolute(local)
        .map_err(|e| Error::Plan(format!("`{uri}`: cannot make an absolute path: {e}")))?;
    let prefix = Path::from_absolute_path(&abs)
        .map_err(|e| Error::Plan(format!("`{uri}`: not a usable path: {e}")))?;
    let mut display = uri.to_string();
    if !display.ends_with('/') {
        display.push('/');
    }
    Ok(Location {
        store: Arc::new(LocalFileSystem::new()),
        identity: format!("file:///{prefix}/"),
        prefix,
        display,
    })
}

/// The S3 builder: the environment (`AWS_*`), then a shared profile when the
/// environment has no keys, then the file's `storage:` block, which wins.
fn s3_builder(cfg: &Storage) -> Result<AmazonS3Builder> {
    let mut b = AmazonS3Builder::from_env();
    if let Some(p) = profile::from_env()? {
        if let Some(keys) = p.credentials {
            b = b
                .with_access_key_id(keys.access_key_id)
                .with_secret_access_key(keys.secret_access_key);
            if let Some(token) = keys.session_token {
                b = b.with_token(token);
            }
        }
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            && let Some(region) = p.region
        {
            b = b.with_region(region);
        }
        if std::env::var_os("AWS_ENDPOINT_URL").is_none()
            && std::env::var_os("AWS_ENDPOINT").is_none()
            && let Some(endpoint) = p.endpoint_url
        {
            b = b.with_endpoint(endpoint);
        }
    }
    if let Some(endpoint) = &cfg.endpoint {
        b = b.with_endpoint(endpoint);
    }
    if let Some(region) = &cfg.region {
        b = b.with_region(region);
    }
    if let Some(path_style) = cfg.path_style {
        b = b.with_virtual_hosted_style_request(!path_style);
    }
    for (k, v) in client_settings(cfg) {
        b = b.with_config(AmazonS3ConfigKey::Client(k), v);
    }
    Ok(b.with_retry(retry_config(cfg))
        .with_http_connector(http::ObservedConnector::default()))
}

/// Client settings of the `storage:` block, as object_store config keys.
fn client_settings(cfg: &Storage) -> Vec<(ClientConfigKey, String)> {
    let mut out = Vec::new();
    if let Some(allow) = cfg.allow_http {
        out.push((ClientConfigKey::AllowHttp, allow.to_string()));
    }
    if let Some(t) = cfg.request_timeout {
        out.push((ClientConfigKey::Timeout, t.to_string()));
    }
    if let Some(t) = cfg.connect_timeout {
        out.push((ClientConfigKey::ConnectTimeout, t.to_string()));
    }
    out
}

fn retry_config(cfg: &Storage) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: cfg.retry.initial_backoff.get(),
            max_backoff: cfg.retry.max_backoff.get(),
            base: 2.0,
        },
        max_retries: cfg.retry.max_retries,
        retry_timeout: cfg.retry.timeout.get(),
    }
}

/// A source URI resolved to a base location and a glob.
#[derive(Debug, Clone)]
pub struct SourceUri {
    pub base: Location,
    glob: Option<(String, GlobMatcher)>,
}

impl SourceUri {
    /// Parses a source URI: `dir/**/*.jsonl.gz`, `file:///data/a.csv`, `dir/`.
    ///
    /// # Errors
    /// [`Error::Plan`] for a malformed glob or an unsupported scheme.
    pub fn parse(uri: &str, cfg: &Storage) -> Result<Self> {
        crate::secrets::register_uri(uri);
        let (base, pattern) = split_glob(uri);
        let base = open(&base, cfg)?;
        let glob = match pattern {
            None => None,
            Some(p) => {
                let g = GlobBuilder::new(&p)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| Error::Plan(format!("source.uri `{uri}`: bad glob: {e}")))?;
                Some((p, g.compile_matcher()))
            }
        };
        Ok(SourceUri { base, glob })
    }

    /// Lists the matching objects, sorted by path so every run sees the same order.
    /// Files and folders whose names start with `_` or `.` are skipped when listing a
    /// directory (`_SUCCESS`, `_kiln/`, `.crc`), as Spark and pyarrow do, and so is the
    /// `README.md` (dataset card) of a kiln dataset.
    ///
    /// # Errors
    /// [`Error::Store`] when listing fails.
    pub async fn list(&self) -> Result<Vec<Object>> {
        let base = &self.base;
        // A plain path may name one object.
        let mut head_error = None;
        if self.glob.is_none() {
            match base.store.head(&base.prefix).await {
                Ok(meta) => {
                    let display = base.display.trim_end_matches('/').to_string();
                    return Ok(vec![Object {
                        path: meta.location,
                        size: meta.size,
                        display,
                    }]);
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => head_error = Some(e),
            }
        }
        let metas: Vec<_> = base
            .store
            .list(Some(&base.prefix))
            .try_collect()
            .await
            .or_else(|e| match (e, head_error) {
                (object_store::Error::NotFound { .. }, _) => Ok(Vec::new()),
                // Neither an object nor a listable prefix: the object's error says more
                // (access denied, say) than the listing's.
                (_, Some(head)) => Err(Error::store(
                    "read",
                    base.display.trim_end_matches('/'),
                    head,
                )),
                (e, None) => Err(Error::store("list", &base.display, e)),
            })?;
        // A kiln dataset's card is not data either.
        let kiln_dataset = metas.iter().any(|m| {
            base.relative(&m.location)
                .starts_with(&format!("{}/", crate::layout::KILN_DIR))
        });
        let mut objects: Vec<Object> = metas
            .into_iter()
            .filter_map(|m| {
                let rel = base.relative(&m.location);
                let keep = match &self.glob {
                    Some((_, g)) => g.is_match(&rel),
                    None => {
                        let hidden = rel
                            .split('/')
                            .any(|p| p.starts_with('_') || p.starts_with('.'));
                        let card = kiln_dataset && rel == crate::layout::CARD;
                        !hidden && !card
                    }
                };
                keep.then(|| Object {
                    display: base.display_child(&rel),
                    path: m.location,
                    size: m.size,
                })
            })
            .collect();
        objects.sort_by(|a, b| a.path.as_ref().cmp(b.path.as_ref()));
        Ok(objects)
    }

    /// The glob, if the URI has one.
    pub fn pattern(&self) -> Option<&str> {
        self.glob.as_ref().map(|(p, _)| p.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_first_glob_component() {
        assert_eq!(
            split_glob("data/raw/**/*.jsonl"),
            ("data/raw".into(), Some("**/*.jsonl".into()))
        );
        assert_eq!(split_glob("data/a.csv"), ("data/a.csv".into(), None));
        assert_eq!(
            split_glob("d/{a,b}.csv"),
            ("d".into(), Some("{a,b}.csv".into()))
        );
    }

    #[tokio::test]
    async fn lists_sorted_with_globs() {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["b.jsonl", "a.jsonl", "sub/c.jsonl", "x.csv", "_SUCCESS"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, "{}\n").expect("write");
        }
        let root = dir.path().display();
        let names = |objs: Vec<Object>| objs.into_iter().map(|o| o.display).collect::<Vec<_>>();
        let star = SourceUri::parse(&format!("{root}/*.jsonl"), &Storage::default())
            .expect("uri")
            .list()
            .await
            .expect("list");
        assert_eq!(
            names(star),
            [format!("{root}/a.jsonl"), format!("{root}/b.jsonl")]
        );
        let deep = SourceUri::parse(&format!("{root}/**/*.jsonl"), &Storage::default())
            .expect("uri")
            .list()
            .await
            .expect("list");
        assert_eq!(deep.len(), 3);
        let all = SourceUri::parse(&format!("{root}"), &Storage::default())
            .expect("uri")
            .list()
            .await
            .expect("list");
        assert_eq!(all.len(), 4, "a directory lists everything but _SUCCESS");
        let alt = SourceUri::parse(&format!("{root}/{{a,x}}.*"), &Storage::default())
            .expect("uri")
            .list()
            .await
            .expect("list");
        assert_eq!(alt.len(), 2);
    }
}

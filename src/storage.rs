//! URIs → object stores. Every read and write goes through `object_store`: local disk is
//! `LocalFileSystem` like any other store, so remote stores add a constructor here and
//! nothing else.

use std::sync::Arc;

use futures::TryStreamExt;
use globset::{GlobBuilder, GlobMatcher};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};

/// A place in a store: the store, a prefix inside it, and how to print it.
#[derive(Debug, Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// The prefix inside the store (a "directory").
    pub prefix: Path,
    /// The URI as the user should see it, ending in `/`.
    pub display: String,
    /// The absolute local path, for stores on local disk (used to refuse a sink inside
    /// its source); `None` for remote stores.
    pub local_root: Option<std::path::PathBuf>,
}

impl Location {
    /// The full path of `relative` below this location.
    pub fn child(&self, relative: &str) -> Path {
        let mut path = self.prefix.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
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

/// Opens the store that holds `uri` (a directory-like prefix).
///
/// # Errors
/// [`Error::Plan`] for a scheme this build cannot reach or a path that cannot be used.
pub fn open(uri: &str) -> Result<Location> {
    if let Some((scheme, _)) = uri.split_once("://")
        && scheme != "file"
    {
        return Err(Error::Plan(format!(
            "`{uri}`: the `{scheme}://` scheme is not supported by this build of kiln; \
                 use a local path or a file:// URI"
        )));
    }
    let local = uri.strip_prefix("file://").unwrap_or(uri);
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
        prefix,
        display,
        local_root: Some(abs),
    })
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
    pub fn parse(uri: &str) -> Result<Self> {
        let (base, pattern) = split_glob(uri);
        let base = open(&base)?;
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
    /// directory (`_SUCCESS`, `_kiln/`, `.crc`), as Spark and pyarrow do.
    ///
    /// # Errors
    /// [`Error::Store`] when listing fails.
    pub async fn list(&self) -> Result<Vec<Object>> {
        let base = &self.base;
        // A plain path may name one object.
        if self.glob.is_none()
            && let Ok(meta) = base.store.head(&base.prefix).await
        {
            let display = base.display.trim_end_matches('/').to_string();
            return Ok(vec![Object {
                path: meta.location,
                size: meta.size,
                display,
            }]);
        }
        let metas: Vec<_> = base
            .store
            .list(Some(&base.prefix))
            .try_collect()
            .await
            .or_else(|e| match e {
                object_store::Error::NotFound { .. } => Ok(Vec::new()),
                e => Err(Error::store("list", &base.display, e)),
            })?;
        let mut objects: Vec<Object> = metas
            .into_iter()
            .filter_map(|m| {
                let rel = base.relative(&m.location);
                let keep = match &self.glob {
                    Some((_, g)) => g.is_match(&rel),
                    None => !rel
                        .split('/')
                        .any(|p| p.starts_with('_') || p.starts_with('.')),
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
        let star = SourceUri::parse(&format!("{root}/*.jsonl"))
            .expect("uri")
            .list()
            .await
            .expect("list");
        assert_eq!(
            names(star),
            [format!("{root}/a.jsonl"), format!("{root}/b.jsonl")]
        );
        let deep = SourceUri::parse(&format!("{root}/**/*.jsonl"))
            .expect("uri")
            .list()
            .await
            .expect("list");
        assert_eq!(deep.len(), 3);
        let all = SourceUri::parse(&format!("{root}"))
            .expect("uri")
            .list()
            .await
            .expect("list");
        assert_eq!(all.len(), 4, "a directory lists everything but _SUCCESS");
        let alt = SourceUri::parse(&format!("{root}/{{a,x}}.*"))
            .expect("uri")
            .list()
            .await
            .expect("list");
        assert_eq!(alt.len(), 2);
    }
}

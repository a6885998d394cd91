//! kiln against real object-store servers: moto's S3 and Azurite's Blob Storage, both
//! started by `scripts/with-stores.sh`, which `make test` wraps around the test run.
//! Each S3 test makes its own bucket (each Azure test its own prefix), so they run in
//! parallel without wiping each other's state.
//!
//! When `KILN_TEST_S3_ENDPOINT` is unset the S3 tests skip with a loud message, unless
//! `CI` is set: under CI they must run. The Azure tests run where the script found npm
//! to install Azurite (`KILN_TEST_AZURE` set).

mod proxy;
mod slurm;
mod tests;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::util::*;

/// A fresh bucket on the local S3 server, with a client for the test's own reads and
/// writes.
pub struct Bucket {
    pub endpoint: String,
    /// The bucket (S3) or container (Azure).
    pub name: String,
    pub store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
    /// `s3` or `az`.
    scheme: &'static str,
    /// Prefix of this test's keys inside the bucket: empty on S3 (a bucket per test),
    /// `<test>-<pid>/` on Azure (one shared container).
    root: String,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The local S3 server's endpoint, or `None` (with a loud message) when the tests run
/// without one outside CI.
pub fn endpoint() -> Option<String> {
    match std::env::var("KILN_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => {
            assert!(
                e.starts_with("http://127.0.0.1:") || e.starts_with("http://localhost:"),
                "KILN_TEST_S3_ENDPOINT must be a loopback address, not {e}"
            );
            Some(e)
        }
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but KILN_TEST_S3_ENDPOINT is not: run the tests through `make test`"
            );
            eprintln!(
                "\n!!!! SKIPPED: no local S3 server (KILN_TEST_S3_ENDPOINT unset). \
                 Run `make test`, or `scripts/with-stores.sh cargo nextest run`. !!!!\n"
            );
            None
        }
    }
}

/// Sends one plain HTTP/1.1 request to the server (bucket creation and the listing of
/// multipart uploads, which object_store does not do) and returns the response.
pub fn raw_http(endpoint: &str, method: &str, path: &str) -> String {
    raw_http_with(endpoint, method, path, "", b"")
}

/// [`raw_http`] with extra header lines (each ending in `\r\n`) and a body.
pub fn raw_http_with(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> String {
    let host = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).expect("connect to the S3 server");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("send");
    s.write_all(body).expect("send body");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}

impl Bucket {
    /// Creates `kiln-<name>-<pid>`; `None` when there is no server (see [`endpoint`]).
    pub fn new(name: &str) -> Option<Bucket> {
        let endpoint = endpoint()?;
        let name = format!("kiln-{name}-{}", std::process::id());
        let response = raw_http(&endpoint, "PUT", &format!("/{name}"));
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "create bucket: {response}"
        );
        let store = AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_bucket_name(&name)
            .with_region("us-east-1")
            .with_access_key_id("kiln-test")
            .with_secret_access_key("kiln-test")
            .build()
            .expect("S3 client");
        Some(Bucket {
            endpoint,
            name,
            store: Arc::new(store),
            rt: runtime(),
            scheme: "s3",
            root: String::new(),
        })
    }

    /// A prefix of its own in the Azurite container, or `None` (with a message) when
    /// the script did not start Azurite.
    pub fn azure(name: &str) -> Option<Bucket> {
        let (Ok(container), Ok(endpoint)) = (
            std::env::var("KILN_TEST_AZURE"),
            std::env::var("AZURITE_BLOB_STORAGE_URL"),
        ) else {
            eprintln!(
                "\n!!!! SKIPPED: no Azurite (KILN_TEST_AZURE unset; scripts/with-stores.sh \
                 starts it where npm is installed) !!!!\n"
            );
            return None;
        };
        let store = object_store::azure::MicrosoftAzureBuilder::new()
            .with_use_emulator(true)
            .with_container_name(&container)
            .build()
            .expect("Azure client");
        Some(Bucket {
            endpoint,
            name: container,
            store: Arc::new(store),
            rt: runtime(),
            scheme: "az",
            root: format!("{name}-{}/", std::process::id()),
        })
    }

    /// `s3://<bucket>/<key>` or `az://<container>/<prefix>/<key>`.
    pub fn uri(&self, key: &str) -> String {
        format!("{}://{}/{}{key}", self.scheme, self.name, self.root)
    }

    /// The environment that points kiln at the server, as each cloud's tools expect it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        if self.scheme == "az" {
            return vec![
                ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
                ("AZURITE_BLOB_STORAGE_URL", self.endpoint.clone()),
            ];
        }
        env_for(&self.endpoint)
    }

    /// The store path of a key of this test.
    fn path(&self, key: &str) -> StorePath {
        StorePath::parse(format!("{}{key}", self.root)).expect("key")
    }

    pub fn put(&self, key: &str, data: Vec<u8>) {
        self.rt
            .block_on(self.store.put(&self.path(key), PutPayload::from(data)))
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }

    /// Uploads a large object as a multipart upload, in 16 MiB parts.
    pub fn put_large(&self, key: &str, data: &[u8]) {
        self.rt.block_on(async {
            let upload = self
                .store
                .put_multipart(&self.path(key))
                .await
                .expect("start upload");
            let mut w = WriteMultipart::new_with_chunk_size(upload, 16 << 20);
            for chunk in data.chunks(16 << 20) {
                w.wait_for_capacity(4).await.expect("capacity");
                w.write(chunk);
            }
            w.finish().await.expect("complete upload");
        });
    }

    /// Uploads every file below `dir` to `prefix/<relative path>`.
    pub fn upload_dir(&self, dir: &Path, prefix: &str) {
        for file in files(dir) {
            let rel = file.strip_prefix(dir).expect("below dir").to_string_lossy();
            self.put(
                &format!("{prefix}/{rel}"),
                std::fs::read(&file).expect("read"),
            );
        }
    }

    /// Keys below `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = self.rt.block_on(async {
            self.store
                .list(Some(&self.path(prefix)))
                .map_ok(|m| {
                    let key = m.location.to_string();
                    key.strip_prefix(&self.root).unwrap_or(&key).to_string()
                })
                .try_collect()
                .await
                .expect("list")
        });
        keys.sort();
        keys
    }

    pub fn get(&self, key: &str) -> Vec<u8> {
        self.rt.block_on(async {
            let r = self
                .store
                .get(&self.path(key))
                .await
                .unwrap_or_else(|e| panic!("get {key}: {e}"));
            r.bytes().await.expect("body").to_vec()
        })
    }

    /// Downloads everything below `prefix` into `dest`, keeping relative paths.
    pub fn download(&self, prefix: &str, dest: &Path) {
        for key in self.keys(prefix) {
            let rel = key
                .strip_prefix(prefix)
                .expect("below prefix")
                .trim_start_matches('/');
            let path = dest.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, self.get(&key)).expect("write");
        }
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn open_multipart_uploads(&self) -> usize {
        let r = raw_http(&self.endpoint, "GET", &format!("/{}?uploads", self.name));
        assert!(r.starts_with("HTTP/1.1 200"), "list uploads: {r}");
        r.matches("<Upload>").count()
    }
}

/// The AWS environment for an endpoint.
pub fn env_for(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "kiln-test".into()),
        ("AWS_SECRET_ACCESS_KEY", "kiln-test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// `kiln ARGS` with extra environment variables.
pub fn kiln_env(env: &[(&str, String)], args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.current_dir(repo()).env_remove("KILN_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_accounted(cmd, args)
}

/// Like [`kiln_env`], asserting success.
pub fn kiln_env_ok(env: &[(&str, String)], args: &[&str]) -> Output {
    let o = kiln_env(env, args);
    assert!(
        o.status.success(),
        "kiln {args:?} failed ({:?}):\n{}",
        o.status.code(),
        stderr(&o)
    );
    o
}

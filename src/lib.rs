//! kiln: declarative ML data-preprocessing pipelines. Raw files (JSONL, CSV, Parquet,
//! text; gzip/zstd) from any object store → Arrow batches through steps → Parquet shards
//! with a commit protocol that makes reruns exact.
//!
//! The module map follows the data: [`spec`] (what the file says) → [`plan`] (what will
//! run) → [`runtime`] (tokio for I/O, rayon for CPU) → [`sink`] (shards, commits,
//! manifest), with [`formats`], [`steps`] and [`storage`] as the pluggable parts.

pub mod cli;
pub mod error;
pub mod formats;
pub mod fuzz;
pub mod hf;
pub mod inspect;
pub mod layout;
pub mod plan;
pub mod pool;
pub mod rejects;
pub mod report;
pub mod runtime;
pub mod secrets;
pub mod sink;
pub mod size;
pub mod spec;
pub mod steps;
pub mod storage;

pub use error::{Error, Result};

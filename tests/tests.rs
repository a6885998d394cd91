//! kiln's end-to-end tests, compiled as one binary: each runs the real `kiln` binary on
//! real files and reads the shards back with the parquet crate.

mod util;

mod atomicity;
mod bad_input;
mod commands;
mod conformance;
mod dataset;
mod dedup;
mod determinism;
mod errors;
mod examples;
mod exec;
mod fuzz_regressions;
mod hostile;
mod html;
mod images;
mod incremental;
mod interop;
mod mds;
mod megatron;
mod minhash;
mod mixture;
mod orchestration;
mod quality;
mod s3;
mod schema_drift;
mod secrets;
mod shards;
mod shuffle;
mod split;
mod stages;
mod tabular;
mod text;
mod warc;
mod webdataset;
mod wheel;
mod workers;

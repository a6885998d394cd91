//! Where everything is in a sink: shards at the top (or under Hive partition folders),
//! kiln's own records under `_kiln/`, `_SUCCESS` and the optional dataset card. One place
//! for the paths, so the sink writes them and the storage listing, `kiln status` and
//! the tests find them by the same names. A leaf: it imports nothing of kiln.

/// Folder of kiln's own files in the sink.
pub const KILN_DIR: &str = "_kiln";
/// The dataset's manifest, written once when every task has committed.
pub const MANIFEST: &str = "_kiln/manifest.json";
/// The listing and task split every worker and every rerun follows.
pub const PLAN: &str = "_kiln/plan.json";
/// The statistics fitted steps were fitted with.
pub const STATS: &str = "_kiln/stats.json";
/// Written last: the dataset is complete.
pub const SUCCESS: &str = "_SUCCESS";
/// The dataset card (`sink.dataset_card: true`).
pub const CARD: &str = "README.md";
/// With `sink.shuffle`: each task's rows, scattered into buckets, and each written
/// bucket's record; removed when the dataset is complete.
pub const SHUFFLE_DIR: &str = "_kiln/shuffle";
pub fn shuffle_part(task: usize) -> String {
    format!("{SHUFFLE_DIR}/parts/{task:05}.arrows")
}
pub fn shuffle_bucket(bucket: usize) -> String {
    format!("{SHUFFLE_DIR}/buckets/{bucket:05}.json")
}
/// With `sink.format: mds`: MosaicML Streaming's list of the shards of a folder.
pub const MDS_INDEX: &str = "index.json";
/// Commit records, one per task.
pub const TASKS_DIR: &str = "_kiln/tasks";
/// Failure records, one per failed run.
pub const FAILURES_DIR: &str = "_kiln/failures";
/// Run records (leases), one per worker.
pub const RUNS_DIR: &str = "_kiln/runs";
/// Stage parts: what each task of a full or fit pass found, when several workers
/// share the pass (`sink/stages.rs`).
pub const STAGES_DIR: &str = "_kiln/stages";
/// Task claims of workers that take tasks from each other (`sink/claims.rs`); removed
/// with the stage parts when the manifest is written.
pub const CLAIMS_DIR: &str = "_kiln/claims";
/// Key indexes of dedup steps, for later runs' `against:` (`sink/index.rs`); kept
/// with the dataset.
pub const INDEX_DIR: &str = "_kiln/index";
/// Buckets of a key index: a key's top byte (`steps/keys.rs`).
pub const INDEX_BUCKETS: usize = 256;
/// Bytes of a key in an index file: a little-endian u128.
pub const INDEX_KEY: usize = 16;

/// The commit record of `task`.
pub fn task_record(task: usize) -> String {
    format!("{TASKS_DIR}/{task:05}.json")
}

/// The dead-letter file of a task: its rejected records and objects, one JSON object
/// per line.
pub fn dead_letters(task: usize) -> String {
    format!("{KILN_DIR}/errors/{task:05}.jsonl")
}

/// The failure record of a run of worker `worker` that failed at `millis` (Unix time).
pub fn failure_record(worker: usize, millis: u128) -> String {
    format!("{FAILURES_DIR}/{worker:05}-{millis}.json")
}

/// The run record (lease) of worker `index`.
pub fn run_record(index: usize) -> String {
    format!("{RUNS_DIR}/w{index:05}.json")
}

/// The run record of a helper (a run joining the workers without a share of its own),
/// named by its run id.
pub fn helper_record(run_id: &str) -> String {
    format!("{RUNS_DIR}/helper-{run_id}.json")
}

/// Whether `rel` (a path relative to the sink) is one of kiln's: a shard, a record,
/// `_SUCCESS` or the card. Anything else means the folder holds something kiln did not
/// write.
pub fn is_kiln_file(rel: &str) -> bool {
    rel.starts_with("part-")
        || rel.contains("/part-")
        || rel.starts_with(KILN_DIR)
        || rel == SUCCESS
        || rel == CARD
        || rel == MDS_INDEX
        || rel.ends_with(&format!("/{MDS_INDEX}"))
}

//! A large object is cut into tasks (JSONL, CSV and text by byte ranges aligned to
//! records, Parquet by row groups) and the rows are exactly those of reading it whole,
//! in order, however many workers share the slices; and for random inputs and random
//! worker counts, N workers make the single run's dataset.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema};
use proptest::prelude::*;

use crate::util::*;

/// Every row of the shards below `dir`, in shard-name order (task order), as one batch.
fn all_rows(dir: &Path) -> RecordBatch {
    let shards = read_shards(dir);
    let first = shards.values().next().expect("at least one shard");
    concat_batches(&first.schema(), shards.values()).expect("concat")
}

fn run_worker(out: &Path, p: &Path, worker: &str) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(repo())
        .env("KILN_OUT", out)
        .args(["run", "-q", &p.to_string_lossy(), "--worker", worker])
        .output()
        .expect("runs");
    assert!(o.status.success(), "worker {worker}: {}", stderr(&o));
}

/// Runs `source` (a URI line plus options) whole and cut into `task_bytes` slices by 1
/// and 3 workers, and checks the sliced runs have the whole run's rows in its order;
/// returns the number of slices.
fn assert_slices_equal_whole(data: &Path, source: &str, steps: &str, task_bytes: &str) -> usize {
    assert_slices_equal_whole_under(data, source, steps, task_bytes, "")
}

/// [`assert_slices_equal_whole`] with more `run:` settings (`run`: indented lines).
fn assert_slices_equal_whole_under(
    data: &Path,
    source: &str,
    steps: &str,
    task_bytes: &str,
    run: &str,
) -> usize {
    let yaml = |task_bytes: &str| {
        format!(
            "version: 1\nname: split\nsource:\n{source}\nsteps: {steps}\nsink:\n  uri: ${{KILN_OUT}}/ds\nrun:\n  task_bytes: {task_bytes}\n{run}"
        )
    };
    let whole = pipeline(data, "whole.yaml", &yaml("1GiB"));
    let sliced = pipeline(data, "sliced.yaml", &yaml(task_bytes));
    let a = tempfile::tempdir().expect("tmp");
    kiln_ok(a.path(), &["run", "-q", &whole.to_string_lossy()]);
    let expected = all_rows(&a.path().join("ds"));
    assert!(expected.num_rows() > 100);

    let fresh = tempfile::tempdir().expect("tmp");
    let plan = stdout(&kiln_ok(fresh.path(), &["plan", &sliced.to_string_lossy()]));
    assert!(
        plan.contains("slices of objects larger than run.task_bytes"),
        "{plan}"
    );
    let mut slices = 0;
    for workers in [1, 3] {
        let out = tempfile::tempdir().expect("tmp");
        for i in 0..workers {
            run_worker(out.path(), &sliced, &format!("{i}/{workers}"));
        }
        let got = all_rows(&out.path().join("ds"));
        assert_eq!(got.num_rows(), expected.num_rows(), "{workers} workers");
        assert!(got == expected, "{workers} workers: rows differ");
        slices = std::fs::read_dir(out.path().join("ds/_kiln/tasks"))
            .expect("tasks")
            .count();
    }
    slices
}

/// CSV with quoted delimiters, doubled quotes, CRLF line ends and a header: every slice
/// gets the header and whole records.
#[test]
fn a_large_csv_object_is_split_into_slices_with_the_same_rows() {
    let data = tempfile::tempdir().expect("tmp");
    let mut csv = String::from("id,name,note,score\r\n");
    for i in 0..4000 {
        let note = match i % 4 {
            0 => format!("\"plain, with a comma {i}\""),
            1 => format!("\"said \"\"hi\"\" {}\"", "x".repeat(i % 37)),
            2 => String::new(),
            _ => format!("word{}", i * 7),
        };
        csv.push_str(&format!("{i},n{},{note},{}\r\n", i % 13, i as f64 / 8.0));
    }
    std::fs::create_dir_all(data.path().join("in")).expect("mkdir");
    std::fs::write(data.path().join("in/big.csv"), csv).expect("write");
    let source = format!("  uri: {}/in/big.csv", data.path().display());
    let slices = assert_slices_equal_whole(data.path(), &source, "[]", "13KiB");
    assert!(slices > 10, "{slices} slices");
}

/// A cut whose newline lies inside a quoted field is found by the slice before it and
/// refused with what to do; `source.split: false` reads the object whole.
#[test]
fn a_csv_cut_inside_a_quoted_line_break_is_refused_and_split_false_reads_it_whole() {
    let data = tempfile::tempdir().expect("tmp");
    let mut csv = String::from("id,poem\n");
    for i in 0..3000 {
        csv.push_str(&format!("{i},\"roses {i}\nviolets\nend\"\n"));
    }
    std::fs::create_dir_all(data.path().join("in")).expect("mkdir");
    std::fs::write(data.path().join("in/poems.csv"), csv).expect("write");
    let p = pipeline(
        data.path(),
        "p.yaml",
        &format!(
            "version: 1\nname: poems\nsource:\n  uri: {}/in/poems.csv\nsink:\n  uri: ${{KILN_OUT}}/ds\nrun:\n  task_bytes: 8KiB\n",
            data.path().display()
        ),
    );
    let out = tempfile::tempdir().expect("tmp");
    let o = kiln(out.path(), &["run", "-q", &p.to_string_lossy()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("poems.csv (bytes ")
            && err.contains("a quoted field holds the line break at byte")
            && err.contains("source.split: false"),
        "{err}"
    );
    assert!(!out.path().join("ds/_SUCCESS").exists());
    // Not the object's fault, so not left out under on_error: skip either (the next
    // slice started mid-record).
    let out = tempfile::tempdir().expect("tmp");
    let o = kiln(
        out.path(),
        &[
            "run",
            "-q",
            &p.to_string_lossy(),
            "--set",
            "run.on_error=skip",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("source.split: false"), "{}", stderr(&o));

    let out = tempfile::tempdir().expect("tmp");
    kiln_ok(
        out.path(),
        &[
            "run",
            "-q",
            &p.to_string_lossy(),
            "--set",
            "source.split=false",
        ],
    );
    let rows = all_rows(&out.path().join("ds"));
    assert_eq!(rows.num_rows(), 3000);
    let poems = rows
        .column_by_name("poem")
        .expect("poem")
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("strings");
    assert_eq!(poems.value(2999), "roses 2999\nviolets\nend");
}

/// Text without its `line` column splits; with it, `plan` says why not.
#[test]
fn a_large_text_object_splits_when_line_numbers_are_not_used() {
    let data = tempfile::tempdir().expect("tmp");
    let text: String = (0..5000)
        .map(|i| format!("line {i} {}\n", "abc ".repeat(i % 29)))
        .collect();
    std::fs::create_dir_all(data.path().join("in")).expect("mkdir");
    std::fs::write(data.path().join("in/big.txt"), text).expect("write");
    let source = format!("  uri: {}/in/big.txt", data.path().display());
    let slices = assert_slices_equal_whole(data.path(), &source, "[{drop: [line]}]", "16KiB");
    assert!(slices > 10, "{slices} slices");

    let p = pipeline(
        data.path(),
        "lines.yaml",
        &format!(
            "version: 1\nname: lines\nsource:\n{source}\nsink:\n  uri: ${{KILN_OUT}}/ds\nrun:\n  task_bytes: 16KiB\n"
        ),
    );
    let out = tempfile::tempdir().expect("tmp");
    let plan = stdout(&kiln_ok(out.path(), &["plan", &p.to_string_lossy()]));
    assert!(
        plan.contains("tasks     1 ") && plan.contains("drop the `line` column to split"),
        "{plan}"
    );
}

/// Parquet is cut by row groups: each row group read by the slice holding its middle
/// byte, rows numbered from the object's start.
#[test]
fn a_large_parquet_object_is_split_by_row_groups_with_the_same_rows() {
    let data = tempfile::tempdir().expect("tmp");
    let schema = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
    ]));
    std::fs::create_dir_all(data.path().join("in")).expect("mkdir");
    let file = std::fs::File::create(data.path().join("in/big.parquet")).expect("create");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(97))
        .build();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props)).expect("writer");
    for chunk in 0..30 {
        let n: Vec<i64> = (chunk * 200..(chunk + 1) * 200).collect();
        let text: Vec<String> = n
            .iter()
            .map(|i| format!("{i:x} {}", "z".repeat((*i as usize * 13) % 61)))
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(n)),
                Arc::new(StringArray::from(text)),
            ],
        )
        .expect("batch");
        w.write(&batch).expect("write");
    }
    w.close().expect("close");
    let size = std::fs::metadata(data.path().join("in/big.parquet"))
        .expect("stat")
        .len();
    assert!(size > 40_000, "{size}");
    let source = format!("  uri: {}/in/big.parquet", data.path().display());
    let slices =
        assert_slices_equal_whole(data.path(), &source, "[{filter: \"n % 3 <> 1\"}]", "8KiB");
    assert!(slices > 4, "{slices} slices");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 6,
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// For random inputs (object count and sizes, one object large enough to be cut),
    /// random task sizes and a random number of workers run in a random order, the
    /// workers' shards hold exactly the single run's rows: each task's rows in order, and
    /// the dataset byte for byte.
    #[test]
    fn n_workers_make_the_single_run_dataset_for_random_inputs(
        sizes in proptest::collection::vec(1usize..160, 1..6),
        big in 0usize..1500,
        task_kib in 4u64..40,
        workers in 1usize..7,
        order_seed in any::<u64>(),
    ) {
        let data = tempfile::tempdir().expect("tmp");
        let mut start = 0;
        for (i, n) in sizes.iter().enumerate() {
            write_docs(&data.path().join(format!("in/p-{i:02}.jsonl")), start, *n);
            start += n;
        }
        write_docs(&data.path().join("in/z-big.jsonl"), start, big);
        let p = pipeline(
            data.path(),
            "p.yaml",
            &format!(
                "version: 1\nname: prop\nsource:\n  uri: {}/in/*.jsonl\nsteps:\n  - filter: \"n % 5 <> 2\"\nsink:\n  uri: ${{KILN_OUT}}/ds\n  max_rows: 70\nrun:\n  task_bytes: {task_kib}KiB\n",
                data.path().display()
            ),
        );
        let single = tempfile::tempdir().expect("tmp");
        kiln_ok(single.path(), &["run", "-q", &p.to_string_lossy()]);
        let out = tempfile::tempdir().expect("tmp");
        // The workers one after another in a shuffled order (the last to finish writes
        // the manifest, whichever it is).
        let mut order: Vec<usize> = (0..workers).collect();
        let mut s = order_seed;
        for i in (1..order.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        for i in order {
            run_worker(out.path(), &p, &format!("{i}/{workers}"));
        }
        let (a, b) = (single.path().join("ds"), out.path().join("ds"));
        prop_assert!(b.join("_SUCCESS").exists());
        let (fa, fb) = (shard_files(&a), shard_files(&b));
        prop_assert_eq!(fa.len(), fb.len());
        prop_assert!(fa == fb, "shards differ");
        let expected = (0..start + big).filter(|n| n % 5 != 2).count();
        prop_assert_eq!(total_rows(&a), expected);
        prop_assert_eq!(total_rows(&b), expected);
    }
}

/// A seekable zstd file (zstd's contrib format, written with zeekstd's seek table) of
/// frames cut every `frame` bytes of the text, mid-line.
fn seekable_zstd(text: &[u8], frame: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut table = zeekstd::SeekTable::new();
    for chunk in text.chunks(frame) {
        let c = zstd::bulk::compress(chunk, 3).expect("compress");
        table
            .log_frame(c.len() as u32, chunk.len() as u32)
            .expect("frame");
        out.extend(c);
    }
    std::io::Read::read_to_end(&mut table.into_serializer(), &mut out).expect("seek table");
    out
}

/// JSONL (cut into compressed parts every 7,001 bytes of text) and CSV (every 3,333) in
/// the compression `ext` names, written by `parts` (the parts of one compressed object),
/// are cut at their parts: lines and CSV records that straddle a part belong to the slice
/// they start in, and the rows are those of reading them whole. The same text as one part
/// (`one`) is read whole, and `plan` says why (`reason`).
fn assert_cut_at_compressed_parts(
    ext: &str,
    parts: fn(&[u8], usize) -> Vec<u8>,
    one: fn(&[u8]) -> Vec<u8>,
    reason: &str,
) {
    let data = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(data.path().join("in")).expect("mkdir");
    let jsonl = tempfile::tempdir().expect("tmp");
    write_docs(&jsonl.path().join("docs.jsonl"), 0, 4000);
    let text = std::fs::read(jsonl.path().join("docs.jsonl")).expect("read");
    let name = format!("in/docs.jsonl.{ext}");
    std::fs::write(data.path().join(&name), parts(&text, 7_001)).expect("write");
    let source = format!("  uri: {}/{name}", data.path().display());
    let slices = assert_slices_equal_whole(data.path(), &source, "[]", "16KiB");
    assert!(slices > 5, "{slices} slices");

    let csv: String = std::iter::once("id,name,note\n".to_string())
        .chain((0..5000).map(|i| format!("{i},\"n, {}\",\"say \"\"{i}\"\"\"\n", i % 17)))
        .collect();
    let csvdir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(csvdir.path().join("in")).expect("mkdir");
    let name = format!("in/t.csv.{ext}");
    std::fs::write(csvdir.path().join(&name), parts(csv.as_bytes(), 3_333)).expect("write");
    let source = format!("  uri: {}/{name}", csvdir.path().display());
    let slices = assert_slices_equal_whole(csvdir.path(), &source, "[]", "4KiB");
    assert!(slices > 3, "{slices} slices");

    let plain = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(plain.path().join("in")).expect("mkdir");
    let name = format!("in/docs.jsonl.{ext}");
    std::fs::write(plain.path().join(&name), one(&text)).expect("write");
    let p = pipeline(
        plain.path(),
        "p.yaml",
        &format!(
            "version: 1\nname: plain\nsource:\n  uri: {}/{name}\nsink:\n  uri: ${{KILN_OUT}}/ds\nrun:\n  task_bytes: 16KiB\n",
            plain.path().display()
        ),
    );
    let out = tempfile::tempdir().expect("tmp");
    let plan = stdout(&kiln_ok(out.path(), &["plan", &p.to_string_lossy()]));
    assert!(
        plan.contains("tasks     1 ") && plan.contains(reason),
        "{plan}"
    );
}

/// A seekable zstd object is cut at its frames; a plain zstd stream is read whole.
#[test]
fn a_seekable_zstd_object_is_split_at_its_frames_with_the_same_rows() {
    assert_cut_at_compressed_parts(
        "zst",
        seekable_zstd,
        |text| zstd::bulk::compress(text, 3).expect("compress"),
        "without a seek table",
    );
}

/// One gzip member deflated in independent blocks (zlib's full flush every `block`
/// bytes of text, as `pigz --independent` writes it) is cut inside the member; with
/// sync flushes (the blocks refer back past them) it is read whole. `pigz -i` itself
/// where it is installed (`make test` installs it when run as root).
#[test]
fn a_gzip_member_of_independent_blocks_is_split_with_the_same_rows() {
    assert_cut_at_compressed_parts(
        "gz",
        |text, block| flushed(text, block, flate2::FlushCompress::Full),
        |text| flushed(text, 7_001, flate2::FlushCompress::Sync),
        "first gzip member does not end within its first MiB",
    );
    if std::process::Command::new("pigz")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("pigz is not installed: its own output is not tested");
        return;
    }
    // pigz's blocks are 128 KiB of text: 16,000 documents make several.
    let data = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(data.path().join("in")).expect("mkdir");
    let docs = data.path().join("in/docs.jsonl");
    write_docs(&docs, 0, 16_000);
    let o = std::process::Command::new("pigz")
        .args(["--independent", "-p", "2"])
        .arg(&docs)
        .output()
        .expect("pigz runs (make test installs it)");
    assert!(o.status.success(), "{}", stderr(&o));
    let source = format!("  uri: {}/in/docs.jsonl.gz", data.path().display());
    let slices = assert_slices_equal_whole(data.path(), &source, "[]", "64KiB");
    assert!(slices > 5, "{slices} slices");
}

/// `text` as one gzip member, deflated `block` bytes of text at a time, each ended with
/// `flush`.
fn flushed(text: &[u8], block: usize, flush: flate2::FlushCompress) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
    let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut buf = vec![0; block * 2 + 1024];
    let mut chunks = text.chunks(block).peekable();
    while let Some(chunk) = chunks.next() {
        let mode = if chunks.peek().is_none() {
            flate2::FlushCompress::Finish
        } else {
            flush
        };
        let before = c.total_out();
        c.compress(chunk, &mut buf, mode).expect("deflate");
        out.extend_from_slice(&buf[..(c.total_out() - before) as usize]);
    }
    let mut crc = flate2::Crc::new();
    crc.update(text);
    out.extend(crc.sum().to_le_bytes());
    out.extend((text.len() as u32).to_le_bytes());
    out
}

/// `text` as gzip members of `member` bytes of text each, cut mid-line (bgzip's layout
/// without its extra field; `cat a.gz b.gz` is the same).
fn gzip_members(text: &[u8], member: usize) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::new();
    for chunk in text.chunks(member) {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(chunk).expect("write");
        out.extend(e.finish().expect("finish"));
    }
    out
}

/// `text` in BGZF (the SAM/BAM spec's blocked gzip, what `bgzip` writes): gzip members of
/// `block` bytes of text each whose header carries the `BC` extra field with the block's
/// size, then the spec's empty end-of-file block.
fn bgzf(text: &[u8], block: usize) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::new();
    for chunk in text.chunks(block) {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(chunk).expect("write");
        let data = e.finish().expect("finish");
        // Header (12) + extra field (6) + data + CRC-32 and size (8), minus one.
        let bsize = u16::try_from(12 + 6 + data.len() + 8 - 1).expect("a BGZF block < 64 KiB");
        out.extend([
            0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 6, 0, b'B', b'C', 2, 0,
        ]);
        out.extend(bsize.to_le_bytes());
        out.extend(&data);
        let mut crc = flate2::Crc::new();
        crc.update(chunk);
        out.extend(crc.sum().to_le_bytes());
        out.extend((chunk.len() as u32).to_le_bytes());
    }
    out.extend([
        0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 6, 0, b'B', b'C', 2, 0, 0x1b, 0, 3, 0, 0, 0, 0, 0,
        0, 0, 0, 0,
    ]);
    out
}

/// A gzip object of many members is cut at its members (parts gzipped and concatenated,
/// and BGZF with its block-size field); a gzip stream of one member is read whole.
#[test]
fn a_multi_member_gzip_object_is_split_at_its_members_with_the_same_rows() {
    assert_cut_at_compressed_parts(
        "gz",
        gzip_members,
        |text| gzip_members(text, text.len()),
        "first gzip member does not end within its first MiB",
    );
    assert_cut_at_compressed_parts(
        "gz",
        bgzf,
        |text| gzip_members(text, text.len()),
        "first gzip member does not end within its first MiB",
    );
}

/// WARC records written one gzip member each, with HTTP responses; every few records a
/// record split over two members (the second cannot start a slice), and one record of
/// 40 KB that does not compress, larger than a slice. Sliced at 4 KiB by 1 and 3
/// workers, the rows are those of reading it whole; the same object cut short in its
/// last record gives, under `on_error: skip`, the rows before it either way.
#[test]
fn a_warc_gz_is_split_at_its_record_members_with_the_same_rows() {
    use std::io::Write;
    let data = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(data.path().join("in")).expect("mkdir");
    let gz = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).expect("write");
        e.finish().expect("finish")
    };
    let mut out = Vec::new();
    for i in 0..300 {
        let body = format!(
            "<html><body><p>page {i}</p>{}</body></html>",
            "<p>words and more words</p>".repeat(i % 40)
        );
        let http = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let record = format!(
            "WARC/1.1\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{i:08}>\r\nWARC-Target-URI: \
             http://example.com/{i}\r\nWARC-Date: 2026-01-01T00:00:00Z\r\nContent-Type: \
             application/http; msgtype=response\r\nContent-Length: {}\r\n\r\n{http}\r\n\r\n",
            http.len()
        );
        let record = if i == 150 {
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let noise: String = (0..40_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b'!' + (x % 90) as u8)
                })
                .collect();
            format!(
                "WARC/1.1\r\nWARC-Type: resource\r\nWARC-Target-URI: file:///noise\r\n\
                 Content-Length: {}\r\n\r\n{noise}\r\n\r\n",
                noise.len()
            )
        } else {
            record
        };
        if i % 11 == 5 {
            let (a, b) = record.as_bytes().split_at(record.len() / 3);
            out.extend(gz(a));
            out.extend(gz(b));
        } else {
            out.extend(gz(record.as_bytes()));
        }
    }
    std::fs::write(data.path().join("in/crawl.warc.gz"), &out).expect("write");
    let source = format!("  uri: {}/in/crawl.warc.gz", data.path().display());
    let slices = assert_slices_equal_whole(data.path(), &source, "[]", "4KiB");
    assert!(slices > 5, "{slices} slices");

    let cut = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(cut.path().join("in")).expect("mkdir");
    std::fs::write(cut.path().join("in/crawl.warc.gz"), &out[..out.len() - 30]).expect("write");
    let source = format!("  uri: {}/in/crawl.warc.gz", cut.path().display());
    assert_slices_equal_whole_under(
        cut.path(),
        &source,
        "[]",
        "4KiB",
        "  on_error: skip\n  max_error_ratio: 1\n",
    );
}

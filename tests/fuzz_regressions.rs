//! The fuzz targets' entry points (`kiln::fuzz`, driven by `make fuzz`) on inputs that
//! have broken parsers elsewhere, and every input the fuzzers found that made kiln
//! panic, each named after what it reproduces. Each must come back with a result or an
//! error, never a panic.

use kiln::formats::Compression;
use kiln::spec::{FormatName, OnError};

fn decode_all_ways(format: FormatName, compression: Compression, data: &[u8]) {
    for on_error in [OnError::Fail, OnError::Skip] {
        let _ = kiln::fuzz::decode(format, compression, data, on_error);
    }
}

#[test]
fn decoders_take_garbage() {
    let inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\n\n\n".to_vec(),
        b"\xff\xfe\x00\x00garbage".to_vec(),
        b"{\"a\":".to_vec(),
        b"a,b\n\"1,2\n3,4".to_vec(),
        b"PAR1".to_vec(),
        b"PAR1\x00\x00\x00\x00PAR1".to_vec(),
        b"PAR1\xff\xff\xff\x7fPAR1".to_vec(),
        [b"PAR1".as_slice(), &[0x15; 64], b"\x40\x00\x00\x00PAR1"].concat(),
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00".to_vec(),
        b"\x28\xb5\x2f\xfd\x00\x58".to_vec(),
        "[".repeat(100_000).into_bytes(),
    ];
    for data in &inputs {
        for format in [
            FormatName::Jsonl,
            FormatName::Csv,
            FormatName::Text,
            FormatName::Parquet,
        ] {
            decode_all_ways(format, Compression::None, data);
        }
        decode_all_ways(FormatName::Jsonl, Compression::Gzip, data);
        decode_all_ways(FormatName::Csv, Compression::Zstd, data);
    }
}

#[test]
fn good_input_decodes_through_the_fuzz_entry_point() {
    let got = kiln::fuzz::decode(
        FormatName::Jsonl,
        Compression::None,
        b"{\"a\":1}\nnot json\n{\"a\":3}\n",
        OnError::Skip,
    )
    .expect("decodes");
    assert_eq!(got, (2, 1), "two rows, one record left out");
}

#[test]
fn expressions_that_nest_deeply_are_refused_not_a_stack_overflow() {
    let deep = format!("{}1{} = 1", "(".repeat(5000), ")".repeat(5000));
    kiln::fuzz::expression(&deep);
    kiln::fuzz::expression(&format!("{}x", "-".repeat(5000)));
    kiln::fuzz::expression(&format!("id{}", " + id".repeat(5000)));
    kiln::fuzz::expression("CAST(text AS DECIMAL(76, 80))");
    kiln::fuzz::expression("substr(text, 9223372036854775807, -9223372036854775808)");
}

#[test]
fn pipeline_files_that_break_parsers() {
    kiln::fuzz::pipeline_file("");
    kiln::fuzz::pipeline_file("\u{0}");
    kiln::fuzz::pipeline_file(&format!("{}a", "- ".repeat(10_000)));
    kiln::fuzz::pipeline_file(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)));
    kiln::fuzz::pipeline_file("version: 1\nname: ${A:-${B:-${C:-x}}}\n");
    kiln::fuzz::pipeline_file("a: &a [*a]\n");
}

/// Found by `decode_parquet`: a footer whose column chunk reaches past the end of the
/// file. An in-memory store answers the range short, and the parquet crate asserted
/// (panicked) on the length; kiln now checks every range it hands over.
#[test]
fn parquet_footer_range_past_the_end_is_an_error() {
    let data = std::fs::read(
        crate::util::repo().join("tests/fuzz-crashes/parquet-footer-range-past-the-end.parquet"),
    )
    .expect("the crash input");
    for on_error in [OnError::Fail, OnError::Skip] {
        let got = kiln::fuzz::decode(FormatName::Parquet, Compression::None, &data, on_error);
        let err = got.expect_err("a corrupt file").to_string();
        assert!(
            err.contains("shorter than its footer says") || err.contains("corrupt"),
            "{err}"
        );
    }
}

/// Found by `decode_parquet` once the short-range check was in: a corrupt page on which
/// the parquet crate itself panics (an index past a buffer). kiln catches it: a corrupt
/// object, named, left out under skip / dead_letter.
#[test]
fn parquet_page_that_panics_the_reader_is_a_corrupt_object() {
    let path =
        crate::util::repo().join("tests/fuzz-crashes/parquet-page-that-panics-the-reader.parquet");
    let data = std::fs::read(&path).expect("the crash input");
    let got = kiln::fuzz::decode(FormatName::Parquet, Compression::None, &data, OnError::Fail);
    let err = got.expect_err("a corrupt file").to_string();
    assert!(err.contains("corrupt Parquet data"), "{err}");
    // End to end: refused naming the object (exit 1), or left out under skip.
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(&path, dir.path().join("a.parquet")).expect("copy");
    for (policy, code) in [("fail", 1), ("skip", 0)] {
        let sink = dir.path().join(format!("out-{policy}"));
        let yaml = format!(
            "version: 1\nname: p\nsource:\n  uri: {}/a.parquet\nsink:\n  uri: {}\n\
             run:\n  on_error: {policy}\n  max_error_ratio: 1\n",
            dir.path().display(),
            sink.display()
        );
        let p = crate::util::pipeline(dir.path(), &format!("{policy}.yaml"), &yaml);
        let o = crate::util::kiln(dir.path(), &["run", "-q", p.to_str().expect("utf-8")]);
        let e = crate::util::stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{policy}: {e}");
        if policy == "fail" {
            assert!(
                e.contains("a.parquet") && e.contains("corrupt Parquet data"),
                "{e}"
            );
            assert!(
                !e.contains("internal error") && !e.contains("panicked"),
                "{e}"
            );
        }
    }
}

/// Found by `decode_parquet` (a 7-minute campaign): the Arrow schema a writer embeds in
/// the footer names a float precision that does not exist, and arrow-ipc panics reading
/// it — while the schema is inferred, before any page. Also a corrupt object, named.
#[test]
fn parquet_embedded_arrow_schema_that_panics_the_reader_is_a_corrupt_object() {
    let path =
        crate::util::repo().join("tests/fuzz-crashes/parquet-arrow-schema-unknown-float.parquet");
    let data = std::fs::read(&path).expect("the crash input");
    for on_error in [OnError::Fail, OnError::Skip] {
        let got = kiln::fuzz::decode(FormatName::Parquet, Compression::None, &data, on_error);
        let err = got.expect_err("a corrupt file").to_string();
        assert!(err.contains("corrupt Parquet data"), "{err}");
    }
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(&path, dir.path().join("b.parquet")).expect("copy");
    let yaml = format!(
        "version: 1\nname: p\nsource:\n  uri: {}/b.parquet\nsink:\n  uri: {}/out\n",
        dir.path().display(),
        dir.path().display()
    );
    let p = crate::util::pipeline(dir.path(), "p.yaml", &yaml);
    let o = crate::util::kiln(dir.path(), &["run", "-q", p.to_str().expect("utf-8")]);
    let e = crate::util::stderr(&o);
    assert_ne!(o.status.code(), Some(0), "{e}");
    assert!(
        e.contains("b.parquet") && e.contains("corrupt Parquet data") && !e.contains("panicked"),
        "{e}"
    );
}

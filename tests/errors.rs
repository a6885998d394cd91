//! Bad input gets exit 2 (the pipeline is wrong) or 1 (the data is), with a message that
//! names the place. Each message is pinned by a snapshot, so a change in what users see
//! is a visible diff.

use std::io::Write;

use crate::util::*;

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        Case {
            dir: tempfile::tempdir().expect("tmp"),
        }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, bytes).expect("write");
        p.to_string_lossy().into_owned()
    }

    fn pipeline(&self, yaml: &str) -> String {
        self.file(
            "pipeline.yaml",
            yaml.replace("TMP", &self.dir.path().to_string_lossy())
                .as_bytes(),
        )
    }

    /// Runs `kiln run` and renders exit code and stderr, with the temp dir masked.
    fn run(&self, yaml: &str) -> String {
        let p = self.pipeline(yaml);
        let o = kiln(self.dir.path(), &["run", "-q", &p]);
        let text = format!("exit: {}\n{}", o.status.code().unwrap_or(-1), stderr(&o));
        text.replace(&*self.dir.path().to_string_lossy(), "[TMP]")
    }
}

const HEAD: &str = "version: 1\nname: bad\n";

fn jsonl_source(extra: &str) -> String {
    format!("{HEAD}source:\n  uri: sample-data/text/*.jsonl\n{extra}sink:\n  uri: TMP/out\n")
}

#[test]
fn malformed_yaml() {
    insta::assert_snapshot!(Case::new().run("version: 1\nname: [unclosed\nsource:\n  uri: x\n"));
}

#[test]
fn unknown_step_lists_the_steps() {
    insta::assert_snapshot!(
        Case::new().run(&jsonl_source("steps:\n  - fliter: \"lang = 'en'\"\n"))
    );
}

/// Every step's error at once (as Vector reports every component's), each at its own
/// line, not only the first.
#[test]
fn every_bad_step_is_reported_at_once() {
    insta::assert_snapshot!(Case::new().run(&jsonl_source(
        "steps:\n  - fliter: \"lang = 'en'\"\n  - select: [id]\n  - limit: many\n  - text.normalize:\n      column: text\n      from: nfc\n"
    )));
}

#[test]
fn unknown_field_lists_the_fields() {
    insta::assert_snapshot!(Case::new().run(&format!(
        "{HEAD}source:\n  uri: sample-data/text/*.jsonl\nsink:\n  uri: TMP/out\n  max_row: 5\n"
    )));
}

#[test]
fn unknown_column_in_expression() {
    insta::assert_snapshot!(
        Case::new().run(&jsonl_source("steps:\n  - filter: \"length(txt) > 3\"\n"))
    );
}

#[test]
fn filter_that_is_not_boolean() {
    insta::assert_snapshot!(Case::new().run(&jsonl_source(
        "steps:\n  - select: [id, text]\n  - filter: \"length(text)\"\n"
    )));
}

#[test]
fn cast_to_an_unknown_type() {
    insta::assert_snapshot!(Case::new().run(&jsonl_source("steps:\n  - cast: { score: floot }\n")));
}

#[test]
fn unset_environment_variable() {
    insta::assert_snapshot!(Case::new().run(&format!(
        "{HEAD}source:\n  uri: ${{KILN_TEST_SURELY_UNSET}}/x.jsonl\nsink:\n  uri: TMP/out\n"
    )));
}

#[test]
fn missing_source() {
    insta::assert_snapshot!(Case::new().run(&format!(
        "{HEAD}source:\n  uri: TMP/does-not-exist.jsonl\nsink:\n  uri: TMP/out\n"
    )));
}

#[test]
fn zero_matched_objects() {
    let c = Case::new();
    c.file("in/a.csv", b"a\n1\n");
    insta::assert_snapshot!(c.run(&format!(
        "{HEAD}source:\n  uri: TMP/in/*.jsonl\nsink:\n  uri: TMP/out\n"
    )));
}

#[test]
fn malformed_json_line() {
    let c = Case::new();
    c.file(
        "in/a.jsonl",
        b"{\"a\": 1}\n{\"a\": 2}\n{\"a\": 3, \"b\" 4}\n{\"a\": 4}\n",
    );
    insta::assert_snapshot!(c.run(&format!(
        "{HEAD}source:\n  uri: TMP/in/a.jsonl\nsink:\n  uri: TMP/out\n"
    )));
}

#[test]
fn truncated_gzip() {
    let c = Case::new();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..20_000 {
        writeln!(gz, "{{\"i\": {i}, \"t\": \"row number {i}\"}}").expect("write");
    }
    let full = gz.finish().expect("finish");
    c.file("in/a.jsonl.gz", &full[..full.len() * 2 / 3]);
    insta::assert_snapshot!(c.run(&format!(
        "{HEAD}source:\n  uri: TMP/in/a.jsonl.gz\nsink:\n  uri: TMP/out\n"
    )));
}

#[test]
fn csv_row_with_wrong_field_count() {
    let c = Case::new();
    c.file("in/a.csv", b"id,name\n1,x\n2,y\n3,z,extra\n4,w\n");
    insta::assert_snapshot!(c.run(&format!(
        "{HEAD}source:\n  uri: TMP/in/a.csv\nsink:\n  uri: TMP/out\n"
    )));
}

#[test]
fn csv_row_with_wrong_field_count_past_inference() {
    let c = Case::new();
    c.file("in/a.csv", b"id,name\n1,x\n2,y\n3,z,extra\n4,w\n");
    insta::assert_snapshot!(c.run(&format!(
        "{HEAD}source:\n  uri: TMP/in/a.csv\n  schema: {{ id: int64, name: string }}\nsink:\n  uri: TMP/out\n"
    )));
}

#[test]
fn cast_of_a_value_that_does_not_convert() {
    let c = Case::new();
    c.file("in/a.csv", b"id,amount\n1,2.5\n2,lots\n");
    insta::assert_snapshot!(c.run(&format!(
        "{HEAD}source:\n  uri: TMP/in/a.csv\n  schema: {{ id: int64, amount: string }}\nsteps:\n  - cast: {{ amount: float64 }}\nsink:\n  uri: TMP/out\n"
    )));
}

#[test]
fn later_object_with_a_conflicting_type() {
    let c = Case::new();
    c.file("in/a.jsonl", b"{\"id\": 1, \"n\": 5}\n");
    c.file("in/b.jsonl", b"{\"id\": 2, \"n\": \"five\"}\n");
    insta::assert_snapshot!(c.run(&format!(
        "{HEAD}source:\n  uri: TMP/in/*.jsonl\nsink:\n  uri: TMP/out\n"
    )));
}

#[test]
fn sink_of_a_different_pipeline_is_refused() {
    let c = Case::new();
    c.file("in/a.jsonl", b"{\"id\": 1}\n");
    let first = c.run(&format!(
        "{HEAD}source:\n  uri: TMP/in/a.jsonl\nsink:\n  uri: TMP/out\n"
    ));
    assert!(first.starts_with("exit: 0"), "{first}");
    insta::assert_snapshot!(
        c.run("version: 1\nname: other\nsource:\n  uri: TMP/in/a.jsonl\nsink:\n  uri: TMP/out\n")
    );
}

#[test]
fn validate_refuses_a_sink_that_is_an_existing_file() {
    // Regression: validate passed, and run then failed writing `_kiln/plan.json`.
    let dir = tempfile::tempdir().expect("tmp");
    write_docs(&dir.path().join("in/a.jsonl"), 0, 5);
    std::fs::write(dir.path().join("taken"), b"not a folder").expect("write");
    let p = pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "version: 1\nname: f\nsource:\n  uri: {}/in/*.jsonl\nsink:\n  uri: {}/taken\n",
            dir.path().display(),
            dir.path().display()
        ),
    );
    for cmd in ["validate", "run"] {
        let o = kiln(dir.path(), &[cmd, p.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains("is an existing file"), "{}", stderr(&o));
    }
}

#[test]
fn a_file_name_too_long_is_named_not_a_panic() {
    // Regression: a partition folder past the file system's name limit ended in a panic
    // inside the upload ("Already shut down") instead of naming the path.
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(dir.path().join("in")).expect("mkdir");
    std::fs::write(
        dir.path().join("in/a.jsonl"),
        format!("{{\"id\":1,\"k\":\"{}\"}}\n", "x".repeat(300)),
    )
    .expect("write");
    let p = pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "version: 1\nname: long\nsource:\n  uri: {}/in/*.jsonl\n\
             sink:\n  uri: {}/out\n  partition_by: [k]\n",
            dir.path().display(),
            dir.path().display()
        ),
    );
    let o = kiln(dir.path(), &["run", "-q", p.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("File name too long"), "{err}");
    assert!(err.contains("/part-00000-00000.parquet"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("Already shut down"),
        "{err}"
    );
}

/// A 1 MiB tmpfs, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_named_not_a_panic() {
    // Regression: "No space left on device" ended in a panic inside the upload
    // ("Already shut down"). The sink is on a 1 MiB tmpfs, which needs root (as the Slurm
    // test does); elsewhere the test says it did not run.
    let dir = tempfile::tempdir().expect("tmp");
    let mnt = dir.path().join("small");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        assert!(
            std::env::var_os("CI").is_none() || !is_root(),
            "root under CI but tmpfs could not be mounted"
        );
        eprintln!("\n!!!! SKIPPED: cannot mount a tmpfs (not root) !!!!\n");
        return;
    }
    let _disk = SmallDisk(mnt.clone());
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!(
            "{{\"id\":{i},\"t\":\"{}\"}}\n",
            format!("{i:x}").repeat(40)
        ));
    }
    std::fs::create_dir_all(dir.path().join("in")).expect("mkdir");
    std::fs::write(dir.path().join("in/a.jsonl"), text).expect("write");
    let p = pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "version: 1\nname: full\nsource:\n  uri: {}/in/*.jsonl\n\
             sink:\n  uri: {}/out\n  compression: none\n",
            dir.path().display(),
            mnt.display()
        ),
    );
    let o = kiln(dir.path(), &["run", "-q", p.to_str().expect("utf-8")]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("/out/part-00000-00000.parquet"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("Already shut down"),
        "{err}"
    );
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

//! The Python wheel: `make test` packs the binary it just built and `python/kiln` into a
//! wheel with maturin (as `make wheel` does with the release build) into
//! `target/wheels-test/`. This test installs it into a fresh virtualenv, with pyarrow
//! from `.wheelhouse/` and nothing else (no network, no system site-packages, no
//! PYTHONPATH), and runs the Python-step example from Python: `kiln` on the venv's PATH,
//! `import kiln`, `python -m kiln.step`, `kiln.run`, `kiln.open`.

use std::path::PathBuf;
use std::process::Command;

use crate::util::*;

fn built_wheel() -> Option<PathBuf> {
    let dir = repo().join("target/wheels-test");
    let wheel = std::fs::read_dir(&dir).ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
    });
    if wheel.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no wheel in {} under CI: `make test` builds it",
            dir.display()
        );
        eprintln!(
            "\n!!!! SKIPPED: no wheel in target/wheels-test (run through `make test`) !!!!\n"
        );
    }
    wheel
}

#[test]
fn the_wheel_installs_into_a_fresh_venv_and_runs_a_python_step() {
    let Some(wheel) = built_wheel() else { return };
    let venv = tempfile::tempdir().expect("tmp");
    let v = venv.path();
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(v)
        .output()
        .expect("python3 -m venv");
    assert!(made.status.success(), "{}", stderr(&made));
    let pip = Command::new(v.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-index",
        ])
        .arg("--find-links")
        .arg(repo().join(".wheelhouse"))
        .arg(&wheel)
        .env_remove("PYTHONPATH")
        .output()
        .expect("pip");
    assert!(
        pip.status.success(),
        "pip install {}:\n{}",
        wheel.display(),
        stderr(&pip)
    );

    // The wheel holds the binary this test run uses: not a stale one.
    let installed = v.join("bin/kiln");
    assert!(
        std::fs::read(&installed).expect("the wheel puts kiln in the venv's bin")
            == std::fs::read(env!("CARGO_BIN_EXE_kiln")).expect("the test's kiln"),
        "{} is not the kiln just built: run `make test`",
        wheel.display()
    );

    let out = tempfile::tempdir().expect("tmp");
    let script = r#"
import os, shutil, sys
import kiln
assert kiln.binary() == os.path.join(sys.prefix, "bin", "kiln"), kiln.binary()
assert "site-packages" in kiln.__file__, kiln.__file__
r = kiln.run("examples/python-step/pipeline.yaml", env={"KILN_PYTHON": sys.executable})
assert r.status == "succeeded" and r.rows_out == 515, r
assert [s["name"] for s in r["steps"]] == ["select", "exec", "filter"], r["steps"]
ds = kiln.open(os.path.join(os.environ["KILN_OUT"], "python-step"))
t = ds.to_table()
assert t.num_rows == 515 and "n_chars" in t.column_names
import pyarrow.compute as pc
assert pc.all(pc.equal(t["text"], pc.utf8_lower(t["text"]))).as_py()
print("wheel: ok")
"#;
    let path = std::env::var("PATH").unwrap_or_default();
    let o = Command::new(v.join("bin/python"))
        .args(["-c", script])
        .current_dir(repo())
        .env_remove("PYTHONPATH")
        .env_remove("KILN_BIN")
        .env_remove("KILN_PYTHON")
        .env("KILN_OUT", out.path())
        // As an activated venv: its bin first (the pipeline's `python3` is not used:
        // KILN_PYTHON names the venv's own interpreter).
        .env("PATH", format!("{}:{path}", v.join("bin").display()))
        .output()
        .expect("python");
    assert!(
        o.status.success() && stdout(&o).contains("wheel: ok"),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let version = Command::new(&installed)
        .arg("--version")
        .output()
        .expect("kiln --version");
    assert!(
        stdout(&version).starts_with("kiln "),
        "{}",
        stdout(&version)
    );
}

//! Tabular features end to end: statistics fitted on the training split checked against
//! exact arithmetic on the CSV, the transform checked row by row, the same statistics
//! applied to the validation split with `stats_from` (and reproducing the training
//! encoding on the training data), a resumed run binding the stored statistics, and the
//! errors a user meets.

use std::collections::HashMap;
use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, UInt8Type, UInt32Type};

use crate::util::*;

/// The sample CSV read with arrow's own reader (not kiln's).
fn read_csv(name: &str) -> RecordBatch {
    let path = repo().join("sample-data/customers").join(name);
    let format = arrow::csv::reader::Format::default().with_header(true);
    let (schema, _) = format
        .infer_schema(std::fs::File::open(&path).expect("csv"), None)
        .expect("schema");
    let reader = arrow::csv::ReaderBuilder::new(std::sync::Arc::new(schema))
        .with_format(format)
        .build(std::fs::File::open(&path).expect("csv"))
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat")
}

fn ints(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let a = b.column_by_name(name).expect(name);
    a.as_primitive::<Int64Type>().iter().collect()
}

fn floats(b: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let a = b.column_by_name(name).expect(name);
    a.as_primitive::<Float64Type>().iter().collect()
}

fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let a = b.column_by_name(name).expect(name);
    a.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

fn stats(sink: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(sink.join("_kiln/stats.json")).expect("stats.json");
    serde_json::from_str(&text).expect("json")
}

/// The entry of step `name` (first occurrence).
fn entry<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|e| e["step"] == name)
        .unwrap_or_else(|| panic!("no statistics for {name}: {stats}"))
}

fn one_shard(dir: &Path) -> RecordBatch {
    let shards = read_shards(dir);
    assert_eq!(shards.len(), 1, "{shards:?}");
    shards.into_values().next().expect("a shard")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn statistics_fitted_on_train_match_exact_arithmetic_and_transform_valid() {
    let out = tempfile::tempdir().expect("tmp");
    kiln_ok(out.path(), &["run", "-q", "pipelines/tabular-train.yaml"]);
    let train_sink = out.path().join("customers/train");
    let st = stats(&train_sink);
    let csv = read_csv("train.csv");

    // fill_null: mean of age over its values, exactly.
    let ages: Vec<f64> = ints(&csv, "age")
        .into_iter()
        .flatten()
        .map(|v| v as f64)
        .collect();
    let mean = ages.iter().sum::<f64>() / ages.len() as f64;
    let fill = &entry(&st, "fill_null")["columns"];
    assert!(
        close(fill["age"]["value"].as_f64().expect("mean"), mean),
        "{fill}"
    );
    assert_eq!(fill["age"]["count"], ages.len());
    assert_eq!(fill["age"]["nulls"], csv.num_rows() - ages.len());
    // mode of device, exactly (most frequent; ties to the smallest).
    let mut devices: HashMap<String, u64> = HashMap::new();
    for d in strings(&csv, "device").into_iter().flatten() {
        *devices.entry(d).or_default() += 1;
    }
    let mode = devices
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(d, _)| d.clone())
        .expect("a mode");
    assert_eq!(fill["device"]["value"], mode.as_str());

    // standardize sees age after mean imputation: same mean, population std over 800
    // rows of which the imputed ones add nothing to the squared deviations.
    let m2: f64 = ages.iter().map(|v| (v - mean) * (v - mean)).sum();
    let std = (m2 / csv.num_rows() as f64).sqrt();
    let z = &entry(&st, "standardize")["columns"]["age"];
    assert!(close(z["mean"].as_f64().expect("mean"), mean), "{z}");
    assert!(close(z["std"].as_f64().expect("std"), std), "{z}");
    assert_eq!(z["count"], csv.num_rows());

    // Vocabularies: plan in value order (nulls filled as "unknown"); country by
    // frequency with min_count 5, counts exact.
    let mut plans: Vec<String> = strings(&csv, "plan")
        .into_iter()
        .map(|p| p.unwrap_or_else(|| "unknown".into()))
        .collect();
    plans.sort();
    plans.dedup();
    let plan_vocab = &entry(&st, "one_hot")["columns"]["plan"]["values"];
    assert_eq!(plan_vocab, &serde_json::json!(plans));
    let mut countries: HashMap<String, u64> = HashMap::new();
    for c in strings(&csv, "country").into_iter().flatten() {
        *countries.entry(c).or_default() += 1;
    }
    let mut by_freq: Vec<(String, u64)> = countries.into_iter().filter(|(_, n)| *n >= 5).collect();
    by_freq.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let country = &entry(&st, "ordinal")["columns"]["country"];
    let want: Vec<&str> = by_freq.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(country["values"], serde_json::json!(want));
    let want: Vec<u64> = by_freq.iter().map(|(_, n)| *n).collect();
    assert_eq!(country["counts"], serde_json::json!(want));

    // The transform, row by row: age z-scores with the fitted numbers (imputed rows at
    // 0), one-hot plan columns, country ids.
    let train = one_shard(&train_sink);
    assert_eq!(train.num_rows(), csv.num_rows());
    let z_mean = z["mean"].as_f64().expect("mean");
    let z_std = z["std"].as_f64().expect("std");
    let fill_age = fill["age"]["value"].as_f64().expect("fill");
    let ids: HashMap<&str, u32> = want_ids(country);
    let raw_country = strings(&csv, "country");
    let out_country: Vec<Option<u32>> = train
        .column_by_name("country")
        .expect("country")
        .as_primitive::<UInt32Type>()
        .iter()
        .collect();
    let plan = strings(&csv, "plan");
    for (r, (age, z)) in ints(&csv, "age")
        .iter()
        .zip(floats(&train, "age"))
        .enumerate()
    {
        let x = age.map_or(fill_age, |a| a as f64);
        assert!(
            close(z.expect("no nulls left"), (x - z_mean) / z_std),
            "row {r}"
        );
        let p = plan[r].clone().unwrap_or_else(|| "unknown".into());
        let hot = train
            .column_by_name(&format!("plan_{p}"))
            .expect("a column per plan")
            .as_primitive::<UInt8Type>();
        assert_eq!(hot.value(r), 1, "row {r} plan {p}");
        let want = raw_country[r]
            .as_deref()
            .map(|c| ids.get(c).copied().unwrap_or(ids.len() as u32));
        assert_eq!(out_country[r], want, "row {r}");
    }

    // Validation: the training statistics, not its own. Unseen values go out of
    // vocabulary.
    kiln_ok(out.path(), &["run", "-q", "pipelines/tabular-valid.yaml"]);
    let valid_sink = out.path().join("customers/valid");
    let vcsv = read_csv("valid.csv");
    let valid = one_shard(&valid_sink);
    assert_eq!(valid.schema().fields().len(), train.schema().fields().len());
    let vplan = strings(&vcsv, "plan");
    let oov = valid
        .column_by_name("plan___oov__")
        .expect("oov column")
        .as_primitive::<UInt8Type>();
    let mut unseen = 0;
    for (r, age) in ints(&vcsv, "age").iter().enumerate() {
        let x = age.map_or(fill_age, |a| a as f64);
        let z = floats(&valid, "age")[r].expect("value");
        assert!(close(z, (x - z_mean) / z_std), "valid row {r}");
        if vplan[r].as_deref() == Some("enterprise") {
            assert_eq!(oov.value(r), 1, "row {r}");
            unseen += 1;
        }
    }
    assert!(
        unseen > 0,
        "valid.csv has plans the training data never had"
    );
    let vcountry = strings(&vcsv, "country");
    let vids = valid
        .column_by_name("country")
        .expect("country")
        .as_primitive::<UInt32Type>();
    let za = (0..vcsv.num_rows()).filter(|&r| vcountry[r].as_deref() == Some("ZA"));
    for r in za {
        assert_eq!(vids.value(r), ids.len() as u32, "ZA is out of vocabulary");
    }
    assert!(
        !valid_sink.join("_kiln/stats.json").exists(),
        "nothing is fitted with stats_from"
    );

    // The validation pipeline on the training data reproduces the training encoding.
    let replay = out.path().join("replay");
    kiln_ok(
        out.path(),
        &[
            "run",
            "-q",
            "pipelines/tabular-valid.yaml",
            "--set",
            "source.uri=sample-data/customers/train.csv",
            "--set",
            &format!("sink.uri={}", replay.display()),
        ],
    );
    let again = one_shard(&replay);
    for f in train.schema().fields() {
        assert_eq!(
            again
                .column_by_name(f.name())
                .expect("same columns")
                .as_ref(),
            train.column_by_name(f.name()).expect("column").as_ref(),
            "column {}",
            f.name()
        );
    }
}

fn want_ids(country: &serde_json::Value) -> HashMap<&str, u32> {
    country["values"]
        .as_array()
        .expect("values")
        .iter()
        .enumerate()
        .map(|(i, v)| (v.as_str().expect("string"), i as u32))
        .collect()
}

#[test]
fn a_resumed_run_binds_the_stored_statistics_instead_of_refitting() {
    let out = tempfile::tempdir().expect("tmp");
    kiln_ok(out.path(), &["run", "-q", "pipelines/tabular-train.yaml"]);
    let sink = out.path().join("customers/train");
    // As if the run had stopped after its fit: no task committed, statistics stored.
    for f in files(&sink) {
        let rel = f
            .strip_prefix(&sink)
            .expect("below")
            .to_string_lossy()
            .into_owned();
        if rel != "_kiln/stats.json" && rel != "_kiln/plan.json" {
            std::fs::remove_file(&f).expect("remove");
        }
    }
    // A tampered mean shows which statistics the rerun used.
    let mut st = stats(&sink);
    let steps = st["steps"].as_array_mut().expect("steps");
    steps[0]["columns"]["age"]["value"] = serde_json::json!(1000.0);
    std::fs::write(sink.join("_kiln/stats.json"), st.to_string()).expect("write");
    kiln_ok(out.path(), &["run", "-q", "pipelines/tabular-train.yaml"]);
    let z = &entry(&st, "standardize")["columns"]["age"];
    let (m, s) = (
        z["mean"].as_f64().expect("mean"),
        z["std"].as_f64().expect("std"),
    );
    let csv = read_csv("train.csv");
    let shard = one_shard(&sink);
    let r = ints(&csv, "age")
        .iter()
        .position(Option::is_none)
        .expect("a null age");
    assert!(close(
        floats(&shard, "age")[r].expect("filled"),
        (1000.0 - m) / s
    ));
    let manifest = std::fs::read_to_string(sink.join("_kiln/manifest.json")).expect("manifest");
    assert!(
        manifest.contains("plan___oov__"),
        "the manifest has the fitted schema"
    );
}

#[test]
fn stats_from_without_statistics_or_without_the_step_is_refused() {
    let out = tempfile::tempdir().expect("tmp");
    let dir = out.path();
    let empty = dir.join("nothing");
    std::fs::create_dir_all(&empty).expect("dir");
    let p = pipeline(
        dir,
        "p.yaml",
        &format!(
            "version: 1\nname: t\nsource:\n  uri: sample-data/customers/valid.csv\nstats_from: {}\n\
             steps:\n  - standardize: {{ columns: [support_calls] }}\nsink:\n  uri: {}\n",
            empty.display(),
            dir.join("o").display()
        ),
    );
    let o = kiln(dir, &["run", "-q", p.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("nothing/_kiln/stats.json"),
        "{}",
        stderr(&o)
    );

    kiln_ok(dir, &["run", "-q", "pipelines/tabular-train.yaml"]);
    let p = pipeline(
        dir,
        "p2.yaml",
        &format!(
            "version: 1\nname: t\nsource:\n  uri: sample-data/customers/valid.csv\nstats_from: {}\n\
             steps:\n  - standardize: {{ columns: [support_calls] }}\n  - standardize: {{ columns: [user_id] }}\n\
             sink:\n  uri: {}\n",
            dir.join("customers/train").display(),
            dir.join("o2").display()
        ),
    );
    let o = kiln(dir, &["run", "-q", p.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("step 1 `standardize`") && e.contains("no entry for column `support_calls`"),
        "{e}"
    );
    assert!(!dir.join("o2").exists(), "nothing written");
}

/// Every fitted tabular step (moments, quantile sketches, value counts) fitted by two
/// workers at once, each observing its share of the tasks: the statistics and the
/// shards are the single run's, bit for bit.
#[test]
fn two_workers_fit_what_one_fits_and_a_fit_error_names_the_step() {
    let out = tempfile::tempdir().expect("tmp");
    let small = ["--set", "run.task_bytes=8KiB"];
    let single = out.path().join("single");
    let mut args = vec!["run", "-q", "pipelines/tabular-train.yaml"];
    args.extend(small);
    kiln_ok(&single, &args);
    let two = out.path().join("two");
    let children: Vec<_> = ["0/2", "1/2"]
        .iter()
        .map(|w| {
            std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
                .current_dir(repo())
                .env("KILN_OUT", &two)
                .args(&args)
                .args(["--worker", w])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().expect("wait");
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (a, b) = (single.join("customers/train"), two.join("customers/train"));
    assert!(shard_files(&a).len() > 1, "several tasks");
    assert!(shard_files(&a) == shard_files(&b), "the shards differ");
    let stats = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("_kiln/stats.json")).expect("stats"))
            .expect("json")
    };
    assert_eq!(stats(&a), stats(&b));
    assert!(
        stats(&a).to_string().contains("median"),
        "quantile sketches"
    );

    let dir = out.path();
    let p = pipeline(
        dir,
        "p.yaml",
        &format!(
            "version: 1\nname: t\nsource:\n  uri: sample-data/customers/train.csv\n\
             steps:\n  - ordinal: {{ columns: [user_id], max_distinct: 100 }}\nsink:\n  uri: {}\n",
            dir.join("o").display()
        ),
    );
    let o = kiln(dir, &["run", "-q", p.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("step 1 `ordinal`") && e.contains("hash_bucket"),
        "{e}"
    );
}

#[test]
fn the_transform_pass_gives_the_same_shards_from_kept_batches_as_from_the_objects() {
    // 3.6 MB of CSV of small numbers, about 10 MB decoded: kept for the transform pass
    // under the default memory_limit; under 16 MiB the fit pass starts keeping (the
    // stored input is below half of it), passes the budget, drops what it kept, and the
    // transform pass reads and parses the objects again.
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    for part in 0..3 {
        let mut csv = String::from("id,a,b,c,d,e,x,city\n");
        for i in 0..50_000 {
            let k = part * 50_000 + i;
            let x = if k % 17 == 0 {
                String::new()
            } else {
                format!("{}", k % 10)
            };
            let city = ["Oslo", "Lima", "Pune", "Kobe", "Graz"][k % 5];
            csv.push_str(&format!(
                "{k},{},{},{},{},{},{x},{city}\n",
                k % 3,
                k % 7,
                k % 2,
                k % 9,
                k % 5
            ));
        }
        std::fs::write(input.join(format!("part-{part}.csv")), csv).expect("write");
    }
    let yaml = format!(
        "version: 1\nname: kept\nsource:\n  uri: {}/*.csv\n\
         steps:\n  - fill_null: {{ mean: [x] }}\n  - standardize: {{ columns: [x, a] }}\n\
         \x20 - one_hot: {{ columns: [city] }}\nsink:\n  uri: ${{KILN_OUT}}/out\n\
         run:\n  task_bytes: 1MiB\n",
        input.display()
    );
    let p = pipeline(dir.path(), "p.yaml", &yaml);
    let p = p.to_str().expect("utf-8");
    let run = |out: &Path, extra: &[&str]| -> String {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .current_dir(repo())
            .env("KILN_OUT", out)
            .env("KILN_LOG", "kiln=info")
            .args(["run", "-q", p])
            .args(extra)
            .output()
            .expect("kiln runs");
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    let kept = dir.path().join("kept");
    let log = run(&kept, &[]);
    assert!(log.contains("kept the decoded input"), "{log}");
    let reread = dir.path().join("reread");
    let log = run(&reread, &["--set", "run.memory_limit=16MiB"]);
    assert!(log.contains("later passes read it again"), "{log}");
    assert!(!log.contains("kept the decoded input"), "{log}");
    let (a, b) = (
        shard_files(&kept.join("out")),
        shard_files(&reread.join("out")),
    );
    assert!(!a.is_empty());
    assert!(a == b, "the same shards, byte for byte");
    assert_eq!(total_rows(&kept.join("out")), 150_000);
    assert_eq!(
        std::fs::read(kept.join("out/_kiln/stats.json")).expect("stats"),
        std::fs::read(reread.join("out/_kiln/stats.json")).expect("stats"),
    );
}

/// Full-pass and fitted steps in any order on one worker: each stage runs on the settled
/// output of the stages before it, so a fit after a dedup learns from the rows the dedup
/// keeps and a dedup after a fit compares transformed rows. Every order gives the same
/// shards on 1 thread with whole-object tasks as on 2 threads with small slices.
#[test]
fn full_pass_and_fitted_steps_run_in_any_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let source = repo().join("sample-data/customers/train.csv");
    let input = read_csv("train.csv");
    let run = |name: &str, steps: &str, threads: usize, task_bytes: &str| {
        let sink = dir.path().join(format!("{name}-{threads}-{task_bytes}"));
        let p = pipeline(
            dir.path(),
            &format!("{name}.yaml"),
            &format!(
                "version: 1\nname: {name}\nsource:\n  uri: {}\nsteps:\n{steps}sink:\n  uri: {}\nrun:\n  threads: {threads}\n  task_bytes: {task_bytes}\n",
                source.display(),
                sink.display()
            ),
        );
        kiln_ok(dir.path(), &["run", "-q", &p.to_string_lossy()]);
        sink
    };
    let orders = [
        (
            "dedup-standardize",
            "  - dedup.exact: { column: note }\n  - standardize: { columns: [income], ddof: 0 }\n",
        ),
        (
            "standardize-dedup",
            "  - standardize: { columns: [income], ddof: 0 }\n  - dedup.exact: { column: note }\n",
        ),
        (
            "minhash-onehot",
            "  - dedup.minhash: { column: note }\n  - one_hot: { columns: [device] }\n",
        ),
        (
            "onehot-minhash",
            "  - one_hot: { columns: [device] }\n  - dedup.minhash: { column: note }\n",
        ),
        (
            "dedup-standardize-dedup",
            "  - dedup.exact: { column: note }\n  - standardize: { columns: [income], ddof: 0 }\n  - dedup.exact: { column: country }\n",
        ),
        (
            "standardize-dedup-onehot",
            "  - standardize: { columns: [income], ddof: 0 }\n  - dedup.exact: { column: note }\n  - one_hot: { columns: [plan] }\n",
        ),
        (
            "onehot-dedup-minmax",
            "  - one_hot: { columns: [device] }\n  - dedup.exact: { column: note }\n  - min_max: { columns: [age] }\n",
        ),
    ];
    let rows = |sink: &Path| {
        let shards = read_shards(sink);
        let first = shards.values().next().expect("a shard");
        arrow::compute::concat_batches(&first.schema(), shards.values()).expect("concat")
    };
    // `kiln plan` says which steps decide or fit in a pass of their own, in order.
    let p = pipeline(
        dir.path(),
        "plan.yaml",
        &format!(
            "version: 1\nname: plan\nsource:\n  uri: {}\nsteps:\n{}sink:\n  uri: {}\n",
            source.display(),
            orders[0].1,
            dir.path().join("plan-sink").display()
        ),
    );
    let plan = stdout(&kiln_ok(dir.path(), &["plan", &p.to_string_lossy()]));
    let dedup = plan
        .find("decides in a full pass")
        .expect("the dedup's pass");
    let fit = plan
        .find("fitted in a pass before the run")
        .expect("the fit's pass");
    assert!(dedup < fit, "{plan}");

    let mut sinks = HashMap::new();
    for (name, steps) in orders {
        let whole = run(name, steps, 1, "1GiB");
        let sliced = run(name, steps, 1, "16KiB");
        let threads = run(name, steps, 2, "16KiB");
        assert!(
            shard_files(&sliced) == shard_files(&threads),
            "{name}: 1 and 2 threads write other bytes"
        );
        assert!(
            shard_files(&sliced).len() > 1,
            "{name}: the slices make several tasks"
        );
        // The same rows kept, in the same order. (Fitted statistics merge per-task
        // moments, so another task split can move their last bits.)
        assert_eq!(
            ints(&rows(&whole), "user_id"),
            ints(&rows(&sliced), "user_id"),
            "{name}: whole object vs slices"
        );
        // A resume binds the stored statistics and runs the full passes again: the
        // task it redoes comes out as it was.
        let before = shard_files(&sliced);
        for f in ["_SUCCESS", "_kiln/manifest.json", "_kiln/tasks/00001.json"] {
            std::fs::remove_file(sliced.join(f)).expect(f);
        }
        let again = run(name, steps, 1, "16KiB");
        assert_eq!(again, sliced);
        assert!(
            shard_files(&sliced) == before,
            "{name}: the resumed task wrote other bytes"
        );
        sinks.insert(name, whole);
    }

    // What `dedup.exact` on `note` keeps, in input order: each note's first row, and
    // every row without a note (a null is nobody's duplicate).
    let notes = strings(&input, "note");
    let mut seen = std::collections::HashSet::new();
    let first: Vec<usize> = (0..notes.len())
        .filter(|&i| notes[i].is_none() || seen.insert(notes[i].clone()))
        .collect();
    let population = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        (mean, var.sqrt())
    };

    // A fit after a dedup: the statistics of the kept rows.
    let out = one_shard(&sinks["dedup-standardize"]);
    assert_eq!(out.num_rows(), first.len());
    let incomes = floats(&input, "income");
    let kept: Vec<f64> = first.iter().filter_map(|&i| incomes[i]).collect();
    let (mean, std) = population(&kept);
    let file = stats(&sinks["dedup-standardize"]);
    let fitted = entry(&file, "standardize");
    let income = &fitted["columns"]["income"];
    assert!(
        close(income["mean"].as_f64().expect("mean"), mean),
        "{income}"
    );
    let scaled = floats(&out, "income");
    for (&i, got) in first.iter().zip(&scaled) {
        if let (Some(x), Some(got)) = (incomes[i], got) {
            assert!(close(*got, (x - mean) / std), "row {i}: {got}");
        }
    }

    // A fit before a dedup: the statistics of every row; the dedup keeps the same rows.
    let all: Vec<f64> = incomes.iter().flatten().copied().collect();
    let (mean_all, _) = population(&all);
    let file = stats(&sinks["standardize-dedup"]);
    let fitted = entry(&file, "standardize");
    let income = &fitted["columns"]["income"];
    assert!(
        close(income["mean"].as_f64().expect("mean"), mean_all),
        "{income}"
    );
    assert_eq!(
        one_shard(&sinks["standardize-dedup"]).num_rows(),
        first.len()
    );

    // Three stages: min_max after a dedup scales the kept rows to [0, 1].
    let out = one_shard(&sinks["onehot-dedup-minmax"]);
    assert_eq!(out.num_rows(), first.len());
    let ages: Vec<f64> = floats(&out, "age").into_iter().flatten().collect();
    let lo = ages.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ages.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(close(lo, 0.0) && close(hi, 1.0), "{lo} {hi}");
    assert!(
        out.column_by_name("device_mobile").is_some(),
        "{:?}",
        out.schema()
    );
}

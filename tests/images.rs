//! Image datasets end to end: the files source with ImageFolder labels, decode → resize
//! → center crop → encode (and to_tensor), read back and decoded with the `image` crate;
//! bad images and bad options refused with the object named.

use std::collections::BTreeSet;

use arrow::array::{Array, AsArray, StructArray};

use crate::util::*;

fn run_images(dir: &std::path::Path, source: &str, steps: &str) -> std::process::Output {
    let sink = dir.join("out");
    let p = pipeline(
        dir,
        "images.yaml",
        &format!(
            "version: 1\nname: images\nsource:\n  uri: {source}\n  format: files\n  \
             labels: folder\nsteps:\n{steps}sink:\n  uri: {}\nrun:\n  task_bytes: 64KiB\n",
            sink.display()
        ),
    );
    kiln(
        dir,
        &["run", "-q", "--overwrite", p.to_str().expect("utf-8")],
    )
}

#[test]
fn image_folder_to_224px_jpeg_shards_with_labels() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = run_images(
        dir.path(),
        "sample-data/images/**/*.{jpg,png,webp}",
        "  - image.decode: {}\n  - image.resize: { shorter_side: 256 }\n  \
         - image.center_crop: { size: 224 }\n  - image.encode: { format: jpeg, quality: 90 }\n  \
         - drop: [bytes]\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let shards = read_shards(&dir.path().join("out"));
    let classes = ["circle", "square", "triangle"];
    let mut seen = BTreeSet::new();
    let mut rows = 0;
    for batch in shards.values() {
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["path", "label", "label_id", "image"]);
        let path = batch
            .column_by_name("path")
            .expect("path")
            .as_string::<i32>();
        let label = batch
            .column_by_name("label")
            .expect("label")
            .as_string::<i32>();
        let id = batch
            .column_by_name("label_id")
            .expect("label_id")
            .as_primitive::<arrow::datatypes::Int64Type>();
        let image = batch
            .column_by_name("image")
            .expect("image")
            .as_any()
            .downcast_ref::<StructArray>()
            .expect("struct");
        let bytes = image.column(0).as_binary::<i32>();
        let ipath = image.column(1).as_string::<i32>();
        for r in 0..batch.num_rows() {
            rows += 1;
            let folder = path.value(r).rsplit('/').nth(1).expect("folder");
            assert_eq!(label.value(r), folder);
            assert_eq!(classes[id.value(r) as usize], folder, "dense sorted ids");
            let stem = path.value(r).rsplit_once('.').expect("extension").0;
            assert_eq!(ipath.value(r), format!("{stem}.jpg"));
            let img = image::load_from_memory(bytes.value(r)).expect("a decodable image");
            assert_eq!(
                image::guess_format(bytes.value(r)).expect("format"),
                image::ImageFormat::Jpeg
            );
            assert_eq!((img.width(), img.height()), (224, 224), "{}", path.value(r));
            seen.insert(path.value(r).to_string());
        }
    }
    assert_eq!(rows, 36);
    assert_eq!(seen.len(), 36, "every image once");
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("out/_kiln/manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(
        m["features"][3],
        serde_json::json!({"name": "image", "dtype": "image"})
    );
    assert_eq!(
        m["features"][2],
        serde_json::json!({"name": "label_id", "dtype": {"class_label": {"names": {
            "0": "circle", "1": "square", "2": "triangle"}}}})
    );
    // The shards tell `datasets` the column is an Image.
    let shard = dir
        .path()
        .join("out")
        .join(m["shards"][0]["path"].as_str().expect("path"));
    let file = std::fs::File::open(shard).expect("shard");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet");
    let md = reader
        .schema()
        .metadata()
        .get("huggingface")
        .expect("huggingface metadata");
    assert!(md.contains(r#""image": {"_type": "Image"}"#), "{md}");
    assert!(
        md.contains(
            r#""label_id": {"names": ["circle","square","triangle"], "_type": "ClassLabel"}"#
        ),
        "{md}"
    );
}

#[test]
fn to_tensor_gives_normalized_chw_floats() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = run_images(
        dir.path(),
        "sample-data/images/circle/*.png",
        "  - image.decode: {}\n  - image.resize: { size: [16, 8], filter: bicubic }\n  \
         - image.to_tensor: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] }\n  \
         - select: [path, label_id, pixel_values, pixel_values_shape]\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut rows = 0;
    for batch in read_shards(&dir.path().join("out")).values() {
        let t = batch
            .column_by_name("pixel_values")
            .expect("tensor")
            .as_list::<i32>();
        let s = batch
            .column_by_name("pixel_values_shape")
            .expect("shape")
            .as_list::<i32>();
        for r in 0..batch.num_rows() {
            rows += 1;
            let shape = s.value(r);
            let shape = shape.as_primitive::<arrow::datatypes::Int32Type>();
            assert_eq!(shape.values().to_vec(), vec![3, 8, 16]);
            let v = t.value(r);
            let v = v.as_primitive::<arrow::datatypes::Float32Type>();
            assert_eq!(v.len(), 3 * 8 * 16);
            assert!(
                v.values().iter().all(|x| (-1.0..=1.0).contains(x)),
                "normalized"
            );
            assert!(v.null_count() == 0);
        }
    }
    assert_eq!(rows, 3, "the three PNG circles");
}

#[test]
fn a_corrupt_image_and_bad_options_are_refused_clearly() {
    let dir = tempfile::tempdir().expect("tmp");
    let images = dir.path().join("imgs/dog");
    std::fs::create_dir_all(&images).expect("mkdir");
    std::fs::copy(
        repo().join("sample-data/images/circle/circle-000.jpg"),
        images.join("good.jpg"),
    )
    .expect("copy");
    let good = std::fs::read(images.join("good.jpg")).expect("read");
    std::fs::write(images.join("truncated.jpg"), &good[..good.len() / 3]).expect("write");
    std::fs::write(images.join("text.jpg"), b"this is not a JPEG").expect("write");
    let source = format!("{}/imgs/**/*.jpg", dir.path().display());
    let o = run_images(dir.path(), &source, "  - image.decode: {}\n");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("text.jpg") || err.contains("truncated.jpg"),
        "{err}"
    );
    assert!(err.contains("cannot decode the image"), "{err}");
    // The step's error names the column and the row; the runtime places the row in its
    // task.
    assert!(err.contains("column `bytes`"), "{err}");
    assert!(
        err.contains("image.decode` (row ") && err.contains(" of task 0 at this step)"),
        "{err}"
    );

    // A PNG whose header declares 60000 × 60000 pixels: refused by size, not decoded.
    let huge = dir.path().join("huge/x");
    std::fs::create_dir_all(&huge).expect("mkdir");
    let mut png =
        std::fs::read(repo().join("sample-data/images/circle/circle-008.png")).expect("png");
    png[16..20].copy_from_slice(&60000u32.to_be_bytes());
    png[20..24].copy_from_slice(&60000u32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&png[12..29]);
    png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    std::fs::write(huge.join("bomb.png"), &png).expect("write");
    let source = format!("{}/huge/**/*.png", dir.path().display());
    let o = run_images(
        dir.path(),
        &source,
        "  - image.decode: { max_bytes: 64MiB }\n",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("bomb.png") && stderr(&o).contains("max_bytes"),
        "{}",
        stderr(&o)
    );

    // Steps in the wrong order, and labels on a format without them.
    let o = run_images(
        dir.path(),
        "sample-data/images/**/*.jpg",
        "  - image.resize: { shorter_side: 10 }\n",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("put `image.decode` before this step"),
        "{}",
        stderr(&o)
    );
    let p = pipeline(
        dir.path(),
        "labels.yaml",
        "version: 1\nname: l\nsource:\n  uri: sample-data/text/*.jsonl\n  labels: folder\nsink:\n  uri: out2\n",
    );
    let o = kiln(dir.path(), &["run", "-q", p.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("source.labels needs the files format"),
        "{}",
        stderr(&o)
    );
}

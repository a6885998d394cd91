//! `kiln inspect`: a kiln dataset's summary (splits, shards, rows, bytes, tokens, schema,
//! column statistics, step counters, the pipeline that made it), or, for any file or
//! glob, its schema and first rows, with the row groups, page index and encodings of
//! Parquet files.
//!
//! One role, though over 600 lines: what `kiln inspect` prints. The dataset summary and
//! the file view share the schema and size formatting, so they stay in one file.

use std::fmt::Write as _;
use std::sync::Arc;

use parquet::file::metadata::ParquetMetaData;

use crate::error::{Error, Result};
use crate::formats::{
    self, DecodeContext, ObjectInput, RandomAccess, reader::BlockingObjectReader,
};
use crate::sink::{self, Manifest, StoredPlan, TaskRecord};
use crate::spec::{self, ByteSize};
use crate::storage::{self, Object as ObjectMeta};

/// Parquet files whose footers are read for the per-file table.
const MAX_FILES: usize = 50;

/// What `kiln inspect URI` prints. `rows`: rows to show (files: 10 unless given; a
/// dataset: none unless given, then from its first shard).
pub fn inspect(rt: &tokio::runtime::Runtime, uri: &str, rows: Option<usize>) -> Result<String> {
    let has_glob = uri.contains(['*', '?', '[', '{']);
    if !has_glob && let Some(text) = dataset(rt, uri, rows)? {
        return Ok(text);
    }
    files(rt, uri, rows.unwrap_or(10))
}

/// The summary of a kiln dataset at `uri`, or `None` when there is none there.
fn dataset(rt: &tokio::runtime::Runtime, uri: &str, rows: Option<usize>) -> Result<Option<String>> {
    let Ok(location) = storage::open(uri, &spec::Storage::default()) else {
        return Ok(None);
    };
    // A file, or a folder without a plan, is not a dataset: inspect it as files.
    let Ok(Some(stored)) = rt.block_on(sink::read_plan(&location)) else {
        return Ok(None);
    };
    let records = rt.block_on(sink::committed(&location))?;
    let written = rt.block_on(sink::read_manifest(&location))?;
    let missing = stored.missing(&records);
    let state = match (&written, missing.len()) {
        (Some(_), 0) => "complete".to_string(),
        (None, 0) => "all tasks committed, no manifest yet (run `kiln finalize`)".to_string(),
        (_, n) => format!(
            "in progress: {} of {} tasks committed (`kiln status` lists the rest); \
             the figures below are of the committed tasks",
            stored.tasks.len() - n,
            stored.tasks.len()
        ),
    };
    let manifest = match written {
        Some(m) if missing.is_empty() => m,
        _ => stored.manifest(&records),
    };
    let mut s = summary(&location.display, &state, &manifest, &stored, &records);
    if let Some(first) = manifest.shards.first()
        && first.index.is_some()
    {
        let _ = writeln!(
            s,
            "\nMegatron shards: each `.bin` with its `.idx`; read one with \
             megatron.core.datasets.indexed_dataset.IndexedDataset(\"{}{}\")",
            location.display,
            first.path.trim_end_matches(".bin")
        );
    } else if let Some(first) = manifest.shards.first()
        && first.mds.is_some()
    {
        let dir = first.path.rfind('/').map_or("", |i| &first.path[..i]);
        let _ = writeln!(
            s,
            "\nMDS shards, listed in index.json; read them with \
             streaming.StreamingDataset(local=\"{}{dir}\")",
            location.display
        );
    } else if let Some(first) = manifest.shards.first()
        && first.path.ends_with(".tar")
    {
        let _ = writeln!(
            s,
            "\nWebDataset shards; read them with webdataset.WebDataset(\"{}{}\")",
            location.display, first.path
        );
    } else if let Some(n) = rows
        && let Some(first) = manifest.shards.first()
    {
        let shard = format!("{}{}", location.display, first.path);
        let _ = writeln!(s, "\nfirst rows of {shard}:");
        s.push_str(&files(rt, &shard, n)?);
    }
    Ok(Some(s))
}

fn summary(
    display: &str,
    state: &str,
    m: &Manifest,
    stored: &StoredPlan,
    records: &std::collections::BTreeMap<usize, TaskRecord>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "dataset   {display}  ({}: {state})", m.name);
    let _ = writeln!(
        s,
        "made by   kiln {} at {}, pipeline hash {}",
        stored.kiln_version,
        m.created_at,
        short(&m.pipeline_hash)
    );
    let _ = writeln!(
        s,
        "input     {}, {}, listing sha256 {}",
        crate::report::counted(m.input.objects as u64, "object"),
        ByteSize(m.input.bytes),
        short(&m.input.listing_sha256)
    );
    let _ = writeln!(
        s,
        "rows      {} read, {} written in {} shards: {} {} ({} as Arrow)",
        m.rows_in,
        m.rows,
        m.shards.len(),
        ByteSize(m.bytes),
        if m.shards.iter().any(|s| s.index.is_some()) {
            "Megatron .bin"
        } else if m.shards.iter().any(|s| s.mds.is_some()) {
            "MDS"
        } else if m.shards.iter().any(|s| s.path.ends_with(".tar")) {
            "WebDataset tar"
        } else {
            "Parquet"
        },
        ByteSize(m.memory_bytes)
    );
    let _ = writeln!(s, "tasks     {} of {}", records.len(), stored.tasks.len());
    if let Some(t) = &m.tokens {
        let _ = writeln!(s, "tokens    {} (column `{}`)", t.tokens, t.column);
    }

    let mut table = vec![vec![
        "split".to_string(),
        "rows".into(),
        "shards".into(),
        "bytes".into(),
        "tokens".into(),
        "files".into(),
    ]];
    for sp in &m.splits {
        table.push(vec![
            sp.name.clone(),
            sp.rows.to_string(),
            sp.shards.to_string(),
            ByteSize(sp.bytes).to_string(),
            sp.tokens.map(|t| t.to_string()).unwrap_or_default(),
            sp.data_files.clone(),
        ]);
    }
    s.push('\n');
    s.push_str(&columns_table(&table));

    let mut table = vec![vec![
        "column".to_string(),
        "type".into(),
        "nulls".into(),
        "min".into(),
        "max".into(),
        "mean len".into(),
    ]];
    for c in &m.columns {
        let show = |v: &Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(x)) => x.clone(),
            Some(x) => x.to_string(),
            None => String::new(),
        };
        let present = m.rows.saturating_sub(c.stats.nulls);
        table.push(vec![
            c.name.clone(),
            c.data_type.clone(),
            c.stats.nulls.to_string(),
            show(&c.stats.min),
            show(&c.stats.max),
            match c.stats.values {
                Some(v) if present > 0 => format!("{:.1}", v as f64 / present as f64),
                _ => String::new(),
            },
        ]);
    }
    for p in &m.partition_by {
        table.push(vec![
            p.clone(),
            "(folder)".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    s.push('\n');
    s.push_str(&columns_table(&table));

    let steps: Vec<String> = m
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let counts: Vec<String> = st.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let mixture = (st.step == "mix")
                .then(|| crate::steps::mix::achieved(&st.counts))
                .flatten()
                .map(|m| format!("\n     {m}"))
                .unwrap_or_default();
            if counts.is_empty() {
                format!("  {}. {}", i + 1, st.step)
            } else {
                format!("  {}. {}: {}{mixture}", i + 1, st.step, counts.join(", "))
            }
        })
        .collect();
    if !steps.is_empty() {
        let _ = writeln!(s, "\nsteps\n{}", steps.join("\n"));
    }
    s.push_str(&pipeline_lines(&m.pipeline));
    s
}

/// The pipeline as run, one line per part (long step options cut); the whole of it is
/// in the manifest and the card.
fn pipeline_lines(p: &serde_json::Value) -> String {
    const WIDTH: usize = 100;
    let cut = |t: String| {
        if t.chars().count() > WIDTH {
            format!("{}…", t.chars().take(WIDTH).collect::<String>())
        } else {
            t
        }
    };
    let text = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(x)) => x.clone(),
        Some(x) => x.to_string(),
        None => String::new(),
    };
    let mut s = String::from("\npipeline (as run; in full in _kiln/manifest.json and README.md)\n");
    let _ = writeln!(s, "  source  {}", text(p.pointer("/source/uri")));
    let steps = p
        .get("steps")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    for (i, st) in steps.iter().enumerate() {
        let line = match st.as_object().and_then(|o| o.iter().next()) {
            Some((name, opts)) => format!("{name} {opts}"),
            None => st.to_string(),
        };
        let head = if i == 0 { "  steps  " } else { "         " };
        let _ = writeln!(s, "{head} {}. {}", i + 1, cut(line));
    }
    let mut extra = match p.pointer("/sink/format").and_then(|v| v.as_str()) {
        Some(f @ ("megatron" | "mds" | "webdataset")) => vec![f.to_string()],
        _ => vec![text(p.pointer("/sink/compression"))],
    };
    if let Some(parts) = p.pointer("/sink/partition_by").and_then(|v| v.as_array()) {
        let names: Vec<String> = parts.iter().map(|v| text(Some(v))).collect();
        extra.push(format!("partition_by {}", names.join(", ")));
    }
    let _ = writeln!(
        s,
        "  sink    {} ({})",
        text(p.pointer("/sink/uri")),
        extra.join("; ")
    );
    s
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}

/// Left-aligned columns separated by two spaces.
fn columns_table(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(s, "{}", line.join("  ").trim_end());
    }
    s
}

/// Any file or glob: the listing, the schema and the first rows; for Parquet also each
/// file's rows and row groups and the first file's column chunks.
fn files(rt: &tokio::runtime::Runtime, uri: &str, rows: usize) -> Result<String> {
    let source = storage::SourceUri::parse(uri, &spec::Storage::default())?;
    let objects = rt.block_on(source.list())?;
    let first = objects
        .first()
        .ok_or_else(|| Error::Plan(format!("`{uri}` matched no objects")))?
        .clone();
    let name = formats::format_from_name(first.path.as_ref()).ok_or_else(|| {
        Error::Plan(format!(
            "cannot tell the format of `{}` from its name",
            first.display
        ))
    })?;
    let format = formats::format_for(name);
    let compression =
        formats::Compression::resolve(spec::CompressionName::Auto, first.path.as_ref());
    let store = source.base.store.clone();
    let handle = rt.handle().clone();
    let random = |o: &ObjectMeta| RandomAccess {
        store: store.clone(),
        path: o.path.clone(),
        size: o.size,
        handle: handle.clone(),
        stats: None,
    };
    let mut cx = DecodeContext {
        schema: Arc::new(arrow::datatypes::Schema::empty()),
        schema_origin: first.display.clone(),
        strict: false,
        object: first.display.clone(),
        batch_rows: rows.max(1),
        csv: spec::CsvOptions::default(),
        projection: None,
        on_error: crate::spec::OnError::Fail,
        on_mismatch: crate::spec::OnSchemaMismatch::Fail,
        max_record_bytes: 1 << 30,
        slice: None,
    };
    let open = |cx: &DecodeContext| -> Result<ObjectInput<'static>> {
        if format.random_access() {
            Ok(ObjectInput::Random(random(&first)))
        } else {
            let raw = BlockingObjectReader::new(
                store.clone(),
                first.path.clone(),
                first.size,
                handle.clone(),
            );
            formats::decompress(compression, raw)
                .map(ObjectInput::Stream)
                .map_err(|e| Error::input(&cx.object, None, e))
        }
    };
    let total: u64 = objects.iter().map(|o| o.size).sum();
    let mut s = format!(
        "{}, {} ({:?}{})\n",
        crate::report::counted(objects.len() as u64, "object"),
        ByteSize(total),
        name,
        if compression == formats::Compression::None {
            String::new()
        } else {
            format!(", {}", compression.name())
        }
    );
    if name == spec::FormatName::Parquet {
        s.push_str(&parquet_layout(&objects, &random)?);
    }
    // The readers block on the runtime, so they run outside it.
    let schema = format.infer_schema(open(&cx)?, 1000, &cx)?;
    cx.schema = Arc::new(schema);
    let mut batches = Vec::new();
    if rows > 0 {
        format.decode(open(&cx)?, &cx, &mut |d| match d {
            formats::Decoded::Batch(b) => {
                batches.push(b);
                Ok(false)
            }
            formats::Decoded::Rejected(_) => Ok(true),
        })?;
    }
    let batches: Vec<_> = batches
        .into_iter()
        .map(|b| b.slice(0, b.num_rows().min(rows)))
        .collect();
    let table = arrow::util::pretty::pretty_format_batches(&truncated(&batches, terminal_width())?)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let _ = writeln!(
        s,
        "first: {}\nschema: {}",
        first.display,
        fmt_schema(&cx.schema)
    );
    if rows > 0 {
        let _ = writeln!(s, "{table}");
    }
    Ok(s)
}

/// The terminal's width as the shell exports it (`COLUMNS`), else 120.
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(120)
}

/// The rows as text, each cell cut so that a row fits in `width` characters: a
/// 20,000-character document shows as its first words and `…`.
fn truncated(
    batches: &[arrow::record_batch::RecordBatch],
    width: usize,
) -> Result<Vec<arrow::record_batch::RecordBatch>> {
    use arrow::array::{ArrayRef, StringArray};
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let cell = (width / b.num_columns().max(1)).saturating_sub(3).max(8);
        let options = FormatOptions::default().with_null("null");
        let mut fields = Vec::with_capacity(b.num_columns());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(b.num_columns());
        for (field, column) in b.schema().fields().iter().zip(b.columns()) {
            let f = ArrayFormatter::try_new(column.as_ref(), &options)
                .map_err(|e| Error::Internal(e.to_string()))?;
            let values: Vec<String> = (0..column.len())
                .map(|i| {
                    let text = f.value(i).to_string().replace(['\n', '\r', '\t'], " ");
                    if text.chars().count() > cell {
                        let mut t: String = text.chars().take(cell - 1).collect();
                        t.push('…');
                        t
                    } else {
                        text
                    }
                })
                .collect();
            fields.push(arrow::datatypes::Field::new(
                field.name(),
                arrow::datatypes::DataType::Utf8,
                true,
            ));
            columns.push(std::sync::Arc::new(StringArray::from(values)));
        }
        out.push(
            arrow::record_batch::RecordBatch::try_new(
                std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
                columns,
            )
            .map_err(|e| Error::Internal(e.to_string()))?,
        );
    }
    Ok(out)
}

/// Rows and row groups of each Parquet file (the first [`MAX_FILES`]), and the column
/// chunks of the first file's first row group: encodings, compression, sizes, whether
/// statistics and the page index are there.
fn parquet_layout(
    objects: &[ObjectMeta],
    random: &dyn Fn(&ObjectMeta) -> RandomAccess,
) -> Result<String> {
    let mut s = String::new();
    let mut table = vec![vec![
        "file".to_string(),
        "rows".into(),
        "row groups".into(),
        "bytes".into(),
    ]];
    let mut first: Option<ParquetMetaData> = None;
    for o in objects.iter().take(MAX_FILES) {
        let meta = formats::read_parquet_metadata(random(o), &o.display)?;
        table.push(vec![
            o.display.clone(),
            meta.file_metadata().num_rows().to_string(),
            meta.num_row_groups().to_string(),
            ByteSize(o.size).to_string(),
        ]);
        if first.is_none() {
            first = Some(meta);
        }
    }
    s.push_str(&columns_table(&table));
    if objects.len() > MAX_FILES {
        let _ = writeln!(s, "… and {} more files", objects.len() - MAX_FILES);
    }
    let Some(meta) = first else {
        return Ok(s);
    };
    let fm = meta.file_metadata();
    let _ = writeln!(
        s,
        "\nfirst file: written by {}",
        fm.created_by().unwrap_or("(unknown)")
    );
    for kv in fm.key_value_metadata().into_iter().flatten() {
        if kv.key == "ARROW:schema" {
            continue;
        }
        let _ = writeln!(s, "  {} = {}", kv.key, kv.value.as_deref().unwrap_or(""));
    }
    let mut rg_table = vec![vec![
        "row group".to_string(),
        "rows".into(),
        "compressed".into(),
        "uncompressed".into(),
    ]];
    for (i, rg) in meta.row_groups().iter().enumerate() {
        rg_table.push(vec![
            i.to_string(),
            rg.num_rows().to_string(),
            ByteSize(rg.compressed_size() as u64).to_string(),
            ByteSize(rg.total_byte_size() as u64).to_string(),
        ]);
    }
    s.push_str(&columns_table(&rg_table));
    let has_column_index = meta.column_index().is_some_and(|ci| !ci.is_empty());
    let has_offset_index = meta.offset_index().is_some_and(|oi| !oi.is_empty());
    let _ = writeln!(
        s,
        "page index: {}",
        match (has_column_index, has_offset_index) {
            (true, true) => "column index and offset index",
            (false, true) => "offset index only",
            (true, false) => "column index only",
            (false, false) => "none",
        }
    );
    if let Some(rg) = meta.row_groups().first() {
        let mut col_table = vec![vec![
            "column (row group 0)".to_string(),
            "compression".into(),
            "encodings".into(),
            "dictionary".into(),
            "statistics".into(),
            "compressed".into(),
        ]];
        for c in rg.columns() {
            let encodings: Vec<String> = c.encodings().map(|e| format!("{e:?}")).collect();
            col_table.push(vec![
                c.column_path().string(),
                // The codec (the footer does not record the level).
                format!("{:?}", c.compression())
                    .split('(')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                encodings.join(","),
                if c.dictionary_page_offset().is_some() {
                    "yes".into()
                } else {
                    "no".into()
                },
                if c.statistics().is_some() {
                    "yes".into()
                } else {
                    "no".into()
                },
                ByteSize(c.compressed_size() as u64).to_string(),
            ]);
        }
        s.push_str(&columns_table(&col_table));
    }
    Ok(s)
}

/// A schema on one line: `name: type, name: type not null`.
pub fn fmt_schema(schema: &arrow::datatypes::Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{}: {}{}",
                f.name(),
                f.data_type(),
                if f.is_nullable() { "" } else { " not null" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_cut_to_fit_the_terminal() {
        let long = "word ".repeat(1000);
        let batch = arrow::record_batch::RecordBatch::try_from_iter([
            (
                "text",
                std::sync::Arc::new(arrow::array::StringArray::from(vec![long.as_str()]))
                    as arrow::array::ArrayRef,
            ),
            (
                "n",
                std::sync::Arc::new(arrow::array::Int64Array::from(vec![7])) as _,
            ),
        ])
        .expect("batch");
        let out = truncated(&[batch], 80).expect("cut");
        let table = arrow::util::pretty::pretty_format_batches(&out)
            .expect("table")
            .to_string();
        assert!(table.lines().all(|l| l.chars().count() <= 80), "{table}");
        assert!(
            table.contains("word word") && table.contains('…'),
            "{table}"
        );
        assert!(table.contains("| 7 "), "{table}");
    }
}

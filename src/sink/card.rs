//! The dataset card: `README.md` in the sink, with the Hugging Face YAML header
//! (`configs` → `data_files` per split, `dataset_info` → features and split sizes) so
//! `datasets.load_dataset(<sink>)` finds the splits and types by itself, and a body that
//! says what made the dataset. Also the split layout and the Arrow → `datasets` type
//! mapping the manifest records.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::Value;

use super::{Manifest, ShardRecord, SplitSummary};
use crate::error::{Error, Result};

pub use crate::layout::CARD;

/// The partition column whose values name the splits.
pub const SPLIT_COLUMN: &str = "split";

/// A split name `datasets` accepts (its `_split_re`: `^\w+(\.\w+)*$`).
fn valid_split_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_alphanumeric() || c == '_'))
}

/// The splits of a dataset from its shards. With a `split` partition column each of its
/// values is a split, `train` first; otherwise (or when a value is not a name
/// `datasets` accepts) the whole dataset is one `train` split.
pub fn splits(
    partition_by: &[String],
    shards: &[ShardRecord],
    token_column: Option<&str>,
) -> Vec<SplitSummary> {
    // A Megatron sink's shards are its `.bin` files (each with its `.idx`).
    let files = match shards.first() {
        Some(s) if s.path.ends_with(".bin") => "part-*.bin",
        Some(s) if s.path.ends_with(".mds") => "part-*.mds",
        Some(s) if s.path.ends_with(".tar") => "part-*.tar",
        _ => "part-*.parquet",
    };
    let glob_all = |dirs: &[String]| -> String {
        let mut g = String::new();
        for d in dirs {
            let _ = write!(g, "{d}=*/");
        }
        g + files
    };
    let level = partition_by.iter().position(|p| p == SPLIT_COLUMN);
    // (raw folder component, decoded name) of each shard's split.
    let mut by_split: BTreeMap<String, (String, Vec<&ShardRecord>)> = BTreeMap::new();
    let mut usable = level.is_some();
    if let Some(level) = level {
        for shard in shards {
            let component = shard.path.split('/').nth(level).unwrap_or_default();
            let raw = component
                .strip_prefix("split=")
                .unwrap_or_default()
                .to_string();
            let name = percent_decode_str(&raw).decode_utf8_lossy().into_owned();
            if !valid_split_name(&name) || raw != name {
                usable = false;
                break;
            }
            by_split
                .entry(name)
                .or_insert_with(|| (raw, Vec::new()))
                .1
                .push(shard);
        }
    }
    let summary = |name: String, data_files: String, shards: &[&ShardRecord]| SplitSummary {
        name,
        data_files,
        shards: shards.len(),
        rows: shards.iter().map(|s| s.rows).sum(),
        bytes: shards.iter().map(|s| s.bytes).sum(),
        memory_bytes: shards.iter().map(|s| s.memory_bytes).sum(),
        tokens: token_column.map(|c| {
            shards
                .iter()
                .filter_map(|s| s.columns.get(c).and_then(|st| st.values))
                .sum()
        }),
    };
    if !usable || by_split.is_empty() {
        let all: Vec<&ShardRecord> = shards.iter().collect();
        return vec![summary("train".into(), glob_all(partition_by), &all)];
    }
    let mut out: Vec<SplitSummary> = by_split
        .into_iter()
        .map(|(name, (raw, shards))| {
            let mut g = String::new();
            for p in partition_by {
                if p == SPLIT_COLUMN {
                    let _ = write!(g, "{p}={raw}/");
                } else {
                    let _ = write!(g, "{p}=*/");
                }
            }
            summary(name, g + files, &shards)
        })
        .collect();
    out.sort_by_key(|s| s.name != "train");
    out
}

#[derive(Serialize)]
struct Header<'a> {
    pretty_name: &'a str,
    configs: Vec<Config<'a>>,
    dataset_info: DatasetInfo<'a>,
}

#[derive(Serialize)]
struct Config<'a> {
    config_name: &'static str,
    data_files: Vec<DataFiles<'a>>,
}

#[derive(Serialize)]
struct DataFiles<'a> {
    split: &'a str,
    path: &'a str,
}

#[derive(Serialize)]
struct DatasetInfo<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    features: Option<&'a Value>,
    splits: Vec<SplitInfo<'a>>,
    download_size: u64,
    dataset_size: u64,
}

#[derive(Serialize)]
struct SplitInfo<'a> {
    name: &'a str,
    num_bytes: u64,
    num_examples: u64,
}

/// Text safe in a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn size(b: u64) -> String {
    crate::spec::ByteSize(b).to_string()
}

/// The dataset card of a complete dataset. Deterministic for a given manifest (no
/// timestamps), so two workers finishing at once write the same file.
pub fn render(m: &Manifest) -> Result<String> {
    let header = Header {
        pretty_name: &m.name,
        configs: vec![Config {
            config_name: "default",
            data_files: m
                .splits
                .iter()
                .map(|s| DataFiles {
                    split: &s.name,
                    path: &s.data_files,
                })
                .collect(),
        }],
        dataset_info: DatasetInfo {
            features: m.features.as_ref(),
            splits: m
                .splits
                .iter()
                .map(|s| SplitInfo {
                    name: &s.name,
                    num_bytes: s.memory_bytes,
                    num_examples: s.rows,
                })
                .collect(),
            download_size: m.bytes,
            dataset_size: m.memory_bytes,
        },
    };
    let yaml = serde_saphyr::to_string(&header)
        .map_err(|e| Error::Internal(format!("dataset card header: {e}")))?;
    let pipeline = serde_saphyr::to_string(&m.pipeline)
        .map_err(|e| Error::Internal(format!("dataset card pipeline: {e}")))?;
    let mut s = String::new();
    let _ = writeln!(s, "---\n{}\n---\n", yaml.trim_end());
    let _ = writeln!(s, "# {}\n", m.name);
    if let Some(d) = m.pipeline.get("description").and_then(Value::as_str) {
        let _ = writeln!(s, "{d}\n");
    }
    let _ = writeln!(
        s,
        "Made by kiln {} from {} input object{} \
         ({}; listing SHA-256 `{}`) with the pipeline `{}` (hash `{}`), below. \
         {} rows read, {} rows written in {} shard{} ({} of Parquet).\n",
        m.kiln_version,
        m.input.objects,
        if m.input.objects == 1 { "" } else { "s" },
        size(m.input.bytes),
        m.input.listing_sha256,
        m.name,
        m.pipeline_hash,
        m.rows_in,
        m.rows,
        m.shards.len(),
        if m.shards.len() == 1 { "" } else { "s" },
        size(m.bytes),
    );
    s.push_str("## Loading\n\n```python\nfrom datasets import load_dataset\n\n");
    let _ = writeln!(
        s,
        "ds = load_dataset(\"path/to/{}\")  # this folder: splits and features come from this card",
        m.name
    );
    let glob = if m.partition_by.is_empty() {
        "part-*.parquet"
    } else {
        "**/*.parquet"
    };
    let hive = if m.partition_by.is_empty() {
        ""
    } else {
        ", partitioning=\"hive\""
    };
    let _ = writeln!(
        s,
        "```\n\nAny Parquet reader works too. Read the shards by a glob, or leave this card \
         out as `_kiln/` and `_SUCCESS` are left out, since it is not a Parquet file: \
         pyarrow `ds.dataset(path{hive}, ignore_prefixes=[\".\", \"_\", \"README\"])`, \
         DuckDB `read_parquet('path/{glob}'{})`, Polars `scan_parquet('path/{glob}'{})`.\n",
        if hive.is_empty() {
            ""
        } else {
            ", hive_partitioning = true"
        },
        if hive.is_empty() {
            ""
        } else {
            ", hive_partitioning=True"
        },
    );

    s.push_str("## Splits\n\n| split | rows | shards | Parquet bytes | files |");
    if m.tokens.is_some() {
        s.push_str(" tokens |");
    }
    s.push_str("\n|---|---:|---:|---:|---|");
    if m.tokens.is_some() {
        s.push_str("---:|");
    }
    s.push('\n');
    for sp in &m.splits {
        let _ = write!(
            s,
            "| {} | {} | {} | {} | `{}` |",
            cell(&sp.name),
            sp.rows,
            sp.shards,
            size(sp.bytes),
            cell(&sp.data_files)
        );
        if let Some(t) = sp.tokens {
            let _ = write!(s, " {t} |");
        }
        s.push('\n');
    }
    if let Some(t) = &m.tokens {
        let _ = writeln!(
            s,
            "\n{} tokens in all (elements of the list column `{}`).",
            t.tokens, t.column
        );
    }

    s.push_str(
        "\n## Steps\n\nWhat each step counted (drops per filter rule, tokens, duplicates):\n\n",
    );
    s.push_str("| # | step | counter | count |\n|---:|---|---|---:|\n");
    for (i, st) in m.steps.iter().enumerate() {
        if st.counts.is_empty() {
            let _ = writeln!(s, "| {} | `{}` | | |", i + 1, cell(&st.step));
        }
        for (k, v) in &st.counts {
            let _ = writeln!(
                s,
                "| {} | `{}` | {} | {v} |",
                i + 1,
                cell(&st.step),
                cell(k)
            );
        }
    }

    s.push_str(
        "\n## Columns\n\n| column | type | nulls | min | max | mean length |\n|---|---|---:|---:|---:|---:|\n",
    );
    for c in &m.columns {
        let show = |v: &Option<Value>| match v {
            Some(Value::String(x)) => cell(x),
            Some(x) => x.to_string(),
            None => String::new(),
        };
        let present = m.rows.saturating_sub(c.stats.nulls);
        let mean = match c.stats.values {
            Some(v) if present > 0 => format!("{:.1}", v as f64 / present as f64),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "| `{}` | `{}` | {} | {} | {} | {} |",
            cell(&c.name),
            cell(&c.data_type),
            c.stats.nulls,
            show(&c.stats.min),
            show(&c.stats.max),
            mean
        );
    }
    if !m.partition_by.is_empty() {
        let _ = writeln!(
            s,
            "\nPartition columns (in folder names, not in the files): {}.",
            m.partition_by
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\nMean length is bytes for strings and elements for lists. Per-shard rows, bytes, \
         checksums and statistics are in `_kiln/manifest.json`.\n"
    );
    let _ = writeln!(s, "## Pipeline\n\n```yaml\n{}\n```", pipeline.trim_end());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::ColumnStats;

    fn shard(path: &str, rows: u64, tokens: u64) -> ShardRecord {
        ShardRecord {
            path: path.into(),
            rows,
            bytes: rows * 10,
            crc32c: "00000000".into(),
            memory_bytes: rows * 20,
            columns: [(
                "ids".to_string(),
                ColumnStats {
                    values: Some(tokens),
                    ..Default::default()
                },
            )]
            .into(),
            index: None,
            mds: None,
            buckets: Vec::new(),
        }
    }

    #[test]
    fn split_values_become_splits_with_train_first() {
        let shards = [
            shard("lang=en/split=val/part-00000-00000.parquet", 2, 5),
            shard("lang=en/split=train/part-00000-00000.parquet", 3, 7),
            shard("lang=fr/split=train/part-00001-00000.parquet", 4, 1),
        ];
        let parts = ["lang".to_string(), "split".to_string()];
        let s = splits(&parts, &shards, Some("ids"));
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "train");
        assert_eq!(s[0].data_files, "lang=*/split=train/part-*.parquet");
        assert_eq!((s[0].rows, s[0].shards, s[0].tokens), (7, 2, Some(8)));
        assert_eq!(s[1].name, "val");
        assert_eq!(s[1].memory_bytes, 40);
    }

    #[test]
    fn no_split_column_or_odd_values_make_one_train_split() {
        let shards = [shard("part-00000-00000.parquet", 2, 0)];
        let s = splits(&[], &shards, None);
        assert_eq!(s[0].data_files, "part-*.parquet");
        assert_eq!(s[0].tokens, None);
        let odd = [shard("split=hold-out/part-00000-00000.parquet", 1, 0)];
        let s = splits(&["split".to_string()], &odd, None);
        assert_eq!(
            (s[0].name.as_str(), s[0].data_files.as_str()),
            ("train", "split=*/part-*.parquet")
        );
    }
}

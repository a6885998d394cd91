//! CDX indexes of WARC files (`source.warc.cdx`): where each record's gzip member
//! starts, as the crawler or an indexer wrote it down. Common Crawl publishes one with
//! every crawl (CDXJ), pywb and OpenWayback read the classic CDX, `warcio index` writes
//! JSON lines. With an index, a large `.warc.gz` is cut at those offsets at plan time,
//! with no probe of its first member: so also a file whose first record is larger than
//! the probe (a 5 MB PDF first) runs on every thread and worker.
//!
//! The offsets are where slices start, not a promise the reader takes on trust: a slice
//! still resynchronises on the first member at or after its start
//! ([`super::members`]), which at a record's offset is that record. An index of another
//! file cuts at the wrong places and reads the same rows.
//!
//! Lines read (one record each; blank lines and `#` comments skipped):
//! - CDXJ, as Common Crawl and pywb write it: `urlkey timestamp {json}` with `offset`
//!   and `filename` in the JSON (numbers or strings of digits);
//! - JSON lines with the same keys (`warcio index`);
//! - classic CDX: space-separated fields as the header line (` CDX N b a m s k r M S V
//!   g`) names them: `V` the compressed offset, `g` the file name. Without a header, the
//!   11 fields of that header.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use crate::error::{Error, Result};
use crate::formats::{self, Compression};
use crate::spec::Storage;
use crate::storage::SourceUri;
use object_store::ObjectStoreExt;

/// The record offsets of every WARC file an index names, by the file's name (its last
/// path component: an index written on the crawler names files by their path there).
#[derive(Debug, Default)]
pub struct Index {
    offsets: HashMap<String, Vec<u64>>,
    /// The index object that named each file first, for messages.
    origin: HashMap<String, String>,
}

impl Index {
    /// Reads every object `uri` matches (a path, a prefix or a glob; `.gz` and `.zst`
    /// decompressed as they are read), keeping the offsets of the files named in `wanted`
    /// only: an index of a whole crawl names far more files than one run lists.
    ///
    /// # Errors
    /// A failed listing or read; a line that is no CDX, CDXJ or JSON record naming an
    /// offset and a file, named by object and line.
    pub async fn load(uri: &str, storage: &Storage, wanted: &HashSet<String>) -> Result<Index> {
        let source = SourceUri::parse(uri, storage)?;
        let objects = source.list().await?;
        if objects.is_empty() {
            return Err(Error::Plan(format!(
                "source.warc.cdx `{uri}` matched no objects; check the path"
            )));
        }
        let mut index = Index::default();
        for o in &objects {
            let bytes = source
                .base
                .store
                .get(&o.path)
                .await
                .map_err(|e| Error::store("read the CDX index", &o.display, e))?
                .bytes()
                .await
                .map_err(|e| Error::store("read the CDX index", &o.display, e))?;
            let compression = Compression::resolve(Default::default(), o.path.as_ref());
            let lines = formats::decompress(compression, &bytes[..])
                .map_err(|e| Error::input(&o.display, None, format!("not a CDX index: {e}")))?;
            index.add(lines, &o.display, Some(wanted))?;
        }
        for offsets in index.offsets.values_mut() {
            offsets.sort_unstable();
            offsets.dedup();
        }
        Ok(index)
    }

    /// The lines of one index object (`display` names it in errors), of the files in
    /// `wanted` (all when `None`).
    fn add(
        &mut self,
        mut input: impl BufRead,
        display: &str,
        wanted: Option<&HashSet<String>>,
    ) -> Result<()> {
        let mut layout = Layout::CDX11;
        let mut line = String::new();
        for n in 0.. {
            line.clear();
            let read = input
                .read_line(&mut line)
                .map_err(|e| Error::input(display, Some(n + 1), format!("not a CDX index: {e}")))?;
            if read == 0 {
                break;
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| {
                Error::input(
                    display,
                    Some(n + 1),
                    format!(
                        "{why}; source.warc.cdx reads CDXJ (`urlkey timestamp {{json}}`), \
                         JSON lines (`warcio index`) and CDX with a ` CDX …` header"
                    ),
                )
            };
            if let Some(fields) = line.trim_start().strip_prefix("CDX ") {
                layout = Layout::from_header(fields).ok_or_else(|| {
                    bad("a CDX header without the V (offset) and g (file) fields")
                })?;
                continue;
            }
            let (file, offset) = match line.find('{') {
                Some(at) => json_record(&line[at..]).map_err(|why| bad(&why))?,
                None => layout
                    .record(line)
                    .map(|(f, o)| (f.to_string(), o))
                    .map_err(|why| bad(&why))?,
            };
            let name = file.rsplit('/').next().unwrap_or(&file).to_string();
            if wanted.is_some_and(|w| !w.contains(&name)) {
                continue;
            }
            self.origin
                .entry(name.clone())
                .or_insert_with(|| display.to_string());
            self.offsets.entry(name).or_default().push(offset);
        }
        Ok(())
    }

    /// The sorted record offsets of the file named `name` (last path component), if the
    /// index has any, and the index object that named it.
    pub fn offsets(&self, name: &str) -> Option<(&[u64], &str)> {
        let offsets = self.offsets.get(name)?;
        Some((offsets, self.origin.get(name).map_or("", String::as_str)))
    }

    /// How many files the index names.
    pub fn files(&self) -> usize {
        self.offsets.len()
    }
}

/// Where a classic CDX line keeps the offset and the file name.
#[derive(Debug, Clone, Copy)]
struct Layout {
    offset: usize,
    file: usize,
}

impl Layout {
    /// ` CDX N b a m s k r M S V g`: `V` (10th) and `g` (11th).
    const CDX11: Layout = Layout {
        offset: 9,
        file: 10,
    };

    /// From the field letters after `CDX` in a header line.
    fn from_header(fields: &str) -> Option<Layout> {
        let letters: Vec<&str> = fields.split_whitespace().collect();
        Some(Layout {
            offset: letters.iter().position(|&f| f == "V")?,
            file: letters.iter().position(|&f| f == "g")?,
        })
    }

    fn record<'a>(&self, line: &'a str) -> std::result::Result<(&'a str, u64), String> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let field = |i: usize, what: &str| {
            fields.get(i).copied().ok_or_else(|| {
                format!(
                    "{} fields, no {what} (field {}) as the CDX header says",
                    fields.len(),
                    i + 1
                )
            })
        };
        let offset = field(self.offset, "offset")?;
        let offset = offset
            .parse()
            .map_err(|_| format!("the offset `{offset}` is not a number"))?;
        Ok((field(self.file, "file name")?, offset))
    }
}

/// The file and offset of a CDXJ line's JSON block (or a JSON line).
fn json_record(json: &str) -> std::result::Result<(String, u64), String> {
    #[derive(serde::Deserialize)]
    struct Record {
        filename: Option<String>,
        offset: Option<serde_json::Value>,
    }
    let r: Record = serde_json::from_str(json).map_err(|e| format!("bad JSON: {e}"))?;
    let offset = match r.offset {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        Some(_) => None,
        None => return Err("no `offset` in the record".into()),
    }
    .ok_or("`offset` is not a whole number")?;
    Ok((r.filename.ok_or("no `filename` in the record")?, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(text: &str) -> Index {
        let mut i = Index::default();
        i.add(text.as_bytes(), "test.cdx", None).expect("reads");
        for o in i.offsets.values_mut() {
            o.sort_unstable();
            o.dedup();
        }
        i
    }

    #[test]
    fn reads_cdxj_as_common_crawl_writes_it() {
        let i = index(
            "org,debian)/ 20240301120000 {\"url\": \"https://debian.org/\", \"mime\": \
             \"text/html\", \"status\": \"200\", \"length\": \"5103\", \"offset\": \"9041\", \
             \"filename\": \"crawl-data/CC-MAIN-2024-10/segments/1/warc/CC-MAIN-1-00000.warc.gz\"}\n\
             org,debian)/faq 20240301120001 {\"offset\": 0, \"length\": \"9041\", \
             \"filename\": \"crawl-data/CC-MAIN-2024-10/segments/1/warc/CC-MAIN-1-00000.warc.gz\"}\n",
        );
        assert_eq!(i.files(), 1);
        let (offsets, origin) = i.offsets("CC-MAIN-1-00000.warc.gz").expect("named");
        assert_eq!(offsets, [0, 9041]);
        assert_eq!(origin, "test.cdx");
    }

    #[test]
    fn reads_classic_cdx_by_its_header_and_without_one() {
        let i = index(
            " CDX N b a m s k r M S V g\n\
             org,debian)/ 20240301120000 https://debian.org/ text/html 200 ABC - - 5103 9041 a.warc.gz\n",
        );
        assert_eq!(i.offsets("a.warc.gz").expect("a").0, [9041]);
        // Another field order, as a header may give it.
        let i = index(" CDX a b g V\nhttps://x/ 2024 b.warc.gz 77\n");
        assert_eq!(i.offsets("b.warc.gz").expect("b").0, [77]);
        let i = index("k 2024 u m 200 d - - 10 123 c.warc.gz\n");
        assert_eq!(i.offsets("c.warc.gz").expect("c").0, [123]);
    }

    #[test]
    fn reads_warcio_index_json_lines() {
        let i = index(
            "{\"length\": \"426\", \"offset\": \"0\", \"warc-type\": \"warcinfo\", \"filename\": \"w.warc.gz\"}\n\
             {\"length\": \"500\", \"offset\": \"426\", \"warc-type\": \"request\", \"filename\": \"w.warc.gz\"}\n",
        );
        assert_eq!(i.offsets("w.warc.gz").expect("w").0, [0, 426]);
    }

    #[test]
    fn only_the_files_a_run_lists_are_kept() {
        let mut i = Index::default();
        let wanted: HashSet<String> = ["b.warc.gz".to_string()].into();
        i.add(
            &b"k 1 {\"offset\": 5, \"filename\": \"x/a.warc.gz\"}\n\
               k 1 {\"offset\": 7, \"filename\": \"x/b.warc.gz\"}\r\n"[..],
            "all.cdxj",
            Some(&wanted),
        )
        .expect("reads");
        assert_eq!(i.files(), 1);
        assert_eq!(i.offsets("b.warc.gz").expect("b").0, [7]);
        assert!(i.offsets("a.warc.gz").is_none());
    }

    #[test]
    fn a_bad_line_is_refused_by_object_and_line() {
        let mut i = Index::default();
        let e = i
            .add(&b"k 2024 {\"offset\": \"12\"}\n"[..], "idx/a.cdxj", None)
            .expect_err("no filename")
            .to_string();
        assert!(
            e.contains("idx/a.cdxj") && e.contains("line 1") && e.contains("filename"),
            "{e}"
        );
        let e = i
            .add(
                &b"\n k 2024 u m 200 d - - 10 x12 c.warc.gz\n"[..],
                "b.cdx",
                None,
            )
            .expect_err("bad offset")
            .to_string();
        assert!(e.contains("line 2") && e.contains("`x12`"), "{e}");
        let e = i
            .add(&b" CDX N b a\n"[..], "c.cdx", None)
            .expect_err("no V")
            .to_string();
        assert!(e.contains("V (offset)"), "{e}");
    }
}

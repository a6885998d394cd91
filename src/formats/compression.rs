//! Streaming decompression: gzip (every member of a concatenated file) and zstd (every
//! frame), by the flate2 (zlib-rs backend) and zstd crates. Nothing is held whole.

use std::io::{BufRead, BufReader, Read};

use crate::spec::CompressionName;

/// Buffer between the decompressor and the parser.
const BUF: usize = 1 << 20;

/// Compression of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression `declared` says, or the one the name's extension implies.
    pub fn resolve(declared: CompressionName, name: &str) -> Self {
        match declared {
            CompressionName::Gzip => Compression::Gzip,
            CompressionName::Zstd => Compression::Zstd,
            CompressionName::None => Compression::None,
            CompressionName::Auto => {
                let lower = name.to_ascii_lowercase();
                if lower.ends_with(".gz") || lower.ends_with(".gzip") {
                    Compression::Gzip
                } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
                    Compression::Zstd
                } else {
                    Compression::None
                }
            }
        }
    }

    /// `name` without a compression extension.
    pub fn strip_suffix(name: &str) -> &str {
        for suffix in [".gz", ".gzip", ".zst", ".zstd"] {
            if name.len() > suffix.len()
                && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            {
                return &name[..name.len() - suffix.len()];
            }
        }
        name
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Wraps `input` in the decompressor for `c`.
///
/// # Errors
/// Only zstd can fail here (allocating its context); corrupt data surfaces as read errors.
pub fn decompress<'a>(
    c: Compression,
    input: impl Read + 'a,
) -> std::io::Result<Box<dyn BufRead + 'a>> {
    Ok(match c {
        Compression::None => Box::new(BufReader::with_capacity(BUF, input)),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            BUF,
            flate2::read::MultiGzDecoder::new(input),
        )),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            BUF,
            zstd::stream::read::Decoder::new(input)?,
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn concatenated_gzip_members_are_all_read() {
        let mut out = Vec::new();
        for part in ["a\n", "b\n"] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part.as_bytes()).expect("write");
            out.extend(enc.finish().expect("finish"));
        }
        let mut s = String::new();
        decompress(Compression::Gzip, &out[..])
            .expect("open")
            .read_to_string(&mut s)
            .expect("read");
        assert_eq!(s, "a\nb\n");
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[b'x'; 10_000]).expect("write");
        let full = enc.finish().expect("finish");
        let mut s = Vec::new();
        let r = decompress(Compression::Gzip, &full[..full.len() / 2])
            .expect("open")
            .read_to_end(&mut s);
        assert!(r.is_err());
    }

    #[test]
    fn resolves_from_extension() {
        assert_eq!(
            Compression::resolve(CompressionName::Auto, "a.jsonl.GZ"),
            Compression::Gzip
        );
        assert_eq!(
            Compression::resolve(CompressionName::Auto, "a.zst"),
            Compression::Zstd
        );
        assert_eq!(Compression::strip_suffix("a.jsonl.zst"), "a.jsonl");
    }
}

//! Streaming decompression: gzip (every member of a concatenated file) and zstd (every
//! frame). gzip is decoded by Intel ISA-L through crates/inflate (flate2's zlib-rs
//! backend when kiln is built without the default `isal` feature), zstd by the zstd
//! crate. Nothing is held whole.

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
    match c {
        Compression::None => Ok(Box::new(BufReader::with_capacity(BUF, input))),
        // What flate2's and zstd's `read` decoders do: a 32 KiB buffer in front.
        _ => decompress_buffered(c, BufReader::with_capacity(32 << 10, input)),
    }
}

/// [`decompress`] for an input that is already buffered: the decompressor reads from
/// its buffer directly instead of copying the compressed bytes into one of its own.
/// Uncompressed input still gets a `BUF`-sized buffer, so decoders see the same reads
/// whatever size the chunks arrive in.
///
/// # Errors
/// As [`decompress`].
pub fn decompress_buffered<'a>(
    c: Compression,
    input: impl BufRead + 'a,
) -> std::io::Result<Box<dyn BufRead + 'a>> {
    Ok(match c {
        Compression::None => Box::new(BufReader::with_capacity(BUF, input)),
        Compression::Gzip => Box::new(BufReader::with_capacity(BUF, gunzip(input))),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            BUF,
            zstd::stream::read::Decoder::with_buffer(input)?,
        )),
    })
}

/// A streaming gzip decoder of every member `input` holds: Intel ISA-L
/// (crates/inflate) when built with the `isal` feature (the default), else flate2.
fn gunzip<'a>(input: impl BufRead + 'a) -> Box<dyn Read + 'a> {
    #[cfg(feature = "isal")]
    return Box::new(kiln_inflate::GzDecoder::new(input));
    #[cfg(not(feature = "isal"))]
    return Box::new(flate2::bufread::MultiGzDecoder::new(input));
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

    /// The buffered path reads the same bytes whatever sizes the input arrives in
    /// (here 7-byte pieces, cutting gzip headers and zstd frames anywhere), and a
    /// truncated stream is still an error.
    #[test]
    fn buffered_input_decompresses_across_any_piece_size() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let mut gz = Vec::new();
        for half in text.chunks(text.len() / 2 + 1) {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(half).expect("write");
            gz.extend(enc.finish().expect("finish"));
        }
        let zst = zstd::encode_all(&text[..], 3).expect("zstd");
        for (c, data) in [
            (Compression::Gzip, &gz),
            (Compression::Zstd, &zst),
            (Compression::None, &text),
        ] {
            let mut out = Vec::new();
            decompress_buffered(c, BufReader::with_capacity(7, &data[..]))
                .expect("open")
                .read_to_end(&mut out)
                .expect("read");
            assert!(out == text, "{c:?}");
            if c != Compression::None {
                let cut = &data[..data.len() - 9];
                let r = decompress_buffered(c, BufReader::with_capacity(7, cut))
                    .expect("open")
                    .read_to_end(&mut Vec::new());
                assert!(r.is_err(), "{c:?} cut short");
            }
        }
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

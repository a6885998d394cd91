//! The WARC decoder (compression: None), strict and tolerant: bad input is an error or a
//! rejected record, never a panic.
#![no_main]
use kiln::formats::Compression;
use kiln::spec::{FormatName, OnError};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for on_error in [OnError::Fail, OnError::Skip] {
        let _ = kiln::fuzz::decode(FormatName::Warc, Compression::None, data, on_error);
    }
});

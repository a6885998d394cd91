//! The pipeline-file parser: YAML, `${VAR}` expansion, validation.
#![no_main]
libfuzzer_sys::fuzz_target!(|text: &str| kiln::fuzz::pipeline_file(text));

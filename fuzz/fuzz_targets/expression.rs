//! The expression compiler of `filter` and `derive` (and the evaluation of what compiles).
#![no_main]
libfuzzer_sys::fuzz_target!(|sql: &str| kiln::fuzz::expression(sql));

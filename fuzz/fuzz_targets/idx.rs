#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| d3hr_fuzz::idx(data));

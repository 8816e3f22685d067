#![no_main]
// The target's code and its invariants: edge_fuzz::routes (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::routes(data));

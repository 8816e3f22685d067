#![no_main]
// The target's code and its invariants: edge_fuzz::redis_values (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::redis_values(data));

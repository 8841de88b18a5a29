#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iroh_raft_fuzz::snapshot_file(data));

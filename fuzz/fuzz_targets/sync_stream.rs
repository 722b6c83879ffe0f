#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| toki_sync::fuzzing::sync_stream(data));

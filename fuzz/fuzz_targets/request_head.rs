#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| acp_relay::serve::http::fuzz_head(data));

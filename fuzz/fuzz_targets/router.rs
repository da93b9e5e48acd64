#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| acp_relay::core::router::fuzz::fuzz_router(data));

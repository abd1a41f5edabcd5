#![no_main]
//! The Varlink prekill call parser (bytes from systemd-oomd, or anyone who can connect).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = oomguard::guard::prekill::parse_call(data) {
        let _ = oomguard::guard::prekill::reply(&c);
    }
});

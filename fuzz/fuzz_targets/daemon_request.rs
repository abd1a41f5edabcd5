#![no_main]
//! The root daemon's request parser: bytes from any local user.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = oomguard::daemon::protocol::parse(data);
});

#![no_main]
//! journalctl -o json lines (untrusted: any program writes to the journal).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = oomguard::model::parse::journal::entry(data);
});

#![no_main]
//! /dev/kmsg records.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = oomguard::host::logs::kmsg_record(data);
});

#![no_main]
//! The kernel OOM line parser.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = oomguard::model::parse::kernel::parse(&s);
});

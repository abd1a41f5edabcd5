#![no_main]
//! The whole fast path: prefilter, envelope, parsers and the incident assembler.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = oomguard::model::event::from_bytes(data, "fuzz", Default::default());
    let s = String::from_utf8_lossy(data);
    let _ = oomguard::model::event::from_text(&s, "fuzz", Default::default());
});

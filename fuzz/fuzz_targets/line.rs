#![no_main]
//! The envelope splitter: any line, no panic, and the message is a suffix of the line.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let l = oomguard::model::parse::line::split(&s);
    assert!(s.trim_end_matches(['\r', '\n']).ends_with(l.msg));
    let _ = oomguard::model::parse::classify(l.ident, l.msg);
});

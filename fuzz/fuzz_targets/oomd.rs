#![no_main]
//! systemd-oomd and systemd unit line parsers.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = oomguard::model::parse::oomd::parse(&s);
    let _ = oomguard::model::parse::oomd::parse_unit(&s);
});

//! Log parsers, one module per killer. Pure: a message in, a [`Fact`] out. The envelope
//! (date, host, program) is split off first by [`line::split`]; [`classify`] then asks
//! each killer's parser in turn. The [`crate::model::event`] assembler turns facts into
//! kill events, joining the several lines of one incident.

pub mod earlyoom;
pub mod evidence;
pub mod journal;
pub mod kernel;
pub mod line;
pub mod nohang;
pub mod oomd;
pub mod prefilter;

/// What one log line says about an OOM kill.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Kernel(kernel::Kernel),
    Oomd(oomd::Oomd),
    Unit(oomd::Unit),
    Earlyoom(earlyoom::Earlyoom),
    Nohang(nohang::Nohang),
    Evidence(evidence::Evidence),
}

impl Fact {
    /// Whether this line records a kill by itself (the others are context: the decision
    /// before a kill, its confirmation after, or an application's hint).
    pub fn is_kill(&self) -> bool {
        match self {
            Fact::Kernel(k) => k.is_kill(),
            Fact::Oomd(o) => matches!(o, oomd::Oomd::Killed { .. }),
            Fact::Unit(_) => true,
            Fact::Earlyoom(e) => matches!(e, earlyoom::Earlyoom::Sent { .. }),
            Fact::Nohang(n) => matches!(n, nohang::Nohang::Sent { .. }),
            Fact::Evidence(_) => false,
        }
    }
}

/// What a message says, given the program that wrote it when the envelope names one.
pub fn classify(ident: Option<&str>, msg: &str) -> Option<Fact> {
    let msg = msg.trim_end();
    match ident {
        Some("kernel") => kernel::parse(msg).map(Fact::Kernel),
        Some("systemd-oomd") => oomd::parse(msg).map(Fact::Oomd),
        Some("earlyoom") => earlyoom::parse(msg).map(Fact::Earlyoom),
        Some("nohang") => nohang::parse(msg).map(Fact::Nohang),
        _ => None,
    }
    .or_else(|| {
        // No program named (dmesg, a paste) or another one (systemd, an application):
        // the message itself tells. Order: most specific formats first.
        kernel::parse(msg)
            .map(Fact::Kernel)
            .or_else(|| oomd::parse_unit(msg).map(Fact::Unit))
            .or_else(|| oomd::parse(msg).map(Fact::Oomd))
            .or_else(|| earlyoom::parse(msg).map(Fact::Earlyoom))
            .or_else(|| nohang::parse(msg).map(Fact::Nohang))
            .or_else(|| evidence::parse(msg).map(Fact::Evidence))
    })
}

/// `1234kB` → 1234.
pub(crate) fn kb(s: &str) -> Option<u64> {
    s.trim().strip_suffix("kB")?.parse().ok()
}

/// The value after `key` up to the next byte in `stops` (or the end).
pub(crate) fn after<'a>(s: &'a str, key: &str, stops: &[char]) -> Option<&'a str> {
    let i = s.find(key)? + key.len();
    let r = &s[i..];
    let end = r.find(stops).unwrap_or(r.len());
    Some(&r[..end])
}

/// `50.00%` → 50.0.
pub(crate) fn pct(s: &str) -> Option<f64> {
    s.trim().strip_suffix('%')?.parse().ok()
}

/// Leading decimal digits of `s` as a number.
pub(crate) fn lead_u64(s: &str) -> Option<u64> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    s[..n].parse().ok()
}

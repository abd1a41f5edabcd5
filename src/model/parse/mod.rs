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

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of every format, so that generated lines reach deep into the parsers.
    const PIECES: &[&str] = &[
        "Killed process ",
        "Out of memory: ",
        "Memory cgroup out of memory: ",
        "oom-kill:",
        "constraint=CONSTRAINT_MEMCG",
        ",task_memcg=/a/b",
        ",task=x",
        ",pid=",
        ",uid=",
        "oom_reaper: reaped process ",
        " invoked oom-killer: ",
        "oom_score_adj=",
        "memory: usage ",
        "kB, limit ",
        "Killed /",
        " due to memory pressure for ",
        " being ",
        "% > ",
        " for > ",
        "Marked ",
        " for killing due to ",
        "memory used (",
        ") / total (",
        "swap used (",
        "Considered ",
        "Memory pressure for ",
        " is ",
        ": systemd-oomd killed ",
        " process(es) in this unit.",
        ": Failed with result 'oom-kill'.",
        "sending SIGKILL",
        " to process ",
        " uid ",
        " \"",
        "\": ",
        "badness ",
        "VmRSS ",
        "PID: ",
        "name: ",
        "Sending SIGTERM to the victim",
        "The victim died in ",
        "DataLoader worker (pid ",
        "exitcode: -9",
        "(pid: ",
        "Detected ",
        "oom-kill event",
        "low memory! ",
        "process exited after ",
        "Dec 18 19:34:56 ",
        "5月 29 ",
        "[ 12.5] ",
        "host ",
        "kernel: ",
        "systemd-oomd[1]: ",
        "2026-02-08T00:40:07+00:00 ",
        "[Sun Mar 30 08:24:00 2025] ",
        "1234",
        "(",
        ")",
        " ",
        ",",
        ":",
        "%",
        "50.00%",
        "kB",
        ">",
        "é",
        "\u{fffd}",
        "\t",
    ];

    fn line() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(PIECES).prop_map(str::to_owned),
                1 => "\\PC{0,6}",
            ],
            0..14,
        )
        .prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn prefilter_passes_all_a_parser_knows(s in line()) {
            let l = line::split(&s);
            prop_assert!(s.trim_end_matches(['\r', '\n']).ends_with(l.msg));
            if classify(l.ident, l.msg).is_some() {
                prop_assert!(prefilter::candidate(s.as_bytes()), "dropped: {s:?}");
            }
        }

        #[test]
        fn kernel_kill_lines_round_trip(
            pid in 1u32..4_000_000,
            name in "[a-zA-Z0-9_ #:.-]{1,15}",
            anon in 0u64..1 << 40,
            adj in -1000i32..=1000,
            memcg in any::<bool>(),
        ) {
            let prefix = if memcg { "Memory cgroup out of memory" } else { "Out of memory" };
            let s = format!("{prefix}: Killed process {pid} ({name}) total-vm:1kB, anon-rss:{anon}kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:4kB oom_score_adj:{adj}");
            let Some(Fact::Kernel(kernel::Kernel::Killed { pid: p, process, scope, figures })) = classify(None, &s) else {
                return Err(TestCaseError::fail(format!("not a kill: {s}")));
            };
            prop_assert_eq!(p, pid);
            prop_assert_eq!(process, name);
            prop_assert_eq!(scope, if memcg { "memcg" } else { "global" });
            prop_assert_eq!(figures.anon_rss_kib, Some(anon));
            prop_assert_eq!(figures.oom_score_adj, Some(adj));
        }

        #[test]
        fn earlyoom_kill_lines_round_trip(
            pid in 1u32..4_000_000,
            uid in 0u32..70000,
            name in "[a-zA-Z0-9_ .:-]{1,15}",
            score in 0i64..3000,
            rss in 0u64..1_000_000,
        ) {
            let s = format!("sending SIGTERM to process {pid} uid {uid} \"{name}\": oom_score {score}, oom_score_adj 0, VmRSS {rss} MiB, cmdline \"{name} --x\"");
            let Some(Fact::Earlyoom(earlyoom::Earlyoom::Sent { pid: p, uid: u, process, oom_score, rss_mib, .. })) = classify(Some("earlyoom"), &s) else {
                return Err(TestCaseError::fail(format!("not a kill: {s}")));
            };
            prop_assert_eq!((p, u, oom_score, rss_mib), (pid, Some(uid), Some(score), Some(rss)));
            prop_assert_eq!(process.as_deref(), Some(name.as_str()));
        }
    }
}

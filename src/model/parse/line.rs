//! The envelope of one log line: when it was written, on which host, by which program,
//! and the message itself. Accepts what users paste: syslog dates in any language
//! (`Dec 18 19:34:56`, `5月 29 23:06:20`, `18. Sep`-less `Mär 02 …`), ISO 8601
//! (`2026-02-08T00:40:07.136808+00:00`), `dmesg` uptimes (`[ 7097.004954]`), `dmesg -T`
//! dates (`[Sun Mar 30 08:24:00 2025]`), Python logging dates (`2023-08-10 16:53:26,460:`),
//! `host ident[pid]:` and `kernel:` prefixes, or none of these.

use jiff::civil::{Date, DateTime, Time};

/// When a line was written, as far as the line says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stamp {
    /// Nothing recognisable.
    None,
    /// Seconds since boot (`[  310.630835]`, `/dev/kmsg`).
    Uptime(f64),
    /// Seconds since the Unix epoch (the journal's `__REALTIME_TIMESTAMP`).
    Unix(f64),
    /// A wall-clock date with its year; `offset_s` when the line gives a zone.
    Civil { dt: DateTime, offset_s: Option<i32> },
    /// A syslog date: no year, and a month only when its name was recognised.
    Syslog {
        month: Option<i8>,
        day: i8,
        time: Time,
    },
}

/// One line split into its envelope and message.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub stamp: Stamp,
    /// The date text exactly as written (shown when the year is unknown).
    pub stamp_text: &'a str,
    /// A kernel uptime found after the syslog prefix (`kernel: [ 7097.004954] …`).
    pub uptime: Option<f64>,
    pub host: Option<&'a str>,
    /// The program that wrote the line (`kernel`, `systemd-oomd`, `systemd`, …).
    pub ident: Option<&'a str>,
    pub ident_pid: Option<u32>,
    /// The message, without the envelope.
    pub msg: &'a str,
}

/// Split a line. Never fails: a line with no envelope is all message.
pub fn split(line: &str) -> Line<'_> {
    let line = line.trim_end_matches(['\r', '\n']);
    let s = line.trim_start();
    let (stamp, stamp_text, rest) = stamp(s);
    let rest = rest.trim_start();
    let syslog_dated = !matches!(stamp, Stamp::None) && !stamp_text.starts_with('[');
    let (host, ident, ident_pid, rest) = ident(rest, syslog_dated);
    let (uptime, msg) = match uptime_bracket(rest) {
        Some((u, r)) => (Some(u), r.trim_start()),
        None => (None, rest),
    };
    let (stamp, uptime) = match (stamp, uptime) {
        (Stamp::None, Some(u)) => (Stamp::Uptime(u), None),
        (s, u) => (s, u),
    };
    // `[  77.74] systemd-oomd[659]: …`: the program comes after the uptime.
    let (ident, ident_pid, msg) = if ident.is_none() && matches!(stamp, Stamp::Uptime(_)) {
        match ident_token(msg.split(' ').next().unwrap_or("")) {
            Some((name, pid)) if pid.is_some() || name == "kernel" => {
                let tok = msg.split(' ').next().unwrap_or("");
                (Some(name), pid, msg[tok.len()..].trim_start())
            }
            _ => (None, None, msg),
        }
    } else {
        (ident, ident_pid, msg)
    };
    Line {
        stamp,
        stamp_text,
        uptime,
        host,
        ident,
        ident_pid,
        msg,
    }
}

fn digits(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

fn num(s: &str) -> Option<i32> {
    s.parse().ok()
}

/// `HH:MM:SS` with optional `.frac` or `,frac`; returns the time and the bytes used.
fn hms(s: &str) -> Option<(Time, usize)> {
    let b = s.as_bytes();
    let pattern_ok = b.len() >= 8
        && b[2] == b':'
        && b[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit());
    if !pattern_ok {
        return None;
    }
    let (h, m, sec) = (num(&s[0..2])?, num(&s[3..5])?, num(&s[6..8])?);
    let mut used = 8;
    let mut nanos = 0i32;
    if b.len() > 9 && (b[8] == b'.' || b[8] == b',') && b[9].is_ascii_digit() {
        let n = digits(&b[9..]);
        let frac = &s[9..9 + n.min(9)];
        nanos = num(frac).unwrap_or(0) * 10i32.pow(9 - frac.len() as u32);
        used = 9 + n;
    }
    let t = Time::new(h as i8, m as i8, sec.min(59) as i8, nanos).ok()?;
    Some((t, used))
}

/// A zone offset: `Z`, `+00:00`, `+0000`, `-05`.
fn offset(s: &str) -> Option<(i32, usize)> {
    let b = s.as_bytes();
    match b.first()? {
        b'Z' | b'z' => Some((0, 1)),
        c @ (b'+' | b'-') => {
            let sign = if *c == b'-' { -1 } else { 1 };
            let h = num(s.get(1..3)?)?;
            let (m, used) = match b.get(3) {
                Some(b':') => (num(s.get(4..6)?)?, 6),
                Some(d) if d.is_ascii_digit() => (num(s.get(3..5)?)?, 5),
                _ => (0, 3),
            };
            Some((sign * (h * 3600 + m * 60), used))
        }
        _ => None,
    }
}

/// The time stamp at the start of `s`, the text it spans, and the rest.
fn stamp(s: &str) -> (Stamp, &str, &str) {
    if let Some((st, n)) = iso(s) {
        let mut rest = &s[n..];
        // Python logging: `2023-08-10 16:53:26,460: message`
        rest = rest.strip_prefix(':').unwrap_or(rest);
        return (st, &s[..n], rest);
    }
    if let Some(r) = s.strip_prefix('[')
        && let Some(end) = r.find(']')
        && let Some(st) = dmesg_t(&r[..end])
    {
        return (st, &s[..end + 2], &r[end + 1..]);
    }
    if let Some((st, n)) = syslog(s) {
        return (st, &s[..n], &s[n..]);
    }
    (Stamp::None, "", s)
}

/// `2026-02-08T00:40:07.136808+00:00`, `2026-08-27T15:51:41+1000`, `2023-08-10 16:53:26,460`.
fn iso(s: &str) -> Option<(Stamp, usize)> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    if digits(b) != 4 || digits(&b[5..]) != 2 || digits(&b[8..]) != 2 {
        return None;
    }
    let date = Date::new(
        num(&s[0..4])? as i16,
        num(&s[5..7])? as i8,
        num(&s[8..10])? as i8,
    )
    .ok()?;
    let (time, n) = hms(&s[11..])?;
    let mut used = 11 + n;
    let off = offset(&s[used..]).map(|(o, k)| {
        used += k;
        o
    });
    Some((
        Stamp::Civil {
            dt: date.to_datetime(time),
            offset_s: off,
        },
        used,
    ))
}

/// `Sun Mar 30 08:24:00 2025` (inside `dmesg -T`'s brackets).
fn dmesg_t(s: &str) -> Option<Stamp> {
    let mut it = s.split_whitespace();
    let _wday = it.next()?;
    let month = month_of(it.next()?)?;
    let day = num(it.next()?)?;
    let (time, _) = hms(it.next()?)?;
    let year = num(it.next()?)?;
    let date = Date::new(year as i16, month, day as i8).ok()?;
    Some(Stamp::Civil {
        dt: date.to_datetime(time),
        offset_s: None,
    })
}

/// `Dec 18 19:34:56`, `5月 29 23:06:20`, `Mär  2 10:00:00`, `sept. 18 02:27:12`.
fn syslog(s: &str) -> Option<(Stamp, usize)> {
    let mon_end = s.find(' ')?;
    let mon = &s[..mon_end];
    if mon.is_empty() || mon.len() > 12 || mon.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !mon.chars().any(|c| c.is_alphabetic()) {
        return None;
    }
    let r = s[mon_end..].trim_start_matches(' ');
    let nd = digits(r.as_bytes());
    if nd == 0 || nd > 2 || r.as_bytes().get(nd) != Some(&b' ') {
        return None;
    }
    let day = num(&r[..nd])?;
    let r2 = r[nd..].trim_start_matches(' ');
    let (time, n) = hms(r2)?;
    let used = s.len() - r2.len() + n;
    Some((
        Stamp::Syslog {
            month: month_of(mon),
            day: day as i8,
            time,
        },
        used,
    ))
}

/// The month a name stands for, in the languages `journalctl` and syslog daemons print.
pub fn month_of(name: &str) -> Option<i8> {
    let n = name.trim_end_matches('.').to_lowercase();
    // "5月", "12월": a number followed by the CJK month sign.
    let nd = n.bytes().take_while(|b| b.is_ascii_digit()).count();
    if nd > 0 && (n[nd..].starts_with('月') || n[nd..].starts_with('월')) {
        return n[..nd].parse::<i8>().ok().filter(|m| (1..=12).contains(m));
    }
    const NAMES: &[(&str, i8)] = &[
        ("janv", 1),
        ("jan", 1),
        ("ene", 1),
        ("gen", 1),
        ("янв", 1),
        ("févr", 2),
        ("fevr", 2),
        ("feb", 2),
        ("fév", 2),
        ("фев", 2),
        ("mär", 3),
        ("mar", 3),
        ("мар", 3),
        ("avr", 4),
        ("apr", 4),
        ("abr", 4),
        ("апр", 4),
        ("mai", 5),
        ("may", 5),
        ("mag", 5),
        ("ма", 5),
        ("juin", 6),
        ("juil", 7),
        ("jun", 6),
        ("giu", 6),
        ("июн", 6),
        ("jul", 7),
        ("lug", 7),
        ("июл", 7),
        ("aug", 8),
        ("août", 8),
        ("aou", 8),
        ("ago", 8),
        ("авг", 8),
        ("sep", 9),
        ("set", 9),
        ("сен", 9),
        ("okt", 10),
        ("oct", 10),
        ("ott", 10),
        ("окт", 10),
        ("nov", 11),
        ("ноя", 11),
        ("dez", 12),
        ("dec", 12),
        ("déc", 12),
        ("dic", 12),
        ("дек", 12),
    ];
    NAMES
        .iter()
        .find(|(p, _)| n.starts_with(p))
        .map(|&(_, m)| m)
}

/// `name[pid]:` or `name:` as a program tag.
fn ident_token(tok: &str) -> Option<(&str, Option<u32>)> {
    let t = tok.strip_suffix(':')?;
    let (name, pid) = match t.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((name, pid)) => (name, Some(pid.parse::<u32>().ok()?)),
        None => (t, None),
    };
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@/".contains(&b));
    ok.then_some((name, pid))
}

/// After a date: `host ident[pid]: msg`, `ident[pid]: msg`, `host kernel: msg`. A bare
/// `word:` is taken for a program only after a host on a syslog-dated line: elsewhere it
/// is usually the message itself (`memory: usage …`, `oom_reaper: …`).
#[allow(clippy::type_complexity)]
fn ident(s: &str, syslog_dated: bool) -> (Option<&str>, Option<&str>, Option<u32>, &str) {
    let mut toks = s.splitn(3, ' ');
    let t1 = toks.next().unwrap_or("");
    if let Some((name, pid)) = ident_token(t1)
        && (pid.is_some() || name == "kernel")
    {
        return (None, Some(name), pid, s[t1.len()..].trim_start());
    }
    if let Some(t2) = toks.next()
        && !t1.is_empty()
        && !t1.ends_with(':')
        && !t1.starts_with('[')
        && let Some((name, pid)) = ident_token(t2)
        && (pid.is_some() || name == "kernel" || (syslog_dated && name.len() > 1))
    {
        let used = t1.len() + 1 + t2.len();
        return (Some(t1), Some(name), pid, s[used..].trim_start());
    }
    (None, None, None, s)
}

/// `[ 7097.004954]` at the start of `s`.
fn uptime_bracket(s: &str) -> Option<(f64, &str)> {
    let r = s.strip_prefix('[')?;
    let end = r.find(']')?;
    let inner = r[..end].trim();
    if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    Some((inner.parse().ok()?, &r[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_with_host_and_ident() {
        let l = split("Dec 18 19:34:56 user-desktop systemd-oomd[840]: Killed /x due to y");
        assert_eq!(l.host, Some("user-desktop"));
        assert_eq!(l.ident, Some("systemd-oomd"));
        assert_eq!(l.ident_pid, Some(840));
        assert_eq!(l.msg, "Killed /x due to y");
        assert_eq!(l.stamp_text, "Dec 18 19:34:56");
        assert!(matches!(
            l.stamp,
            Stamp::Syslog {
                month: Some(12),
                day: 18,
                ..
            }
        ));
    }

    #[test]
    fn localized_months() {
        for (s, m) in [
            ("5月 29 23:06:20 Analyse systemd-oomd[111564]: x", 5),
            ("9月 18 02:27:12 systemd[1398]: x", 9),
            ("Mär  2 10:00:00 host kernel: x", 3),
            ("sept. 18 02:27:12 host kernel: x", 9),
            ("дек 01 10:00:00 host kernel: x", 12),
        ] {
            let l = split(s);
            assert!(
                matches!(l.stamp, Stamp::Syslog { month: Some(mm), .. } if mm == m),
                "{s}: {l:?}"
            );
            assert_eq!(l.msg, "x", "{s}");
        }
    }

    #[test]
    fn no_host() {
        let l = split("Sep 02 13:07:24 systemd-oomd[885]: Considered 35 cgroups");
        assert_eq!(l.host, None);
        assert_eq!(l.ident, Some("systemd-oomd"));
        assert_eq!(l.msg, "Considered 35 cgroups");
    }

    #[test]
    fn kernel_with_uptime() {
        let l = split("Apr 25 19:05:01 netlogo01 kernel: [ 7097.004954] CPU: 2 PID: 25671");
        assert_eq!(l.ident, Some("kernel"));
        assert_eq!(l.uptime, Some(7097.004954));
        assert_eq!(l.msg, "CPU: 2 PID: 25671");
    }

    #[test]
    fn dmesg_forms() {
        let l = split("[  310.642148] memory: usage 307200kB, limit 307200kB, failcnt 8780");
        assert_eq!(l.stamp, Stamp::Uptime(310.642148));
        assert_eq!(l.ident, None);
        assert_eq!(
            l.msg,
            "memory: usage 307200kB, limit 307200kB, failcnt 8780"
        );
        let l = split("[   77.740597] systemd-oomd[659]: Memory pressure for /system.slice");
        assert_eq!(l.ident, Some("systemd-oomd"));
        assert_eq!(l.msg, "Memory pressure for /system.slice");
        let l = split("[Sun Mar 30 08:24:00 2025] oom-kill:constraint=CONSTRAINT_NONE");
        assert!(matches!(l.stamp, Stamp::Civil { offset_s: None, .. }));
        assert_eq!(l.msg, "oom-kill:constraint=CONSTRAINT_NONE");
        let l = split("[638074.104526] kernel: kswapd0: page allocation failure");
        assert_eq!(l.ident, Some("kernel"));
        assert_eq!(l.msg, "kswapd0: page allocation failure");
    }

    #[test]
    fn iso_and_python() {
        let l =
            split("2026-02-08T00:40:07.136808+00:00 largeweb2 systemd[1]: user@1021.service: A");
        assert_eq!(l.host, Some("largeweb2"));
        assert_eq!(l.ident, Some("systemd"));
        assert_eq!(l.msg, "user@1021.service: A");
        assert!(matches!(
            l.stamp,
            Stamp::Civil {
                offset_s: Some(0),
                ..
            }
        ));
        let l = split("2023-08-10 16:53:26,460: >>=== STARTING");
        assert!(matches!(l.stamp, Stamp::Civil { offset_s: None, .. }));
        assert_eq!(l.msg, ">>=== STARTING");
        let l = split("2026-08-27T15:51:41+1000 AVANCE-WS7 systemd-oomd[709]: Killed /a");
        assert!(matches!(
            l.stamp,
            Stamp::Civil {
                offset_s: Some(36000),
                ..
            }
        ));
    }

    #[test]
    fn bare_messages_stay_whole() {
        for s in [
            "sending SIGTERM to process 997 uid 1000 \"x\": oom_score 1146",
            "RuntimeError: DataLoader worker (pid 4161) is killed by signal: Killed.",
            "memory: usage 1kB, limit 2kB, failcnt 0",
            "slurmstepd: error: Detected 1 oom-kill event(s)",
        ] {
            let l = split(s);
            assert_eq!(l.msg, s);
            assert_eq!(l.ident, None, "{s}");
        }
        let l = split(" archlinux systemd-oomd[727]: No swap");
        assert_eq!(l.host, Some("archlinux"));
        assert_eq!(l.msg, "No swap");
    }
}

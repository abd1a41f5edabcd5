//! systemd-oomd's lines (`src/oom/oomd-manager.c`, `oomd-util.c`, v247..v260) and the
//! lines systemd (PID 1 or a user manager) writes about a unit an OOM killer hit.

use super::{after, lead_u64, pct};

/// Why systemd-oomd killed.
#[derive(Debug, Clone, PartialEq)]
pub enum Cause {
    /// `memory pressure for <monitored> being 57.97% > 50.00% for > 20s`
    Pressure {
        monitored: String,
        pressure_pct: Option<f64>,
        limit_pct: Option<f64>,
        duration: Option<String>,
    },
    /// `memory used (U) / total (T) and swap used (SU) / total (ST) being more than 90.00%`
    Swap {
        mem_used: Option<u64>,
        mem_total: Option<u64>,
        swap_used: Option<u64>,
        swap_total: Option<u64>,
        limit_pct: Option<f64>,
    },
    /// A reason in a form this version does not know; kept as written.
    Other(String),
}

/// One systemd-oomd line.
#[derive(Debug, Clone, PartialEq)]
pub enum Oomd {
    /// `Killed <cgroup> due to …` (up to v252) or `Marked <cgroup> for killing due to …`.
    Killed {
        cgroup: String,
        cause: Cause,
        marked: bool,
    },
    /// `Considered 10 cgroups for killing, top candidates were:` (logged after a kill, and
    /// also after an attempt that killed nothing).
    Considered { n: u32 },
    /// `Memory pressure for /system.slice is 85.03% > 80.00% for > 2s with reclaim
    /// activity`: the trigger, logged before the choice.
    Trigger {
        monitored: String,
        pressure_pct: Option<f64>,
        limit_pct: Option<f64>,
    },
    /// `Failed to kill any cgroup(s) under … based on pressure`: no kill after all.
    Failed,
    /// A line of the candidate dump (`Path: …`, `Pressure: Avg10: …`, …).
    Candidate(String),
}

/// One line systemd writes about a unit hit by an OOM killer.
#[derive(Debug, Clone, PartialEq)]
pub enum Unit {
    /// `<unit>: systemd-oomd killed 65 process(es) in this unit.`
    OomdKilled {
        unit: String,
        processes: Option<u32>,
    },
    /// `<unit>: A process of this unit has been killed by the OOM killer.` (the kernel's)
    KernelKilled { unit: String },
    /// `<unit>: Failed with result 'oom-kill'.` (either killer)
    FailedOomKill { unit: String },
}

impl Unit {
    pub fn unit(&self) -> &str {
        match self {
            Unit::OomdKilled { unit, .. }
            | Unit::KernelKilled { unit }
            | Unit::FailedOomKill { unit } => unit,
        }
    }
}

fn cause(r: &str) -> Cause {
    let r = r.trim();
    if let Some(p) = r.strip_prefix("memory pressure for ") {
        let (monitored, tail) = match p.split_once(" being ") {
            Some((m, t)) => (m.to_owned(), t),
            None => (p.to_owned(), ""),
        };
        let mut it = tail.split_whitespace();
        let pressure_pct = it.next().and_then(pct);
        let limit_pct = it.nth(1).and_then(pct);
        let duration = after(tail, "for > ", &[' ']).map(str::to_owned);
        return Cause::Pressure {
            monitored,
            pressure_pct,
            limit_pct,
            duration,
        };
    }
    if r.starts_with("memory used (") || r.starts_with("swap used (") {
        let paren = |key: &str| after(r, key, &[')']).and_then(|v| v.parse().ok());
        return Cause::Swap {
            mem_used: paren("memory used ("),
            mem_total: r
                .find("memory used (")
                .and_then(|i| after(&r[i..], "/ total (", &[')']))
                .and_then(|v| v.parse().ok()),
            swap_used: paren("swap used ("),
            swap_total: r
                .find("swap used (")
                .and_then(|i| after(&r[i..], "/ total (", &[')']))
                .and_then(|v| v.parse().ok()),
            limit_pct: after(r, "more than ", &[' ']).and_then(pct),
        };
    }
    Cause::Other(r.to_owned())
}

/// Parse one systemd-oomd message.
pub fn parse(msg: &str) -> Option<Oomd> {
    let m = msg.trim();
    if let Some(r) = m.strip_prefix("Killed ")
        && r.starts_with('/')
        && let Some((cg, why)) = r.split_once(" due to ")
    {
        return Some(Oomd::Killed {
            cgroup: cg.to_owned(),
            cause: cause(why),
            marked: false,
        });
    }
    if let Some(r) = m.strip_prefix("Marked ")
        && let Some((cg, why)) = r.split_once(" for killing due to ")
    {
        return Some(Oomd::Killed {
            cgroup: cg.to_owned(),
            cause: cause(why),
            marked: true,
        });
    }
    if let Some(r) = m.strip_prefix("Considered ")
        && r.contains("cgroups for killing")
    {
        return Some(Oomd::Considered {
            n: lead_u64(r).unwrap_or(0) as u32,
        });
    }
    if let Some(r) = m.strip_prefix("Memory pressure for ")
        && let Some((mon, tail)) = r.split_once(" is ")
    {
        let mut it = tail.split_whitespace();
        let pressure_pct = it.next().and_then(pct);
        let limit_pct = it.nth(1).and_then(pct);
        return Some(Oomd::Trigger {
            monitored: mon.to_owned(),
            pressure_pct,
            limit_pct,
        });
    }
    if m.starts_with("Failed to kill any cgroup") {
        return Some(Oomd::Failed);
    }
    // Of the candidate dump, the lines with figures about memory (the prefilter passes
    // only these).
    for key in ["Memory Pressure Limit:", "Current Memory Usage:"] {
        if m.starts_with(key) {
            return Some(Oomd::Candidate(m.to_owned()));
        }
    }
    None
}

/// Parse a line systemd writes about a unit (`<unit>: …`).
pub fn parse_unit(msg: &str) -> Option<Unit> {
    let m = msg.trim();
    let (unit, r) = m.split_once(": ")?;
    if unit.is_empty() || unit.contains(' ') {
        return None;
    }
    let unit = unit.to_owned();
    if let Some(n) = r.strip_prefix("systemd-oomd killed ") {
        if !n.contains("process(es) in this unit") {
            return None;
        }
        return Some(Unit::OomdKilled {
            unit,
            processes: lead_u64(n).map(|v| v as u32),
        });
    }
    if r.starts_with("A process of this unit has been killed by the OOM killer")
        || r.starts_with("The kernel OOM killer killed some processes in this unit")
    {
        return Some(Unit::KernelKilled { unit });
    }
    if r.starts_with("Failed with result 'oom-kill'") {
        return Some(Unit::FailedOomKill { unit });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_kill_old_and_new() {
        let o = parse("Killed /user.slice/user-1001.slice/user@1001.service/app.slice/vte-spawn-x.scope due to memory pressure for /user.slice/user-1001.slice/user@1001.service being 51.07% > 50.00% for > 20s with reclaim activity").unwrap();
        let Oomd::Killed {
            cgroup,
            cause,
            marked,
        } = o
        else {
            panic!()
        };
        assert!(cgroup.ends_with("vte-spawn-x.scope"));
        assert!(!marked);
        assert_eq!(
            cause,
            Cause::Pressure {
                monitored: "/user.slice/user-1001.slice/user@1001.service".into(),
                pressure_pct: Some(51.07),
                limit_pct: Some(50.0),
                duration: Some("20s".into())
            }
        );
        let o = parse("Marked /system.slice/docker-3.scope for killing due to memory pressure for /system.slice being 87.18% > 50.00% for > 20s with reclaim activity").unwrap();
        assert!(matches!(o, Oomd::Killed { marked: true, .. }));
    }

    #[test]
    fn swap_kill() {
        let o = parse("Killed /user.slice/app.scope due to memory used (16109408256) / total (16474247168) and swap used (1982627840) / total (2147479552) being more than 90.00%").unwrap();
        let Oomd::Killed { cause, .. } = o else {
            panic!()
        };
        assert_eq!(
            cause,
            Cause::Swap {
                mem_used: Some(16109408256),
                mem_total: Some(16474247168),
                swap_used: Some(1982627840),
                swap_total: Some(2147479552),
                limit_pct: Some(90.0)
            }
        );
    }

    #[test]
    fn unit_lines() {
        assert_eq!(
            parse_unit("app-kitty-47f7.scope: systemd-oomd killed 65 process(es) in this unit."),
            Some(Unit::OomdKilled {
                unit: "app-kitty-47f7.scope".into(),
                processes: Some(65)
            })
        );
        assert_eq!(
            parse_unit("app-zcode-7806.scope: systemd-oomd killed some process(es) in this unit."),
            Some(Unit::OomdKilled {
                unit: "app-zcode-7806.scope".into(),
                processes: None
            })
        );
        assert!(matches!(
            parse_unit(
                "user@1021.service: A process of this unit has been killed by the OOM killer."
            ),
            Some(Unit::KernelKilled { .. })
        ));
        assert!(matches!(
            parse_unit("apache2.service: Failed with result 'oom-kill'."),
            Some(Unit::FailedOomKill { .. })
        ));
        assert_eq!(
            parse_unit("apache2.service: Failed with result 'exit-code'."),
            None
        );
    }

    #[test]
    fn context_lines() {
        assert_eq!(
            parse("Considered 10 cgroups for killing, top candidates were:"),
            Some(Oomd::Considered { n: 10 })
        );
        assert!(matches!(
            parse("Memory pressure for /system.slice is 85.03% > 80.00% for > 2s with reclaim activity"),
            Some(Oomd::Trigger { pressure_pct: Some(p), .. }) if p == 85.03
        ));
        assert_eq!(
            parse("Failed to kill any cgroup(s) under /user.slice based on pressure"),
            Some(Oomd::Failed)
        );
        assert_eq!(
            parse("No swap; memory pressure usage will be degraded"),
            None
        );
    }
}

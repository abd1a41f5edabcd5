//! Which OOM killers are armed on a machine, and what to do about each: the pure half of
//! `oomguard doctor`. Readers in `host::armed` gather a [`Machine`]; [`findings`] turns it
//! into findings, each ending with a remedy. Parsers here read oomd.conf, `oomctl dump`
//! and earlyoom's command line.

use serde::Serialize;

/// The kernel's OOM settings (read only: oomguard never changes them).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Kernel {
    /// `vm.overcommit_memory`: 0 heuristic, 1 always, 2 strict.
    pub overcommit_memory: Option<u8>,
    pub overcommit_ratio: Option<u32>,
    /// `vm.panic_on_oom`: 0 kill, 1 panic unless the OOM is constrained, 2 always panic.
    pub panic_on_oom: Option<u8>,
    /// `vm.oom_kill_allocating_task`: kill the task that asked, not the worst one.
    pub oom_kill_allocating_task: Option<u8>,
    pub mem_total_kib: u64,
    pub swap_total_kib: u64,
}

/// systemd-oomd's configuration as oomd.conf and `oomctl` give it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Oomd {
    pub running: bool,
    pub pid: Option<i32>,
    pub swap_used_limit_pct: f64,
    pub default_pressure_limit_pct: f64,
    pub default_pressure_duration_s: f64,
    /// Every cgroup it watches (from `oomctl dump`; empty when oomctl was not available).
    pub rules: Vec<OomdRule>,
    /// Whether `rules` came from oomd itself (oomctl).
    pub rules_known: bool,
}

impl Default for Oomd {
    fn default() -> Oomd {
        Oomd {
            running: false,
            pid: None,
            swap_used_limit_pct: 90.0,
            default_pressure_limit_pct: 60.0,
            default_pressure_duration_s: 30.0,
            rules: Vec::new(),
            rules_known: false,
        }
    }
}

/// One cgroup systemd-oomd watches.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OomdRule {
    /// `pressure` (ManagedOOMMemoryPressure=kill) or `swap` (ManagedOOMSwap=kill).
    pub kind: &'static str,
    pub cgroup: String,
    pub limit_pct: Option<f64>,
    pub duration_s: Option<f64>,
    /// `full avg10` now (pressure rules).
    pub pressure_avg10: Option<f64>,
}

/// earlyoom or nohang, as found running.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Daemon {
    pub running: bool,
    pub pid: Option<i32>,
    pub args: Vec<String>,
    /// nohang's config file, when it runs.
    pub config: Option<String>,
}

/// earlyoom's thresholds, from its command line (defaults as in earlyoom 1.6+).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EarlyoomRules {
    pub mem_term_pct: f64,
    pub swap_term_pct: f64,
    pub mem_term_mib: Option<u64>,
    pub prefer: Option<String>,
    pub avoid: Option<String>,
    pub ignore: Option<String>,
    pub sort_by_rss: bool,
}

/// The cgroup setup.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Cgroup {
    /// `v2`, `v1`, `hybrid` (v1 memory controller with a v2 tree) or `none`.
    pub version: String,
    pub memory_controller: bool,
}

/// Everything `doctor` reads.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Machine {
    pub kernel: Kernel,
    pub systemd_oomd: Oomd,
    pub earlyoom: Daemon,
    pub nohang: Daemon,
    pub cgroup: Cgroup,
}

/// One thing `doctor` says, with what to do about it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub killer: &'static str,
    /// `armed`, `not running`, `not applicable`, `note`.
    pub status: &'static str,
    pub detail: String,
    pub remedy: String,
}

/// oomd.conf and its drop-ins, in systemd's order (later assignments win):
/// `SwapUsedLimit=`, `DefaultMemoryPressureLimit=` (percent), `DefaultMemoryPressureDurationSec=`.
pub fn oomd_conf(texts: &[String]) -> (f64, f64, f64) {
    let d = Oomd::default();
    let (mut swap, mut limit, mut duration) = (
        d.swap_used_limit_pct,
        d.default_pressure_limit_pct,
        d.default_pressure_duration_s,
    );
    for t in texts {
        for l in t.lines().map(str::trim) {
            let Some((k, v)) = l.split_once('=') else {
                continue;
            };
            let v = v.trim();
            match k.trim() {
                "SwapUsedLimit" => swap = percent(v).unwrap_or(swap),
                "DefaultMemoryPressureLimit" => limit = percent(v).unwrap_or(limit),
                "DefaultMemoryPressureDurationSec" => duration = seconds(v).unwrap_or(duration),
                _ => {}
            }
        }
    }
    (swap, limit, duration)
}

/// `50%`, `50.00%`, `500‰`, `5000‱`.
pub fn percent(v: &str) -> Option<f64> {
    let v = v.trim();
    if let Some(p) = v.strip_suffix('%') {
        return p.trim().parse().ok();
    }
    if let Some(p) = v.strip_suffix('‰') {
        return p.trim().parse::<f64>().ok().map(|x| x / 10.0);
    }
    if let Some(p) = v.strip_suffix('‱') {
        return p.trim().parse::<f64>().ok().map(|x| x / 100.0);
    }
    None
}

/// A systemd time span (`20s`, `1min 30s`, `500ms`, a bare number of seconds).
pub fn seconds(v: &str) -> Option<f64> {
    let v = v.trim();
    if let Ok(s) = v.parse::<f64>() {
        return Some(s);
    }
    let mut total = 0.0;
    let mut rest = v;
    let mut any = false;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..u];
        rest = &rest[u..];
        total += num
            * match unit {
                "" | "s" | "sec" | "second" | "seconds" => 1.0,
                "ms" | "msec" => 0.001,
                "us" | "usec" => 1e-6,
                "m" | "min" | "minute" | "minutes" => 60.0,
                "h" | "hr" | "hour" | "hours" => 3600.0,
                "d" | "day" | "days" => 86400.0,
                _ => return None,
            };
        any = true;
    }
    any.then_some(total)
}

/// The text of `oomctl dump` (systemd 248+): the header figures and each watched cgroup.
pub fn parse_oomctl(text: &str, o: &mut Oomd) {
    let mut section = "";
    for raw in text.lines() {
        let l = raw.trim();
        if let Some(v) = l.strip_prefix("Swap Used Limit:") {
            o.swap_used_limit_pct = percent(v).unwrap_or(o.swap_used_limit_pct);
        } else if let Some(v) = l.strip_prefix("Default Memory Pressure Limit:") {
            o.default_pressure_limit_pct = percent(v).unwrap_or(o.default_pressure_limit_pct);
        } else if let Some(v) = l.strip_prefix("Default Memory Pressure Duration:") {
            o.default_pressure_duration_s = seconds(v).unwrap_or(o.default_pressure_duration_s);
        } else if l.starts_with("Swap Monitored CGroups") {
            section = "swap";
        } else if l.starts_with("Memory Pressure Monitored CGroups") {
            section = "pressure";
        } else if l.starts_with("System Context") {
            section = "";
        } else if let Some(p) = l.strip_prefix("Path:")
            && !section.is_empty()
        {
            o.rules.push(OomdRule {
                kind: if section == "swap" {
                    "swap"
                } else {
                    "pressure"
                },
                cgroup: p.trim().to_owned(),
                limit_pct: None,
                duration_s: None,
                pressure_avg10: None,
            });
        } else if let Some(r) = o.rules.last_mut() {
            if let Some(v) = l.strip_prefix("Memory Pressure Limit:") {
                r.limit_pct = percent(v).filter(|&p| p > 0.0);
            } else if let Some(v) = l.strip_prefix("Memory Pressure Duration:") {
                r.duration_s = seconds(v);
            } else if let Some(v) = l.strip_prefix("Pressure: Avg10:") {
                r.pressure_avg10 = v
                    .trim()
                    .split([' ', ','])
                    .next()
                    .and_then(|x| x.parse().ok());
            }
        }
    }
    o.rules_known = true;
}

/// earlyoom's thresholds from its arguments (`-m PERCENT[,KILL]`, `-s`, `-M SIZE_KiB`,
/// `--prefer`, `--avoid`, `--ignore`, `--sort-by-rss`), with earlyoom's defaults.
pub fn earlyoom_rules(args: &[String]) -> EarlyoomRules {
    let mut r = EarlyoomRules {
        mem_term_pct: 10.0,
        swap_term_pct: 10.0,
        mem_term_mib: None,
        prefer: None,
        avoid: None,
        ignore: None,
        sort_by_rss: false,
    };
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        // `-m10` style too.
        let (key, inline) = match (key, inline) {
            (k, None) if k.len() > 2 && k.starts_with('-') && !k.starts_with("--") => {
                (&k[..2], Some(k[2..].to_owned()))
            }
            x => x,
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned());
        let first = |v: Option<String>| {
            v.and_then(|v| {
                v.split(',')
                    .next()
                    .and_then(|x| x.trim().parse::<f64>().ok())
            })
        };
        match key {
            "-m" => r.mem_term_pct = first(value()).unwrap_or(r.mem_term_pct),
            "-s" => r.swap_term_pct = first(value()).unwrap_or(r.swap_term_pct),
            "-M" => r.mem_term_mib = first(value()).map(|k| (k / 1024.0) as u64),
            "--prefer" => r.prefer = value(),
            "--avoid" => r.avoid = value(),
            "--ignore" => r.ignore = value(),
            "--sort-by-rss" => r.sort_by_rss = true,
            _ => {}
        }
    }
    r
}

fn gib(kib: u64) -> String {
    format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0)
}

/// What is armed, and what to do about it.
pub fn findings(m: &Machine) -> Vec<Finding> {
    let mut out = Vec::new();
    let k = &m.kernel;
    let shield = "run jobs with `oomguard run -- CMD` (or `oomguard protect PID`)";
    out.push(match k.panic_on_oom {
        Some(p @ 1..) => Finding {
            killer: "kernel",
            status: "armed",
            detail: format!(
                "vm.panic_on_oom = {p}: the kernel {} instead of killing a process",
                if p == 2 {
                    "panics on every OOM"
                } else {
                    "panics on a global OOM"
                }
            ),
            remedy: "no shield helps against a panic; this is the administrator's choice \
                     (oomguard never changes sysctls)"
                .into(),
        },
        _ => Finding {
            killer: "kernel",
            status: "armed",
            detail: format!(
                "the kernel OOM killer kills the process with the highest badness when RAM ({}) \
                 and swap ({}) run out, or a memory cgroup hits its limit",
                gib(k.mem_total_kib),
                gib(k.swap_total_kib)
            ),
            remedy: format!("{shield}: oom_score_adj -1000 makes the kernel skip the job"),
        },
    });
    match k.overcommit_memory {
        Some(2) => out.push(Finding {
            killer: "kernel",
            status: "note",
            detail: format!(
                "vm.overcommit_memory = 2 (strict, ratio {}%): allocations past the commit \
                 limit fail with ENOMEM before any OOM kill",
                k.overcommit_ratio.unwrap_or(50)
            ),
            remedy: "a job may see MemoryError or std::bad_alloc rather than a kill: \
                     checkpoint on allocation errors"
                .into(),
        }),
        Some(1) => out.push(Finding {
            killer: "kernel",
            status: "note",
            detail: "vm.overcommit_memory = 1: every allocation succeeds; memory runs out \
                     only when touched, and then the OOM killer acts"
                .into(),
            remedy: "nothing to do; shield long jobs".into(),
        }),
        _ => {}
    }
    if k.oom_kill_allocating_task == Some(1) {
        out.push(Finding {
            killer: "kernel",
            status: "note",
            detail: "vm.oom_kill_allocating_task = 1: a global OOM kills the task that \
                     asked for memory, not the worst one (oom_score_adj -1000 still exempts)"
                .into(),
            remedy: shield.into(),
        });
    }
    if k.swap_total_kib == 0 {
        out.push(Finding {
            killer: "kernel",
            status: "note",
            detail: "no swap: memory pressure turns into OOM kills quickly".into(),
            remedy: "keep a margin below RAM for long jobs, or add swap (oomguard changes \
                     nothing on the system)"
                .into(),
        });
    }
    let o = &m.systemd_oomd;
    if !o.running {
        out.push(Finding {
            killer: "systemd-oomd",
            status: "not running",
            detail: "systemd-oomd is not running".into(),
            remedy: "nothing to do".into(),
        });
    } else {
        out.push(Finding {
            killer: "systemd-oomd",
            status: "armed",
            detail: format!(
                "systemd-oomd runs{}: it kills a whole cgroup (every process of a terminal \
                 tab or service) when a watched unit's memory pressure stays above its limit \
                 (default {}% for {} s), or when memory and swap are both {}% used; it ignores \
                 oom_score_adj",
                o.pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                o.default_pressure_limit_pct,
                o.default_pressure_duration_s,
                o.swap_used_limit_pct
            ),
            remedy: "`oomguard run` moves the job into its own root-owned scope with \
                     ManagedOOMPreference=omit; that needs the daemon: \
                     `sudo systemctl enable --now oomguard`"
                .into(),
        });
        if !o.rules_known {
            out.push(Finding {
                killer: "systemd-oomd",
                status: "note",
                detail: "oomctl could not be run: the watched units are unknown".into(),
                remedy: "run `oomctl` (as root) to list them".into(),
            });
        }
        for r in &o.rules {
            let limit = r.limit_pct.unwrap_or(o.default_pressure_limit_pct);
            let duration = r.duration_s.unwrap_or(o.default_pressure_duration_s);
            out.push(match r.kind {
                "pressure" => Finding {
                    killer: "systemd-oomd",
                    status: "armed",
                    detail: format!(
                        "ManagedOOMMemoryPressure=kill on {}: pressure above {limit}% for {duration} s \
                         kills its busiest child cgroup{}",
                        r.cgroup,
                        r.pressure_avg10
                            .map(|p| format!(" (now {p:.2}%)"))
                            .unwrap_or_default()
                    ),
                    remedy: format!("jobs under {} need the oomd layer: `oomguard run`", r.cgroup),
                },
                _ => Finding {
                    killer: "systemd-oomd",
                    status: if k.swap_total_kib == 0 {
                        "not applicable"
                    } else {
                        "armed"
                    },
                    detail: format!(
                        "ManagedOOMSwap=kill on {}: when memory and swap are both over {}% used, \
                         it kills the descendant using the most swap{}",
                        r.cgroup,
                        o.swap_used_limit_pct,
                        if k.swap_total_kib == 0 {
                            " (this machine has no swap: it never acts)"
                        } else {
                            ""
                        }
                    ),
                    remedy: if k.swap_total_kib == 0 {
                        "nothing to do".into()
                    } else {
                        "`oomguard run` (its scope is omitted from oomd's choice)".into()
                    },
                },
            });
        }
    }
    let e = &m.earlyoom;
    if e.running {
        let r = earlyoom_rules(&e.args);
        let mut d = format!(
            "earlyoom{} sends SIGTERM when available memory <= {}% and free swap <= {}%, \
             to the highest oom_score{}",
            e.pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
            r.mem_term_pct,
            r.swap_term_pct,
            if r.sort_by_rss {
                " (--sort-by-rss: the largest RSS, ignoring oom_score_adj)"
            } else {
                ""
            }
        );
        if let Some(p) = &r.prefer {
            d.push_str(&format!("; --prefer '{p}' adds 300"));
        }
        if let Some(p) = &r.avoid {
            d.push_str(&format!("; --avoid '{p}' subtracts 300"));
        }
        out.push(Finding {
            killer: "earlyoom",
            status: "armed",
            detail: d,
            remedy: "oom_score_adj -1000 makes earlyoom skip the job: `oomguard run`".into(),
        });
    } else {
        out.push(Finding {
            killer: "earlyoom",
            status: "not running",
            detail: "earlyoom is not running".into(),
            remedy: "nothing to do".into(),
        });
    }
    let n = &m.nohang;
    out.push(if n.running {
        Finding {
            killer: "nohang",
            status: "armed",
            detail: format!(
                "nohang{} runs with {}: it acts on low MemAvailable/swap (and PSI when \
                 configured), by oom_score plus its @BADNESS_ADJ_RE rules",
                n.pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                n.config.as_deref().unwrap_or("its default config")
            ),
            remedy: "oom_score 0 (adj -1000) is never a nohang candidate: `oomguard run`; \
                     check its @BADNESS_ADJ_RE rules for the job's name"
                .into(),
        }
    } else {
        Finding {
            killer: "nohang",
            status: "not running",
            detail: "nohang is not running".into(),
            remedy: "nothing to do".into(),
        }
    });
    let c = &m.cgroup;
    out.push(Finding {
        killer: "kernel",
        status: "note",
        detail: format!(
            "cgroup {}{}",
            c.version,
            if c.memory_controller {
                " with the memory controller: memory limits (containers, Slurm, systemd \
                 MemoryMax) make their own, smaller OOMs"
            } else {
                " without the memory controller: no memory-cgroup OOMs"
            }
        ),
        remedy: if c.memory_controller {
            "`oomguard doctor PID` shows how close a job's cgroup is to its limit".into()
        } else {
            "nothing to do".into()
        },
    });
    // Grouped by killer, in this order (the sort is stable).
    let rank = |k: &str| {
        ["kernel", "systemd-oomd", "earlyoom", "nohang"]
            .iter()
            .position(|x| *x == k)
    };
    out.sort_by_key(|f| rank(f.killer));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oomd_conf_in_order() {
        assert_eq!(oomd_conf(&[]), (90.0, 60.0, 30.0));
        let t = vec![
            "[OOM]\nSwapUsedLimit=80%\n#DefaultMemoryPressureLimit=10%\n".to_string(),
            "[OOM]\nDefaultMemoryPressureLimit=50%\nDefaultMemoryPressureDurationSec=1min 30s\n"
                .to_string(),
            "[OOM]\nDefaultMemoryPressureDurationSec=20s\n".to_string(),
        ];
        assert_eq!(oomd_conf(&t), (80.0, 50.0, 20.0));
        assert_eq!(seconds("500ms"), Some(0.5));
        assert_eq!(seconds("x"), None);
        assert_eq!(percent("5000‱"), Some(50.0));
    }

    #[test]
    fn oomctl_dump() {
        let text = "Dry Run: no
Swap Used Limit: 90.00%
Default Memory Pressure Limit: 60.00%
Default Memory Pressure Duration: 5s
System Context:
        Memory: Used: 1.2G Total: 1.9G
        Swap: Used: 0B Total: 0B
Swap Monitored CGroups:
        Path: /
                Swap Usage: (see System Context)
Memory Pressure Monitored CGroups:
        Path: /user.slice/user-1000.slice/user@1000.service
                Memory Pressure Limit: 50.00%
                Pressure: Avg10: 12.50 Avg60: 0.00 Avg300: 0.00 Total: 0
                Current Memory Usage: 9.0M
";
        let mut o = Oomd::default();
        parse_oomctl(text, &mut o);
        assert_eq!(o.default_pressure_duration_s, 5.0);
        assert_eq!(o.rules.len(), 2);
        assert_eq!((o.rules[0].kind, o.rules[0].cgroup.as_str()), ("swap", "/"));
        let p = &o.rules[1];
        assert_eq!(p.kind, "pressure");
        assert_eq!(p.cgroup, "/user.slice/user-1000.slice/user@1000.service");
        assert_eq!(p.limit_pct, Some(50.0));
        assert_eq!(p.pressure_avg10, Some(12.5));
    }

    #[test]
    fn earlyoom_args() {
        let a = |v: &[&str]| earlyoom_rules(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let r = a(&[
            "-m",
            "5,2",
            "-s",
            "100",
            "--prefer",
            "^python$",
            "--sort-by-rss",
        ]);
        assert_eq!((r.mem_term_pct, r.swap_term_pct), (5.0, 100.0));
        assert_eq!(r.prefer.as_deref(), Some("^python$"));
        assert!(r.sort_by_rss);
        let r = a(&["-m15", "--avoid=^Xorg$", "-M", "204800"]);
        assert_eq!(r.mem_term_pct, 15.0);
        assert_eq!(r.avoid.as_deref(), Some("^Xorg$"));
        assert_eq!(r.mem_term_mib, Some(200));
        assert_eq!(a(&[]).mem_term_pct, 10.0);
    }

    #[test]
    fn every_finding_has_a_remedy() {
        let mut m = Machine::default();
        m.systemd_oomd.running = true;
        m.earlyoom.running = true;
        m.nohang.running = true;
        m.kernel.panic_on_oom = Some(2);
        m.kernel.overcommit_memory = Some(2);
        let f = findings(&m);
        assert!(
            f.iter()
                .all(|f| !f.remedy.is_empty() && !f.detail.is_empty())
        );
        assert!(f.iter().any(|f| f.detail.contains("panics on every OOM")));
        assert!(
            f.iter()
                .any(|f| f.killer == "earlyoom" && f.status == "armed")
        );
        assert!(
            f.iter()
                .any(|f| f.detail.contains("oomctl could not be run"))
        );
    }
}

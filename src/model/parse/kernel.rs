//! The kernel OOM killer's lines (`mm/oom_kill.c`, `mm/memcontrol.c`), old and new:
//! `invoked oom-killer`, the memcg usage lines, the `oom-kill:` summary (4.19+), `Out of
//! memory: Killed process` (global), `Memory cgroup out of memory: Killed process`
//! (memcg), the bare `Killed process` of older kernels, `Kill process … or sacrifice
//! child` (before 4.19: the choice, not the kill), `Task in … killed as a result of limit
//! of …` (old memcg), and `oom_reaper: reaped process`.

use super::{after, kb, lead_u64};

/// Memory figures of a killed or reaped process, in KiB.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub total_vm_kib: Option<u64>,
    pub anon_rss_kib: Option<u64>,
    pub file_rss_kib: Option<u64>,
    pub shmem_rss_kib: Option<u64>,
    pub pgtables_kib: Option<u64>,
    pub uid: Option<u32>,
    pub oom_score_adj: Option<i32>,
}

/// One kernel OOM line.
#[derive(Debug, Clone, PartialEq)]
pub enum Kernel {
    /// `python3 invoked oom-killer: gfp_mask=…, order=0, oom_score_adj=0`: an OOM began.
    Invoked {
        process: String,
        oom_score_adj: Option<i32>,
    },
    /// `memory: usage 307200kB, limit 307200kB, failcnt 8780` (the memcg that hit its limit).
    MemcgUsage { usage_kib: u64, limit_kib: u64 },
    /// `Memory cgroup stats for /job/4f2a/ootest:`
    MemcgStats { cgroup: String },
    /// `Task in /a killed as a result of limit of /b` (kernels before 4.19).
    TaskIn {
        task_cgroup: String,
        limit_cgroup: String,
    },
    /// `oom-kill:constraint=…,task_memcg=…,task=…,pid=…,uid=…` (4.19+); `truncated` when
    /// the line was cut before its end (journalctl's `>`).
    Summary {
        constraint: String,
        oom_memcg: Option<String>,
        task_memcg: Option<String>,
        task: Option<String>,
        pid: Option<u32>,
        uid: Option<u32>,
        truncated: bool,
    },
    /// `Out of memory: Kill process 1234 (x) score 999 or sacrifice child` (before 4.19).
    Chose {
        pid: u32,
        process: String,
        memcg: bool,
    },
    /// `… Killed process 1234 (x) total-vm:…`: the kill. `scope` is `global`, `memcg`,
    /// or `unknown` (the bare old form).
    Killed {
        pid: u32,
        process: String,
        scope: &'static str,
        figures: Figures,
    },
    /// `oom_reaper: reaped process 140113 (x), now anon-rss:16kB, …`
    Reaped {
        pid: u32,
        process: String,
        figures: Figures,
    },
    /// `Out of memory and no killable processes...`: an OOM with no victim.
    NoVictim,
}

impl Kernel {
    /// Lines that prove a process was killed: the kill, its summary, the reaper.
    pub fn is_kill(&self) -> bool {
        matches!(
            self,
            Kernel::Killed { .. } | Kernel::Summary { .. } | Kernel::Reaped { .. }
        )
    }
}

/// `1234 (name)` at the start of `s`; the name may hold spaces and parentheses.
fn pid_name(s: &str) -> Option<(u32, String, &str)> {
    let s = s.trim_start();
    let pid = lead_u64(s)? as u32;
    let r = s[s.bytes().take_while(u8::is_ascii_digit).count()..].strip_prefix(" (")?;
    // The name ends at the last `)` followed by `,`, ` ` or the end.
    let mut end = None;
    for (i, _) in r.match_indices(')') {
        match r.as_bytes().get(i + 1) {
            None | Some(b',') | Some(b' ') => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end?;
    Some((pid, r[..end].to_owned(), &r[end + 1..]))
}

fn figures(s: &str) -> Figures {
    let stops = &[',', ' '];
    Figures {
        total_vm_kib: after(s, "total-vm:", stops).and_then(kb),
        anon_rss_kib: after(s, "anon-rss:", stops).and_then(kb),
        file_rss_kib: after(s, "file-rss:", stops).and_then(kb),
        shmem_rss_kib: after(s, "shmem-rss:", stops).and_then(kb),
        pgtables_kib: after(s, "pgtables:", stops).and_then(kb),
        uid: after(s, "UID:", stops).and_then(|v| v.parse().ok()),
        oom_score_adj: after(s, "oom_score_adj:", stops).and_then(|v| v.parse().ok()),
    }
}

/// Parse one kernel message (the envelope already split off).
pub fn parse(msg: &str) -> Option<Kernel> {
    let m = msg.trim();
    if let Some(i) = m.find(" invoked oom-killer:") {
        let adj = after(&m[i..], "oom_score_adj=", &[',', ' ']).and_then(|v| v.parse().ok());
        return Some(Kernel::Invoked {
            process: m[..i].to_owned(),
            oom_score_adj: adj,
        });
    }
    if let Some(r) = m.strip_prefix("oom-kill:") {
        return summary(r);
    }
    if let Some(r) = m.strip_prefix("oom_reaper: reaped process ") {
        let (pid, process, rest) = pid_name(r)?;
        return Some(Kernel::Reaped {
            pid,
            process,
            figures: figures(rest),
        });
    }
    if let Some(r) = m.strip_prefix("memory: usage ") {
        let usage_kib = kb(r.split(',').next()?)?;
        let limit_kib = kb(after(r, "limit ", &[','])?)?;
        return Some(Kernel::MemcgUsage {
            usage_kib,
            limit_kib,
        });
    }
    if let Some(r) = m.strip_prefix("Memory cgroup stats for ") {
        let cg = r.strip_suffix(':').unwrap_or(r);
        return Some(Kernel::MemcgStats {
            cgroup: cg.to_owned(),
        });
    }
    if let Some(r) = m.strip_prefix("Task in ") {
        let (task, limit) = r.split_once(" killed as a result of limit of ")?;
        return Some(Kernel::TaskIn {
            task_cgroup: task.to_owned(),
            limit_cgroup: limit.trim().to_owned(),
        });
    }
    if m.starts_with("Out of memory and no killable processes") {
        return Some(Kernel::NoVictim);
    }
    // `Out of memory: …`, `Memory cgroup out of memory: …`,
    // `Out of memory (oom_kill_allocating_task): …`, or nothing (old `Killed process`).
    let (scope, r) = if let Some(r) = m.strip_prefix("Memory cgroup out of memory") {
        ("memcg", r)
    } else if let Some(r) = m.strip_prefix("Out of memory") {
        ("global", r)
    } else {
        ("unknown", m)
    };
    let r = if scope == "unknown" {
        r
    } else {
        // Skip `: ` or ` (oom_kill_allocating_task): `.
        r.split_once(": ")?.1
    };
    if let Some(r) = r.strip_prefix("Killed process ") {
        let (pid, process, rest) = pid_name(r)?;
        return Some(Kernel::Killed {
            pid,
            process,
            scope,
            figures: figures(rest),
        });
    }
    if scope != "unknown"
        && let Some(r) = r.strip_prefix("Kill process ")
    {
        let (pid, process, _) = pid_name(r)?;
        return Some(Kernel::Chose {
            pid,
            process,
            memcg: scope == "memcg",
        });
    }
    None
}

/// The `oom-kill:` summary: comma-separated `key=value`, read from known keys so that
/// commas inside a cgroup path or a task name do not confuse it.
fn summary(r: &str) -> Option<Kernel> {
    let truncated = r.ends_with('>');
    let r = r.strip_suffix('>').unwrap_or(r);
    let constraint = after(r, "constraint=", &[','])?.to_owned();
    let field = |key: &str, next: &[&str]| -> Option<String> {
        let i = r.find(key)? + key.len();
        let rest = &r[i..];
        let end = next
            .iter()
            .filter_map(|n| rest.find(n))
            .min()
            .unwrap_or(rest.len());
        Some(rest[..end].to_owned())
    };
    let task_memcg = field(",task_memcg=", &[",task="]);
    let oom_memcg = field(",oom_memcg=", &[",task_memcg="]);
    let task = field(",task=", &[",pid="]);
    let pid = field(",pid=", &[","]).and_then(|v| v.parse().ok());
    let uid = field(",uid=", &[","]).and_then(|v| v.parse().ok());
    Some(Kernel::Summary {
        constraint,
        oom_memcg,
        task_memcg,
        task,
        pid,
        uid,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_lines() {
        let k = parse("Out of memory: Killed process 419562 (rg) total-vm:13676836kB, anon-rss:10938524kB, file-rss:8kB, shmem-rss:0kB, UID:1000 pgtables:24868kB oom_score_adj:200").unwrap();
        let Kernel::Killed {
            pid,
            process,
            scope,
            figures,
        } = k
        else {
            panic!()
        };
        assert_eq!((pid, process.as_str(), scope), (419562, "rg", "global"));
        assert_eq!(figures.anon_rss_kib, Some(10938524));
        assert_eq!(figures.oom_score_adj, Some(200));
        assert_eq!(figures.uid, Some(1000));
        let k = parse("Memory cgroup out of memory: Killed process 63214 (uwsgi) total-vm:3149468kB, anon-rss:164992kB").unwrap();
        assert!(matches!(
            k,
            Kernel::Killed {
                scope: "memcg",
                pid: 63214,
                ..
            }
        ));
        let k = parse(
            "Killed process 7748 (python) total-vm:12907828kB, anon-rss:11500204kB, file-rss:0kB",
        )
        .unwrap();
        assert!(matches!(
            k,
            Kernel::Killed {
                scope: "unknown",
                pid: 7748,
                ..
            }
        ));
        let k = parse("Out of memory: Killed process 12 (GC Thread#9) total-vm:1kB").unwrap();
        assert!(matches!(k, Kernel::Killed { ref process, .. } if process == "GC Thread#9"));
        let k = parse("Out of memory: Killed process 12 (a (b)) total-vm:1kB").unwrap();
        assert!(matches!(k, Kernel::Killed { ref process, .. } if process == "a (b)"));
    }

    #[test]
    fn summary_lines() {
        let k = parse("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/job/4f2a/ootest,task_memcg=/job/4f2a/ootest,task=python3,pid=2242,uid=0").unwrap();
        assert_eq!(
            k,
            Kernel::Summary {
                constraint: "CONSTRAINT_MEMCG".into(),
                oom_memcg: Some("/job/4f2a/ootest".into()),
                task_memcg: Some("/job/4f2a/ootest".into()),
                task: Some("python3".into()),
                pid: Some(2242),
                uid: Some(0),
                truncated: false
            }
        );
        let k = parse("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=systemd-oomd.service,mems_allowed=0,global_oom,task_memcg=/user.slice/vte-s>").unwrap();
        let Kernel::Summary {
            task_memcg,
            pid,
            truncated,
            ..
        } = k
        else {
            panic!()
        };
        assert_eq!(task_memcg.as_deref(), Some("/user.slice/vte-s"));
        assert_eq!(pid, None);
        assert!(truncated);
    }

    #[test]
    fn context_lines() {
        assert_eq!(
            parse(
                "python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"
            ),
            Some(Kernel::Invoked {
                process: "python3".into(),
                oom_score_adj: Some(0)
            })
        );
        assert_eq!(
            parse("memory: usage 307200kB, limit 307200kB, failcnt 8780"),
            Some(Kernel::MemcgUsage {
                usage_kib: 307200,
                limit_kib: 307200
            })
        );
        assert!(matches!(
            parse(
                "oom_reaper: reaped process 140113 (simplescreenrec), now anon-rss:16kB, file-rss:0kB, shmem-rss:9920kB"
            ),
            Some(Kernel::Reaped { pid: 140113, .. })
        ));
        assert!(matches!(
            parse("Out of memory: Kill process 1234 (java) score 999 or sacrifice child"),
            Some(Kernel::Chose { pid: 1234, .. })
        ));
        for none in [
            "CPU: 2 PID: 25671 Comm: GC Thread#9 Not tainted 5.4.0-109-generic #123-Ubuntu",
            " oom_kill_process.cold+0x8/0x8a",
            "kswapd0: page allocation failure: order:0, mode:0x40cc0(GFP_KERNEL|__GFP_COMP)",
            "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name",
        ] {
            assert_eq!(parse(none), None, "{none}");
        }
    }
}

//! Every OOM killer is a peer behind the [`Killer`] trait: given a snapshot of the
//! processes, it ranks them in the order it would choose its victims.
//!
//! Today: the kernel's OOM killer, for a global OOM and for a memory-cgroup OOM. systemd-oomd
//! (which ranks cgroups, not processes), earlyoom and nohang join as further implementations.

use std::collections::HashSet;

use serde::Serialize;

use super::badness::{self, BadnessInputs, Unkillable};
use super::process::{MemTotals, ProcInfo};

/// The killers oomguard knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KillerId {
    Kernel,
    SystemdOomd,
    Earlyoom,
    Nohang,
}

impl KillerId {
    pub fn name(self) -> &'static str {
        match self {
            KillerId::Kernel => "kernel",
            KillerId::SystemdOomd => "systemd-oomd",
            KillerId::Earlyoom => "earlyoom",
            KillerId::Nohang => "nohang",
        }
    }
}

/// What the processes of a snapshot compete for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Constraint {
    /// All of RAM + swap.
    Global,
    /// The limit of one memory cgroup; only its members are candidates.
    Memcg { cgroup: String },
}

/// A point-in-time view of the machine, as the model needs it.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub totals: MemTotals,
    /// Page size in KiB (4 on x86-64).
    pub page_kib: u64,
    pub procs: Vec<ProcInfo>,
}

impl Snapshot {
    /// `totalpages` for the global case: what `/proc/PID/oom_score` is computed against.
    pub fn global_totalpages(&self) -> u64 {
        badness::global_totalpages(
            self.totals.mem_total_kib,
            self.totals.swap_total_kib,
            self.page_kib,
        )
    }

    /// The score `/proc/PID/oom_score` shows for a process (always the global figure).
    pub fn proc_oom_score(&self, p: &ProcInfo) -> u64 {
        let t = self.global_totalpages();
        let b = match (badness::unkillable(p), &p.mem) {
            (None, Some(mem)) => Some(badness::badness(
                &BadnessInputs::from_counters(mem, p.oom_score_adj, self.page_kib),
                t,
            )),
            _ => None,
        };
        badness::oom_score(b, t)
    }
}

/// One process in a killer's order.
#[derive(Clone, Debug, Serialize)]
pub struct Ranked<'a> {
    /// 1-based position among killable candidates; `None` for unkillable ones.
    pub rank: Option<usize>,
    #[serde(skip)]
    pub proc: &'a ProcInfo,
    pub inputs: Option<BadnessInputs>,
    /// The killer's score (for the kernel: `oom_badness` in pages); `None` if never chosen.
    pub badness: Option<i64>,
    pub unkillable: Option<Unkillable>,
    /// Footprint (rss + swap + page tables) as a fraction of the constraint's total.
    pub share: f64,
}

/// A victim-choosing policy.
pub trait Killer {
    fn id(&self) -> KillerId;
    /// The constraint this ranking is for.
    fn constraint(&self) -> &Constraint;
    /// The total the scores are relative to, in pages.
    fn totalpages(&self, snap: &Snapshot) -> u64;
    /// Candidates in the order the killer would choose them: the first is the next victim.
    /// Processes it would never choose follow, largest first.
    fn rank<'a>(&self, snap: &'a Snapshot) -> Vec<Ranked<'a>>;
}

/// The kernel's OOM killer (`select_bad_process` over `oom_badness`).
#[derive(Clone, Debug)]
pub struct KernelOom {
    constraint: Constraint,
    /// For a memcg OOM: the members and the group's `totalpages` (`mem_cgroup_get_max`).
    memcg: Option<(HashSet<i32>, u64)>,
}

impl KernelOom {
    /// A global OOM: every process, against RAM + swap.
    pub fn global() -> Self {
        KernelOom {
            constraint: Constraint::Global,
            memcg: None,
        }
    }

    /// A memory-cgroup OOM in `cgroup`: only `members`, against `totalpages` (see
    /// [`badness::memcg_totalpages`]).
    pub fn memcg(
        cgroup: impl Into<String>,
        members: impl IntoIterator<Item = i32>,
        totalpages: u64,
    ) -> Self {
        KernelOom {
            constraint: Constraint::Memcg {
                cgroup: cgroup.into(),
            },
            memcg: Some((members.into_iter().collect(), totalpages.max(1))),
        }
    }
}

impl Killer for KernelOom {
    fn id(&self) -> KillerId {
        KillerId::Kernel
    }

    fn constraint(&self) -> &Constraint {
        &self.constraint
    }

    fn totalpages(&self, snap: &Snapshot) -> u64 {
        self.memcg
            .as_ref()
            .map_or_else(|| snap.global_totalpages(), |(_, t)| *t)
    }

    fn rank<'a>(&self, snap: &'a Snapshot) -> Vec<Ranked<'a>> {
        let t = self.totalpages(snap);
        let mut rows: Vec<Ranked<'a>> = snap
            .procs
            .iter()
            .filter(|p| !p.kthread && p.mem.is_some())
            .filter(|p| self.memcg.as_ref().is_none_or(|(m, _)| m.contains(&p.pid)))
            .map(|p| {
                let inputs = p
                    .mem
                    .as_ref()
                    .map(|m| BadnessInputs::from_counters(m, p.oom_score_adj, snap.page_kib));
                let unkillable = badness::unkillable(p);
                let badness = match (unkillable, &inputs) {
                    (None, Some(i)) => Some(badness::badness(i, t)),
                    _ => None,
                };
                let share = inputs.map_or(0.0, |i| i.footprint_pages() as f64 / t as f64);
                Ranked {
                    rank: None,
                    proc: p,
                    inputs,
                    badness,
                    unkillable,
                    share,
                }
            })
            .collect();
        // The kernel keeps the first task with the highest points, replacing it on ties
        // (`points < chosen_points` skips): among equals the last in task-list order wins,
        // which is roughly the newest; the higher pid stands in for that.
        rows.sort_by(|a, b| {
            let key = |r: &Ranked| (r.badness.is_some(), r.badness.unwrap_or(i64::MIN));
            key(b)
                .cmp(&key(a))
                .then_with(|| {
                    let fp = |r: &Ranked| r.inputs.map_or(0, |i| i.footprint_pages());
                    fp(b).cmp(&fp(a))
                })
                .then_with(|| b.proc.pid.cmp(&a.proc.pid))
        });
        for (i, r) in rows.iter_mut().filter(|r| r.badness.is_some()).enumerate() {
            r.rank = Some(i + 1);
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::process::MemCounters;

    fn proc(pid: i32, rss_mib: u64, adj: i32) -> ProcInfo {
        ProcInfo {
            pid,
            ppid: 1,
            name: format!("p{pid}"),
            mem: Some(MemCounters {
                rss_anon_kib: rss_mib * 1024,
                ..Default::default()
            }),
            oom_score_adj: adj,
            ..Default::default()
        }
    }

    fn snap(procs: Vec<ProcInfo>) -> Snapshot {
        Snapshot {
            totals: MemTotals {
                mem_total_kib: 8 << 20,
                ..Default::default()
            },
            page_kib: 4,
            procs,
        }
    }

    #[test]
    fn global_order_follows_badness_and_adj() {
        let s = snap(vec![
            proc(1, 5000, 0),
            proc(10, 300, 0),
            proc(11, 200, 0),
            proc(12, 100, 500),
            proc(13, 900, -1000),
        ]);
        let r = KernelOom::global().rank(&s);
        let order: Vec<_> = r.iter().map(|r| (r.proc.pid, r.rank)).collect();
        // adj 500 on an 8 GiB machine adds ~4 GiB worth of pages: it goes first.
        // PID 1 and adj -1000 are never chosen: last, largest first.
        assert_eq!(
            order,
            vec![
                (12, Some(1)),
                (10, Some(2)),
                (11, Some(3)),
                (1, None),
                (13, None)
            ]
        );
        assert_eq!(r[3].unkillable, Some(Unkillable::Init));
        assert_eq!(r[4].unkillable, Some(Unkillable::AdjMin));
        assert_eq!(s.proc_oom_score(&s.procs[0]), 0);
        assert_eq!(s.proc_oom_score(&s.procs[4]), 0);
    }

    #[test]
    fn memcg_ranks_only_members_against_the_limit() {
        let s = snap(vec![proc(10, 300, 0), proc(11, 200, 0), proc(12, 250, 0)]);
        let limit_pages = 600 * 256;
        let k = KernelOom::memcg("/job", [11, 12], limit_pages);
        let r = k.rank(&s);
        assert_eq!(
            r.iter().map(|r| r.proc.pid).collect::<Vec<_>>(),
            vec![12, 11]
        );
        assert!((r[0].share - 250.0 / 600.0).abs() < 1e-9);
        // The adjustment scales with the limit, not with RAM: +100 adj = 60 MiB here.
        let mut s2 = s.clone();
        s2.procs[1].oom_score_adj = 100;
        let r = KernelOom::memcg("/job", [11, 12], limit_pages).rank(&s2);
        assert_eq!(r[0].proc.pid, 11);
        assert_eq!(
            r[0].badness,
            Some(200 * 256 + 100 * (limit_pages as i64 / 1000))
        );
    }

    #[test]
    fn kernel_threads_and_zombies_are_not_listed() {
        let mut kt = proc(2, 0, 0);
        kt.kthread = true;
        kt.mem = None;
        let mut z = proc(50, 0, 0);
        z.mem = None;
        let s = snap(vec![kt, z, proc(10, 1, 0)]);
        let r = KernelOom::global().rank(&s);
        assert_eq!(r.len(), 1);
    }
}

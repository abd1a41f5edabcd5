//! The kernel's victim arithmetic (`mm/oom_kill.c`), exactly as current kernels compute it.
//!
//! ```text
//! points   = get_mm_rss(mm) + swapents + pgtables_bytes / PAGE_SIZE
//! points  += oom_score_adj * (totalpages / 1000)        (integer division first)
//! oom_score = (1000 + points * 1000 / totalpages) * 2 / 3   (/proc/PID/oom_score; 0 if unkillable)
//! ```
//! `totalpages` is RAM + swap for a global OOM, or the memory cgroup's limit (plus the swap it
//! may use) for a memcg OOM. Tasks with adj -1000, init, kernel threads and tasks without an
//! address space are never chosen (`oom_badness` returns `LONG_MIN`).

use serde::Serialize;

use super::process::{MemCounters, ProcInfo};

/// `OOM_SCORE_ADJ_MIN`: the value that makes a task unkillable.
pub const OOM_SCORE_ADJ_MIN: i32 = -1000;
/// `OOM_SCORE_ADJ_MAX`.
pub const OOM_SCORE_ADJ_MAX: i32 = 1000;

/// Why the kernel would never choose a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unkillable {
    /// PID 1 of the initial namespace (`is_global_init`).
    Init,
    /// A kernel thread (`PF_KTHREAD`).
    KernelThread,
    /// No address space (a zombie, or exiting).
    NoMm,
    /// `oom_score_adj` is -1000 (`OOM_SCORE_ADJ_MIN`).
    AdjMin,
}

impl Unkillable {
    pub fn describe(self) -> &'static str {
        match self {
            Unkillable::Init => "it is init (PID 1), which the kernel never kills",
            Unkillable::KernelThread => "it is a kernel thread",
            Unkillable::NoMm => "it has no address space (zombie or exiting)",
            Unkillable::AdjMin => "its oom_score_adj is -1000, which exempts it",
        }
    }
}

/// The inputs of `oom_badness` for one task, in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BadnessInputs {
    pub rss_pages: u64,
    pub swap_pages: u64,
    pub pgtables_pages: u64,
    pub oom_score_adj: i32,
}

impl BadnessInputs {
    /// Convert `/proc/PID/status` KiB counters to pages of `page_kib` KiB.
    pub fn from_counters(mem: &MemCounters, adj: i32, page_kib: u64) -> Self {
        let page_kib = page_kib.max(1);
        BadnessInputs {
            rss_pages: mem.rss_kib() / page_kib,
            swap_pages: mem.swap_kib / page_kib,
            pgtables_pages: mem.pgtables_kib / page_kib,
            oom_score_adj: adj.clamp(OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX),
        }
    }

    /// The memory part of the score: rss + swap + page tables, in pages.
    pub fn footprint_pages(&self) -> u64 {
        self.rss_pages + self.swap_pages + self.pgtables_pages
    }

    /// The pages the adjustment adds (negative: subtracts) for this `totalpages`.
    pub fn adj_pages(&self, totalpages: u64) -> i64 {
        i64::from(self.oom_score_adj) * (totalpages / 1000) as i64
    }
}

/// Whether a task can be chosen at all, from its sample.
pub fn unkillable(p: &ProcInfo) -> Option<Unkillable> {
    if p.kthread {
        Some(Unkillable::KernelThread)
    } else if p.pid == 1 {
        Some(Unkillable::Init)
    } else if p.mem.is_none() {
        Some(Unkillable::NoMm)
    } else if p.oom_score_adj <= OOM_SCORE_ADJ_MIN {
        Some(Unkillable::AdjMin)
    } else {
        None
    }
}

/// `oom_badness()` for a killable task: footprint plus the adjustment, in pages (may be negative).
pub fn badness(inputs: &BadnessInputs, totalpages: u64) -> i64 {
    inputs.footprint_pages() as i64 + inputs.adj_pages(totalpages)
}

/// What `/proc/PID/oom_score` prints for a task with this badness (`None` = unkillable).
/// Only meaningful with the global `totalpages` (RAM + swap): that is what procfs uses.
pub fn oom_score(badness: Option<i64>, totalpages: u64) -> u64 {
    match badness {
        None => 0,
        Some(b) => {
            let t = totalpages.max(1) as i64;
            // C semantics: signed, truncating division; the result is never negative for
            // adj > -1000 (the adjustment cannot exceed the footprint's lower bound).
            let v = (1000 + b.saturating_mul(1000) / t) * 2 / 3;
            v.max(0) as u64
        }
    }
}

/// `totalpages` for a global OOM: RAM + swap, in pages.
pub fn global_totalpages(mem_total_kib: u64, swap_total_kib: u64, page_kib: u64) -> u64 {
    (mem_total_kib + swap_total_kib) / page_kib.max(1)
}

/// `totalpages` for a memcg OOM (`mem_cgroup_get_max`): the memory limit, plus the swap
/// the group may use (when its swappiness is not 0), capped by the machine's swap.
/// `swap_limit_pages` is `memory.swap.max` on v2, or `memsw.limit - limit` on v1. Never 0.
pub fn memcg_totalpages(
    limit_pages: u64,
    swap_limit_pages: Option<u64>,
    swap_total_pages: u64,
    swappiness_zero: bool,
) -> u64 {
    let mut max = limit_pages;
    if !swappiness_zero {
        let swap = swap_limit_pages.unwrap_or(u64::MAX);
        max = max.saturating_add(swap.min(swap_total_pages));
    }
    max.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: u64 = 24 * 1024 * 1024 / 4; // 24 GiB of 4 KiB pages

    fn inputs(rss: u64, adj: i32) -> BadnessInputs {
        BadnessInputs {
            rss_pages: rss,
            swap_pages: 0,
            pgtables_pages: 0,
            oom_score_adj: adj,
        }
    }

    #[test]
    fn facts_md_observation_150mib_python() {
        // facts.md: on a 24 GiB machine a 150 MiB python reads about 670 with adj 0, ~1002 with 500.
        let rss = 150 * 256;
        assert_eq!(oom_score(Some(badness(&inputs(rss, 0), T)), T), 670);
        let s = oom_score(Some(badness(&inputs(rss, 500), T)), T);
        assert!((1000..=1004).contains(&s), "{s}");
    }

    #[test]
    fn adjustment_divides_totalpages_first() {
        // With totalpages < 1000 the kernel's adjustment vanishes entirely.
        let i = inputs(10, 1000);
        assert_eq!(badness(&i, 999), 10);
        assert_eq!(badness(&i, 1999), 1010);
    }

    #[test]
    fn unkillable_reads_zero() {
        assert_eq!(oom_score(None, T), 0);
    }

    #[test]
    fn memcg_totalpages_rules() {
        // No swap on the machine: the limit alone.
        assert_eq!(memcg_totalpages(1000, Some(500), 0, false), 1000);
        // Swap usable, capped by the group's swap limit and the machine's swap.
        assert_eq!(memcg_totalpages(1000, Some(500), 10_000, false), 1500);
        assert_eq!(memcg_totalpages(1000, None, 300, false), 1300);
        // swappiness 0: swap does not count.
        assert_eq!(memcg_totalpages(1000, Some(500), 10_000, true), 1000);
        assert_eq!(memcg_totalpages(0, Some(0), 0, false), 1);
    }

    proptest! {
        #[test]
        fn oom_score_in_kernel_range(rss in 0u64..T / 2, swap in 0u64..T / 2 - 10_000, pt in 0u64..10_000,
                                     adj in -999i32..=1000) {
            let i = BadnessInputs { rss_pages: rss, swap_pages: swap, pgtables_pages: pt, oom_score_adj: adj };
            let s = oom_score(Some(badness(&i, T)), T);
            prop_assert!(s <= 2000, "{s}");
        }

        #[test]
        fn badness_monotone_in_memory_and_adj(rss in 0u64..T, extra in 1u64..100_000, adj in -999i32..1000) {
            let a = inputs(rss, adj);
            let b = inputs(rss + extra, adj);
            let c = inputs(rss, adj + 1);
            prop_assert!(badness(&b, T) > badness(&a, T));
            prop_assert!(badness(&c, T) >= badness(&a, T));
        }
    }
}

//! Where one process stands in a killer's order, and what would change it. Pure.

use serde::Serialize;

use super::killer::Ranked;

/// A neighbour in the victim order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Neighbour {
    pub pid: i32,
    pub name: String,
    pub badness_pages: i64,
}

/// The standing of one process among a killer's candidates.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Standing {
    /// 1-based; `None` when the process is never chosen.
    pub rank: Option<usize>,
    /// How many killable candidates there are.
    pub candidates: usize,
    /// The candidate chosen first, when it is another process.
    pub first: Option<Neighbour>,
    /// The candidate right after this one.
    pub next: Option<Neighbour>,
    /// Pages this process would need to add to be chosen first (`None` if it already is, or
    /// can never be).
    pub pages_to_be_first: Option<i64>,
    /// When it is first: how many pages it leads the next candidate by.
    pub lead_pages: Option<i64>,
}

fn neighbour(r: &Ranked) -> Option<Neighbour> {
    Some(Neighbour {
        pid: r.proc.pid,
        name: r.proc.name.clone(),
        badness_pages: r.badness?,
    })
}

/// The standing of `pid` in `ranked` (as returned by [`super::killer::Killer::rank`]).
/// `None` if `pid` is not among the ranked processes at all.
pub fn standing(ranked: &[Ranked], pid: i32) -> Option<Standing> {
    let idx = ranked.iter().position(|r| r.proc.pid == pid)?;
    let me = &ranked[idx];
    let killable: Vec<&Ranked> = ranked.iter().filter(|r| r.badness.is_some()).collect();
    let first = killable
        .first()
        .filter(|f| f.proc.pid != pid)
        .and_then(|f| neighbour(f));
    let next = me
        .rank
        .and_then(|r| killable.get(r))
        .and_then(|n| neighbour(n));
    let (pages_to_be_first, lead_pages) = match (me.badness, &first) {
        // The kernel replaces the chosen task on equal points only if it comes later in the
        // task list; to be sure of being chosen one needs strictly more.
        (Some(b), Some(f)) => (Some(f.badness_pages - b + 1), None),
        (Some(b), None) => (None, next.as_ref().map(|n| b - n.badness_pages)),
        (None, _) => (None, None),
    };
    Some(Standing {
        rank: me.rank,
        candidates: killable.len(),
        first,
        next,
        pages_to_be_first,
        lead_pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::killer::{KernelOom, Killer, Snapshot};
    use crate::model::process::{MemCounters, MemTotals, ProcInfo};

    fn snap() -> Snapshot {
        let p = |pid, mib: u64, adj| ProcInfo {
            pid,
            name: format!("p{pid}"),
            mem: Some(MemCounters {
                rss_anon_kib: mib * 1024,
                ..Default::default()
            }),
            oom_score_adj: adj,
            ..Default::default()
        };
        Snapshot {
            totals: MemTotals {
                mem_total_kib: 8 << 20,
                ..Default::default()
            },
            page_kib: 4,
            procs: vec![
                p(10, 1000, 0),
                p(11, 188, 0),
                p(12, 100, 0),
                p(13, 50, -1000),
            ],
        }
    }

    #[test]
    fn second_needs_the_gap_plus_one() {
        let s = snap();
        let r = KernelOom::global().rank(&s);
        let st = standing(&r, 11).unwrap();
        assert_eq!((st.rank, st.candidates), (Some(2), 3));
        assert_eq!(st.first.as_ref().unwrap().pid, 10);
        assert_eq!(st.pages_to_be_first, Some((1000 - 188) * 256 + 1));
        assert_eq!(st.next.unwrap().pid, 12);
    }

    #[test]
    fn first_leads_by_the_gap_and_exempt_has_no_rank() {
        let s = snap();
        let r = KernelOom::global().rank(&s);
        let st = standing(&r, 10).unwrap();
        assert_eq!(
            (st.rank, st.lead_pages, st.pages_to_be_first),
            (Some(1), Some((1000 - 188) * 256), None)
        );
        let st = standing(&r, 13).unwrap();
        assert_eq!((st.rank, st.pages_to_be_first), (None, None));
        assert!(standing(&r, 99).is_none());
    }
}

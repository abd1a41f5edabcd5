//! `oomguard explain PID`: the kernel's arithmetic for one process, step by step.

use std::fmt::Write as _;

use anyhow::Context;
use serde::Serialize;

use super::render::{kib, print_json};
use super::survey::{HostArgs, memcg_of};
use crate::model::badness::{self, BadnessInputs, Unkillable};
use crate::model::killer::{KernelOom, Killer, Snapshot};
use crate::model::process::ProcInfo;
use crate::model::standing::{Standing, standing};

/// Arguments of `oomguard explain`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  oomguard explain 4402\n  oomguard explain $(pgrep -f train.py) --json"
)]
pub struct Args {
    /// The process to explain
    pub pid: i32,
    /// Print the computation as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

/// The computation under one constraint (global, or the process's memory cgroup).
#[derive(Debug, Serialize)]
pub struct Computation {
    /// "global" or the memory cgroup's path.
    pub constraint: String,
    pub limit_bytes: Option<u64>,
    pub totalpages: u64,
    pub footprint_pages: u64,
    pub adj_pages: i64,
    pub badness_pages: Option<i64>,
    pub standing: Standing,
}

/// The whole explanation, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub pid: i32,
    pub name: String,
    pub user: String,
    pub oom_score_adj: i32,
    pub page_kib: u64,
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub rss_shmem_kib: u64,
    pub swap_kib: u64,
    pub pgtables_kib: u64,
    pub unkillable: Option<Unkillable>,
    /// Our computation of /proc/PID/oom_score.
    pub oom_score: u64,
    /// What the kernel printed in /proc/PID/oom_score when we looked.
    pub kernel_oom_score: Option<u64>,
    pub global: Computation,
    /// The memory cgroup that limits it, when one does.
    pub memcg: Option<Computation>,
    pub advice: Vec<String>,
}

fn compute(
    killer: &KernelOom,
    snap: &Snapshot,
    p: &ProcInfo,
    limit: Option<u64>,
) -> Option<Computation> {
    let ranked = killer.rank(snap);
    let st = standing(&ranked, p.pid)?;
    let t = killer.totalpages(snap);
    let inputs = BadnessInputs::from_counters(&p.mem?, p.oom_score_adj, snap.page_kib);
    let constraint = match killer.constraint() {
        crate::model::killer::Constraint::Global => "global".to_string(),
        crate::model::killer::Constraint::Memcg { cgroup } => cgroup.clone(),
    };
    Some(Computation {
        constraint,
        limit_bytes: limit,
        totalpages: t,
        footprint_pages: inputs.footprint_pages(),
        adj_pages: inputs.adj_pages(t),
        badness_pages: badness::unkillable(p)
            .is_none()
            .then(|| badness::badness(&inputs, t)),
        standing: st,
    })
}

pub fn explain(host: &HostArgs, pid: i32) -> anyhow::Result<Explanation> {
    let procfs = host.procfs();
    let snap = host.snapshot()?;
    let p = snap
        .procs
        .iter()
        .find(|p| p.pid == pid)
        .with_context(|| format!("no process {pid} (it may have exited)"))?
        .clone();
    let m = p.mem.with_context(|| {
        format!(
            "process {pid} ({}) has no address space: {}",
            p.name,
            if p.kthread {
                "a kernel thread"
            } else {
                "a zombie or exiting"
            }
        )
    })?;
    let global =
        compute(&KernelOom::global(), &snap, &p, None).context("process vanished while ranking")?;
    let cg = host.cgroupfs();
    let memcg = memcg_of(&cg, &p, &snap).and_then(|t| {
        let k = KernelOom::memcg(&t.path, t.members.iter().copied(), t.totalpages);
        compute(&k, &snap, &p, t.group.limit_bytes)
    });
    let unkillable = badness::unkillable(&p);
    let mut advice = Vec::new();
    match unkillable {
        Some(Unkillable::AdjMin) => advice.push("It is shielded from the kernel's OOM killer (adj -1000). Run `oomguard doctor PID` to see the other killers.".into()),
        Some(u) => advice.push(format!("The kernel never chooses it: {}.", u.describe())),
        None => advice.push(format!(
            "Not shielded: `oomguard protect {pid}` sets its oom_score_adj to -1000 (and shields it from systemd-oomd), so the kernel chooses another process."
        )),
    }
    Ok(Explanation {
        pid,
        name: p.name.clone(),
        user: host.users().name(p.uid),
        oom_score_adj: p.oom_score_adj,
        page_kib: snap.page_kib,
        rss_anon_kib: m.rss_anon_kib,
        rss_file_kib: m.rss_file_kib,
        rss_shmem_kib: m.rss_shmem_kib,
        swap_kib: m.swap_kib,
        pgtables_kib: m.pgtables_kib,
        unkillable,
        oom_score: snap.proc_oom_score(&p),
        kernel_oom_score: procfs.oom_score(pid),
        global,
        memcg,
        advice,
    })
}

fn pages(n: i64, page_kib: u64) -> String {
    format!(
        "{n} pages ({}{})",
        if n < 0 { "-" } else { "" },
        kib(n.unsigned_abs() * page_kib)
    )
}

fn describe_standing(out: &mut String, c: &Computation, page_kib: u64, scope: &str) {
    let s = &c.standing;
    match s.rank {
        None => {
            let _ = writeln!(out, "   Never chosen {scope}.");
        }
        Some(1) => {
            let _ = writeln!(
                out,
                "   Rank 1 of {} {scope}: it is the next victim.",
                s.candidates
            );
            if let (Some(n), Some(lead)) = (&s.next, s.lead_pages) {
                let _ = writeln!(
                    out,
                    "   The next candidate, {} ({}), scores {} less: it would have to grow that much to go first.",
                    n.pid,
                    n.name,
                    pages(lead, page_kib)
                );
            }
        }
        Some(r) => {
            let _ = writeln!(out, "   Rank {r} of {} {scope}.", s.candidates);
            if let (Some(f), Some(need)) = (&s.first, s.pages_to_be_first) {
                let per_adj = (c.totalpages / 1000).max(1) as i64;
                let _ = writeln!(
                    out,
                    "   Chosen first: {} ({}). To be chosen before it, this process would need {} more,\n   \
                     or an oom_score_adj higher by {} (each unit is {} here).",
                    f.pid,
                    f.name,
                    pages(need, page_kib),
                    (need + per_adj - 1) / per_adj,
                    pages(per_adj, page_kib)
                );
            }
        }
    }
}

fn render(e: &Explanation) -> String {
    let mut o = String::new();
    let pk = e.page_kib;
    let _ = writeln!(
        o,
        "Process {} ({}), user {}, oom_score_adj {}",
        e.pid, e.name, e.user, e.oom_score_adj
    );
    let g = &e.global;
    let _ = writeln!(o, "\nIf all of memory runs out (global OOM):");
    let _ = writeln!(
        o,
        " 1. Footprint: RSS {} (anon {} + file {} + shmem {}) + swap {} + page tables {}\n    = {} of {pk} KiB",
        kib(e.rss_anon_kib + e.rss_file_kib + e.rss_shmem_kib),
        kib(e.rss_anon_kib),
        kib(e.rss_file_kib),
        kib(e.rss_shmem_kib),
        kib(e.swap_kib),
        kib(e.pgtables_kib),
        pages(g.footprint_pages as i64, pk)
    );
    let _ = writeln!(
        o,
        " 2. Total: RAM + swap = {}",
        pages(g.totalpages as i64, pk)
    );
    let _ = writeln!(
        o,
        " 3. Adjustment: adj {} x ({} / 1000 = {}) = {}",
        e.oom_score_adj,
        g.totalpages,
        g.totalpages / 1000,
        pages(g.adj_pages, pk)
    );
    match g.badness_pages {
        Some(b) => {
            let _ = writeln!(
                o,
                " 4. Badness: {} + {} = {}",
                g.footprint_pages,
                g.adj_pages,
                pages(b, pk)
            );
            let frac = b.saturating_mul(1000) / g.totalpages.max(1) as i64;
            let _ = writeln!(
                o,
                " 5. oom_score = (1000 + {b} x 1000 / {}) x 2 / 3 = (1000 + {frac}) x 2 / 3 = {}",
                g.totalpages, e.oom_score
            );
        }
        None => {
            let why = e.unkillable.map_or("", |u| u.describe());
            let _ = writeln!(o, " 4. Never chosen: {why}; oom_score = 0");
        }
    }
    match e.kernel_oom_score {
        Some(k) if k == e.oom_score => {
            let _ = writeln!(
                o,
                "    The kernel's /proc/{}/oom_score says {k}: the same.",
                e.pid
            );
        }
        Some(k) => {
            let _ = writeln!(
                o,
                "    The kernel's /proc/{}/oom_score says {k} (memory changed between the reads).",
                e.pid
            );
        }
        None => {}
    }
    describe_standing(&mut o, g, pk, "among all processes");
    if let Some(m) = &e.memcg {
        let _ = writeln!(
            o,
            "\nIf its memory cgroup {} reaches its limit{} (memcg OOM):",
            m.constraint,
            m.limit_bytes
                .map_or(String::new(), |l| format!(" of {}", kib(l / 1024)))
        );
        let _ = writeln!(
            o,
            "    Total: the limit = {}",
            pages(m.totalpages as i64, pk)
        );
        let _ = writeln!(
            o,
            "    Adjustment: adj {} x ({} / 1000) = {}",
            e.oom_score_adj,
            m.totalpages,
            pages(m.adj_pages, pk)
        );
        if let Some(b) = m.badness_pages {
            let _ = writeln!(
                o,
                "    Badness: {} + {} = {}",
                m.footprint_pages,
                m.adj_pages,
                pages(b, pk)
            );
        }
        describe_standing(&mut o, m, pk, "in the group");
    } else {
        let _ = writeln!(
            o,
            "\nNo memory cgroup limits it: only a global OOM can choose it."
        );
    }
    let _ = writeln!(o);
    for a in &e.advice {
        let _ = writeln!(o, "{a}");
    }
    o
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let e = explain(&args.host, args.pid)?;
    if args.json {
        print_json(&e)?;
    } else {
        print!("{}", render(&e));
    }
    Ok(0)
}

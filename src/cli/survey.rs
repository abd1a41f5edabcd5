//! Gathering shared by `top` and `explain`: a snapshot of the machine, the memory cgroup a
//! ranking is constrained to, and the per-process row every read command prints.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::host::cgroup::{CgroupFs, MemCgroup, procs_recursive, read_memcg};
use crate::host::proc::ProcFs;
use crate::host::users::UserNames;
use crate::model::badness::memcg_totalpages;
use crate::model::killer::{Ranked, Snapshot};
use crate::model::process::ProcInfo;

/// Where the live system is. Hidden: tests point these at fake trees.
#[derive(clap::Args, Debug, Clone)]
pub struct HostArgs {
    /// Root of the proc filesystem
    #[arg(long, hide = true, env = "OOMGUARD_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// Mount point of cgroupfs
    #[arg(
        long,
        hide = true,
        env = "OOMGUARD_CGROUP_ROOT",
        default_value = "/sys/fs/cgroup"
    )]
    pub cgroup_root: PathBuf,
    /// The passwd file for user names
    #[arg(
        long,
        hide = true,
        env = "OOMGUARD_PASSWD",
        default_value = "/etc/passwd"
    )]
    pub passwd: PathBuf,
}

impl HostArgs {
    pub fn procfs(&self) -> ProcFs {
        ProcFs::new(&self.proc_root)
    }
    pub fn cgroupfs(&self) -> CgroupFs {
        CgroupFs::new(&self.cgroup_root)
    }
    pub fn users(&self) -> UserNames {
        UserNames::load(&self.passwd)
    }

    /// Every process and the memory totals, now.
    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let procfs = self.procfs();
        let totals = procfs.meminfo()?;
        let mut procs = procfs.scan()?;
        // Leave ourselves out: a transient reader is noise in "who dies next".
        let me = std::process::id() as i32;
        procs.retain(|p| p.pid != me);
        Ok(Snapshot {
            totals,
            page_kib: crate::host::page_kib(),
            procs,
        })
    }
}

/// A memory cgroup whose OOM killer a ranking models.
#[derive(Clone, Debug)]
pub struct MemcgTarget {
    pub group: MemCgroup,
    /// The path as the kernel prints it (`oom_memcg=/job/4f2a`): relative to the hierarchy root.
    pub path: String,
    pub members: Vec<i32>,
    /// `mem_cgroup_get_max()` in pages.
    pub totalpages: u64,
}

/// The memcg target for a cgroup directory given by the user. Refuses a group without a
/// limit (its own OOM killer never runs) and names the ancestor that has one.
pub fn memcg_target(cg: &CgroupFs, dir: &Path, snap: &Snapshot) -> anyhow::Result<MemcgTarget> {
    let group = read_memcg(dir)?;
    if group.limit_bytes.is_none() {
        let hint = cg
            .limiting_group(dir)
            .map(|g| {
                format!(
                    "; its nearest limited ancestor is {} (try --cgroup {0})",
                    g.dir.display()
                )
            })
            .unwrap_or_default();
        bail!(
            "{} has no memory limit, so no memcg OOM can start there{hint}",
            dir.display()
        );
    }
    Ok(target_of(cg, group, snap))
}

/// The memcg target that constrains a process: the group with the smallest limit on the way
/// from its memory cgroup to the root. `None` when nothing limits it.
pub fn memcg_of(cg: &CgroupFs, p: &ProcInfo, snap: &Snapshot) -> Option<MemcgTarget> {
    let dir = cg.memcg_dir(&p.cgroup)?;
    let group = cg.limiting_group(&dir)?;
    Some(target_of(cg, group, snap))
}

fn target_of(cg: &CgroupFs, group: MemCgroup, snap: &Snapshot) -> MemcgTarget {
    let page = snap.page_kib * 1024;
    let limit_pages = group.limit_bytes.unwrap_or(u64::MAX) / page;
    let swap_total_pages = snap.totals.swap_total_kib / snap.page_kib;
    let totalpages = memcg_totalpages(
        limit_pages,
        group.swap_limit_bytes.map(|b| b / page),
        swap_total_pages,
        group.swappiness_zero,
    );
    let path = cg
        .hierarchy_root(&group.dir)
        .and_then(|r| {
            group
                .dir
                .strip_prefix(r)
                .ok()
                .map(|p| format!("/{}", p.display()))
        })
        .unwrap_or_else(|| group.dir.display().to_string());
    MemcgTarget {
        members: procs_recursive(&group.dir),
        group,
        path,
        totalpages,
    }
}

/// Resolve `--cgroup DIR`: an absolute directory, or a path relative to the cgroup mount.
pub fn resolve_cgroup_dir(cg: &CgroupFs, arg: &Path) -> anyhow::Result<PathBuf> {
    let cands = [
        Some(arg.to_path_buf()),
        cg.v1_memory_root()
            .map(|r| r.join(arg.strip_prefix("/").unwrap_or(arg))),
        cg.v2_root()
            .map(|r| r.join(arg.strip_prefix("/").unwrap_or(arg))),
    ];
    cands
        .into_iter()
        .flatten()
        .find(|p| p.is_dir())
        .with_context(|| {
            format!(
                "no cgroup directory {} (give a directory under the cgroup mount)",
                arg.display()
            )
        })
}

/// The systemd unit a cgroup path belongs to: its last `.service` or `.scope` component.
pub fn unit_of(path: &str) -> Option<&str> {
    path.rsplit('/')
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
}

/// One process in victim order, as `top --json` prints it. The keys are a contract.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub rank: Option<usize>,
    pub pid: i32,
    pub ppid: i32,
    pub name: String,
    pub user: String,
    pub uid: u32,
    pub rss_kib: u64,
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub rss_shmem_kib: u64,
    pub swap_kib: u64,
    pub pgtables_kib: u64,
    pub oom_score_adj: i32,
    /// Exactly what the kernel prints in /proc/PID/oom_score (always the global figure).
    pub oom_score: u64,
    /// `oom_badness()` under the ranking's constraint; null if never chosen.
    pub badness_pages: Option<i64>,
    /// Footprint as a fraction of the constraint's total.
    pub share: f64,
    pub killable: bool,
    /// Why it is never chosen (init, kernel_thread, no_mm, adj_min); null if killable.
    pub unkillable: Option<crate::model::badness::Unkillable>,
    pub cgroup: Option<String>,
    pub unit: Option<String>,
}

impl Row {
    pub fn new(r: &Ranked, snap: &Snapshot, users: &UserNames) -> Row {
        let p = r.proc;
        let m = p.mem.unwrap_or_default();
        let cgroup = p.cgroup.display().map(str::to_string);
        let unit = p
            .cgroup
            .unified
            .as_deref()
            .or(cgroup.as_deref())
            .and_then(unit_of)
            .map(str::to_string);
        Row {
            rank: r.rank,
            pid: p.pid,
            ppid: p.ppid,
            name: p.name.clone(),
            user: users.name(p.uid),
            uid: p.uid,
            rss_kib: m.rss_kib(),
            rss_anon_kib: m.rss_anon_kib,
            rss_file_kib: m.rss_file_kib,
            rss_shmem_kib: m.rss_shmem_kib,
            swap_kib: m.swap_kib,
            pgtables_kib: m.pgtables_kib,
            oom_score_adj: p.oom_score_adj,
            oom_score: snap.proc_oom_score(p),
            badness_pages: r.badness,
            share: r.share,
            killable: r.badness.is_some(),
            unkillable: r.unkillable,
            cgroup,
            unit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn units() {
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice/vte-spawn-x.scope"),
            Some("vte-spawn-x.scope")
        );
        assert_eq!(unit_of("/system.slice/ssh.service"), Some("ssh.service"));
        assert_eq!(unit_of("/process_api/241e"), None);
    }
}

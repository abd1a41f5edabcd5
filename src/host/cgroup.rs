//! Reader of memory cgroups, v1 (`memory.limit_in_bytes`...) and v2 (`memory.max`...),
//! rooted at a configurable cgroupfs mount point (`/sys/fs/cgroup` in production).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::psi::{Pressure, read_pressure};
use crate::model::process::CgroupPaths;

/// Limits at or above this are "no limit" (v1 prints `PAGE_COUNTER_MAX * PAGE_SIZE`).
const UNLIMITED: u64 = 1 << 62;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Counters of v2 `memory.events` (v1: only `oom_kill`, from `memory.oom_control`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemEvents {
    pub low: u64,
    pub high: u64,
    pub max: u64,
    pub oom: u64,
    pub oom_kill: u64,
    pub oom_group_kill: u64,
}

/// The memory state of one cgroup directory.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemCgroup {
    pub dir: PathBuf,
    pub version: CgroupVersion,
    /// Hard limit (`memory.max` / `memory.limit_in_bytes`); `None` = unlimited.
    pub limit_bytes: Option<u64>,
    /// Current usage (`memory.current` / `memory.usage_in_bytes`).
    pub usage_bytes: Option<u64>,
    /// v2 `memory.high` (throttling threshold); `None` = unlimited or v1.
    pub high_bytes: Option<u64>,
    /// Swap the group may use beyond its memory limit: v2 `memory.swap.max`, v1
    /// `memory.memsw.limit_in_bytes - memory.limit_in_bytes`. `None` = unlimited/unknown.
    pub swap_limit_bytes: Option<u64>,
    /// Swap in use: v2 `memory.swap.current`, v1 `memsw.usage - usage`.
    pub swap_usage_bytes: Option<u64>,
    /// v1 `memory.swappiness` is 0 (then the kernel does not count swap in its OOM total).
    pub swappiness_zero: bool,
    pub events: Option<MemEvents>,
    /// v2 `memory.pressure` (only with PSI).
    pub pressure: Option<Pressure>,
}

/// A cgroupfs mount tree.
#[derive(Clone, Debug)]
pub struct CgroupFs {
    root: PathBuf,
}

impl Default for CgroupFs {
    fn default() -> Self {
        CgroupFs::new("/sys/fs/cgroup")
    }
}

impl CgroupFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CgroupFs { root: root.into() }
    }

    /// The v1 hierarchy with the memory controller, if mounted.
    pub fn v1_memory_root(&self) -> Option<PathBuf> {
        let p = self.root.join("memory");
        p.join("memory.limit_in_bytes").exists().then_some(p)
    }

    /// The v2 (unified) hierarchy, if mounted: the root itself, or `unified/` in hybrid mode.
    pub fn v2_root(&self) -> Option<PathBuf> {
        [self.root.clone(), self.root.join("unified")]
            .into_iter()
            .find(|p| p.join("cgroup.controllers").exists())
    }

    /// Whether the v2 hierarchy has the memory controller enabled at its root.
    pub fn v2_has_memory(&self) -> bool {
        self.v2_root()
            .and_then(|r| std::fs::read_to_string(r.join("cgroup.controllers")).ok())
            .is_some_and(|c| c.split_whitespace().any(|w| w == "memory"))
    }

    /// The memory cgroup directory of a process, from its `/proc/PID/cgroup` paths.
    pub fn memcg_dir(&self, paths: &CgroupPaths) -> Option<PathBuf> {
        if let (Some(root), Some(p)) = (self.v1_memory_root(), &paths.v1_memory) {
            return Some(join_cgroup(&root, p));
        }
        if self.v2_has_memory()
            && let (Some(root), Some(p)) = (self.v2_root(), &paths.unified)
        {
            return Some(join_cgroup(&root, p));
        }
        None
    }

    /// The mount root that `dir` lies under, if any.
    pub fn hierarchy_root(&self, dir: &Path) -> Option<PathBuf> {
        [self.v1_memory_root(), self.v2_root()]
            .into_iter()
            .flatten()
            .find(|r| dir.starts_with(r))
    }

    /// The ancestor-or-self of `dir` whose hard limit is the smallest (where a memcg OOM would
    /// strike first), within its hierarchy. `None` when no group on the way has a limit.
    pub fn limiting_group(&self, dir: &Path) -> Option<MemCgroup> {
        let root = self.hierarchy_root(dir)?;
        let mut best: Option<MemCgroup> = None;
        let mut cur = Some(dir);
        while let Some(d) = cur {
            if let Ok(g) = read_memcg(d)
                && let Some(l) = g.limit_bytes
                && best
                    .as_ref()
                    .and_then(|b| b.limit_bytes)
                    .is_none_or(|b| l < b)
            {
                best = Some(g);
            }
            if d == root {
                break;
            }
            cur = d.parent();
        }
        best
    }
}

fn join_cgroup(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Which interface a cgroup directory exposes.
pub fn detect_version(dir: &Path) -> Option<CgroupVersion> {
    if dir.join("memory.limit_in_bytes").exists() {
        Some(CgroupVersion::V1)
    } else if dir.join("memory.current").exists() || dir.join("memory.max").exists() {
        Some(CgroupVersion::V2)
    } else {
        None
    }
}

/// Read one memory cgroup directory. Missing or garbled optional files become `None`;
/// a directory that is not a memory cgroup is an error.
pub fn read_memcg(dir: &Path) -> anyhow::Result<MemCgroup> {
    let version = detect_version(dir).with_context(|| {
        format!(
            "{} is not a memory cgroup (no memory.max or memory.limit_in_bytes)",
            dir.display()
        )
    })?;
    let num = |f: &str| read_limit(&dir.join(f));
    Ok(match version {
        CgroupVersion::V1 => {
            let limit = num("memory.limit_in_bytes").flatten();
            let usage = num("memory.usage_in_bytes").flatten();
            let memsw_limit = num("memory.memsw.limit_in_bytes").flatten();
            let memsw_usage = num("memory.memsw.usage_in_bytes").flatten();
            MemCgroup {
                dir: dir.to_path_buf(),
                version,
                limit_bytes: limit,
                usage_bytes: usage,
                high_bytes: None,
                swap_limit_bytes: memsw_limit.zip(limit).map(|(m, l)| m.saturating_sub(l)),
                swap_usage_bytes: memsw_usage.zip(usage).map(|(m, u)| m.saturating_sub(u)),
                swappiness_zero: num("memory.swappiness").flatten() == Some(0),
                events: read_oom_control(&dir.join("memory.oom_control")),
                pressure: None,
            }
        }
        CgroupVersion::V2 => MemCgroup {
            dir: dir.to_path_buf(),
            version,
            limit_bytes: num("memory.max").flatten(),
            usage_bytes: num("memory.current").flatten(),
            high_bytes: num("memory.high").flatten(),
            swap_limit_bytes: num("memory.swap.max").flatten(),
            swap_usage_bytes: num("memory.swap.current").flatten(),
            swappiness_zero: false,
            events: std::fs::read_to_string(dir.join("memory.events"))
                .ok()
                .map(|s| parse_events(&s)),
            pressure: read_pressure(&dir.join("memory.pressure")).ok(),
        },
    })
}

/// Read a limit-style file: `Some(Some(n))`, `Some(None)` for "max"/unlimited, `None` if
/// missing or garbled.
fn read_limit(path: &Path) -> Option<Option<u64>> {
    parse_limit(&std::fs::read_to_string(path).ok()?)
}

/// Parse `max` / a byte count. Values at or above 2^62 are v1's "unlimited".
pub fn parse_limit(s: &str) -> Option<Option<u64>> {
    let s = s.trim();
    if s == "max" {
        return Some(None);
    }
    let n: u64 = s.parse().ok()?;
    Some((n < UNLIMITED).then_some(n))
}

/// Parse v2 `memory.events` (`key value` lines); unknown keys are ignored.
pub fn parse_events(s: &str) -> MemEvents {
    let mut e = MemEvents::default();
    for line in s.lines() {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next().and_then(|v| v.parse().ok())) else {
            continue;
        };
        match k {
            "low" => e.low = v,
            "high" => e.high = v,
            "max" => e.max = v,
            "oom" => e.oom = v,
            "oom_kill" => e.oom_kill = v,
            "oom_group_kill" => e.oom_group_kill = v,
            _ => {}
        }
    }
    e
}

fn read_oom_control(path: &Path) -> Option<MemEvents> {
    let s = std::fs::read_to_string(path).ok()?;
    let kill = s
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())?;
    Some(MemEvents {
        oom_kill: kill,
        ..MemEvents::default()
    })
}

/// Every process in `dir` and its descendant groups (`cgroup.procs`, recursively).
/// Groups that vanish or cannot be read are skipped.
pub fn procs_recursive(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            stack.extend(
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit("max\n"), Some(None));
        assert_eq!(parse_limit("314572800\n"), Some(Some(314572800)));
        assert_eq!(parse_limit("9223372036854771712\n"), Some(None));
        assert_eq!(parse_limit("garbage"), None);
        assert_eq!(parse_limit(""), None);
    }

    #[test]
    fn events() {
        let e = parse_events(
            "low 0\nhigh 12\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\nnew_key 5\nbad\n",
        );
        assert_eq!((e.high, e.max, e.oom, e.oom_kill), (12, 7, 2, 1));
    }
}

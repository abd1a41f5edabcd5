//! The tightest memory limit over a process's cgroup (v1 `memory.limit_in_bytes` or v2
//! `memory.max`, the cgroup and its ancestors). Shielding never lifts it: `run`, `protect`
//! and `ps` say the job stays inside. (A small private reader: the general cgroup
//! readers live in `host::cgroup`.)

use std::path::{Path, PathBuf};

/// A memory limit and the cgroup (path relative to its hierarchy) that sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub cgroup: String,
    pub bytes: u64,
}

/// Limits at or above this are "no limit" (v1 reports a huge page-rounded number).
const UNLIMITED: u64 = 1 << 60;

/// The tightest limit for the process whose `/proc/PID/cgroup` text is `cgroup_file`,
/// reading cgroupfs under `root` (normally `/`).
pub fn tightest(root: &Path, cgroup_file: &str) -> Option<Limit> {
    let mut best: Option<Limit> = None;
    for line in cgroup_file.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        let (base, file): (PathBuf, &str) = if ctrl.split(',').any(|c| c == "memory") {
            (root.join("sys/fs/cgroup/memory"), "memory.limit_in_bytes")
        } else if ctrl.is_empty() {
            (root.join("sys/fs/cgroup"), "memory.max")
        } else {
            continue;
        };
        let mut p = path.trim_end_matches('/').to_owned();
        loop {
            let v = std::fs::read_to_string(base.join(p.trim_start_matches('/')).join(file)).ok();
            if let Some(bytes) = v.and_then(|v| v.trim().parse::<u64>().ok())
                && bytes < UNLIMITED
                && best.as_ref().is_none_or(|b| bytes < b.bytes)
            {
                best = Some(Limit {
                    cgroup: if p.is_empty() { "/".into() } else { p.clone() },
                    bytes,
                });
            }
            match p.rfind('/') {
                Some(i) => p.truncate(i),
                None => break,
            }
            if p.is_empty() {
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_and_tightest() {
        let d = tempfile::tempdir().unwrap();
        let v1 = d.path().join("sys/fs/cgroup/memory/a/b");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(
            v1.parent().unwrap().join("memory.limit_in_bytes"),
            "314572800\n",
        )
        .unwrap();
        let cg = "4:memory:/a/b\n0::/\n";
        assert_eq!(
            tightest(d.path(), cg),
            Some(Limit {
                cgroup: "/a".into(),
                bytes: 314572800
            })
        );
        let v2 = d.path().join("sys/fs/cgroup/user.slice/job.scope");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        std::fs::write(v2.parent().unwrap().join("memory.max"), "1048576\n").unwrap();
        let cg = "0::/user.slice/job.scope\n";
        assert_eq!(tightest(d.path(), cg).unwrap().cgroup, "/user.slice");
        assert_eq!(tightest(d.path(), "0::/\n"), None);
    }
}

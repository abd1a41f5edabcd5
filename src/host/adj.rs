//! `oom_score_adj` of a process, read and written through a handle that cannot be fooled
//! by a recycled PID: a pidfd plus the process's `/proc/PID` directory, opened together
//! and checked against each other, and against the start time the caller saw.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, PidfdFlags};

/// Facts read from `/proc/PID/stat` and `/proc/PID/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    /// Start time in clock ticks since boot (field 22 of `stat`): with the pid, it names
    /// one process for the machine's whole uptime.
    pub start_time: u64,
    /// Real, effective, saved and filesystem uid.
    pub uids: [u32; 4],
    pub comm: String,
}

/// A live process, pinned: a pidfd and the `/proc/PID` directory of the same process.
pub struct Target {
    pub pid: i32,
    pidfd: OwnedFd,
    dir: OwnedFd,
}

/// Why a target could not be opened or changed.
#[derive(Debug, thiserror::Error)]
pub enum AdjError {
    #[error("process {0} does not exist")]
    NoSuchProcess(i32),
    #[error(
        "process {pid} is not the one asked for (started at tick {found}, not {expected}): its PID was recycled"
    )]
    Recycled { pid: i32, expected: u64, found: u64 },
    #[error("cannot lower oom_score_adj of {pid} to {adj}: CAP_SYS_RESOURCE missing")]
    NoCapability { pid: i32, adj: i32 },
    #[error("{what} of process {pid}: {err}")]
    Io {
        pid: i32,
        what: &'static str,
        err: std::io::Error,
    },
}

impl Target {
    /// Open process `pid` under the proc root `proc` (normally `/proc`). With
    /// `start_time`, fail unless the process found started at that tick.
    pub fn open(proc: &Path, pid: i32, start_time: Option<u64>) -> Result<Target, AdjError> {
        let p = Pid::from_raw(pid).ok_or(AdjError::NoSuchProcess(pid))?;
        let gone_or = |what: &'static str| {
            move |e: rustix::io::Errno| {
                if e == rustix::io::Errno::SRCH || e == rustix::io::Errno::NOENT {
                    AdjError::NoSuchProcess(pid)
                } else {
                    AdjError::Io {
                        pid,
                        what,
                        err: e.into(),
                    }
                }
            }
        };
        let pidfd =
            rustix::process::pidfd_open(p, PidfdFlags::empty()).map_err(gone_or("pidfd_open"))?;
        let dir = rustix::fs::open(
            proc.join(pid.to_string()),
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(gone_or("opening /proc entry"))?;
        // The pidfd was opened first: if its process is still running now, the directory
        // opened after belongs to it (a recycled PID would need the first one to be dead).
        if !running(&pidfd) {
            return Err(AdjError::NoSuchProcess(pid));
        }
        let t = Target { pid, pidfd, dir };
        if let Some(expected) = start_time {
            let found = t.info()?.start_time;
            if found != expected {
                return Err(AdjError::Recycled {
                    pid,
                    expected,
                    found,
                });
            }
        }
        Ok(t)
    }

    /// The pidfd (for polling exit).
    pub fn pidfd(&self) -> &OwnedFd {
        &self.pidfd
    }

    /// Whether the process is still running (not exited, not a zombie).
    pub fn alive(&self) -> bool {
        running(&self.pidfd)
    }

    fn read(&self, name: &'static str) -> Result<String, AdjError> {
        let fd = rustix::fs::openat(
            &self.dir,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io(name, e.into()))?;
        let mut s = String::new();
        File::from(fd)
            .read_to_string(&mut s)
            .map_err(|e| self.io(name, e))?;
        Ok(s)
    }

    fn io(&self, what: &'static str, err: std::io::Error) -> AdjError {
        if err.raw_os_error() == Some(libc::ESRCH) {
            AdjError::NoSuchProcess(self.pid)
        } else {
            AdjError::Io {
                pid: self.pid,
                what,
                err,
            }
        }
    }

    /// Read pid, ppid, start time, uids and comm.
    pub fn info(&self) -> Result<ProcInfo, AdjError> {
        let stat = self.read("stat")?;
        let status = self.read("status")?;
        parse_info(self.pid, &stat, &status).ok_or_else(|| {
            self.io(
                "stat",
                std::io::Error::new(std::io::ErrorKind::InvalidData, "unparsable"),
            )
        })
    }

    /// The current `oom_score_adj`.
    pub fn adj(&self) -> Result<i32, AdjError> {
        let s = self.read("oom_score_adj")?;
        s.trim().parse().map_err(|_| {
            self.io(
                "oom_score_adj",
                std::io::Error::new(std::io::ErrorKind::InvalidData, s.clone()),
            )
        })
    }

    /// The process's cgroup file (`/proc/PID/cgroup`).
    pub fn cgroup(&self) -> Result<String, AdjError> {
        self.read("cgroup")
    }

    /// NUL-separated command line, as a list.
    pub fn cmdline(&self) -> Result<Vec<String>, AdjError> {
        let s = self.read("cmdline")?;
        Ok(s.split('\0')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Write `oom_score_adj`; EACCES on a lowering becomes [`AdjError::NoCapability`].
    pub fn set_adj(&self, adj: i32) -> Result<(), AdjError> {
        let fd = rustix::fs::openat(
            &self.dir,
            "oom_score_adj",
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io("oom_score_adj", e.into()))?;
        match File::from(fd).write_all(adj.to_string().as_bytes()) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                Err(AdjError::NoCapability { pid: self.pid, adj })
            }
            Err(e) => Err(self.io("oom_score_adj", e)),
        }
    }
}

/// Whether the process behind a pidfd is still running: a pidfd polls readable once
/// its process has exited (zombies included).
pub fn running(fd: &impl AsFd) -> bool {
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(0))
}

/// Parse `stat` and `status` text into [`ProcInfo`].
pub fn parse_info(pid: i32, stat: &str, status: &str) -> Option<ProcInfo> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state): ppid is field 4, starttime field 22.
    let ppid = rest.get(1)?.parse().ok()?;
    let start_time = rest.get(19)?.parse().ok()?;
    let uid_line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let v: Vec<u32> = uid_line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let uids = [*v.first()?, *v.get(1)?, *v.get(2)?, *v.get(3)?];
    Some(ProcInfo {
        pid,
        ppid,
        start_time,
        uids,
        comm,
    })
}

/// Read facts of `pid` without pinning it (for display and for walking ancestors).
pub fn read_info(proc: &Path, pid: i32) -> Option<ProcInfo> {
    let dir: PathBuf = proc.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    parse_info(pid, &stat, &status)
}

/// Whether `pid` descends from `ancestor` (walking parent links; a process is not its
/// own descendant).
pub fn descends_from(proc: &Path, pid: i32, ancestor: i32) -> bool {
    let mut cur = pid;
    for _ in 0..4096 {
        let Some(info) = read_info(proc, cur) else {
            return false;
        };
        if info.ppid == ancestor {
            return true;
        }
        if info.ppid <= 1 {
            return false;
        }
        cur = info.ppid;
    }
    false
}

/// Every live descendant of `pid` (children found through `/proc/*/stat` parent links).
pub fn descendants(proc: &Path, pid: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir(proc) {
        for e in rd.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok())
                && let Some(i) = read_info(proc, p)
            {
                parent_of.push((i.pid, i.ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_comm() {
        let stat = "42 (my (odd) prog) S 7 42 42 0 -1 4194304 0 0 0 0 1 2 0 0 20 0 1 0 123456 0 0";
        let status = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t5\t5\t5\t5\n";
        let i = parse_info(42, stat, status).unwrap();
        assert_eq!(i.comm, "my (odd) prog");
        assert_eq!(i.ppid, 7);
        assert_eq!(i.start_time, 123456);
        assert_eq!(i.uids, [1000; 4]);
    }

    #[test]
    fn live_self_and_child() {
        let me = std::process::id() as i32;
        let t = Target::open(Path::new("/proc"), me, None).unwrap();
        let info = t.info().unwrap();
        assert_eq!(info.pid, me);
        assert!(Target::open(Path::new("/proc"), me, Some(info.start_time + 1)).is_err());
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let cpid = child.id() as i32;
        assert!(descends_from(Path::new("/proc"), cpid, me));
        assert!(descendants(Path::new("/proc"), me).contains(&cpid));
        let ct = Target::open(Path::new("/proc"), cpid, None).unwrap();
        ct.set_adj(300).unwrap();
        assert_eq!(ct.adj().unwrap(), 300);
        ct.set_adj(0).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!ct.alive());
    }
}

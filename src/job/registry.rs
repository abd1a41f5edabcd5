//! The job registry: one directory per job under the state dir
//! (`$OOMGUARD_STATE_DIR`, else `$XDG_STATE_HOME/oomguard`, else
//! `~/.local/state/oomguard`), holding `job.json` and, by default, `output.log`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::host::adj;
use crate::job::layers::Layer;

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// RFC 3339 time the end was observed.
    pub time: String,
    /// Exit status when it exited.
    pub exit_code: Option<i32>,
    /// Signal number when a signal killed it.
    pub signal: Option<i32>,
}

impl End {
    /// Shell-style status: the exit code, or 128+N for signal N.
    pub fn status(&self) -> u8 {
        match (self.exit_code, self.signal) {
            (Some(c), _) => c as u8,
            (None, Some(s)) => (128 + s) as u8,
            _ => 1,
        }
    }
}

/// One job's record (`job.json`). Keys are a contract of `ps --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub name: String,
    pub command: Vec<String>,
    pub cwd: PathBuf,
    pub user: String,
    pub uid: u32,
    /// PID of the job's first process (0 until it is forked).
    pub pid: i32,
    /// Its start time in clock ticks since boot (to tell it from a recycled PID).
    pub pid_start_ticks: u64,
    /// RFC 3339 start time.
    pub start_time: String,
    pub log: PathBuf,
    /// The `oom_score_adj` asked for.
    pub adj: i32,
    /// Whether the job was started with `--allow-unprotected`.
    pub allow_unprotected: bool,
    /// Each layer's state, as applied at start (or by `protect`).
    pub layers: Vec<Layer>,
    /// Set when the job's end was observed.
    pub end: Option<End>,
    /// The root daemon guards the job (it sends the checkpoint signal and runs the valve).
    #[serde(default)]
    pub daemon_guards: bool,
    /// The OOM kill that ended it, once `ps` or `history` found it in the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_by: Option<KilledBy>,
}

/// Which killer ended a job, when and why (from `history`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KilledBy {
    pub killer: String,
    pub time: Option<String>,
    pub reason: Option<String>,
}

/// Live state of a job, from its record and `/proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    Running,
    /// Ended, status in the record.
    Ended,
    /// Its process is gone but nobody saw how it ended.
    Gone,
}

impl Job {
    /// Whether the job's process is alive (same PID and start time), ended, or gone.
    pub fn live(&self, proc: &Path) -> Live {
        if self.end.is_some() {
            return Live::Ended;
        }
        match adj::read_info(proc, self.pid) {
            Some(i) if i.start_time == self.pid_start_ticks => Live::Running,
            _ => Live::Gone,
        }
    }
}

/// The registry root.
pub fn state_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("OOMGUARD_STATE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("oomguard"));
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| home_of(rustix::process::geteuid().as_raw()))
        .context("neither OOMGUARD_STATE_DIR, XDG_STATE_HOME nor HOME is set, and no home in the user database: set one")?;
    Ok(home.join(".local/state/oomguard"))
}

/// Home directory of `uid` from the user database.
pub fn home_of(uid: u32) -> Option<PathBuf> {
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16384];
    let mut res: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: buffers valid; result checked.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut res) };
    if rc != 0 || res.is_null() {
        return None;
    }
    // SAFETY: pw_dir points into buf.
    let dir = unsafe { std::ffi::CStr::from_ptr(pw.pw_dir) };
    Some(PathBuf::from(dir.to_string_lossy().into_owned()))
}

/// Jobs directory under a state dir.
pub fn jobs_dir(state: &Path) -> PathBuf {
    state.join("jobs")
}

/// Create a fresh job directory; returns (id, dir).
pub fn new_job_dir(state: &Path) -> Result<(String, PathBuf)> {
    let jobs = jobs_dir(state);
    std::fs::create_dir_all(&jobs).with_context(|| format!("creating {}", jobs.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut seed = now.as_nanos() as u64 ^ ((std::process::id() as u64) << 32);
    for _ in 0..100 {
        // xorshift: a short id that is unique in this directory
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let id = format!("{:06x}", seed & 0xff_ffff);
        let dir = jobs.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    bail!("cannot find a free job id in {}", jobs.display())
}

/// Write a record atomically (temp file, then rename).
pub fn save(state: &Path, job: &Job) -> Result<()> {
    let dir = jobs_dir(state).join(&job.id);
    let tmp = dir.join(".job.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(job)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join("job.json"))
        .with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(())
}

/// Every readable record, oldest first.
pub fn list(state: &Path) -> Vec<Job> {
    let mut out: Vec<Job> = std::fs::read_dir(jobs_dir(state))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("job.json")).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    out.sort_by(|a: &Job, b: &Job| a.start_time.cmp(&b.start_time).then(a.id.cmp(&b.id)));
    out
}

/// Find a job by id, unique id prefix, or name (the newest with that name).
pub fn find(state: &Path, spec: &str) -> Result<Job> {
    let all = list(state);
    if let Some(j) = all.iter().find(|j| j.id == spec) {
        return Ok(j.clone());
    }
    let by_prefix: Vec<&Job> = all
        .iter()
        .filter(|j| !spec.is_empty() && j.id.starts_with(spec))
        .collect();
    if by_prefix.len() == 1 {
        return Ok(by_prefix[0].clone());
    }
    if let Some(j) = all.iter().rev().find(|j| j.name == spec) {
        return Ok(j.clone());
    }
    bail!(
        "no job `{spec}` in {}; `oomguard ps` lists the jobs",
        state.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, name: &str, t: &str) -> Job {
        Job {
            id: id.into(),
            name: name.into(),
            command: vec!["true".into()],
            cwd: "/".into(),
            user: "u".into(),
            uid: 1,
            pid: 1,
            pid_start_ticks: 0,
            start_time: t.into(),
            log: "/x".into(),
            adj: 0,
            allow_unprotected: false,
            layers: vec![],
            end: None,
            daemon_guards: false,
            killed_by: None,
        }
    }

    #[test]
    fn save_list_find() {
        let d = tempfile::tempdir().unwrap();
        let (a, _) = new_job_dir(d.path()).unwrap();
        let (b, _) = new_job_dir(d.path()).unwrap();
        assert_ne!(a, b);
        save(d.path(), &job(&a, "train", "2026-01-01T00:00:00Z")).unwrap();
        save(d.path(), &job(&b, "train", "2026-01-02T00:00:00Z")).unwrap();
        assert_eq!(list(d.path()).len(), 2);
        assert_eq!(find(d.path(), "train").unwrap().id, b, "newest by name");
        assert_eq!(find(d.path(), &a).unwrap().id, a);
        assert!(
            find(d.path(), "nope")
                .unwrap_err()
                .to_string()
                .contains("oomguard ps")
        );
    }

    #[test]
    fn end_status() {
        let e = End {
            time: String::new(),
            exit_code: None,
            signal: Some(9),
        };
        assert_eq!(e.status(), 137);
        let e = End {
            time: String::new(),
            exit_code: Some(7),
            signal: None,
        };
        assert_eq!(e.status(), 7);
    }
}

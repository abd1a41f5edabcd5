//! Many guarded jobs on one thread: what the daemon runs. Each job keeps its own poll rate;
//! the thread sleeps until the soonest is due, so a calm machine costs a few reads per job per
//! second.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::metrics::Metrics;
use super::{Guard, GuardConfig};
use crate::host::cgroup::CgroupFs;
use crate::host::proc::ProcFs;
use crate::model::killer::KillerId;
use crate::model::risk::{Level, Threat};

struct Entry {
    guard: Guard,
    name: String,
    due: Instant,
}

/// The guarded jobs of a daemon.
pub struct GuardSet {
    jobs: Mutex<Vec<Entry>>,
    /// /proc/meminfo kept open and re-read with pread: one syscall a tick, as earlyoom does.
    meminfo: Mutex<Option<std::fs::File>>,
    metrics: Option<Arc<Metrics>>,
    procfs: ProcFs,
    cgroupfs: CgroupFs,
}

impl GuardSet {
    pub fn new(metrics: Option<Arc<Metrics>>, procfs: ProcFs, cgroupfs: CgroupFs) -> Self {
        GuardSet {
            jobs: Mutex::new(Vec::new()),
            meminfo: Mutex::new(None),
            metrics,
            procfs,
            cgroupfs,
        }
    }

    /// Start guarding a job (replacing an earlier guard of the same id).
    pub fn add(
        &self,
        job_id: &str,
        name: &str,
        pid: i32,
        cfg: GuardConfig,
        layers: &[(&str, bool)],
    ) {
        let guard = Guard::new(job_id, pid, cfg, self.procfs.clone(), self.cgroupfs.clone());
        if let Some(m) = &self.metrics {
            m.job_started(job_id, name, layers);
        }
        let mut jobs = self.jobs.lock().unwrap();
        jobs.retain(|e| e.guard.job_id != job_id);
        jobs.push(Entry {
            guard,
            name: name.to_string(),
            due: Instant::now(),
        });
    }

    pub fn len(&self) -> usize {
        self.jobs.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// systemd-oomd is about to kill `cgroup`: fire the checkpoint actions of every job inside
    /// it now. Returns their ids.
    pub fn prekill(&self, cgroup: &str) -> Vec<String> {
        let mut fired = Vec::new();
        let mut jobs = self.jobs.lock().unwrap();
        for e in jobs.iter_mut() {
            let inside = self
                .procfs
                .sample(e.guard.pid)
                .and_then(|p| p.cgroup.unified)
                .is_some_and(|c| {
                    c == cgroup || c.starts_with(&format!("{}/", cgroup.trim_end_matches('/')))
                });
            if inside {
                let threat = Threat {
                    killer: KillerId::SystemdOomd,
                    subject: format!("prekill of {cgroup}"),
                    level: Level::Danger,
                    fraction: 1.0,
                    eta_s: Some(0.0),
                    detail: format!("systemd-oomd is about to kill {cgroup} (prekill hook)"),
                };
                e.guard.fire_now(&threat);
                fired.push(e.guard.job_id.clone());
            }
        }
        fired
    }

    /// Step every due job, forget the ones that ended, and return how long to sleep.
    pub fn tick(&self) -> Duration {
        let now = Instant::now();
        let mut jobs = self.jobs.lock().unwrap();
        // Jobs due within the next 200 ms are stepped now too, so calm jobs share one wake-up
        // and one read of /proc/meminfo per second.
        let horizon = now + Duration::from_millis(200);
        let totals = if jobs.iter().any(|e| e.due <= now) {
            self.read_meminfo()
        } else {
            None
        };
        let mut ended = Vec::new();
        let any_due = totals.is_some();
        // One poll over every due job's pidfd tells which have exited.
        let exited: Vec<bool> = {
            let due: Vec<&Entry> = jobs
                .iter()
                .filter(|e| any_due && e.due <= horizon)
                .collect();
            let mut fds: Vec<rustix::event::PollFd> = due
                .iter()
                .filter_map(|e| {
                    e.guard
                        .pidfd()
                        .map(|fd| rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN))
                })
                .collect();
            let zero = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            if !fds.is_empty() {
                let _ = rustix::event::poll(&mut fds, Some(&zero));
            }
            let mut it = fds.iter().map(|f| !f.revents().is_empty());
            due.iter()
                .map(|e| {
                    if e.guard.pidfd().is_some() {
                        it.next().unwrap_or(false)
                    } else {
                        e.guard.job_exited()
                    }
                })
                .collect()
        };
        let mut exited = exited.into_iter();
        for e in jobs.iter_mut().filter(|e| any_due && e.due <= horizon) {
            if exited.next().unwrap_or(false) {
                ended.push(e.guard.job_id.clone());
                continue;
            }
            let step = e.guard.step_with(totals);
            e.due = now + step.next_in;
            if let Some(m) = &self.metrics {
                let level = step.nearest.as_ref().map_or(Level::Ok, |t| t.level);
                let mem = self
                    .procfs
                    .sample(e.guard.pid)
                    .and_then(|p| p.mem)
                    .map_or(0, |m| (m.rss_kib() + m.swap_kib) * 1024);
                m.job_sample(&e.guard.job_id, mem, &step.threats, level);
            }
            let _ = &e.name;
        }
        jobs.retain(|e| !ended.contains(&e.guard.job_id));
        if let Some(m) = &self.metrics {
            for id in &ended {
                m.job_ended(id);
            }
        }
        let next = jobs
            .iter()
            .map(|e| e.due)
            .min()
            .map_or(Duration::from_secs(1), |d| {
                d.saturating_duration_since(Instant::now())
            });
        next.clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    fn read_meminfo(&self) -> Option<crate::model::process::MemTotals> {
        use std::os::unix::fs::FileExt;
        let mut f = self.meminfo.lock().unwrap();
        if f.is_none() {
            *f = std::fs::File::open(self.procfs.root().join("meminfo")).ok();
        }
        let mut buf = [0u8; 8192];
        let n = f.as_ref()?.read_at(&mut buf, 0).ok()?;
        crate::host::proc::parse_meminfo(&buf[..n])
    }

    /// Guard forever (the daemon's guard thread).
    pub fn run(self: Arc<Self>) {
        loop {
            let d = self.tick();
            std::thread::sleep(d);
        }
    }
}

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
    metrics: Option<Arc<Metrics>>,
    procfs: ProcFs,
    cgroupfs: CgroupFs,
}

impl GuardSet {
    pub fn new(metrics: Option<Arc<Metrics>>, procfs: ProcFs, cgroupfs: CgroupFs) -> Self {
        GuardSet {
            jobs: Mutex::new(Vec::new()),
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
        let mut ended = Vec::new();
        for e in jobs.iter_mut().filter(|e| e.due <= now) {
            if e.guard.job_exited() {
                ended.push(e.guard.job_id.clone());
                continue;
            }
            let step = e.guard.step();
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

    /// Guard forever (the daemon's guard thread).
    pub fn run(self: Arc<Self>) {
        loop {
            let d = self.tick();
            std::thread::sleep(d);
        }
    }
}

//! Many guarded jobs on one thread: what the daemon runs. Each job keeps its own poll rate;
//! the thread sleeps until the soonest is due, so a calm machine costs a few reads per job per
//! second.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::metrics::Metrics;
use super::{Guard, GuardConfig, MemProbe, Memory, screened};
use crate::host::cgroup::CgroupFs;
use crate::host::proc::ProcFs;
use crate::model::killer::KillerId;
use crate::model::risk::{Level, Threat};

struct Entry {
    guard: Guard,
    due: Instant,
    /// The last step found every killer far (`ok`).
    calm: bool,
}

/// How often the exits of calm jobs are checked.
const EXIT_CHECK: Duration = Duration::from_secs(5);

/// The ids of the jobs that exited: one poll over all their pidfds.
fn exited(jobs: &[Entry]) -> Vec<String> {
    use rustix::event::{PollFd, PollFlags};
    let mut fds: Vec<PollFd> = jobs
        .iter()
        .filter_map(|e| e.guard.pidfd().map(|fd| PollFd::new(fd, PollFlags::IN)))
        .collect();
    if !fds.is_empty() {
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let _ = rustix::event::poll(&mut fds, Some(&zero));
    }
    let mut polled = fds.iter().map(|f| !f.revents().is_empty());
    jobs.iter()
        .filter(|e| {
            if e.guard.pidfd().is_some() {
                polled.next().unwrap_or(false)
            } else {
                e.guard.job_exited()
            }
        })
        .map(|e| e.guard.job_id.clone())
        .collect()
}

/// The guarded jobs of a daemon.
pub struct GuardSet {
    jobs: Mutex<Vec<Entry>>,
    /// /proc/meminfo kept open and re-read with pread into a kept buffer: one syscall a tick,
    /// as earlyoom does.
    meminfo: Mutex<(Option<std::fs::File>, Vec<u8>)>,
    /// When the jobs' exits were last checked.
    exits_checked: Mutex<Instant>,
    /// The `sysinfo(2)` screen of all of memory, and the set's start (its clock).
    probe: Mutex<MemProbe>,
    start: Instant,
    metrics: Option<Arc<Metrics>>,
    procfs: ProcFs,
    cgroupfs: CgroupFs,
}

impl GuardSet {
    pub fn new(metrics: Option<Arc<Metrics>>, procfs: ProcFs, cgroupfs: CgroupFs) -> Self {
        GuardSet {
            jobs: Mutex::new(Vec::new()),
            meminfo: Mutex::new((None, vec![0; 8192])),
            exits_checked: Mutex::new(Instant::now()),
            probe: Mutex::new(MemProbe::for_root(&procfs)),
            start: Instant::now(),
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
            due: Instant::now(),
            calm: false,
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
        // and one look at memory per second.
        let horizon = now + Duration::from_millis(200);
        let mut ended = Vec::new();
        if jobs.iter().any(|e| e.due <= now) {
            // All of memory: a sysinfo(2) screen, and /proc/meminfo only for the jobs whose
            // thresholds the screen does not clear (read once, shared).
            let now_s = now.duration_since(self.start).as_secs_f64();
            let sample = self.probe.lock().unwrap().sample(now_s);
            let mut totals: Option<Option<crate::model::process::MemTotals>> = None;
            // Which jobs exited: one poll over their pidfds, on every tick while any job is
            // not calm, and every few seconds while all are (a calm job that ended costs
            // nothing but a few more steps; this poll is most of a calm tick's own cost).
            let mut checked = self.exits_checked.lock().unwrap();
            if jobs.iter().any(|e| !e.calm) || now.duration_since(*checked) >= EXIT_CHECK {
                *checked = now;
                ended = exited(&jobs);
            }
            for e in jobs.iter_mut().filter(|e| e.due <= horizon) {
                if ended.contains(&e.guard.job_id) {
                    continue;
                }
                let mem = match screened(sample, now_s, e.guard.thresholds()) {
                    Some(m) => m,
                    None => Memory::from(*totals.get_or_insert_with(|| self.read_meminfo())),
                };
                let step = e.guard.step_with(mem);
                e.due = now + step.next_in;
                let level = step.nearest.as_ref().map_or(Level::Ok, |t| t.level);
                e.calm = level == Level::Ok;
                if let Some(m) = &self.metrics {
                    let mem = self
                        .procfs
                        .sample(e.guard.pid)
                        .and_then(|p| p.mem)
                        .map_or(0, |m| (m.rss_kib() + m.swap_kib) * 1024);
                    m.job_sample(&e.guard.job_id, mem, e.guard.outlooks(), level);
                }
            }
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
        let mut kept = self.meminfo.lock().unwrap();
        let (f, buf) = &mut *kept;
        if f.is_none() {
            *f = std::fs::File::open(self.procfs.root().join("meminfo")).ok();
        }
        let n = f.as_ref()?.read_at(buf, 0).ok()?;
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

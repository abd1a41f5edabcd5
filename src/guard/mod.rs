//! The guard: watches one job's killers and acts before they do.
//!
//! Each step samples what can kill the job (its memory cgroup's limit, all of memory, and
//! whichever other killers are armed), asks [`crate::model::risk`] how close each is, and on
//! entering `danger` fires the job's actions once per episode: the checkpoint signal (by
//! pidfd), the `--on-risk` command, a desktop notification and a log line. It polls faster as
//! danger grows and costs a few small reads per second when all is calm.

pub mod actions;
pub mod metrics;
pub mod prekill;
pub mod set;

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::host::cgroup::CgroupFs;
use crate::host::proc::ProcFs;
use crate::model::process::MemTotals;
use crate::model::risk::{self, Episode, Level, Outlook, Threat, Thresholds};

pub use actions::{Actions, parse_signal};

/// What the guard does, per job.
#[derive(Clone, Debug)]
pub struct GuardConfig {
    pub actions: Actions,
    pub thresholds: Thresholds,
    /// At most one firing per this many seconds.
    pub min_interval_s: f64,
    /// The runaway safety valve: lower a -1000 shield when the job itself exhausts memory.
    pub valve: bool,
    /// Seconds between the valve's warning (and checkpoint) and lowering the shield.
    pub valve_grace_s: f64,
    /// systemd-oomd's pressure rule over the job, when the job is exposed to it (its
    /// systemd-oomd layer is not applied).
    pub oomd: Option<crate::host::systemd::PressureRule>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            actions: Actions::default(),
            thresholds: Thresholds::default(),
            min_interval_s: 60.0,
            valve: true,
            valve_grace_s: 10.0,
            oomd: None,
        }
    }
}

/// Seconds after the guard starts during which growth gives no time estimates.
pub const WARMUP_S: f64 = 5.0;

/// All of memory, as one step sees it.
#[derive(Clone, Copy, Debug)]
pub enum Memory {
    /// Read from /proc/meminfo.
    Totals(MemTotals),
    /// `sysinfo(2)` screened it far from a global OOM ([`risk::screen_calm`]): free RAM +
    /// swap in bytes, and the used share (an upper bound).
    Far { free: u64, used: f64 },
    /// Not known (no readable /proc/meminfo).
    Unknown,
}

impl From<Option<MemTotals>> for Memory {
    fn from(t: Option<MemTotals>) -> Memory {
        t.map_or(Memory::Unknown, Memory::Totals)
    }
}

/// A `sysinfo(2)` sample for [`screened`]: `(free, total)` bytes, and the previous sample's
/// `(seconds, free)`.
pub type Screen = ((u64, u64), Option<(f64, u64)>);

/// The cheap screen of all of memory: `sysinfo(2)` each step, /proc/meminfo only when the
/// screen does not pass. Screens only the real machine (a fake /proc root reads its meminfo).
#[derive(Debug, Default)]
pub struct MemProbe {
    /// The last screen: (seconds, free bytes).
    prev: Option<(f64, u64)>,
    disabled: bool,
}

impl MemProbe {
    pub fn for_root(procfs: &ProcFs) -> MemProbe {
        MemProbe {
            prev: None,
            disabled: procfs.root() != std::path::Path::new("/proc"),
        }
    }

    /// Sample `sysinfo(2)` (once per tick).
    pub fn sample(&mut self, now_s: f64) -> Option<Screen> {
        if self.disabled {
            return None;
        }
        let (free, total) = crate::host::proc::sysinfo_free();
        let prev = self.prev.replace((now_s, free));
        Some(((free, total), prev))
    }
}

/// The screen's verdict for one job's thresholds: `Some(Memory::Far)` when it passed.
pub fn screened(sample: Option<Screen>, now_s: f64, th: &Thresholds) -> Option<Memory> {
    let ((free, total), prev) = sample?;
    risk::screen_calm(free, total, now_s, prev, th).map(|used| Memory::Far { free, used })
}

/// A file kept open and re-read from offset 0 with `pread` into a fixed buffer. Opening a
/// /proc or cgroup file anew allocates a kernel buffer each time, and that allocation is
/// charged to the reader's memory cgroup: a guard that lives in the job's own cgroup (a
/// user's `oomguard run`) would be throttled by the very `MemoryHigh` it watches, for
/// seconds per read. Kept open, the buffer is allocated once.
#[derive(Debug, Default)]
struct Kept {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Kept {
    fn new(path: PathBuf) -> Kept {
        Kept { path, file: None }
    }

    /// The file's content now (up to `buf.len()` bytes); reopens once after an error.
    fn read<'b>(&mut self, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        use std::os::unix::fs::FileExt;
        for _ in 0..2 {
            if self.file.is_none() {
                self.file = std::fs::File::open(&self.path).ok();
            }
            match self.file.as_ref()?.read_at(buf, 0) {
                Ok(n) => return Some(&buf[..n]),
                Err(_) => self.file = None,
            }
        }
        None
    }
}

/// A job's memory cgroup and its ancestors up to the hierarchy's root, each with its limit
/// file kept open: the limits are re-read with one pread per level, no path lookups.
#[derive(Debug, Default)]
struct MemcgChain {
    rungs: Vec<Rung>,
}

#[derive(Debug)]
struct Rung {
    /// The group as users see it, e.g. `/slurm/uid_1000/job_42`.
    name: String,
    /// Its usage file (`memory.usage_in_bytes` or `memory.current`).
    usage: PathBuf,
    /// Its limit file (`memory.limit_in_bytes` or `memory.max`).
    limit: Kept,
}

impl MemcgChain {
    /// The chain for a process whose `/proc/PID/cgroup` reads `raw`.
    fn walk(cgroupfs: &CgroupFs, raw: &[u8]) -> MemcgChain {
        use crate::host::cgroup::{CgroupVersion, detect_version};
        let paths = crate::host::proc::parse_cgroup(raw);
        let mut rungs = Vec::new();
        let Some(dir) = cgroupfs.memcg_dir(&paths) else {
            return MemcgChain { rungs };
        };
        let Some(root) = cgroupfs.hierarchy_root(&dir) else {
            return MemcgChain { rungs };
        };
        let mut cur = Some(dir.as_path());
        while let Some(d) = cur {
            let (usage, limit) = match detect_version(d) {
                Some(CgroupVersion::V1) => ("memory.usage_in_bytes", "memory.limit_in_bytes"),
                Some(CgroupVersion::V2) => ("memory.current", "memory.max"),
                None => ("", ""),
            };
            // The v2 root has no memory.max: it never limits.
            if !limit.is_empty() && d.join(limit).exists() {
                let name = d
                    .strip_prefix(&root)
                    .map_or_else(|_| d.display().to_string(), |p| format!("/{}", p.display()));
                rungs.push(Rung {
                    name,
                    usage: d.join(usage),
                    limit: Kept::new(d.join(limit)),
                });
            }
            if d == root {
                break;
            }
            cur = d.parent();
        }
        MemcgChain { rungs }
    }

    /// The group with the smallest hard limit (where a memcg OOM strikes first): its name,
    /// usage file and limit. `None` when no group on the way has one.
    fn limiting(&mut self) -> Option<(String, PathBuf, u64)> {
        let mut best: Option<(usize, u64)> = None;
        for (i, r) in self.rungs.iter_mut().enumerate() {
            let mut buf = [0u8; 32];
            let limit = r
                .limit
                .read(&mut buf)
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(crate::host::cgroup::parse_limit)
                .flatten();
            if let Some(l) = limit
                && best.is_none_or(|(_, b)| l < b)
            {
                best = Some((i, l));
            }
        }
        best.map(|(i, l)| (self.rungs[i].name.clone(), self.rungs[i].usage.clone(), l))
    }
}

/// `full avg10` from a PSI file's bytes.
fn full_avg10(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    let line = s.lines().find(|l| l.starts_with("full "))?;
    let v = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("avg10="))?;
    v.parse().ok()
}

/// The outcome of one step. Its figures only: [`Guard::threats`] words them.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// The killer to act on first, if any is watched.
    pub nearest: Option<Outlook>,
    /// The actions fired in this step.
    pub fired: bool,
    /// When to sample next.
    pub next_in: Duration,
}

/// What one step read for one killer: the figures its words need later.
#[derive(Clone, Copy, Debug)]
enum Reading {
    /// The watched unit's `memory.current` against its `memory.high`.
    MemoryHigh {
        current: u64,
        high: u64,
        rate: Option<f64>,
    },
    /// systemd-oomd's pressure rule over the watched unit.
    OomdPressure {
        avg10: f64,
        above_for: f64,
        rate: Option<f64>,
    },
    /// The memory cgroup that limits the job.
    Memcg {
        usage: u64,
        limit: u64,
        rate: Option<f64>,
    },
    /// All of memory.
    Global {
        available: u64,
        total: u64,
        rate: Option<f64>,
    },
    /// All of memory, screened far from a global OOM.
    GlobalFar { free: u64, used: f64 },
}

/// Recent samples of one quantity, for its growth rate.
#[derive(Default, Debug)]
struct Series(VecDeque<(f64, f64)>);

impl Series {
    const KEEP_S: f64 = 3.0;

    /// Whether the last sample was higher than the one before.
    fn rising(&self) -> bool {
        let n = self.0.len();
        n >= 2 && self.0[n - 1].1 > self.0[n - 2].1
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    /// Add a sample; the current rate per second, but only for sustained change: the last
    /// three samples must move the same way. A job allocating its working set at start (a
    /// jump, then flat) is not a runaway, and gets no time estimate from that jump.
    fn push(&mut self, t: f64, v: f64) -> Option<f64> {
        self.0.push_back((t, v));
        while self.0.len() > 3 && self.0.front().is_some_and(|(t0, _)| t - t0 > Self::KEEP_S) {
            self.0.pop_front();
        }
        let n = self.0.len();
        if n < 3 {
            return None;
        }
        let (a, b, c) = (self.0[n - 3].1, self.0[n - 2].1, self.0[n - 1].1);
        let sustained = (a < b && b < c) || (a > b && b > c);
        if !sustained {
            return Some(0.0);
        }
        // The most recent ~1 s gives the current rate; older samples only steady it.
        let recent: Vec<(f64, f64)> = self
            .0
            .iter()
            .copied()
            .filter(|(t0, _)| t - t0 <= 1.0)
            .collect();
        risk::rate(if recent.len() >= 2 {
            &recent
        } else {
            self.0.make_contiguous()
        })
    }
}

/// Watches one job.
pub struct Guard {
    pub job_id: String,
    pub pid: i32,
    pidfd: Option<OwnedFd>,
    cfg: GuardConfig,
    procfs: ProcFs,
    cgroupfs: CgroupFs,
    start: Instant,
    memcg_usage: Series,
    available: Series,
    job_footprint: Series,
    episode: Episode,
    /// When the valve warned (seconds since start); `Some` until it acted or the crunch passed.
    valve_warned_at: Option<f64>,
    /// The valve lowered the shield: it does not act twice.
    valve_done: bool,
    /// The limiting memory cgroup, cached (see `refresh_memcg`): its name as users see it,
    /// its usage file and its limit.
    memcg: Option<(String, PathBuf, u64)>,
    /// The last step's outlooks, one per watched killer, and what each was judged on
    /// (parallel; kept to reuse their memory).
    outlooks: Vec<Outlook>,
    readings: Vec<Reading>,
    /// `/proc/PID/cgroup`, kept open: a moved job is noticed with one pread.
    cgroup_file: Kept,
    memcg_checked: Option<f64>,
    memcg_backoff: f64,
    /// `/proc/PID/cgroup` as last read, and the memory cgroups it names.
    memcg_raw: Option<Vec<u8>>,
    chain: MemcgChain,
    /// Since when the watched unit's pressure has been above systemd-oomd's limit.
    oomd_above_since: Option<f64>,
    /// A PSI trigger on the watched unit's `memory.pressure` (see [`psi_trigger`]).
    psi: Option<OwnedFd>,
    /// `OOMGUARD_TRACE=1`: print every step's nearest threat on stderr.
    trace: bool,
    meminfo: Kept,
    probe: MemProbe,
    memcg_usage_file: Kept,
    oomd_pressure: Kept,
    /// The watched unit's memory pressure is over a quarter of oomd's limit.
    crunch: bool,
    /// A `full avg10` sample of the watched unit (time, value) and the rate since the one before.
    oomd_prev: Option<(f64, f64)>,
    oomd_rate: Option<f64>,
    /// `memory.high` and `memory.current` of systemd-oomd's watched unit.
    oomd_high: Kept,
    oomd_current: Kept,
    oomd_usage: Series,
}

/// A PSI trigger on systemd-oomd's watched unit: it wakes the guard as soon as the unit's
/// tasks were all stalled on memory for more than the rule's limit of a 2 s window (the
/// shortest window unprivileged users may ask for). systemd-oomd needs its 10 s average
/// above the limit for the rule's duration, so this comes first. The guard may itself be
/// throttled under the unit's `MemoryHigh` (it lives in the same cgroup when run by a
/// user); waiting in `poll` costs no allocation, so it still wakes in time.
fn psi_trigger(rule: &crate::host::systemd::PressureRule) -> Option<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        &rule.pressure_file,
        OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .ok()?;
    let window_us = 2_000_000u64;
    let stall_us = ((rule.limit_pct / 100.0) * window_us as f64) as u64;
    // The trailing NUL is required (facts.md).
    let spec = format!("full {} {window_us}\0", stall_us.clamp(1, window_us));
    rustix::io::write(&fd, spec.as_bytes()).ok()?;
    Some(fd)
}

impl Guard {
    pub fn new(
        job_id: impl Into<String>,
        pid: i32,
        cfg: GuardConfig,
        procfs: ProcFs,
        cgroupfs: CgroupFs,
    ) -> Self {
        let pidfd = rustix::process::Pid::from_raw(pid).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        let psi = cfg.oomd.as_ref().and_then(psi_trigger);
        let meminfo = Kept::new(procfs.root().join("meminfo"));
        let oomd_pressure = Kept::new(
            cfg.oomd
                .as_ref()
                .map(|r| r.pressure_file.clone())
                .unwrap_or_default(),
        );
        let unit_file = |name: &str| {
            Kept::new(
                cfg.oomd
                    .as_ref()
                    .and_then(|r| r.pressure_file.parent())
                    .map(|d| d.join(name))
                    .unwrap_or_default(),
            )
        };
        let (oomd_high, oomd_current) = (unit_file("memory.high"), unit_file("memory.current"));
        let cgroup_file = Kept::new(procfs.root().join(pid.to_string()).join("cgroup"));
        let probe = MemProbe::for_root(&procfs);
        Guard {
            job_id: job_id.into(),
            pid,
            pidfd,
            cfg,
            procfs,
            cgroupfs,
            start: Instant::now(),
            memcg_usage: Series::default(),
            available: Series::default(),
            job_footprint: Series::default(),
            episode: Episode::default(),
            valve_warned_at: None,
            valve_done: false,
            memcg: None,
            outlooks: Vec::with_capacity(4),
            readings: Vec::with_capacity(4),
            cgroup_file,
            memcg_checked: None,
            memcg_backoff: 1.0,
            memcg_raw: None,
            chain: MemcgChain::default(),
            oomd_above_since: None,
            psi,
            trace: std::env::var_os("OOMGUARD_TRACE").is_some_and(|v| v == "1"),
            meminfo,
            probe,
            memcg_usage_file: Kept::default(),
            oomd_pressure,
            crunch: false,
            oomd_prev: None,
            oomd_rate: None,
            oomd_high,
            oomd_current,
            oomd_usage: Series::default(),
        }
    }

    /// Sample, judge, and fire the actions if this is a new episode of danger.
    pub fn step(&mut self) -> Step {
        let now = self.start.elapsed().as_secs_f64();
        let sample = self.probe.sample(now);
        let mem = match screened(sample, now, &self.cfg.thresholds) {
            Some(m) => m,
            None => {
                let mut buf = [0u8; 8192];
                self.meminfo
                    .read(&mut buf)
                    .and_then(crate::host::proc::parse_meminfo)
                    .into()
            }
        };
        self.step_with(mem)
    }

    /// The job's thresholds.
    pub fn thresholds(&self) -> &Thresholds {
        &self.cfg.thresholds
    }

    /// Look again at the memory cgroup that limits the job, into `self.memcg`: the job may
    /// move, limits change. A look is one pread of `/proc/PID/cgroup` and one of each
    /// ancestor's limit file; the hierarchy is walked (paths looked up, files opened) only when
    /// the job moved.
    fn refresh_memcg(&mut self, now: f64) {
        // Look every 30 s while a limit applies. While none does, after 1, 2, 4 ... up to
        // 60 s: a job often joins its limited group just after it starts.
        let every = if self.memcg.is_some() {
            30.0
        } else {
            self.memcg_backoff
        };
        // In a crunch (the watched unit's memory is stalling) look nothing up: opening the
        // files allocates kernel memory, charged to our cgroup, which may be the throttled one.
        if self
            .memcg_checked
            .is_some_and(|t| now - t < every || self.crunch)
        {
            return;
        }
        self.memcg_checked = Some(now);
        self.memcg_backoff = (self.memcg_backoff * 2.0).min(60.0);
        let mut buf = [0u8; 4096];
        let raw = self.cgroup_file.read(&mut buf);
        if raw != self.memcg_raw.as_deref() {
            self.memcg_raw = raw.map(<[u8]>::to_vec);
            self.chain =
                raw.map_or_else(MemcgChain::default, |b| MemcgChain::walk(&self.cgroupfs, b));
        }
        self.memcg = self.chain.limiting();
    }

    fn push(&mut self, outlook: Outlook, reading: Reading) {
        self.outlooks.push(outlook);
        self.readings.push(reading);
    }

    /// One step with the machine's memory already read (the daemon reads it once per tick for
    /// all its jobs). When calm this reads one file, the memcg's usage, and allocates
    /// nothing: the threats are worded only when read (see [`Guard::threats`]).
    pub fn step_with(&mut self, mem: Memory) -> Step {
        let now = self.start.elapsed().as_secs_f64();
        let th = self.cfg.thresholds;
        self.outlooks.clear();
        self.readings.clear();
        // A job's start-up allocation (loading a model, a dataset) is a steep climb that stops:
        // no time estimates during the first WARMUP_S seconds; the 95 % rule still applies.
        let warm = now >= WARMUP_S;
        // The watched unit's MemoryHigh: past it the kernel throttles every task of the unit
        // (a job can freeze there, unable even to run a signal handler), and systemd-oomd's
        // pressure rule follows. Warn on the approach, while the job still runs freely.
        if let Some(rule) = &self.cfg.oomd {
            let mut hb = [0u8; 32];
            let high = self
                .oomd_high
                .read(&mut hb)
                .and_then(|b| std::str::from_utf8(b).ok()?.trim().parse::<u64>().ok());
            let mut cb = [0u8; 32];
            let current = self
                .oomd_current
                .read(&mut cb)
                .and_then(|b| std::str::from_utf8(b).ok()?.trim().parse::<u64>().ok());
            let limit_pct = rule.limit_pct;
            let duration_s = rule.duration_s;
            if let (Some(high), Some(current)) = (high, current) {
                let rate = self.oomd_usage.push(now, current as f64).filter(|_| warm);
                let mut o = risk::memcg_outlook(current, high, rate, &th);
                o.killer = crate::model::killer::KillerId::SystemdOomd;
                self.push(
                    o,
                    Reading::MemoryHigh {
                        current,
                        high,
                        rate,
                    },
                );
            }
            let mut pbuf = [0u8; 256];
            if let Some(avg10) = self.oomd_pressure.read(&mut pbuf).and_then(full_avg10) {
                // systemd-oomd compares `full avg10` with the limit once a second and kills
                // when it stays above for the rule's duration.
                self.crunch = avg10 > limit_pct / 4.0;
                if avg10 > limit_pct {
                    self.oomd_above_since.get_or_insert(now);
                } else {
                    self.oomd_above_since = None;
                }
                let above_for = self.oomd_above_since.map_or(0.0, |t| now - t);
                // The kernel updates avg10 every 2 s: compare with the sample 2 s back.
                match self.oomd_prev {
                    Some((t, v)) if now - t >= 1.9 => {
                        self.oomd_rate = Some((avg10 - v) / (now - t));
                        self.oomd_prev = Some((now, avg10));
                    }
                    None => self.oomd_prev = Some((now, avg10)),
                    _ => {}
                }
                let rate = self.oomd_rate.filter(|_| warm);
                let o =
                    risk::oomd_pressure_outlook(avg10, limit_pct, above_for, duration_s, rate, &th);
                self.push(
                    o,
                    Reading::OomdPressure {
                        avg10,
                        above_for,
                        rate,
                    },
                );
            }
        }
        self.refresh_memcg(now);
        if let Some((_, usage_file, limit)) = &self.memcg {
            let limit = *limit;
            if self.memcg_usage_file.path != *usage_file {
                self.memcg_usage_file = Kept::new(usage_file.clone());
            }
            let mut buf = [0u8; 64];
            match self
                .memcg_usage_file
                .read(&mut buf)
                .and_then(|b| std::str::from_utf8(b).ok()?.trim().parse::<u64>().ok())
            {
                Some(usage) => {
                    let rate = self.memcg_usage.push(now, usage as f64).filter(|_| warm);
                    let o = risk::memcg_outlook(usage, limit, rate, &th);
                    self.push(o, Reading::Memcg { usage, limit, rate });
                }
                None => self.memcg_checked = None, // moved or gone: look again next step
            }
        }
        match mem {
            Memory::Totals(t) => {
                let available = (t.mem_available_kib + t.swap_free_kib) * 1024;
                let total = (t.mem_total_kib + t.swap_total_kib) * 1024;
                let rate = self.available.push(now, available as f64).filter(|_| warm);
                let o = risk::global_outlook(available, total, rate, &th);
                self.push(
                    o,
                    Reading::Global {
                        available,
                        total,
                        rate,
                    },
                );
            }
            Memory::Far { free, used } => {
                // Rates come from consecutive meminfo samples only.
                self.available.clear();
                self.push(
                    risk::global_screened(used),
                    Reading::GlobalFar { free, used },
                );
            }
            Memory::Unknown => {}
        }
        let nearest = self.nearest_index().map(|i| self.outlooks[i]);
        let level = nearest.as_ref().map_or(Level::Ok, |o| o.level);
        let fired = self.episode.update(level, now, self.cfg.min_interval_s);
        if fired {
            self.cfg
                .actions
                .fire(&self.job_id, self.pid, self.pidfd.as_ref(), || {
                    self.nearest_threat().expect("a danger has a threat")
                });
        }
        if self.cfg.valve && !self.valve_done && level == Level::Danger {
            let info = self.procfs.sample(self.pid);
            self.valve(now, level, info.as_ref());
        } else if level != Level::Danger {
            self.valve_warned_at = None;
        }
        let next_in = next_interval(level, nearest.as_ref(), self.memcg_usage.rising());
        if self.trace {
            eprintln!(
                "oomguard: trace: t={now:.1} {:?} next {:?}: {}",
                level,
                next_in,
                self.nearest_threat().map_or(String::new(), |t| t.detail)
            );
        }
        Step {
            nearest,
            fired,
            next_in,
        }
    }

    fn nearest_index(&self) -> Option<usize> {
        (0..self.outlooks.len()).max_by(|&a, &b| self.outlooks[a].urgency_cmp(&self.outlooks[b]))
    }

    /// The last step's outlook of each watched killer.
    pub fn outlooks(&self) -> &[Outlook] {
        &self.outlooks
    }

    /// The last step's threats, in words.
    pub fn threats(&self) -> Vec<Threat> {
        (0..self.readings.len()).map(|i| self.word(i)).collect()
    }

    /// The last step's nearest threat, in words.
    pub fn nearest_threat(&self) -> Option<Threat> {
        self.nearest_index().map(|i| self.word(i))
    }

    /// Reading `i` of the last step in words.
    fn word(&self, i: usize) -> Threat {
        let th = &self.cfg.thresholds;
        let unit = self.cfg.oomd.as_ref().map_or("", |r| r.unit.as_str());
        match self.readings[i] {
            Reading::MemoryHigh {
                current,
                high,
                rate,
            } => {
                let mut t = risk::memcg(unit, current, high, rate, th);
                t.killer = crate::model::killer::KillerId::SystemdOomd;
                t.subject = format!("MemoryHigh of {unit}");
                t.detail = format!(
                    "{unit} is at {:.0}% of its MemoryHigh ({} of {} MiB){}: past it the kernel \
                     throttles all its tasks and systemd-oomd's pressure rule follows",
                    100.0 * current as f64 / high.max(1) as f64,
                    current >> 20,
                    high >> 20,
                    t.eta_s
                        .map(|e| format!(", reached in about {e:.0} s (estimate)"))
                        .unwrap_or_default()
                );
                t
            }
            Reading::OomdPressure {
                avg10,
                above_for,
                rate,
            } => {
                let (limit, duration) = self
                    .cfg
                    .oomd
                    .as_ref()
                    .map_or((0.0, 0.0), |r| (r.limit_pct, r.duration_s));
                risk::oomd_pressure(unit, avg10, limit, above_for, duration, rate, th)
            }
            Reading::Memcg { usage, limit, rate } => {
                let name = self.memcg.as_ref().map_or("?", |m| m.0.as_str());
                risk::memcg(name, usage, limit, rate, th)
            }
            Reading::Global {
                available,
                total,
                rate,
            } => risk::global(available, total, rate, th),
            Reading::GlobalFar { free, used } => risk::global_screened_words(free, used),
        }
    }

    /// The runaway safety valve. A job at -1000 that itself exhausts memory would make the
    /// kernel kill everything else (or lock the machine): warn and checkpoint (the danger
    /// actions above), wait `valve_grace_s`, and if it is still the runaway, lower the shield of
    /// the job's processes to 0 so the kernel can end the job instead.
    fn valve(&mut self, now: f64, level: Level, info: Option<&crate::model::process::ProcInfo>) {
        let Some(info) =
            info.filter(|p| p.oom_score_adj == crate::model::badness::OOM_SCORE_ADJ_MIN)
        else {
            self.valve_warned_at = None;
            return;
        };
        if level != Level::Danger {
            self.valve_warned_at = None;
            return;
        }
        // Only in danger is the full scan worth its cost.
        let Ok(procs) = self.procfs.scan() else {
            return;
        };
        let tree = descendants(&procs, self.pid);
        let bytes = |p: &crate::model::process::ProcInfo| {
            p.mem.map_or(0, |m| (m.rss_kib() + m.swap_kib) * 1024)
        };
        let job: u64 = procs
            .iter()
            .filter(|p| tree.contains(&p.pid))
            .map(bytes)
            .sum();
        let dir = self.cgroupfs.memcg_dir(&info.cgroup);
        let same_constraint = |p: &crate::model::process::ProcInfo| {
            dir.is_none() || self.cgroupfs.memcg_dir(&p.cgroup) == dir
        };
        let largest_other = procs
            .iter()
            .filter(|p| !tree.contains(&p.pid) && same_constraint(p))
            .map(bytes)
            .max()
            .unwrap_or(0);
        let growth = self.job_footprint.push(now, job as f64);
        if !risk::is_runaway(level, job, largest_other, growth) {
            return;
        }
        match self.valve_warned_at {
            None => {
                self.valve_warned_at = Some(now);
                self.cfg.actions.log_line(&format!(
                    "job {} (pid {}) is itself exhausting memory while shielded at -1000: the shield will be \
                     lowered to 0 in {:.0} s so the kernel can end it instead of the rest of the machine \
                     (--no-valve turns this off)",
                    self.job_id, self.pid, self.cfg.valve_grace_s
                ));
            }
            Some(t) if now - t >= self.cfg.valve_grace_s => {
                let mut lowered = 0;
                for pid in &tree {
                    let path = self
                        .procfs
                        .root()
                        .join(pid.to_string())
                        .join("oom_score_adj");
                    if std::fs::write(path, "0").is_ok() {
                        lowered += 1;
                    }
                }
                self.valve_done = true;
                self.cfg.actions.log_line(&format!(
                    "valve: lowered the shield of job {} to 0 on {lowered} of {} processes",
                    self.job_id,
                    tree.len()
                ));
            }
            Some(_) => {}
        }
    }

    /// Fire the job's actions now for `threat` (systemd-oomd's prekill), once per episode.
    pub fn fire_now(&mut self, threat: &Threat) {
        let now = self.start.elapsed().as_secs_f64();
        if self
            .episode
            .update(Level::Danger, now, self.cfg.min_interval_s)
        {
            self.cfg
                .actions
                .fire(&self.job_id, self.pid, self.pidfd.as_ref(), || {
                    threat.clone()
                });
        }
    }

    /// The job's pidfd (readable once it has exited).
    pub fn pidfd(&self) -> Option<&OwnedFd> {
        self.pidfd.as_ref()
    }

    /// Whether the job has exited (its pidfd became readable, or it is gone).
    pub fn job_exited(&self) -> bool {
        match &self.pidfd {
            Some(fd) => {
                let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                rustix::event::poll(
                    &mut fds,
                    Some(&rustix::time::Timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    }),
                )
                .is_ok_and(|n| n > 0)
            }
            None => self.procfs.sample(self.pid).is_none(),
        }
    }

    /// Guard until the job exits or `stop` returns true.
    pub fn run(&mut self, stop: impl Fn() -> bool) {
        while !stop() && !self.job_exited() {
            let step = self.step();
            if self.psi.is_some() {
                self.wait_psi(step.next_in);
            } else {
                std::thread::sleep(step.next_in);
            }
        }
    }

    /// Wait up to `d` for the PSI trigger; when it fires, act at once on systemd-oomd.
    fn wait_psi(&mut self, d: Duration) {
        use rustix::event::{PollFd, PollFlags, poll};
        let Some(fd) = self.psi.as_ref() else {
            return;
        };
        let mut fds = [PollFd::new(fd, PollFlags::PRI)];
        let ts = rustix::event::Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: d.subsec_nanos() as i64,
        };
        let fired = matches!(poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
            && fds[0].revents().contains(PollFlags::PRI);
        if fired && let Some(rule) = self.cfg.oomd.clone() {
            let threat = Threat {
                killer: crate::model::killer::KillerId::SystemdOomd,
                subject: format!("pressure on {}", rule.unit),
                level: Level::Danger,
                fraction: 1.0,
                eta_s: Some(rule.duration_s),
                detail: format!(
                    "every task of {} was stalled on memory for over {}% of the last 2 s; \
                     systemd-oomd kills when its 10 s average stays above {}% for {} s \
                     (estimate: within {} s)",
                    rule.unit, rule.limit_pct, rule.limit_pct, rule.duration_s, rule.duration_s
                ),
            };
            self.fire_now(&threat);
        } else if fds[0].revents().contains(PollFlags::ERR) {
            // The cgroup went away: stop using the trigger.
            self.psi = None;
        }
    }
}

/// `root` and every process below it.
fn descendants(procs: &[crate::model::process::ProcInfo], root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            procs
                .iter()
                .filter(|p| p.ppid == parent && p.pid != parent)
                .map(|p| p.pid),
        );
        i += 1;
    }
    out
}

/// Poll faster as danger grows: 1 s when calm and far, 250 ms past half of a limit, 100 ms
/// once the memcg's usage rose since the last sample (to confirm a sustained rate quickly), while
/// it grows toward a limit, and in watch or danger.
fn next_interval(level: Level, nearest: Option<&Outlook>, rising: bool) -> Duration {
    let growing = rising || nearest.is_some_and(|t| t.eta_s.is_some_and(|e| e < 120.0));
    let half = nearest.is_some_and(|t| t.fraction >= 0.5);
    Duration::from_millis(match level {
        Level::Danger | Level::Watch => 100,
        Level::Ok if growing => 100,
        Level::Ok if half => 250,
        Level::Ok => 1000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_psi_trigger_opens_on_a_real_pressure_file() {
        let rule = crate::host::systemd::PressureRule {
            unit: "test".into(),
            pressure_file: "/proc/pressure/memory".into(),
            limit_pct: 50.0,
            duration_s: 20.0,
        };
        if !rule.pressure_file.exists() {
            eprintln!("SKIP: no /proc/pressure/memory (kernel without PSI)");
            return;
        }
        assert!(
            psi_trigger(&rule).is_some(),
            "full 1000000 2000000 trigger refused"
        );
        let bad = crate::host::systemd::PressureRule {
            pressure_file: "/nonexistent/memory.pressure".into(),
            ..rule
        };
        assert!(psi_trigger(&bad).is_none());
    }

    #[test]
    fn a_startup_jump_is_not_a_sustained_rate() {
        let mut s = Series::default();
        assert_eq!(s.push(0.0, 10.0), None);
        assert_eq!(s.push(1.0, 460.0), None, "two samples: no rate yet");
        assert_eq!(s.push(2.0, 460.0), Some(0.0), "jump then flat: not growing");
        let mut g = Series::default();
        for (i, v) in [460.0, 510.0, 560.0, 610.0].iter().enumerate() {
            let r = g.push(i as f64 * 0.25, *v);
            if i >= 2 {
                assert!((r.unwrap() - 200.0).abs() < 1e-6, "{r:?}");
            }
        }
    }
}

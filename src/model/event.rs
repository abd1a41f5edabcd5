//! Kill events and the assembler that builds them from log lines. One incident often
//! spans several lines (the kernel's `invoked oom-killer`, usage, summary, kill and reaper
//! lines; systemd-oomd's trigger, candidates and kill, then the unit's own line from
//! systemd): they become one [`OomEvent`]. Lines that only reveal a kill (an application
//! saying its worker died) are attached as evidence, never counted as kills.
//!
//! Pure: the caller feeds lines (from kmsg, the journal or a file) in order and says how
//! to place their time stamps (time zone, boot time, the year of yearless syslog dates).

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::model::parse::{
    self, Fact,
    earlyoom::Earlyoom,
    kernel::{Figures, Kernel},
    line::{self, Stamp},
    nohang::Nohang,
    oomd::{Cause, Oomd, Unit},
};

/// One OOM kill, by any killer. The `--json` keys named in the issue (`time`, `killer`,
/// `constraint`, `pid`, `process`, `cgroup`, `reason`, `lines`) are a contract.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OomEvent {
    /// RFC 3339 when the log gives the year; otherwise the date as the log wrote it, or
    /// `+N s after boot` for a bare kernel uptime.
    pub time: Option<String>,
    /// `kernel`, `systemd-oomd`, `earlyoom`, `nohang`, or `unknown` (systemd said only
    /// "Failed with result 'oom-kill'", which both the kernel and systemd-oomd cause).
    pub killer: String,
    /// `global`, `memcg`, `cpuset`, `mempolicy`, `pressure`, `swap`, or null.
    pub constraint: Option<String>,
    pub pid: Option<u32>,
    pub process: Option<String>,
    /// The victim's cgroup (or unit, when that is all the log gives).
    pub cgroup: Option<String>,
    /// The memory cgroup whose limit was hit (memcg kills).
    pub oom_memcg: Option<String>,
    /// The unit systemd-oomd watched (pressure kills).
    pub monitored: Option<String>,
    pub uid: Option<u32>,
    pub oom_score_adj: Option<i32>,
    pub anon_rss_kib: Option<u64>,
    pub file_rss_kib: Option<u64>,
    pub shmem_rss_kib: Option<u64>,
    pub total_vm_kib: Option<u64>,
    pub memcg_usage_kib: Option<u64>,
    pub memcg_limit_kib: Option<u64>,
    pub pressure_pct: Option<f64>,
    pub pressure_limit_pct: Option<f64>,
    /// Processes systemd says the kill took (systemd-oomd kills whole units).
    pub processes_killed: Option<u32>,
    /// Why, in plain words.
    pub reason: Option<String>,
    /// The log lines of this incident, as written.
    pub lines: Vec<String>,
    /// Application lines that reveal this kill (a DataLoader worker's death, …).
    pub evidence: Vec<String>,
    /// The oomguard job this kill ended, when it was one.
    pub job: Option<String>,
    /// Where the lines came from (`kmsg`, `journal`, a file name).
    pub source: String,
    /// Seconds since the epoch, when known (used to sort, filter and de-duplicate).
    #[serde(skip)]
    pub unix: Option<f64>,
    #[serde(skip)]
    pub uptime: Option<f64>,
    /// Whether the killer's own kill line is in `lines` (not only systemd's unit line).
    #[serde(skip)]
    own_line: bool,
}

impl OomEvent {
    fn new(killer: &str, source: &str) -> OomEvent {
        OomEvent {
            time: None,
            killer: killer.to_owned(),
            constraint: None,
            pid: None,
            process: None,
            cgroup: None,
            oom_memcg: None,
            monitored: None,
            uid: None,
            oom_score_adj: None,
            anon_rss_kib: None,
            file_rss_kib: None,
            shmem_rss_kib: None,
            total_vm_kib: None,
            memcg_usage_kib: None,
            memcg_limit_kib: None,
            pressure_pct: None,
            pressure_limit_pct: None,
            processes_killed: None,
            reason: None,
            lines: Vec::new(),
            evidence: Vec::new(),
            job: None,
            source: source.to_owned(),
            unix: None,
            uptime: None,
            own_line: false,
        }
    }

    /// The last path component of the victim's cgroup (its unit, usually).
    pub fn unit(&self) -> Option<&str> {
        self.cgroup
            .as_deref()
            .map(|c| c.trim_end_matches('/').rsplit('/').next().unwrap_or(c))
    }

    /// Whether `unit` is the victim's cgroup or one of its ancestors.
    fn in_unit(&self, unit: &str) -> bool {
        self.cgroup.as_deref().is_some_and(|c| {
            c == unit || c.ends_with(&format!("/{unit}")) || c.contains(&format!("/{unit}/"))
        })
    }

    fn set_figures(&mut self, f: &Figures) {
        self.total_vm_kib = self.total_vm_kib.or(f.total_vm_kib);
        self.anon_rss_kib = self.anon_rss_kib.or(f.anon_rss_kib);
        self.file_rss_kib = self.file_rss_kib.or(f.file_rss_kib);
        self.shmem_rss_kib = self.shmem_rss_kib.or(f.shmem_rss_kib);
        self.uid = self.uid.or(f.uid);
        self.oom_score_adj = self.oom_score_adj.or(f.oom_score_adj);
    }

    /// Fill what `other` (a duplicate from another source) knows and this one does not.
    pub fn absorb(&mut self, o: &OomEvent) {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = o.$f.clone(); } )* };
        }
        fill!(
            time,
            constraint,
            pid,
            process,
            cgroup,
            oom_memcg,
            monitored,
            uid,
            oom_score_adj,
            anon_rss_kib,
            file_rss_kib,
            shmem_rss_kib,
            total_vm_kib,
            memcg_usage_kib,
            memcg_limit_kib,
            pressure_pct,
            pressure_limit_pct,
            processes_killed,
            reason,
            job,
            unix,
            uptime
        );
        if self.killer == "unknown" {
            self.killer = o.killer.clone();
        }
        for e in &o.evidence {
            if !self.evidence.contains(e) {
                self.evidence.push(e.clone());
            }
        }
    }
}

/// How to place time stamps.
#[derive(Debug, Clone)]
pub struct Clock {
    /// The zone of dates written without one (`dmesg -T`, Python logging).
    pub tz: TimeZone,
    /// Wall-clock time of boot, to place kernel uptimes (kmsg of this boot only).
    pub boot_unix: Option<f64>,
    /// The year of yearless syslog dates, when the caller can tell (else they are shown
    /// as written and placed in `year_guess` only for sorting and `--since`).
    pub year_guess: Option<i16>,
    /// Now, to put a yearless date that would lie in the future into the year before.
    pub now_unix: Option<f64>,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock {
            tz: TimeZone::UTC,
            boot_unix: None,
            year_guess: None,
            now_unix: None,
        }
    }
}

/// Where a line sits in time.
#[derive(Debug, Clone, Copy, Default)]
struct When {
    unix: Option<f64>,
    uptime: Option<f64>,
}

impl When {
    /// Whether two lines are within `secs` of each other (true when their times cannot
    /// be compared: the caller's ordering is then all there is).
    fn near(self, o: When, secs: f64) -> bool {
        match (self.unix, o.unix, self.uptime, o.uptime) {
            (Some(a), Some(b), _, _) => (a - b).abs() <= secs,
            (_, _, Some(a), Some(b)) => (a - b).abs() <= secs,
            _ => true,
        }
    }
}

/// Builds events from lines of one source, in order.
pub struct Assembler {
    clock: Clock,
    source: String,
    events: Vec<OomEvent>,
    whens: Vec<When>,
    kernel: KernelCtx,
    oomd: Vec<(String, When)>,
    oomd_trigger: Option<(String, Option<f64>, Option<f64>)>,
    earlyoom_low: Option<(String, String, When)>,
    nohang: NohangCtx,
    /// Evidence not linked yet: (line, pid, when).
    loose: Vec<(String, Option<u32>, When)>,
    created: u64,
}

#[derive(Default)]
struct KernelCtx {
    open: bool,
    lines: Vec<String>,
    when: When,
    usage: Option<(u64, u64)>,
    stats_cgroup: Option<String>,
    task_in: Option<(String, String)>,
    /// The event this incident produced, once a kill line came.
    event: Option<usize>,
}

#[derive(Default)]
struct NohangCtx {
    lines: Vec<String>,
    trigger: Vec<String>,
    victim: Option<(u32, Option<String>)>,
    event: Option<usize>,
}

/// Lines to look back when joining a line to an earlier event.
const LOOKBACK: usize = 32;

impl Assembler {
    pub fn new(source: &str, clock: Clock) -> Assembler {
        Assembler {
            clock,
            source: source.to_owned(),
            events: Vec::new(),
            whens: Vec::new(),
            kernel: KernelCtx::default(),
            oomd: Vec::new(),
            oomd_trigger: None,
            earlyoom_low: None,
            nohang: NohangCtx::default(),
            loose: Vec::new(),
            created: 0,
        }
    }

    /// Events made so far (a follower counts new ones by this; [`Assembler::trim`] does
    /// not lower it).
    pub fn created(&self) -> u64 {
        self.created
    }

    /// The newest event, if any.
    pub fn last(&self) -> Option<&OomEvent> {
        self.events.last()
    }

    /// Forget all but the events a new line could still join (for followers that run for
    /// months).
    pub fn trim(&mut self) {
        let n = self.events.len();
        if n > 2 * LOOKBACK {
            let cut = n - LOOKBACK;
            self.events.drain(..cut);
            self.whens.drain(..cut);
            self.kernel.event = self.kernel.event.and_then(|i| i.checked_sub(cut));
            self.nohang.event = self.nohang.event.and_then(|i| i.checked_sub(cut));
        }
        if self.loose.len() > LOOKBACK {
            let cut = self.loose.len() - LOOKBACK;
            self.loose.drain(..cut);
        }
    }

    /// Feed one raw line (any format). Returns whether it was relevant.
    pub fn push_line(&mut self, raw: &str) -> bool {
        let l = line::split(raw);
        let Some(fact) = parse::classify(l.ident, l.msg) else {
            return false;
        };
        let when = self.when(&l.stamp, l.uptime);
        let shown = self.shown(&l, when);
        self.push(raw.trim_end(), fact, when, shown);
        true
    }

    /// Feed one journal entry: its wall-clock time is known exactly.
    pub fn push_entry(&mut self, unix: f64, ident: Option<&str>, msg: &str) -> bool {
        let mut any = false;
        // A multi-line MESSAGE (oomd's candidate dump) is one line per fact.
        for part in msg.split('\n') {
            let l = line::split(part);
            // A kernel message from the journal may still carry its `[uptime]`.
            let m = if ident == Some("kernel") || l.ident.is_none() {
                l.msg
            } else {
                part
            };
            let Some(fact) = parse::classify(ident.or(l.ident), m) else {
                continue;
            };
            let when = When {
                unix: Some(unix),
                uptime: None,
            };
            let shown = Some(self.rfc3339(unix));
            let raw = format!(
                "{} {}{}",
                self.rfc3339(unix),
                ident.map(|i| format!("{i}: ")).unwrap_or_default(),
                part.trim_end()
            );
            self.push(&raw, fact, when, shown);
            any = true;
        }
        any
    }

    /// Feed one `/dev/kmsg` record (uptime in seconds).
    pub fn push_kmsg(&mut self, uptime: f64, msg: &str) -> bool {
        let l = line::split(msg);
        let Some(fact) = parse::classify(Some(l.ident.unwrap_or("kernel")), l.msg) else {
            return false;
        };
        let when = self.when(&Stamp::Uptime(uptime), None);
        let shown = when
            .unix
            .map(|u| self.rfc3339(u))
            .or_else(|| Some(format!("+{uptime:.6} s after boot")));
        let raw = format!("[{uptime:>12.6}] {}", msg.trim_end());
        self.push(&raw, fact, when, shown);
        true
    }

    fn rfc3339(&self, unix: f64) -> String {
        let ts = Timestamp::from_microsecond((unix * 1e6).round() as i64)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let z = ts.to_zoned(self.clock.tz.clone());
        format!("{}", z.timestamp().display_with_offset(z.offset()))
    }

    fn when(&self, stamp: &Stamp, uptime: Option<f64>) -> When {
        let unix = match *stamp {
            Stamp::Unix(u) => Some(u),
            Stamp::Civil { dt, offset_s } => {
                let z = match offset_s {
                    Some(o) => jiff::tz::Offset::from_seconds(o)
                        .ok()
                        .and_then(|off| dt.to_zoned(TimeZone::fixed(off)).ok()),
                    None => dt.to_zoned(self.clock.tz.clone()).ok(),
                };
                z.map(|z| z.timestamp().as_microsecond() as f64 / 1e6)
            }
            Stamp::Syslog {
                month: Some(m),
                day,
                time,
            } => self.clock.year_guess.and_then(|y| {
                let at = |y: i16| {
                    jiff::civil::Date::new(y, m, day)
                        .ok()
                        .and_then(|d| d.to_datetime(time).to_zoned(self.clock.tz.clone()).ok())
                        .map(|z| z.timestamp().as_microsecond() as f64 / 1e6)
                };
                match (at(y), self.clock.now_unix) {
                    (Some(t), Some(now)) if t > now + 86400.0 => at(y - 1),
                    (t, _) => t,
                }
            }),
            Stamp::Uptime(u) => self.clock.boot_unix.map(|b| b + u),
            _ => None,
        };
        let up = match *stamp {
            Stamp::Uptime(u) => Some(u),
            _ => uptime,
        };
        When { unix, uptime: up }
    }

    fn shown(&self, l: &line::Line, when: When) -> Option<String> {
        match l.stamp {
            Stamp::Syslog { .. } => Some(l.stamp_text.to_owned()),
            Stamp::None => None,
            Stamp::Uptime(u) => Some(
                when.unix
                    .map(|x| self.rfc3339(x))
                    .unwrap_or_else(|| format!("+{u:.6} s after boot")),
            ),
            _ => when.unix.map(|u| self.rfc3339(u)),
        }
    }

    fn add(&mut self, mut e: OomEvent, when: When, shown: Option<String>) -> usize {
        e.time = shown;
        e.unix = when.unix;
        e.uptime = when.uptime;
        self.events.push(e);
        self.whens.push(when);
        self.created += 1;
        self.events.len() - 1
    }

    /// The most recent event (within the look-back) that `pred` accepts and that lies
    /// within `secs` of `when`.
    fn recent(&self, when: When, secs: f64, pred: impl Fn(&OomEvent) -> bool) -> Option<usize> {
        let n = self.events.len();
        (n.saturating_sub(LOOKBACK)..n)
            .rev()
            .find(|&i| self.whens[i].near(when, secs) && pred(&self.events[i]))
    }

    fn push(&mut self, raw: &str, fact: Fact, when: When, shown: Option<String>) {
        let raw = raw.to_owned();
        match fact {
            Fact::Kernel(k) => self.kernel(raw, k, when, shown),
            Fact::Oomd(o) => self.oomd(raw, o, when, shown),
            Fact::Unit(u) => self.unit(raw, u, when, shown),
            Fact::Earlyoom(e) => self.earlyoom(raw, e, when, shown),
            Fact::Nohang(n) => self.nohang(raw, n, when, shown),
            Fact::Evidence(ev) => self
                .loose
                .push((format!("{} ({raw})", ev.says), ev.pid, when)),
        }
    }

    fn kernel(&mut self, raw: String, k: Kernel, when: When, shown: Option<String>) {
        let ctx_near = self.kernel.open && self.kernel.when.near(when, 30.0);
        match k {
            Kernel::Invoked { .. } => {
                self.kernel = KernelCtx {
                    open: true,
                    lines: vec![raw],
                    when,
                    ..KernelCtx::default()
                };
            }
            Kernel::MemcgUsage {
                usage_kib,
                limit_kib,
            } if ctx_near && self.kernel.usage.is_none() => {
                self.kernel.usage = Some((usage_kib, limit_kib));
                self.kernel.lines.push(raw);
            }
            Kernel::MemcgStats { cgroup } if ctx_near => {
                self.kernel.stats_cgroup.get_or_insert(cgroup);
            }
            Kernel::TaskIn {
                task_cgroup,
                limit_cgroup,
            } if ctx_near => {
                self.kernel.task_in = Some((task_cgroup, limit_cgroup));
                self.kernel.lines.push(raw);
            }
            Kernel::MemcgUsage { .. } | Kernel::MemcgStats { .. } | Kernel::TaskIn { .. } => {}
            Kernel::NoVictim => self.kernel.open = false,
            Kernel::Chose { .. } if ctx_near => self.kernel.lines.push(raw),
            Kernel::Chose { .. } => {}
            Kernel::Summary {
                constraint,
                oom_memcg,
                task_memcg,
                task,
                pid,
                uid,
                truncated: _,
            } => {
                let idx = self.kernel_event(when, shown, ctx_near);
                let e = &mut self.events[idx];
                e.constraint = Some(constraint_name(&constraint).to_owned());
                e.oom_memcg = e.oom_memcg.take().or(oom_memcg);
                e.cgroup = task_memcg.or(e.cgroup.take());
                e.process = e.process.take().or(task);
                e.pid = e.pid.or(pid);
                e.uid = e.uid.or(uid);
                e.lines.push(raw);
            }
            Kernel::Killed {
                pid,
                process,
                scope,
                figures,
            } => {
                // The kill joins the summary of the same incident when the pid agrees
                // (or the summary was cut before its pid).
                let joined = ctx_near
                    && self.kernel.event.is_some_and(|i| {
                        self.events[i].pid.is_none_or(|p| p == pid)
                            && !self.events[i]
                                .lines
                                .iter()
                                .any(|l| l.contains("Killed process"))
                    });
                let idx = if joined {
                    self.kernel.event.unwrap_or_default()
                } else {
                    self.kernel.event = None;
                    self.kernel_event(when, shown, ctx_near)
                };
                let e = &mut self.events[idx];
                e.pid = Some(pid);
                e.process = Some(process);
                e.set_figures(&figures);
                if e.constraint.is_none() || scope == "memcg" {
                    e.constraint = match scope {
                        "memcg" => Some("memcg".into()),
                        "global" => Some("global".into()),
                        _ if e.memcg_limit_kib.is_some() => Some("memcg".into()),
                        _ => e.constraint.take(),
                    };
                }
                e.lines.push(raw);
                self.kernel.open = false;
            }
            Kernel::Reaped {
                pid,
                process,
                figures: _,
            } => match self.recent(when, 120.0, |e| e.killer == "kernel" && e.pid == Some(pid)) {
                Some(i) => self.events[i].lines.push(raw),
                None => {
                    let mut e = OomEvent::new("kernel", &self.source);
                    e.pid = Some(pid);
                    e.process = Some(process);
                    e.lines.push(raw);
                    self.add(e, when, shown);
                }
            },
        }
        if let Some(i) = self.kernel.event
            && i < self.events.len()
        {
            let e = &mut self.events[i];
            e.reason = Some(kernel_reason(e));
        }
        // Events closed without a kill line still get their reason.
        if let Some(e) = self.events.last_mut()
            && e.killer == "kernel"
            && e.reason.is_none()
        {
            e.reason = Some(kernel_reason(e));
        }
    }

    /// The event of the current kernel incident, made from its context lines if new.
    fn kernel_event(&mut self, when: When, shown: Option<String>, ctx_near: bool) -> usize {
        if ctx_near && let Some(i) = self.kernel.event {
            return i;
        }
        let mut e = OomEvent::new("kernel", &self.source);
        if ctx_near {
            e.lines = std::mem::take(&mut self.kernel.lines);
            if let Some((u, l)) = self.kernel.usage {
                e.memcg_usage_kib = Some(u);
                e.memcg_limit_kib = Some(l);
            }
            if let Some((task, limit)) = self.kernel.task_in.take() {
                e.cgroup = Some(task);
                e.oom_memcg = Some(limit);
            } else if let Some(cg) = self.kernel.stats_cgroup.take() {
                e.oom_memcg = Some(cg);
            }
        }
        let i = self.add(e, when, shown);
        self.kernel.event = Some(i);
        self.kernel.open = true;
        self.kernel.when = when;
        i
    }

    fn oomd(&mut self, raw: String, o: Oomd, when: When, shown: Option<String>) {
        match o {
            Oomd::Trigger {
                monitored,
                pressure_pct,
                limit_pct,
            } => {
                self.oomd.push((raw, when));
                self.oomd_trigger = Some((monitored, pressure_pct, limit_pct));
            }
            Oomd::Considered { .. } | Oomd::Candidate(_) => {
                // The dump follows the kill in v258+ and precedes it in older versions.
                if let Some(i) = self.recent(when, 2.0, |e| e.killer == "systemd-oomd")
                    && self.events.len() - 1 == i
                    && self.oomd.is_empty()
                {
                    self.events[i].lines.push(raw);
                } else {
                    self.oomd.push((raw, when));
                }
            }
            Oomd::Failed => {
                self.oomd.clear();
                self.oomd_trigger = None;
            }
            Oomd::Killed {
                cgroup,
                cause,
                marked: _,
            } => {
                let unit = cgroup.rsplit('/').next().unwrap_or(&cgroup).to_owned();
                // systemd's unit line can come first (journal order within a second).
                let idx = match self.recent(when, 5.0, |e| {
                    (e.killer == "systemd-oomd" || e.killer == "unknown")
                        && !e.own_line
                        && e.in_unit(&unit)
                }) {
                    Some(i) => i,
                    None => {
                        let e = OomEvent::new("systemd-oomd", &self.source);
                        self.add(e, when, shown)
                    }
                };
                let ctx: Vec<String> = std::mem::take(&mut self.oomd)
                    .into_iter()
                    .filter(|(_, w)| w.near(when, 10.0))
                    .map(|(l, _)| l)
                    .collect();
                let e = &mut self.events[idx];
                e.killer = "systemd-oomd".into();
                e.own_line = true;
                e.cgroup = Some(cgroup);
                let mut lines = ctx;
                lines.append(&mut e.lines);
                lines.push(raw);
                e.lines = lines;
                match cause {
                    Cause::Pressure {
                        monitored,
                        pressure_pct,
                        limit_pct,
                        duration,
                    } => {
                        e.constraint = Some("pressure".into());
                        e.reason = Some(format!(
                            "pressure on {} was {} > {} for {}",
                            short_unit(&monitored),
                            fmt_pct(pressure_pct),
                            fmt_pct(limit_pct),
                            duration
                                .as_deref()
                                .map(fmt_duration)
                                .unwrap_or_else(|| "its limit's duration".into())
                        ));
                        e.monitored = Some(monitored);
                        e.pressure_pct = pressure_pct;
                        e.pressure_limit_pct = limit_pct;
                    }
                    Cause::Swap {
                        mem_used,
                        mem_total,
                        swap_used,
                        swap_total,
                        limit_pct,
                    } => {
                        e.constraint = Some("swap".into());
                        e.reason = Some(format!(
                            "memory ({} of {}) and swap ({} of {}) were both used over {}; \
                             systemd-oomd killed the cgroup using the most swap",
                            fmt_bytes(mem_used),
                            fmt_bytes(mem_total),
                            fmt_bytes(swap_used),
                            fmt_bytes(swap_total),
                            fmt_pct(limit_pct)
                        ));
                    }
                    Cause::Other(text) => e.reason = Some(format!("systemd-oomd: {text}")),
                }
                self.oomd_trigger = None;
            }
        }
    }

    fn unit(&mut self, raw: String, u: Unit, when: When, shown: Option<String>) {
        let unit = u.unit().to_owned();
        match u {
            Unit::OomdKilled { processes, .. } => {
                if let Some(i) = self.recent(when, 5.0, |e| {
                    e.killer == "systemd-oomd" && e.in_unit(&unit) && e.processes_killed.is_none()
                }) {
                    let e = &mut self.events[i];
                    e.processes_killed = processes;
                    e.lines.push(raw);
                    return;
                }
                let mut e = OomEvent::new("systemd-oomd", &self.source);
                e.cgroup = Some(unit.clone());
                e.processes_killed = processes;
                let ctx: Vec<String> = std::mem::take(&mut self.oomd)
                    .into_iter()
                    .filter(|(_, w)| w.near(when, 10.0))
                    .map(|(l, _)| l)
                    .collect();
                e.lines = ctx;
                e.lines.push(raw);
                e.reason = Some(match self.oomd_trigger.take() {
                    Some((mon, p, l)) => {
                        e.constraint = Some("pressure".into());
                        e.monitored = Some(mon.clone());
                        e.pressure_pct = p;
                        e.pressure_limit_pct = l;
                        format!(
                            "pressure on {} was {} > {}",
                            short_unit(&mon),
                            fmt_pct(p),
                            fmt_pct(l)
                        )
                    }
                    None => format!("{PROVISIONAL}systemd-oomd killed {unit}"),
                });
                self.add(e, when, shown);
            }
            Unit::KernelKilled { .. } => {
                if let Some(i) =
                    self.recent(when, 10.0, |e| e.killer == "kernel" && e.in_unit(&unit))
                {
                    self.events[i].lines.push(raw);
                    return;
                }
                let mut e = OomEvent::new("kernel", &self.source);
                e.cgroup = Some(unit.clone());
                e.lines.push(raw);
                e.reason = Some(format!(
                    "{PROVISIONAL}the kernel OOM killer killed a process of {unit}"
                ));
                self.add(e, when, shown);
            }
            Unit::FailedOomKill { .. } => {
                if let Some(i) = self.recent(when, 10.0, |e| e.in_unit(&unit)) {
                    self.events[i].lines.push(raw);
                    return;
                }
                // systemd-oomd's dump in the same second says who it was.
                let oomd_ctx = self.oomd.iter().any(|(_, w)| w.near(when, 2.0));
                let killer = if oomd_ctx { "systemd-oomd" } else { "unknown" };
                let mut e = OomEvent::new(killer, &self.source);
                e.cgroup = Some(unit.clone());
                if oomd_ctx {
                    e.lines = std::mem::take(&mut self.oomd)
                        .into_iter()
                        .map(|(l, _)| l)
                        .collect();
                }
                e.lines.push(raw);
                e.reason = Some(if oomd_ctx {
                    format!("{PROVISIONAL}systemd-oomd killed {unit}")
                } else {
                    format!(
                        "{PROVISIONAL}systemd says {unit} lost a process to an OOM killer \
                         (result 'oom-kill'); the kernel and systemd-oomd both cause this, and \
                         this log has no line saying which"
                    )
                });
                self.add(e, when, shown);
            }
        }
    }

    fn earlyoom(&mut self, raw: String, eo: Earlyoom, when: When, shown: Option<String>) {
        match eo {
            Earlyoom::Low { detail } => self.earlyoom_low = Some((raw, detail, when)),
            Earlyoom::Failed => self.earlyoom_low = None,
            Earlyoom::Exited { seconds } => {
                match self.recent(when, 60.0, |e| e.killer == "earlyoom") {
                    Some(i) => self.events[i].lines.push(raw),
                    None => {
                        let mut e = OomEvent::new("earlyoom", &self.source);
                        e.lines.push(raw);
                        e.reason = Some(format!(
                            "a process earlyoom signalled exited after {} s (the line naming \
                             it is not in this log)",
                            seconds.map(|s| s.to_string()).unwrap_or("?".into())
                        ));
                        self.add(e, when, shown);
                    }
                }
            }
            Earlyoom::Sent {
                signal,
                pid,
                uid,
                process,
                oom_score,
                oom_score_adj,
                rss_mib,
            } => {
                // SIGTERM then SIGKILL to the same process is one kill.
                if let Some(i) =
                    self.recent(when, 30.0, |e| e.killer == "earlyoom" && e.pid == Some(pid))
                {
                    let e = &mut self.events[i];
                    e.lines.push(raw);
                    if let Some(r) = e.reason.as_mut() {
                        r.push_str(&format!("; then {signal}"));
                    }
                    return;
                }
                let mut e = OomEvent::new("earlyoom", &self.source);
                e.pid = Some(pid);
                e.uid = uid;
                e.process = process.clone();
                e.oom_score_adj = oom_score_adj;
                e.anon_rss_kib = None;
                let low = self
                    .earlyoom_low
                    .take()
                    .filter(|(_, _, w)| w.near(when, 5.0));
                let why = match &low {
                    Some((_, d, _)) => format!("memory and swap were {d}"),
                    None => "available memory and swap were at or below earlyoom's limits".into(),
                };
                e.constraint = Some("global".into());
                if let Some((l, _, _)) = low {
                    e.lines.push(l);
                }
                e.lines.push(raw);
                e.reason = Some(format!(
                    "{why}; earlyoom sent {signal} to {} (pid {pid}{}{})",
                    process.as_deref().unwrap_or("?"),
                    rss_mib
                        .map(|r| format!(", {r} MiB RSS"))
                        .unwrap_or_default(),
                    oom_score
                        .map(|s| format!(", oom_score {s}"))
                        .unwrap_or_default(),
                ));
                self.add(e, when, shown);
            }
        }
    }

    fn nohang(&mut self, raw: String, n: Nohang, when: When, shown: Option<String>) {
        match n {
            Nohang::Start => {
                self.nohang = NohangCtx {
                    lines: vec![raw],
                    ..NohangCtx::default()
                };
            }
            Nohang::Trigger { detail } => {
                self.nohang.trigger.push(detail);
                self.nohang.lines.push(raw);
            }
            Nohang::Victim { pid, process, .. } => {
                self.nohang.victim = Some((pid, process));
                self.nohang.lines.push(raw);
            }
            Nohang::Command { .. } => {
                // A soft action (e.g. a checkpoint signal): not a kill.
                self.nohang = NohangCtx::default();
            }
            Nohang::Sent { signal } => {
                let mut e = OomEvent::new("nohang", &self.source);
                let ctx = std::mem::take(&mut self.nohang);
                if let Some((pid, process)) = ctx.victim {
                    e.pid = Some(pid);
                    e.process = process;
                }
                e.lines = ctx.lines;
                e.lines.push(raw);
                e.constraint = Some("global".into());
                e.reason = Some(format!(
                    "{}nohang sent {signal} to {}",
                    if ctx.trigger.is_empty() {
                        String::new()
                    } else {
                        format!("{}; ", ctx.trigger.join(", "))
                    },
                    match (e.process.as_deref(), e.pid) {
                        (Some(p), Some(pid)) => format!("{p} (pid {pid})"),
                        (_, Some(pid)) => format!("pid {pid}"),
                        _ => "its victim".into(),
                    }
                ));
                let i = self.add(e, when, shown);
                self.nohang.event = Some(i);
            }
            Nohang::Died { .. } => {
                if let Some(i) = self
                    .nohang
                    .event
                    .or_else(|| self.recent(when, 60.0, |e| e.killer == "nohang"))
                    && i < self.events.len()
                {
                    self.events[i].lines.push(raw);
                }
            }
        }
    }

    /// The events, with evidence linked and provisional reasons finished.
    pub fn finish(mut self) -> (Vec<OomEvent>, Vec<String>) {
        let mut unlinked = Vec::new();
        for (line, pid, when) in std::mem::take(&mut self.loose) {
            let by_pid =
                pid.and_then(|p| (0..self.events.len()).find(|&i| self.events[i].pid == Some(p)));
            let by_time = || {
                (0..self.events.len()).rfind(|&i| {
                    let w = self.whens[i];
                    (w.unix.is_some() && when.unix.is_some()
                        || w.uptime.is_some() && when.uptime.is_some())
                        && w.near(when, 120.0)
                })
            };
            match by_pid.or_else(by_time) {
                Some(i) => self.events[i].evidence.push(line),
                None => unlinked.push(line),
            }
        }
        for e in &mut self.events {
            if let Some(r) = e.reason.as_mut()
                && let Some(s) = r.strip_prefix(PROVISIONAL)
            {
                *r = s.to_owned();
            }
        }
        (self.events, unlinked)
    }
}

/// Marks a reason made from a unit line alone, so that the killer's own line, when it
/// comes, replaces it.
const PROVISIONAL: &str = "\u{1}";

/// Merge events from several sources: the kernel's kills reach both `/dev/kmsg` and the
/// journal, and a pasted file may repeat either. Duplicates are the same killer and pid
/// (or cgroup) within 5 s; the first keeps its lines and gains what the other knew.
pub fn merge(mut all: Vec<OomEvent>) -> Vec<OomEvent> {
    all.sort_by(|a, b| {
        a.unix
            .partial_cmp(&b.unix)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut out: Vec<OomEvent> = Vec::new();
    for e in all {
        let dup = out.iter_mut().rev().take(LOOKBACK).find(|o| {
            o.source != e.source
                && (o.killer == e.killer || o.killer == "unknown" || e.killer == "unknown")
                && match (o.unix, e.unix) {
                    (Some(a), Some(b)) => (a - b).abs() <= 5.0,
                    _ => false,
                }
                && match (o.pid, e.pid) {
                    (Some(a), Some(b)) => a == b,
                    _ => o.unit().is_some() && o.unit() == e.unit(),
                }
        });
        match dup {
            Some(o) => o.absorb(&e),
            None => out.push(e),
        }
    }
    out
}

fn constraint_name(c: &str) -> &str {
    match c {
        "CONSTRAINT_NONE" => "global",
        "CONSTRAINT_MEMCG" => "memcg",
        "CONSTRAINT_CPUSET" => "cpuset",
        "CONSTRAINT_MEMORY_POLICY" => "mempolicy",
        other => other,
    }
}

fn kernel_reason(e: &OomEvent) -> String {
    let victim = match (&e.process, e.pid) {
        (Some(p), Some(pid)) => format!("{p} (pid {pid}"),
        (Some(p), None) => format!("{p} (pid unknown"),
        (None, Some(pid)) => format!("pid {pid} ("),
        (None, None) => "a process (".into(),
    };
    let mut detail = Vec::new();
    if let Some(a) = e.anon_rss_kib {
        detail.push(format!("{} anon RSS", fmt_kib(a)));
    }
    if let Some(adj) = e.oom_score_adj {
        detail.push(format!("oom_score_adj {adj}"));
    }
    let victim = if detail.is_empty() {
        format!("{victim})").replace(" ()", "").replace("()", "")
    } else if victim.ends_with('(') {
        format!("{victim}{})", detail.join(", "))
    } else {
        format!("{victim}, {})", detail.join(", "))
    };
    match e.constraint.as_deref() {
        Some("memcg") => {
            let cg = e
                .oom_memcg
                .as_deref()
                .or(e.cgroup.as_deref())
                .unwrap_or("a memory cgroup");
            let usage = match (e.memcg_usage_kib, e.memcg_limit_kib) {
                (Some(u), Some(l)) => format!(" ({} used of {})", fmt_kib(u), fmt_kib(l)),
                _ => String::new(),
            };
            format!(
                "memory cgroup {cg} hit its limit{usage}; the kernel killed its worst process {victim}"
            )
        }
        Some("global") => format!(
            "the machine ran out of memory (RAM and swap); the kernel killed the process with \
             the highest badness, {victim}"
        ),
        Some(c @ ("cpuset" | "mempolicy")) => {
            format!("the {c} allowed no more memory; the kernel killed {victim}")
        }
        _ => format!("the kernel OOM killer killed {victim}"),
    }
}

fn short_unit(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

fn fmt_pct(p: Option<f64>) -> String {
    match p {
        Some(p) if p.fract() == 0.0 => format!("{p:.0}%"),
        Some(p) => format!("{p:.2}%"),
        None => "?%".into(),
    }
}

/// `20s` → `20 s`, `1min 30s` stays readable.
fn fmt_duration(d: &str) -> String {
    match d.strip_suffix('s') {
        Some(n) if n.parse::<f64>().is_ok() => format!("{n} s"),
        _ => d.to_owned(),
    }
}

fn fmt_kib(k: u64) -> String {
    if k >= 1024 * 1024 {
        format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0)
    } else if k >= 1024 {
        format!("{:.0} MiB", k as f64 / 1024.0)
    } else {
        format!("{k} KiB")
    }
}

fn fmt_bytes(b: Option<u64>) -> String {
    b.map(|b| fmt_kib(b / 1024)).unwrap_or_else(|| "?".into())
}

/// Assemble the events in a text (a file, stdin): every line in order.
pub fn from_text(text: &str, source: &str, clock: Clock) -> (Vec<OomEvent>, Vec<String>) {
    let mut a = Assembler::new(source, clock);
    for l in text.lines() {
        a.push_line(l);
    }
    a.finish()
}

/// Assemble the events in a large text, parsing only the lines the prefilter passes
/// (the fast path of `history --file`).
pub fn from_bytes(text: &[u8], source: &str, clock: Clock) -> (Vec<OomEvent>, Vec<String>) {
    let mut a = Assembler::new(source, clock);
    crate::model::parse::prefilter::candidate_lines(text, |l| {
        a.push_line(&String::from_utf8_lossy(l));
    });
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oomd_kill_and_unit_line_are_one_event_in_either_order() {
        let kill = "Dec 04 20:15:55 fedora systemd-oomd[970]: Killed /user.slice/user-1000.slice/user@1000.service/app.slice/app-kitty-47.scope due to memory pressure for /user.slice/user-1000.slice/user@1000.service being 77.97% > 50.00% for > 20s with reclaim activity";
        let unit = "Dec 04 20:15:55 fedora systemd[1348]: app-kitty-47.scope: systemd-oomd killed 65 process(es) in this unit.";
        for text in [format!("{kill}\n{unit}"), format!("{unit}\n{kill}")] {
            let (ev, _) = from_text(&text, "t", Clock::default());
            assert_eq!(ev.len(), 1, "{ev:#?}");
            let e = &ev[0];
            assert_eq!(e.killer, "systemd-oomd");
            assert_eq!(e.constraint.as_deref(), Some("pressure"));
            assert_eq!(e.processes_killed, Some(65));
            assert_eq!(
                e.reason.as_deref(),
                Some("pressure on user@1000.service was 77.97% > 50% for 20 s")
            );
            assert_eq!(e.lines.len(), 2);
        }
    }

    #[test]
    fn yearless_dates_in_the_future_belong_to_last_year() {
        let clock = Clock {
            year_guess: Some(2026),
            now_unix: Some(1_795_000_000.0), // 2026-11-18
            ..Clock::default()
        };
        let text = "Dec 18 19:34:56 h kernel: Out of memory: Killed process 1 (a) total-vm:1kB\nApr 13 10:51:39 h kernel: Out of memory: Killed process 2 (b) total-vm:1kB";
        let (ev, _) = from_text(text, "t", clock);
        let dec = ev[0].unix.unwrap();
        let apr = ev[1].unix.unwrap();
        assert!(dec < apr, "Dec 18 is 2025's: {dec} {apr}");
        assert_eq!(ev[0].time.as_deref(), Some("Dec 18 19:34:56"));
    }

    #[test]
    fn evidence_links_by_pid() {
        let text = "[ 10.0] Out of memory: Killed process 4161 (python) total-vm:1kB, anon-rss:1kB\nRuntimeError: DataLoader worker (pid 4161) is killed by signal: Killed.";
        let (ev, loose) = from_text(text, "t", Clock::default());
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].evidence.len(), 1);
        assert!(loose.is_empty());
        let (ev, loose) = from_text(
            "RuntimeError: DataLoader worker (pid 4161) is killed by signal: Killed.",
            "t",
            Clock::default(),
        );
        assert!(ev.is_empty());
        assert_eq!(loose.len(), 1);
    }

    #[test]
    fn earlyoom_term_then_kill_is_one_event() {
        let text = "Feb 16 13:58:29 h earlyoom[1233]: low memory! at or below SIGTERM limits: mem 10.00%, swap 10.00%\nFeb 16 13:58:29 h earlyoom[1233]: sending SIGTERM to process 29410 uid 1000 \"cluster\": badness 1264, VmRSS 23964 MiB\nFeb 16 13:58:39 h earlyoom[1233]: sending SIGKILL to process 29410 uid 1000 \"cluster\": badness 1264, VmRSS 23964 MiB\nFeb 16 13:58:40 h earlyoom[1233]: process exited after 11.0 seconds";
        let (ev, _) = from_text(text, "t", Clock::default());
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0].lines.len(), 4);
        assert!(ev[0].reason.as_deref().unwrap().contains("mem 10.00%"));
    }
}

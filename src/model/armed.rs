//! Which OOM killers are armed, and how: pure parsers of their configuration (systemd-oomd's
//! `oomd.conf` and drop-ins, `oomctl` and `systemctl show` text, earlyoom's arguments, nohang's
//! config) and the findings `oomguard doctor` prints, each with what to do about it.
//!
//! No I/O: `host::oomd` and `cli::doctor` gather the text and the numbers; everything here is
//! tested with fixture strings.

use serde::Serialize;

use crate::job::layers::{Layer, State};

/// systemd-oomd's compiled-in defaults (`src/oom/oomd.h`).
pub const OOMD_SWAP_USED_LIMIT_PCT: f64 = 90.0;
pub const OOMD_PRESSURE_LIMIT_PCT: f64 = 60.0;
pub const OOMD_PRESSURE_DURATION_S: f64 = 30.0;

/// Value of an option given as `--opt V` / `--opt=V`, or as `-x V` when `short` is given
/// (the last occurrence wins, as getopt leaves it).
pub fn arg_value<'a>(args: &'a [String], long: &str, short: Option<&str>) -> Option<&'a str> {
    let mut found = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        for name in std::iter::once(long).chain(short) {
            if a == name {
                found = it.next().map(String::as_str);
                break;
            }
            let attached = if name.starts_with("--") {
                a.strip_prefix(name).and_then(|r| r.strip_prefix('='))
            } else {
                // getopt's attached short form: `-m10`.
                a.strip_prefix(name).filter(|r| !r.is_empty())
            };
            if attached.is_some() {
                found = attached;
                break;
            }
        }
    }
    found
}

/// A percentage as systemd writes it: `90%`, `90.5%`, `900‰`, `9000‱`.
pub fn parse_percent(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, div) = if let Some(n) = s.strip_suffix('%') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('‰') {
        (n, 10.0)
    } else if let Some(n) = s.strip_suffix('‱') {
        (n, 100.0)
    } else {
        return None;
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v / div)
}

/// A systemd time span in seconds: `30s`, `1min 30s`, `500ms`, `2h`, a bare number of seconds.
/// `infinity` and garbage give `None`.
pub fn parse_timespan(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || s == "infinity" {
        return None;
    }
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let v: f64 = rest[..num_end].parse().ok()?;
        rest = rest[num_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "ms" | "msec" => 1e-3,
            "us" | "usec" | "µs" => 1e-6,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            _ => return None,
        };
        total += v * mult;
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// systemd-oomd's settings, from its config files over the compiled defaults.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OomdConf {
    pub swap_used_limit_pct: f64,
    pub default_memory_pressure_limit_pct: f64,
    pub default_memory_pressure_duration_s: f64,
    /// The files read, in the order applied (later ones win).
    pub files: Vec<String>,
}

impl Default for OomdConf {
    fn default() -> Self {
        OomdConf {
            swap_used_limit_pct: OOMD_SWAP_USED_LIMIT_PCT,
            default_memory_pressure_limit_pct: OOMD_PRESSURE_LIMIT_PCT,
            default_memory_pressure_duration_s: OOMD_PRESSURE_DURATION_S,
            files: Vec::new(),
        }
    }
}

/// The order systemd applies drop-ins in: every `*.conf` of every directory, sorted by file
/// name; a name in a directory earlier in `dirs` (higher priority: /etc, /run, /usr/local/lib,
/// /usr/lib) masks the same name further on. Returns `(dir, name)` pairs, applied in order.
pub fn dropin_order(dirs: &[(String, Vec<String>)]) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for (dir, names) in dirs {
        for n in names {
            if n.ends_with(".conf") && !out.iter().any(|(_, m)| m == n) {
                out.push((dir, n));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(b.1));
    out
}

/// Apply `oomd.conf`-style files (`(path, text)`, in order) over the defaults. Only the `[OOM]`
/// section counts; an empty assignment resets a setting to its default; invalid values are
/// ignored (as systemd does, with a warning).
pub fn parse_oomd_conf(files: &[(String, String)]) -> OomdConf {
    let mut c = OomdConf::default();
    for (path, text) in files {
        c.files.push(path.clone());
        let mut in_oom = false;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                in_oom = line == "[OOM]";
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            if !in_oom {
                continue;
            }
            let v = v.trim();
            match k.trim() {
                "SwapUsedLimit" if v.is_empty() => c.swap_used_limit_pct = OOMD_SWAP_USED_LIMIT_PCT,
                "SwapUsedLimit" => {
                    if let Some(p) = parse_percent(v).filter(|p| *p <= 100.0) {
                        c.swap_used_limit_pct = p;
                    }
                }
                "DefaultMemoryPressureLimit" if v.is_empty() => {
                    c.default_memory_pressure_limit_pct = OOMD_PRESSURE_LIMIT_PCT
                }
                "DefaultMemoryPressureLimit" => {
                    if let Some(p) = parse_percent(v).filter(|p| *p <= 100.0) {
                        c.default_memory_pressure_limit_pct = p;
                    }
                }
                "DefaultMemoryPressureDurationSec" if v.is_empty() => {
                    c.default_memory_pressure_duration_s = OOMD_PRESSURE_DURATION_S
                }
                "DefaultMemoryPressureDurationSec" => {
                    if let Some(s) = parse_timespan(v) {
                        c.default_memory_pressure_duration_s = s;
                    }
                }
                _ => {}
            }
        }
    }
    c
}

/// Which systemd-oomd rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// `ManagedOOMMemoryPressure=kill`: acts on `full avg10` of the unit's `memory.pressure`.
    MemoryPressure,
    /// `ManagedOOMSwap=kill`: acts when memory and swap used both pass `SwapUsedLimit`.
    Swap,
}

/// One `...=kill` rule on a unit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OomdRule {
    /// The unit carrying the rule (the cgroup's last component), e.g. `user@1000.service`.
    pub unit: String,
    /// Its cgroup path (`/user.slice/user-1000.slice/user@1000.service`, `/` for `-.slice`).
    pub cgroup: String,
    pub kind: RuleKind,
    /// The limit in effect (pressure %: the unit's, or the default; swap: `SwapUsedLimit`).
    pub limit_pct: f64,
    /// How long pressure must stay above the limit (pressure rules).
    pub duration_s: Option<f64>,
    /// `full avg10` of the unit's memory pressure when last read (oomctl reports it).
    pub pressure_avg10: Option<f64>,
}

impl OomdRule {
    /// Whether a process in cgroup `path` is a candidate of this rule (the rule's cgroup is
    /// its cgroup or an ancestor of it).
    pub fn covers(&self, path: &str) -> bool {
        let base = self.cgroup.trim_end_matches('/');
        base.is_empty()
            || path == base
            || path
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// "user@1000.service pressure above 50% for 20 s" / "-.slice swap above 90%".
    pub fn describe(&self) -> String {
        match self.kind {
            RuleKind::MemoryPressure => format!(
                "{} memory pressure above {} for {}",
                self.unit,
                pct(self.limit_pct),
                self.duration_s.map_or("the default duration".into(), secs)
            ),
            RuleKind::Swap => format!(
                "{} memory and swap both above {} used",
                self.unit,
                pct(self.limit_pct)
            ),
        }
    }
}

/// The unit name for a cgroup path: its last component, `-.slice` for the root.
pub fn unit_of_cgroup(path: &str) -> String {
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(c) if !c.is_empty() => c.to_owned(),
        _ => "-.slice".to_owned(),
    }
}

/// What `oomctl` (`oomctl dump`) printed, parsed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OomctlDump {
    pub dry_run: Option<bool>,
    pub swap_used_limit_pct: Option<f64>,
    pub default_memory_pressure_limit_pct: Option<f64>,
    pub default_memory_pressure_duration_s: Option<f64>,
    pub rules: Vec<OomdRule>,
}

/// Parse `oomctl dump` output (systemd 247..260 share this layout):
/// ```text
/// Dry Run: no
/// Swap Used Limit: 90.00%
/// Default Memory Pressure Limit: 60.00%
/// Default Memory Pressure Duration: 30s
/// System Context: ...
/// Swap Monitored CGroups:
///         Path: /
///                 Swap Usage: (see System Context)
/// Memory Pressure Monitored CGroups:
///         Path: /user.slice/user-1000.slice/user@1000.service
///                 Memory Pressure Limit: 50.00%
///                 Pressure: Avg10: 0.00 Avg60: 0.00 Avg300: 0.00 Total: 0
/// ```
/// `None` when the text has none of these headings (not oomctl output).
pub fn parse_oomctl(text: &str) -> Option<OomctlDump> {
    #[derive(PartialEq)]
    enum Sec {
        Top,
        Swap,
        Pressure,
    }
    let mut d = OomctlDump::default();
    let mut sec = Sec::Top;
    let mut seen = false;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let indented = raw.starts_with([' ', '\t']);
        if !indented {
            if let Some(v) = line.strip_prefix("Dry Run:") {
                d.dry_run = Some(v.trim() == "yes");
                seen = true;
            } else if let Some(v) = line.strip_prefix("Swap Used Limit:") {
                d.swap_used_limit_pct = parse_percent(v);
                seen = true;
            } else if let Some(v) = line.strip_prefix("Default Memory Pressure Limit:") {
                d.default_memory_pressure_limit_pct = parse_percent(v);
                seen = true;
            } else if let Some(v) = line.strip_prefix("Default Memory Pressure Duration:") {
                d.default_memory_pressure_duration_s = parse_timespan(v);
                seen = true;
            }
            sec = match line {
                "Swap Monitored CGroups:" => Sec::Swap,
                "Memory Pressure Monitored CGroups:" => Sec::Pressure,
                _ => Sec::Top,
            };
            seen |= sec != Sec::Top;
            continue;
        }
        if sec == Sec::Top {
            continue;
        }
        // Some builds print the bare path; the usual form is `Path: /...`.
        let path = line
            .strip_prefix("Path:")
            .map(str::trim)
            .or_else(|| line.starts_with('/').then_some(line));
        if let Some(p) = path {
            let p = p.split_whitespace().next().unwrap_or("/");
            d.rules.push(OomdRule {
                unit: unit_of_cgroup(p),
                cgroup: p.to_owned(),
                kind: if sec == Sec::Swap {
                    RuleKind::Swap
                } else {
                    RuleKind::MemoryPressure
                },
                limit_pct: f64::NAN,
                duration_s: None,
                pressure_avg10: None,
            });
            continue;
        }
        let Some(r) = d.rules.last_mut() else {
            continue;
        };
        if let Some(v) = line.strip_prefix("Memory Pressure Limit:") {
            r.limit_pct = parse_percent(v).unwrap_or(f64::NAN);
        } else if let Some(v) = line.strip_prefix("Memory Pressure Duration:") {
            r.duration_s = parse_timespan(v);
        } else if let Some(v) = line.strip_prefix("Pressure:") {
            r.pressure_avg10 = v
                .split_whitespace()
                .skip_while(|w| *w != "Avg10:")
                .nth(1)
                .and_then(|x| x.parse().ok());
        }
    }
    if !seen {
        return None;
    }
    // Fill what each rule leaves to the defaults.
    let swap = d.swap_used_limit_pct.unwrap_or(OOMD_SWAP_USED_LIMIT_PCT);
    let lim = d
        .default_memory_pressure_limit_pct
        .unwrap_or(OOMD_PRESSURE_LIMIT_PCT);
    let dur = d
        .default_memory_pressure_duration_s
        .unwrap_or(OOMD_PRESSURE_DURATION_S);
    for r in &mut d.rules {
        match r.kind {
            RuleKind::Swap => r.limit_pct = swap,
            RuleKind::MemoryPressure => {
                // A unit without its own limit shows 0.00% (oomd then uses the default).
                if r.limit_pct.is_nan() || r.limit_pct <= 0.0 {
                    r.limit_pct = lim;
                }
                r.duration_s = Some(r.duration_s.unwrap_or(dur));
            }
        }
    }
    Some(d)
}

/// The properties `systemctl show` is asked for.
pub const SHOW_PROPERTIES: &str = "Id,ControlGroup,ManagedOOMMemoryPressure,ManagedOOMMemoryPressureLimit,ManagedOOMMemoryPressureDurationUSec,ManagedOOMSwap,ManagedOOMPreference";

/// A `ManagedOOMMemoryPressureLimit=` value as `systemctl show` prints it: `50%`, `50.00%`,
/// or the raw D-Bus value (a fraction of 2^32). 0 means "the default".
fn parse_show_limit(v: &str) -> Option<f64> {
    if let Some(p) = parse_percent(v) {
        return (p > 0.0).then_some(p);
    }
    let raw: u64 = v.trim().parse().ok()?;
    (raw > 0).then(|| raw as f64 * 100.0 / 4294967296.0)
}

/// Parse `systemctl show -p SHOW_PROPERTIES UNIT...` (blocks of `Key=Value` lines separated
/// by blank lines) into the `...=kill` rules, filling defaults from `conf`.
pub fn parse_systemctl_show(text: &str, conf: &OomdConf) -> Vec<OomdRule> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let get = |key: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|r| r.strip_prefix('='))
                    .map(str::trim)
            })
        };
        let Some(id) = get("Id").filter(|s| !s.is_empty()) else {
            continue;
        };
        let cgroup = match get("ControlGroup").filter(|s| !s.is_empty()) {
            Some(c) => c.to_owned(),
            None if id == "-.slice" => "/".to_owned(),
            None => continue, // not running: no cgroup to watch
        };
        if get("ManagedOOMMemoryPressure") == Some("kill") {
            out.push(OomdRule {
                unit: id.to_owned(),
                cgroup: cgroup.clone(),
                kind: RuleKind::MemoryPressure,
                limit_pct: get("ManagedOOMMemoryPressureLimit")
                    .and_then(parse_show_limit)
                    .unwrap_or(conf.default_memory_pressure_limit_pct),
                duration_s: Some(
                    get("ManagedOOMMemoryPressureDurationUSec")
                        .and_then(parse_timespan)
                        .filter(|d| *d > 0.0)
                        .unwrap_or(conf.default_memory_pressure_duration_s),
                ),
                pressure_avg10: None,
            });
        }
        if get("ManagedOOMSwap") == Some("kill") {
            out.push(OomdRule {
                unit: id.to_owned(),
                cgroup,
                kind: RuleKind::Swap,
                limit_pct: conf.swap_used_limit_pct,
                duration_s: None,
                pressure_avg10: None,
            });
        }
    }
    out
}

/// earlyoom's thresholds, from its command line (earlyoom 1.6..1.8 options).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EarlyoomConf {
    /// SIGTERM when MemAvailable is at or below this % of MemTotal ...
    pub mem_term_pct: f64,
    pub mem_kill_pct: f64,
    /// ... and SwapFree at or below this % of SwapTotal.
    pub swap_term_pct: f64,
    pub swap_kill_pct: f64,
    pub prefer: Option<String>,
    pub avoid: Option<String>,
    pub ignore: Option<String>,
    pub sort_by_rss: bool,
    pub dryrun: bool,
}

/// `PERCENT[,KILL]` (`-m 10`, `-m 10,5`); the kill level defaults to half.
fn pct_pair(v: &str) -> Option<(f64, f64)> {
    let mut it = v.split(',');
    let term: f64 = it.next()?.trim().parse().ok()?;
    let kill = match it.next() {
        Some(k) => k.trim().parse().ok()?,
        None => term / 2.0,
    };
    Some((term, kill))
}

/// `SIZE[,KILL]` in KiB as a % of `total_kib`.
fn kib_pair_pct(v: &str, total_kib: u64) -> Option<(f64, f64)> {
    let (t, k) = pct_pair(v)?;
    let total = total_kib.max(1) as f64;
    Some((100.0 * t / total, 100.0 * k / total))
}

/// earlyoom's effective thresholds: `-m`/`-s` in % (default 10 %), `-M`/`-S` in KiB; when both
/// forms are given the lower one counts.
pub fn earlyoom_conf(args: &[String], mem_total_kib: u64, swap_total_kib: u64) -> EarlyoomConf {
    let (mut mt, mut mk) = arg_value(args, "-m", None)
        .and_then(pct_pair)
        .unwrap_or((10.0, 5.0));
    if let Some((t, k)) = arg_value(args, "-M", None).and_then(|v| kib_pair_pct(v, mem_total_kib)) {
        (mt, mk) = (mt.min(t), mk.min(k));
    }
    let (mut st, mut sk) = arg_value(args, "-s", None)
        .and_then(pct_pair)
        .unwrap_or((10.0, 5.0));
    if swap_total_kib > 0
        && let Some((t, k)) =
            arg_value(args, "-S", None).and_then(|v| kib_pair_pct(v, swap_total_kib))
    {
        (st, sk) = (st.min(t), sk.min(k));
    }
    EarlyoomConf {
        mem_term_pct: mt,
        mem_kill_pct: mk,
        swap_term_pct: st,
        swap_kill_pct: sk,
        prefer: arg_value(args, "--prefer", None).map(str::to_owned),
        avoid: arg_value(args, "--avoid", None).map(str::to_owned),
        ignore: arg_value(args, "--ignore", None).map(str::to_owned),
        sort_by_rss: args.iter().any(|a| a == "--sort-by-rss"),
        dryrun: args.iter().any(|a| a == "--dryrun"),
    }
}

/// nohang's thresholds and rules, from its config file (`key = value` lines, `@RULE` lines).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NohangConf {
    /// SIGTERM (or the soft action) when MemAvailable <= this % ...
    pub soft_mem_pct: Option<f64>,
    /// ... and SwapFree <= this %.
    pub soft_swap_pct: Option<f64>,
    /// SIGKILL levels.
    pub hard_mem_pct: Option<f64>,
    pub hard_swap_pct: Option<f64>,
    pub psi_checking_enabled: bool,
    pub psi_metrics: Option<String>,
    pub soft_psi: Option<f64>,
    /// `@BADNESS_ADJ_RE_*` and `@SOFT_ACTION_RE_*` lines, as written.
    pub rules: Vec<String>,
}

/// `5 %` or `256 M` (MiB) as a % of `total_kib`.
fn nohang_level(v: &str, total_kib: u64) -> Option<f64> {
    let v = v.trim();
    if let Some(n) = v.strip_suffix('%') {
        return n.trim().parse().ok();
    }
    let n: f64 = v.strip_suffix('M')?.trim().parse().ok()?;
    Some(if total_kib == 0 {
        0.0
    } else {
        100.0 * n * 1024.0 / total_kib as f64
    })
}

/// Parse a nohang config (0.1, 0.2). Sizes in `M` become % of the machine's totals.
pub fn nohang_conf(text: &str, mem_total_kib: u64, swap_total_kib: u64) -> NohangConf {
    let mut c = NohangConf::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('@') {
            c.rules.push(line.to_owned());
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim_start().starts_with('#') {
            continue;
        }
        let v = v.trim();
        match k.trim() {
            "soft_threshold_min_mem" => c.soft_mem_pct = nohang_level(v, mem_total_kib),
            "soft_threshold_min_swap" => c.soft_swap_pct = nohang_level(v, swap_total_kib),
            "hard_threshold_min_mem" => c.hard_mem_pct = nohang_level(v, mem_total_kib),
            "hard_threshold_min_swap" => c.hard_swap_pct = nohang_level(v, swap_total_kib),
            "psi_checking_enabled" => c.psi_checking_enabled = v == "True",
            "psi_metrics" => c.psi_metrics = Some(v.to_owned()),
            "soft_threshold_max_psi" => c.soft_psi = v.parse().ok(),
            _ => {}
        }
    }
    c
}

/// The kernel's OOM-relevant settings (`/proc/sys/vm/*`, `/proc/meminfo`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KernelSettings {
    pub overcommit_memory: Option<i64>,
    /// `heuristic`, `always` or `never` (modes 0, 1, 2).
    pub overcommit_mode: Option<&'static str>,
    pub overcommit_ratio: Option<i64>,
    pub panic_on_oom: Option<i64>,
    pub oom_kill_allocating_task: Option<i64>,
    pub mem_total_kib: u64,
    pub mem_available_kib: u64,
    pub swap_total_kib: u64,
    pub swap_free_kib: u64,
}

/// The name of an overcommit mode.
pub fn overcommit_mode(v: i64) -> Option<&'static str> {
    match v {
        0 => Some("heuristic"),
        1 => Some("always"),
        2 => Some("never"),
        _ => None,
    }
}

/// The status word of a finding: is the killer armed here?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Armed,
    NotRunning,
    NotApplicable,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Armed => "armed",
            Status::NotRunning => "not running",
            Status::NotApplicable => "not applicable",
        }
    }
}

/// One killer's finding, ending with what to do about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// `kernel`, `kernel-memcg`, `systemd-oomd`, `earlyoom` or `nohang`.
    pub killer: &'static str,
    pub status: Status,
    pub detail: String,
    pub remedy: String,
}

/// What the findings need to know about the process asked about.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    pub pid: i32,
    pub name: String,
    pub oom_score_adj: i32,
    /// Its cgroup v2 path (`0::` line), when it has one.
    pub cgroup_v2: Option<String>,
    /// The oomguard scope it sits in (`oomguard-<id>.scope`), if any.
    pub oomguard_scope: Option<String>,
    /// Its cgroup carries `user.oomd_omit` (ManagedOOMPreference=omit).
    pub oomd_omit: bool,
    /// Why the kernel never picks it whatever its adj (init, a kernel thread), if so.
    pub never_picked: Option<&'static str>,
}

impl Subject {
    pub fn shielded_from_kernel(&self) -> bool {
        self.oom_score_adj == -1000
    }
    pub fn omitted_by_oomd(&self) -> bool {
        self.oomd_omit || self.oomguard_scope.is_some()
    }
}

/// The `oomguard-<id>.scope` component of a cgroup path, if any.
pub fn oomguard_scope(path: &str) -> Option<&str> {
    path.split('/')
        .find(|c| c.starts_with("oomguard-") && c.ends_with(".scope"))
}

/// The remedy where nothing needs doing.
pub const NOTHING: &str = "nothing to do";

const RUN: &str = "run long jobs with `oomguard run -- CMD`";

fn protect(pid: i32) -> String {
    format!("`oomguard protect {pid}`")
}

fn pct(v: f64) -> String {
    if (v - v.round()).abs() < 0.005 {
        format!("{v:.0}%")
    } else {
        format!("{v:.2}%")
    }
}

fn secs(v: f64) -> String {
    format!("{v:.0} s")
}

fn kib_words(k: u64) -> String {
    if k == 0 {
        "none".into()
    } else {
        format!("{:.1} GiB", k as f64 / (1024.0 * 1024.0))
    }
}

/// The kernel's OOM killer (global case) is always armed; its settings say how it behaves.
pub fn kernel_finding(k: &KernelSettings, who: Option<&Subject>) -> Finding {
    let opt = |v: Option<i64>| v.map_or("?".to_owned(), |v| v.to_string());
    let mut detail = format!(
        "vm.overcommit_memory {} ({}), overcommit_ratio {}; swap {}; panic_on_oom {}; oom_kill_allocating_task {}",
        opt(k.overcommit_memory),
        k.overcommit_mode.unwrap_or("unknown"),
        opt(k.overcommit_ratio),
        kib_words(k.swap_total_kib),
        opt(k.panic_on_oom),
        opt(k.oom_kill_allocating_task),
    );
    let mut remedy = match who {
        Some(s) if s.never_picked.is_some() && !s.shielded_from_kernel() => {
            detail.push_str(&format!(
                "; process {} ({}) is never picked: {}",
                s.pid,
                s.name,
                s.never_picked.unwrap_or_default()
            ));
            NOTHING.to_owned()
        }
        Some(s) if s.shielded_from_kernel() => {
            detail.push_str(&format!(
                "; process {} has oom_score_adj -1000: the kernel never picks it",
                s.pid
            ));
            "nothing: it is shielded from the kernel".to_owned()
        }
        Some(s) => {
            detail.push_str(&format!(
                "; process {} ({}) has oom_score_adj {}: the kernel may pick it",
                s.pid, s.name, s.oom_score_adj
            ));
            format!("{} sets its oom_score_adj to -1000", protect(s.pid))
        }
        None => format!("{RUN} (oom_score_adj -1000 from its first instruction)"),
    };
    match k.panic_on_oom {
        Some(p) if p > 0 => {
            detail.push_str(&format!(
                "; panic_on_oom {p}: an OOM {} instead of killing a process",
                if p == 2 {
                    "panics the machine (memcg OOMs too)"
                } else {
                    "outside a memory cgroup panics the machine"
                }
            ));
            remedy = format!(
                "no shield survives a panic: set `sysctl vm.panic_on_oom=0` unless a panic is wanted; then {remedy}"
            );
        }
        _ => {}
    }
    if k.oom_kill_allocating_task.is_some_and(|v| v != 0) {
        detail.push_str(
            "; oom_kill_allocating_task: it kills whichever task allocates at the moment (still never one with adj -1000)",
        );
    }
    if k.overcommit_memory == Some(2) {
        detail.push_str(
            "; overcommit never: allocations past CommitLimit fail with ENOMEM before any OOM kill, and no shield prevents a failed allocation",
        );
    }
    Finding {
        killer: "kernel",
        status: Status::Armed,
        detail,
        remedy,
    }
}

/// A memory cgroup on a process's way to the root, as doctor reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupLimit {
    /// Path relative to the hierarchy's root, as the kernel prints it.
    pub path: String,
    pub limit_bytes: Option<u64>,
    pub high_bytes: Option<u64>,
    pub usage_bytes: Option<u64>,
}

/// cgroup memory controllers, and the limits on a process's way to the root.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CgroupState {
    /// `v1`, `v2`, `hybrid` (v1 memory controller, v2 mounted too) or `none`.
    pub version: &'static str,
    pub v1_memory_root: Option<String>,
    pub v2_root: Option<String>,
    pub v2_memory_controller: bool,
    /// With a PID: its memory cgroup and every ancestor, innermost first.
    pub chain: Vec<GroupLimit>,
    /// With a PID: the group whose limit a memcg OOM would hit first.
    pub limiting: Option<GroupLimit>,
}

fn gib(b: u64) -> String {
    let g = b as f64 / (1u64 << 30) as f64;
    if g >= 1.0 {
        format!("{g:.1} GiB")
    } else {
        format!("{} MiB", b >> 20)
    }
}

/// The kernel's memcg OOM killer: armed wherever a memory controller is; for a process, where
/// its tightest limit is and how full it is.
pub fn memcg_finding(c: &CgroupState, who: Option<&Subject>) -> Finding {
    let killer = "kernel-memcg";
    let ctrl = match (c.v1_memory_root.as_deref(), c.v2_memory_controller) {
        (Some(r), _) => format!("cgroup v1 memory controller at {r}"),
        (None, true) => format!(
            "cgroup v2 with the memory controller at {}",
            c.v2_root.as_deref().unwrap_or("?")
        ),
        (None, false) => {
            return Finding {
                killer,
                status: Status::NotApplicable,
                detail: "no memory cgroup controller is mounted: only a global OOM can happen"
                    .into(),
                remedy: NOTHING.into(),
            };
        }
    };
    let Some(s) = who else {
        return Finding {
            killer,
            status: Status::Armed,
            detail: format!(
                "{ctrl}: any group with a memory limit (containers, Slurm, MemoryMax=) has its own OOM killer"
            ),
            remedy: "`oomguard doctor PID` shows a job's limits".into(),
        };
    };
    match &c.limiting {
        None => Finding {
            killer,
            status: Status::NotApplicable,
            detail: format!(
                "{ctrl}; no memory limit on process {}'s cgroup or its ancestors",
                s.pid
            ),
            remedy: NOTHING.into(),
        },
        Some(g) => {
            let limit = g.limit_bytes.unwrap_or(0);
            let used = g
                .usage_bytes
                .map(|u| {
                    format!(
                        " at {:.0}% of {}",
                        100.0 * u as f64 / limit.max(1) as f64,
                        gib(limit)
                    )
                })
                .unwrap_or_else(|| format!(" limit {}", gib(limit)));
            Finding {
                killer,
                status: Status::Armed,
                detail: format!(
                    "{ctrl}; memcg {}{used} (the tightest limit over process {})",
                    g.path, s.pid
                ),
                remedy: if s.shielded_from_kernel() {
                    "nothing while others in the group can be killed; if the job itself outgrows the limit only a higher limit helps".into()
                } else {
                    format!(
                        "{} makes the kernel pick another process in the group; if the job itself outgrows the limit only a higher limit helps",
                        protect(s.pid)
                    )
                },
            }
        }
    }
}

/// What doctor found of systemd-oomd.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OomdState {
    /// systemd is PID 1 (`/run/systemd/system` exists).
    pub systemd: bool,
    pub running: bool,
    pub pid: Option<i32>,
    /// Its settings: the config files over the defaults, then what the running daemon reports
    /// through `oomctl` when it answers (`files` still names the files read).
    pub config: OomdConf,
    /// Where the rules came from: `oomctl`, `systemctl`, `dbus` or `none`.
    pub rules_from: &'static str,
    pub rules: Vec<OomdRule>,
    /// Why the rules could not be read, when they could not.
    pub error: Option<String>,
}

/// systemd-oomd: running or not, its rules, and for a process the rules that cover it.
pub fn oomd_finding(o: &OomdState, swap_total_kib: u64, who: Option<&Subject>) -> Finding {
    let killer = "systemd-oomd";
    if !o.running {
        return Finding {
            killer,
            status: Status::NotRunning,
            detail: if o.systemd {
                "systemd-oomd is not running".into()
            } else {
                "systemd-oomd is not running (systemd is not PID 1 here)".into()
            },
            remedy: NOTHING.into(),
        };
    }
    let conf = format!(
        "SwapUsedLimit={}, DefaultMemoryPressureLimit={}, DefaultMemoryPressureDurationSec={}",
        pct(o.config.swap_used_limit_pct),
        pct(o.config.default_memory_pressure_limit_pct),
        secs(o.config.default_memory_pressure_duration_s)
    );
    let pid = o.pid.map_or(String::new(), |p| format!(" (pid {p})"));
    let rules = if o.rules.is_empty() {
        match &o.error {
            Some(e) => format!("its rules could not be read: {e}"),
            None => "no unit has ManagedOOMMemoryPressure=kill or ManagedOOMSwap=kill".into(),
        }
    } else {
        let r: Vec<String> = o.rules.iter().map(OomdRule::describe).collect();
        format!("kills when: {}", r.join("; "))
    };
    let no_swap = |r: &OomdRule| r.kind == RuleKind::Swap && swap_total_kib == 0;
    let Some(s) = who else {
        return Finding {
            killer,
            status: Status::Armed,
            detail: format!("running{pid}, {conf}; {rules}"),
            remedy: format!(
                "{RUN} with `oomguard daemon` running as root: it moves a job out of a watched unit into an oomguard-*.scope that systemd-oomd omits; it ignores oom_score_adj"
            ),
        };
    };
    let path = s.cgroup_v2.as_deref().unwrap_or("");
    let covering: Vec<&OomdRule> = o.rules.iter().filter(|r| r.covers(path)).collect();
    if covering.is_empty() {
        return Finding {
            killer,
            status: Status::NotApplicable,
            detail: format!(
                "running{pid}, {conf}; {rules}; none of them watches process {}'s cgroup {}",
                s.pid,
                if path.is_empty() {
                    "(no cgroup v2 path)"
                } else {
                    path
                }
            ),
            remedy: NOTHING.into(),
        };
    }
    let live: Vec<&&OomdRule> = covering.iter().filter(|r| !no_swap(r)).collect();
    let watched: Vec<String> = covering
        .iter()
        .map(|r| {
            let mut d = r.describe();
            if no_swap(r) {
                d.push_str(" (never fires: no swap)");
            }
            d
        })
        .collect();
    let detail = format!(
        "running{pid}; process {} ({}) in {path} is covered by: {}",
        s.pid,
        s.name,
        watched.join(" and ")
    );
    if live.is_empty() {
        return Finding {
            killer,
            status: Status::NotApplicable,
            detail,
            remedy: "nothing while this machine has no swap".into(),
        };
    }
    let remedy = if let Some(scope) = &s.oomguard_scope {
        format!("nothing: it is in {scope}, which systemd-oomd omits (ManagedOOMPreference=omit)")
    } else if s.oomd_omit {
        "nothing: its cgroup carries user.oomd_omit (ManagedOOMPreference=omit)".into()
    } else {
        format!(
            "{} with `oomguard daemon` running as root moves it into an oomguard-*.scope that systemd-oomd omits (oom_score_adj alone does not help: systemd-oomd ignores it)",
            protect(s.pid)
        )
    };
    Finding {
        killer,
        status: Status::Armed,
        detail,
        remedy,
    }
}

/// The kernel layer of a process: only oom_score_adj -1000 exempts it (init and kernel threads
/// are never picked anyway).
pub fn kernel_layer(s: &Subject) -> Layer {
    const L: &str = "kernel";
    if s.shielded_from_kernel() {
        Layer::new(
            L,
            State::Applied,
            "oom_score_adj -1000: the kernel never picks it",
        )
    } else if let Some(why) = s.never_picked {
        Layer::new(L, State::NotApplicable, format!("never picked: {why}"))
    } else {
        Layer::new(
            L,
            State::Failed,
            format!(
                "oom_score_adj {}: the kernel may pick it; {}",
                s.oom_score_adj,
                protect(s.pid)
            ),
        )
    }
}

/// The systemd-oomd layer of a process: omitted (oomguard scope or `user.oomd_omit`), not
/// watched, or exposed to a rule.
pub fn oomd_layer(o: &OomdState, swap_total_kib: u64, s: &Subject) -> Layer {
    const L: &str = "systemd-oomd";
    if !o.running {
        return Layer::new(L, State::NotApplicable, "systemd-oomd is not running");
    }
    let path = s.cgroup_v2.as_deref().unwrap_or("");
    let live: Vec<String> = o
        .rules
        .iter()
        .filter(|r| r.covers(path) && !(r.kind == RuleKind::Swap && swap_total_kib == 0))
        .map(OomdRule::describe)
        .collect();
    if live.is_empty() {
        return Layer::new(
            L,
            State::NotApplicable,
            "no systemd-oomd rule that can fire here watches its cgroup",
        );
    }
    if let Some(scope) = &s.oomguard_scope {
        Layer::new(
            L,
            State::Applied,
            format!("in {scope}, which systemd-oomd omits (ManagedOOMPreference=omit)"),
        )
    } else if s.oomd_omit {
        Layer::new(
            L,
            State::Applied,
            "its cgroup carries user.oomd_omit (ManagedOOMPreference=omit)",
        )
    } else {
        Layer::new(
            L,
            State::Failed,
            format!(
                "watched ({}) and not omitted; systemd-oomd ignores oom_score_adj; {}",
                live.join(" and "),
                protect(s.pid)
            ),
        )
    }
}

/// earlyoom: how it is set, and for a process whether it would still pick it (the layer's
/// words, from `job::killers::earlyoom`).
pub fn earlyoom_finding(
    pid: Option<i32>,
    args: &[String],
    c: Option<&EarlyoomConf>,
    layer: Option<(bool, &str)>,
    who: Option<&Subject>,
) -> Finding {
    peer_finding("earlyoom", pid, args, c.map(earlyoom_words), layer, who)
}

fn earlyoom_words(c: &EarlyoomConf) -> String {
    let mut s = format!(
        "SIGTERM when MemAvailable <= {} and SwapFree <= {} (SIGKILL at {} / {}); picks the highest oom_score",
        pct(c.mem_term_pct),
        pct(c.swap_term_pct),
        pct(c.mem_kill_pct),
        pct(c.swap_kill_pct)
    );
    if c.sort_by_rss {
        s.push_str(" (no: the largest RSS, --sort-by-rss)");
    }
    for (k, v) in [
        ("--prefer", &c.prefer),
        ("--avoid", &c.avoid),
        ("--ignore", &c.ignore),
    ] {
        if let Some(v) = v {
            s.push_str(&format!("; {k} '{v}'"));
        }
    }
    if c.dryrun {
        s.push_str("; --dryrun: it kills nothing");
    }
    s
}

/// nohang: the same shape as earlyoom, from its config file.
pub fn nohang_finding(
    pid: Option<i32>,
    args: &[String],
    config_path: Option<&str>,
    c: Option<&NohangConf>,
    layer: Option<(bool, &str)>,
    who: Option<&Subject>,
) -> Finding {
    let words = c.map(|c| {
        let lvl = |v: Option<f64>| v.map_or("?".to_owned(), pct);
        let mut s = format!(
            "config {}: SIGTERM when MemAvailable <= {} and SwapFree <= {} (SIGKILL at {} / {}); badness = oom_score plus its rules",
            config_path.unwrap_or("?"),
            lvl(c.soft_mem_pct),
            lvl(c.soft_swap_pct),
            lvl(c.hard_mem_pct),
            lvl(c.hard_swap_pct)
        );
        if c.psi_checking_enabled {
            s.push_str(&format!(
                "; also when PSI {} > {}",
                c.psi_metrics.as_deref().unwrap_or("?"),
                c.soft_psi.map_or("?".into(), |v| format!("{v}"))
            ));
        }
        if !c.rules.is_empty() {
            s.push_str(&format!("; {} @ rules", c.rules.len()));
        }
        s
    });
    peer_finding("nohang", pid, args, words, layer, who)
}

fn peer_finding(
    killer: &'static str,
    pid: Option<i32>,
    args: &[String],
    words: Option<String>,
    layer: Option<(bool, &str)>,
    who: Option<&Subject>,
) -> Finding {
    let Some(p) = pid else {
        return Finding {
            killer,
            status: Status::NotRunning,
            detail: format!("{killer} is not running"),
            remedy: NOTHING.into(),
        };
    };
    let mut detail = format!(
        "running (pid {p}{}{})",
        if args.is_empty() { "" } else { ": " },
        args.join(" ")
    );
    if let Some(w) = words {
        detail.push_str(&format!("; {w}"));
    }
    let remedy = match (who, layer) {
        (Some(_), Some((true, why))) => {
            detail.push_str(&format!("; {why}"));
            "nothing: it would not pick this process".to_owned()
        }
        (Some(s), Some((false, why))) => {
            detail.push_str(&format!("; {why}"));
            if s.shielded_from_kernel() {
                format!(
                    "its own rules still pick the process: change {killer}'s options or config (see above)"
                )
            } else {
                format!(
                    "{} (oom_score_adj -1000: {killer} never picks it)",
                    protect(s.pid)
                )
            }
        }
        _ => format!("{RUN}: {killer} skips processes with oom_score_adj -1000"),
    };
    Finding {
        killer,
        status: Status::Armed,
        detail,
        remedy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn percents_and_timespans() {
        assert_eq!(parse_percent("90%"), Some(90.0));
        assert_eq!(parse_percent(" 50.00% "), Some(50.0));
        assert_eq!(parse_percent("900‰"), Some(90.0));
        assert_eq!(parse_percent("90"), None);
        assert_eq!(parse_percent("x%"), None);
        assert_eq!(parse_timespan("30s"), Some(30.0));
        assert_eq!(parse_timespan("20"), Some(20.0));
        assert_eq!(parse_timespan("1min 30s"), Some(90.0));
        assert_eq!(parse_timespan("1min30s"), Some(90.0));
        assert_eq!(parse_timespan("500ms"), Some(0.5));
        assert_eq!(parse_timespan("infinity"), None);
        assert_eq!(parse_timespan("5 parsecs"), None);
    }

    #[test]
    fn args_long_short_and_attached() {
        let a = s(&["-m", "10", "-s5", "--prefer=^python", "--avoid", "x"]);
        assert_eq!(arg_value(&a, "-m", None), Some("10"));
        assert_eq!(arg_value(&a, "-s", None), Some("5"));
        assert_eq!(arg_value(&a, "--prefer", None), Some("^python"));
        assert_eq!(arg_value(&a, "--avoid", None), Some("x"));
        assert_eq!(arg_value(&a, "--ignore", None), None);
        let c = s(&["--monitor", "-c", "/x.conf"]);
        assert_eq!(arg_value(&c, "--config", Some("-c")), Some("/x.conf"));
    }

    #[test]
    fn oomd_conf_later_files_win_and_empty_resets() {
        let files = vec![
            (
                "/etc/systemd/oomd.conf".to_string(),
                "[OOM]\n#SwapUsedLimit=10%\nSwapUsedLimit=80%\nDefaultMemoryPressureLimit=55%\n"
                    .to_string(),
            ),
            (
                "/usr/lib/systemd/oomd.conf.d/10-a.conf".to_string(),
                "[OOM]\nDefaultMemoryPressureDurationSec=20s\nDefaultMemoryPressureLimit=\n"
                    .to_string(),
            ),
            (
                "/etc/systemd/oomd.conf.d/20-b.conf".to_string(),
                "[Other]\nSwapUsedLimit=1%\n[OOM]\nDefaultMemoryPressureLimit=bogus\n".to_string(),
            ),
        ];
        let c = parse_oomd_conf(&files);
        assert_eq!(c.swap_used_limit_pct, 80.0);
        assert_eq!(
            c.default_memory_pressure_limit_pct, 60.0,
            "reset, then bogus ignored"
        );
        assert_eq!(c.default_memory_pressure_duration_s, 20.0);
        assert_eq!(c.files.len(), 3);
        assert_eq!(parse_oomd_conf(&[]), OomdConf::default());
    }

    #[test]
    fn dropins_sorted_by_name_higher_dirs_mask() {
        let dirs = vec![
            ("/etc/d".to_string(), s(&["50-x.conf", "README"])),
            ("/run/d".to_string(), s(&["10-a.conf"])),
            ("/usr/lib/d".to_string(), s(&["50-x.conf", "20-b.conf"])),
        ];
        assert_eq!(
            dropin_order(&dirs),
            vec![
                ("/run/d", "10-a.conf"),
                ("/usr/lib/d", "20-b.conf"),
                ("/etc/d", "50-x.conf")
            ]
        );
    }

    const OOMCTL: &str = "Dry Run: no
Swap Used Limit: 90.00%
Default Memory Pressure Limit: 60.00%
Default Memory Pressure Duration: 5s
System Context:
        Memory: Used: 310.5M Total: 1.9G
        Swap: Used: 0B Total: 0B
Swap Monitored CGroups:
        Path: /
                Swap Usage: (see System Context)
Memory Pressure Monitored CGroups:
        Path: /user.slice/user-1000.slice/user@1000.service
                Memory Pressure Limit: 50.00%
                Pressure: Avg10: 12.34 Avg60: 3.00 Avg300: 0.50 Total: 3s
                Current Memory Usage: 27.5M
                Memory Min: 0B
                Memory Low: 0B
                Pgscan: 0
                Last Pgscan: 0
        Path: /lab.slice
                Memory Pressure Limit: 0.00%
                Pressure: Avg10: 0.00 Avg60: 0.00 Avg300: 0.00 Total: 0
";

    #[test]
    fn oomctl_dump() {
        let d = parse_oomctl(OOMCTL).unwrap();
        assert_eq!(d.dry_run, Some(false));
        assert_eq!(d.default_memory_pressure_duration_s, Some(5.0));
        assert_eq!(d.rules.len(), 3);
        let swap = &d.rules[0];
        assert_eq!(
            (swap.unit.as_str(), swap.kind, swap.limit_pct),
            ("-.slice", RuleKind::Swap, 90.0)
        );
        let user = &d.rules[1];
        assert_eq!(user.unit, "user@1000.service");
        assert_eq!(user.limit_pct, 50.0);
        assert_eq!(user.duration_s, Some(5.0));
        assert_eq!(user.pressure_avg10, Some(12.34));
        assert_eq!(d.rules[2].limit_pct, 60.0, "0.00% means the default");
        assert!(user.covers("/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope"));
        assert!(!user.covers("/user.slice/user-1000.slice/user@1000.service2"));
        assert!(!user.covers("/user.slice/user-1000.slice/oomguard-1.scope"));
        assert!(swap.covers("/anything"));
        assert!(parse_oomctl("garbage\n").is_none());
        // The bare-path form and a per-unit duration (newer systemd).
        let d = parse_oomctl(
            "Swap Used Limit: 80%\nMemory Pressure Monitored CGroups:\n    /a.slice\n        Memory Pressure Limit: 40.00%\n        Memory Pressure Duration: 1min\n",
        )
        .unwrap();
        assert_eq!(d.rules[0].cgroup, "/a.slice");
        assert_eq!(d.rules[0].duration_s, Some(60.0));
    }

    #[test]
    fn systemctl_show_blocks() {
        let text = "Id=user@1000.service\nControlGroup=/user.slice/user-1000.slice/user@1000.service\nManagedOOMMemoryPressure=kill\nManagedOOMMemoryPressureLimit=50%\nManagedOOMSwap=auto\nManagedOOMPreference=none\n\n\
Id=-.slice\nControlGroup=\nManagedOOMMemoryPressure=auto\nManagedOOMMemoryPressureLimit=0\nManagedOOMSwap=kill\n\n\
Id=ssh.service\nControlGroup=/system.slice/ssh.service\nManagedOOMMemoryPressure=auto\nManagedOOMSwap=auto\n\n\
Id=lab.slice\nControlGroup=/lab.slice\nManagedOOMMemoryPressure=kill\nManagedOOMMemoryPressureLimit=0\nManagedOOMMemoryPressureDurationUSec=infinity\n";
        let conf = OomdConf {
            default_memory_pressure_duration_s: 20.0,
            ..OomdConf::default()
        };
        let r = parse_systemctl_show(text, &conf);
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!((r[0].limit_pct, r[0].duration_s), (50.0, Some(20.0)));
        assert_eq!((r[1].cgroup.as_str(), r[1].kind), ("/", RuleKind::Swap));
        assert_eq!(r[2].limit_pct, 60.0);
        // The raw D-Bus value: 50% of 2^32.
        assert!((parse_show_limit("2147483648").unwrap() - 50.0).abs() < 1e-9);
    }

    #[test]
    fn earlyoom_thresholds() {
        let c = earlyoom_conf(&s(&["-m", "10", "-s", "5", "--prefer", "python"]), 1000, 0);
        assert_eq!((c.mem_term_pct, c.mem_kill_pct), (10.0, 5.0));
        assert_eq!((c.swap_term_pct, c.swap_kill_pct), (5.0, 2.5));
        assert_eq!(c.prefer.as_deref(), Some("python"));
        let d = earlyoom_conf(&[], 1000, 0);
        assert_eq!((d.mem_term_pct, d.swap_term_pct), (10.0, 10.0));
        // -M 50 KiB of 1000 = 5 %: lower than -m 10, so it counts.
        let m = earlyoom_conf(&s(&["-m", "10,8", "-M", "50,20"]), 1000, 0);
        assert_eq!((m.mem_term_pct, m.mem_kill_pct), (5.0, 2.0));
    }

    #[test]
    fn nohang_thresholds_and_rules() {
        let conf = "soft_threshold_min_mem = 5 %\n##  Default value: 5 %\nsoft_threshold_min_swap = 512 M\nhard_threshold_min_mem = 2 %\npsi_checking_enabled = True\npsi_metrics = full_avg10\nsoft_threshold_max_psi  = 40\n@BADNESS_ADJ_RE_NAME 200 /// ^python3$\n";
        let c = nohang_conf(conf, 8 << 20, 2 << 20);
        assert_eq!(c.soft_mem_pct, Some(5.0));
        assert_eq!(c.soft_swap_pct, Some(25.0));
        assert_eq!(c.hard_mem_pct, Some(2.0));
        assert_eq!(c.hard_swap_pct, None);
        assert!(c.psi_checking_enabled);
        assert_eq!(c.soft_psi, Some(40.0));
        assert_eq!(c.rules, vec!["@BADNESS_ADJ_RE_NAME 200 /// ^python3$"]);
    }

    fn subject(adj: i32, cg: &str) -> Subject {
        Subject {
            pid: 42,
            name: "python3".into(),
            oom_score_adj: adj,
            cgroup_v2: Some(cg.into()),
            oomguard_scope: oomguard_scope(cg).map(str::to_owned),
            oomd_omit: false,
            never_picked: None,
        }
    }

    #[test]
    fn kernel_findings_name_the_remedy() {
        let k = KernelSettings {
            overcommit_memory: Some(0),
            overcommit_mode: overcommit_mode(0),
            overcommit_ratio: Some(50),
            panic_on_oom: Some(0),
            oom_kill_allocating_task: Some(0),
            ..KernelSettings::default()
        };
        let f = kernel_finding(&k, None);
        assert_eq!(f.status, Status::Armed);
        assert!(f.remedy.contains("oomguard run"), "{}", f.remedy);
        let f = kernel_finding(&k, Some(&subject(0, "/")));
        assert!(f.remedy.contains("oomguard protect 42"), "{}", f.remedy);
        let f = kernel_finding(&k, Some(&subject(-1000, "/")));
        assert!(f.remedy.starts_with("nothing"), "{}", f.remedy);
        let kthread = Subject {
            never_picked: Some("it is a kernel thread"),
            ..subject(0, "/")
        };
        let f = kernel_finding(&k, Some(&kthread));
        assert!(
            f.detail.contains("never picked: it is a kernel thread"),
            "{}",
            f.detail
        );
        assert_eq!(f.remedy, NOTHING);
        assert_eq!(kernel_layer(&kthread).state, State::NotApplicable);
        assert_eq!(kernel_layer(&subject(0, "/")).state, State::Failed);
        let p = KernelSettings {
            panic_on_oom: Some(1),
            overcommit_memory: Some(2),
            ..k
        };
        let f = kernel_finding(&p, None);
        assert!(
            f.detail.contains("panics") && f.detail.contains("ENOMEM"),
            "{}",
            f.detail
        );
        assert!(f.remedy.contains("vm.panic_on_oom=0"), "{}", f.remedy);
    }

    fn oomd(rules: Vec<OomdRule>) -> OomdState {
        OomdState {
            systemd: true,
            running: true,
            pid: Some(7),
            config: OomdConf::default(),
            rules_from: "oomctl",
            rules,
            error: None,
        }
    }

    #[test]
    fn oomd_findings_for_a_process() {
        let d = parse_oomctl(OOMCTL).unwrap();
        let o = oomd(d.rules);
        let term = "/user.slice/user-1000.slice/user@1000.service/app.slice/vte.scope";
        let f = oomd_finding(&o, 0, Some(&subject(-1000, term)));
        assert_eq!(f.status, Status::Armed);
        assert!(
            f.detail
                .contains("user@1000.service memory pressure above 50%"),
            "{}",
            f.detail
        );
        assert!(f.detail.contains("never fires: no swap"), "{}", f.detail);
        assert!(f.remedy.contains("oomguard protect 42"), "{}", f.remedy);
        let f = oomd_finding(
            &o,
            0,
            Some(&subject(
                -1000,
                "/user.slice/user-1000.slice/oomguard-ab.scope",
            )),
        );
        assert_eq!(
            f.status,
            Status::NotApplicable,
            "only the swap rule, no swap"
        );
        let f = oomd_finding(
            &o,
            1 << 20,
            Some(&subject(0, "/user.slice/user-1000.slice/oomguard-ab.scope")),
        );
        assert_eq!(f.status, Status::Armed);
        assert!(f.remedy.contains("oomguard-ab.scope"), "{}", f.remedy);
        let off = OomdState {
            running: false,
            systemd: false,
            ..oomd(vec![])
        };
        assert_eq!(oomd_finding(&off, 0, None).status, Status::NotRunning);
        assert!(oomd_finding(&o, 0, None).remedy.contains("oomguard daemon"));
    }

    #[test]
    fn memcg_findings() {
        let none = CgroupState {
            version: "none",
            ..CgroupState::default()
        };
        assert_eq!(memcg_finding(&none, None).status, Status::NotApplicable);
        let g = GroupLimit {
            path: "/job".into(),
            limit_bytes: Some(4 << 30),
            high_bytes: None,
            usage_bytes: Some((4u64 << 30) * 91 / 100),
        };
        let c = CgroupState {
            version: "v2",
            v2_root: Some("/sys/fs/cgroup".into()),
            v2_memory_controller: true,
            chain: vec![g.clone()],
            limiting: Some(g),
            ..CgroupState::default()
        };
        let f = memcg_finding(&c, Some(&subject(0, "/job")));
        assert_eq!(f.status, Status::Armed);
        assert!(
            f.detail.contains("memcg /job at 91% of 4.0 GiB"),
            "{}",
            f.detail
        );
        assert!(f.remedy.contains("oomguard protect 42"));
    }

    #[test]
    fn peer_findings() {
        let c = earlyoom_conf(&s(&["-m", "10", "--prefer", "python"]), 1000, 0);
        let f = earlyoom_finding(None, &[], None, None, None);
        assert_eq!(f.status, Status::NotRunning);
        let args = s(&["-m", "10", "--prefer", "python"]);
        let f = earlyoom_finding(Some(9), &args, Some(&c), None, None);
        assert!(
            f.detail.contains("--prefer 'python'") && f.detail.contains("MemAvailable <= 10%"),
            "{}",
            f.detail
        );
        let who = subject(0, "/");
        let f = earlyoom_finding(
            Some(9),
            &args,
            Some(&c),
            Some((false, "prefer matches")),
            Some(&who),
        );
        assert!(f.remedy.contains("oomguard protect 42"), "{}", f.remedy);
        let shielded = subject(-1000, "/");
        let f = earlyoom_finding(
            Some(9),
            &args,
            Some(&c),
            Some((true, "skips -1000")),
            Some(&shielded),
        );
        assert!(f.remedy.starts_with("nothing"));
    }
}

//! How close each killer is to acting on a job, and how soon. Pure: the guard samples the
//! system, this module judges.
//!
//! Every estimate of time is labelled as one (`eta_s` is "at the current growth rate").

use serde::Serialize;

use super::killer::KillerId;

/// How worried to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Watch,
    Danger,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Watch => "watch",
            Level::Danger => "danger",
        }
    }
}

/// When a threat becomes `watch` or `danger`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// `danger` when the killer is estimated to act within this many seconds.
    pub danger_eta_s: f64,
    /// `watch` when it is estimated to act within this many seconds.
    pub watch_eta_s: f64,
    /// `danger` at this fraction of the way to the killer's trigger, whatever the rate.
    pub danger_fraction: f64,
    /// `watch` at this fraction.
    pub watch_fraction: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            danger_eta_s: 10.0,
            watch_eta_s: 60.0,
            danger_fraction: 0.95,
            watch_fraction: 0.80,
        }
    }
}

impl Thresholds {
    fn level(&self, fraction: f64, eta_s: Option<f64>) -> Level {
        let eta = eta_s.unwrap_or(f64::INFINITY);
        if fraction >= self.danger_fraction || eta <= self.danger_eta_s {
            Level::Danger
        } else if fraction >= self.watch_fraction || eta <= self.watch_eta_s {
            Level::Watch
        } else {
            Level::Ok
        }
    }
}

/// One killer's outlook for a job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Threat {
    pub killer: KillerId,
    /// What it watches, e.g. "memcg /job limit 800 MiB" or "pressure on user@1000.service".
    pub subject: String,
    pub level: Level,
    /// How far along the way to the trigger, 0 = calm, 1 = the killer acts.
    pub fraction: f64,
    /// Estimated seconds until the killer acts, at the current rate; `None` if not approaching.
    pub eta_s: Option<f64>,
    /// Plain words, including the figures and that the time is an estimate.
    pub detail: String,
}

impl Threat {
    /// Its figures, without the words.
    pub fn outlook(&self) -> Outlook {
        Outlook {
            killer: self.killer,
            level: self.level,
            fraction: self.fraction,
            eta_s: self.eta_s,
        }
    }
}

/// A threat's figures without its words: what the guard computes on every step. Words cost
/// allocations and float formatting, so they are made only when someone reads them (an
/// action fires, a trace, `doctor`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Outlook {
    pub killer: KillerId,
    pub level: Level,
    /// How far along the way to the trigger, 0 = calm, 1 = the killer acts.
    pub fraction: f64,
    /// Estimated seconds until the killer acts, at the current rate; `None` if not approaching.
    pub eta_s: Option<f64>,
}

impl Outlook {
    /// Which of two outlooks to act on first: the higher level, then the sooner estimate,
    /// then the closer one (`Greater` = `self` first).
    pub fn urgency_cmp(&self, other: &Outlook) -> std::cmp::Ordering {
        self.level
            .cmp(&other.level)
            .then_with(|| {
                other
                    .eta_s
                    .unwrap_or(f64::INFINITY)
                    .total_cmp(&self.eta_s.unwrap_or(f64::INFINITY))
            })
            .then_with(|| self.fraction.total_cmp(&other.fraction))
    }

    fn with_words(self, subject: String, detail: String) -> Threat {
        Threat {
            killer: self.killer,
            subject,
            level: self.level,
            fraction: self.fraction,
            eta_s: self.eta_s,
            detail,
        }
    }
}

/// Rate of change per second of `(t_seconds, value)` samples: least-squares slope.
/// `None` with fewer than two samples or no time spread.
pub fn rate(samples: &[(f64, f64)]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let (mt, mv) = samples
        .iter()
        .fold((0.0, 0.0), |(a, b), (t, v)| (a + t / n, b + v / n));
    let (mut num, mut den) = (0.0, 0.0);
    for (t, v) in samples {
        num += (t - mt) * (v - mv);
        den += (t - mt) * (t - mt);
    }
    (den > 1e-12).then(|| num / den)
}

/// Seconds until `value` reaches `target` at `rate` per second, if it is approaching.
fn eta(value: f64, target: f64, rate: Option<f64>) -> Option<f64> {
    let r = rate?;
    if value >= target {
        return Some(0.0);
    }
    (r > 0.0).then(|| (target - value) / r)
}

fn mib(b: f64) -> String {
    format!("{:.0} MiB", b / (1024.0 * 1024.0))
}

fn eta_words(eta_s: Option<f64>) -> String {
    match eta_s {
        Some(e) => format!("; estimate: acts in {e:.1} s at the current growth rate"),
        None => String::new(),
    }
}

/// The kernel's memcg OOM killer for a group with a hard limit: it acts when usage reaches
/// the limit (and reclaim fails). `rate` is the usage's growth in bytes per second.
pub fn memcg_outlook(usage: u64, limit: u64, rate_bps: Option<f64>, th: &Thresholds) -> Outlook {
    let fraction = usage as f64 / limit.max(1) as f64;
    let eta_s = eta(usage as f64, limit as f64, rate_bps);
    Outlook {
        killer: KillerId::Kernel,
        level: th.level(fraction, eta_s),
        fraction,
        eta_s,
    }
}

/// [`memcg_outlook`] in words.
pub fn memcg(
    group: &str,
    usage: u64,
    limit: u64,
    rate_bps: Option<f64>,
    th: &Thresholds,
) -> Threat {
    let o = memcg_outlook(usage, limit, rate_bps, th);
    o.with_words(
        format!("memcg {group} limit {}", mib(limit as f64)),
        format!(
            "memory cgroup {group} at {:.0}% of its {} limit ({} used){}",
            100.0 * o.fraction,
            mib(limit as f64),
            mib(usage as f64),
            eta_words(o.eta_s)
        ),
    )
}

/// The kernel's global OOM killer: it acts when RAM and swap are exhausted. `available` is
/// MemAvailable + SwapFree in bytes, `total` MemTotal + SwapTotal; `rate` is the change of
/// `available` per second (negative while memory is being used up).
pub fn global_outlook(
    available: u64,
    total: u64,
    rate_bps: Option<f64>,
    th: &Thresholds,
) -> Outlook {
    let used = total.saturating_sub(available);
    let fraction = used as f64 / total.max(1) as f64;
    let eta_s = eta(used as f64, total as f64, rate_bps.map(|r| -r));
    Outlook {
        killer: KillerId::Kernel,
        level: th.level(fraction, eta_s),
        fraction,
        eta_s,
    }
}

/// [`global_outlook`] in words.
pub fn global(available: u64, total: u64, rate_bps: Option<f64>, th: &Thresholds) -> Threat {
    let o = global_outlook(available, total, rate_bps, th);
    o.with_words(
        "all memory (global OOM)".into(),
        format!(
            "{} of RAM + swap available ({:.0}% used){}",
            mib(available as f64),
            100.0 * o.fraction,
            eta_words(o.eta_s)
        ),
    )
}

/// A cheap screen of all of memory from `sysinfo(2)` figures (free RAM + free swap, which
/// the kernel hands over without formatting /proc/meminfo): `Some(used fraction, an upper
/// bound)` when the global OOM killer is surely far, `None` when /proc/meminfo must be read.
///
/// Sound because MemAvailable >= MemFree - the kernel's reserves (it adds reclaimable cache and
/// slab, never less than nothing), and while half of memory is free the kernel reclaims no
/// cache, so allocations take free memory directly and free memory falls at least as fast as
/// available memory. `prev` is the last screen's `(seconds, free bytes)`; the screen passes only
/// while the used share stays 30 points below the watch (or danger, if lower) fraction and
/// free memory, if falling, would last more than twice the longer of the watch and danger
/// estimates at that rate.
pub fn screen_calm(
    free: u64,
    total: u64,
    now_s: f64,
    prev: Option<(f64, u64)>,
    th: &Thresholds,
) -> Option<f64> {
    let total_f = total.max(1) as f64;
    let used = 1.0 - free as f64 / total_f;
    if used > (th.watch_fraction.min(th.danger_fraction) - 0.3).max(0.0) {
        return None;
    }
    if let Some((t0, f0)) = prev {
        let dt = now_s - t0;
        if dt > 0.0 && f0 > free {
            let rate = (f0 - free) as f64 / dt;
            if free as f64 / rate <= 2.0 * th.watch_eta_s.max(th.danger_eta_s) {
                return None;
            }
        }
    }
    Some(used.max(0.0))
}

/// The global outlook when [`screen_calm`] passed: `ok`, no estimate.
pub fn global_screened(used_fraction: f64) -> Outlook {
    Outlook {
        killer: KillerId::Kernel,
        level: Level::Ok,
        fraction: used_fraction,
        eta_s: None,
    }
}

/// [`global_screened`] in words.
pub fn global_screened_words(free: u64, used_fraction: f64) -> Threat {
    global_screened(used_fraction).with_words(
        "all memory (global OOM)".into(),
        format!(
            "at least {} of RAM + swap free (at most {:.0}% used): far from a global OOM",
            mib(free as f64),
            100.0 * used_fraction
        ),
    )
}

/// systemd-oomd's pressure rule for the monitored unit: it kills when `full avg10` stays above
/// `limit_pct` for `duration_s` (with reclaim). `above_for_s` is how long it has been above;
/// `rate_pct_per_s` is how fast `full avg10` is rising.
///
/// Levels: above the limit is `danger` at once (systemd-oomd acts within the duration unless
/// the pressure falls, and a job stalled that hard may need all of it to write a checkpoint);
/// below it, `danger` when the pressure is past half the limit and rising, `watch` past a
/// quarter. Measured in the VM lab: at 80 % `full` pressure a throttled Python job could not
/// write a small file in 10 s, so the warning must come before the crossing.
pub fn oomd_pressure_outlook(
    full_avg10: f64,
    limit_pct: f64,
    above_for_s: f64,
    duration_s: f64,
    rate_pct_per_s: Option<f64>,
    th: &Thresholds,
) -> Outlook {
    let limit = limit_pct.max(0.01);
    let above = full_avg10 > limit;
    let rising = rate_pct_per_s.filter(|r| *r > 0.0);
    let eta_s = if above {
        Some((duration_s - above_for_s).max(0.0))
    } else {
        rising.map(|r| (limit - full_avg10) / r + duration_s)
    };
    let fraction = if above {
        th.danger_fraction
            + (1.0 - th.danger_fraction) * (above_for_s / duration_s.max(0.001)).min(1.0)
    } else if rising.is_some() && full_avg10 >= limit / 2.0 {
        th.danger_fraction
    } else {
        (th.watch_fraction * full_avg10 / (limit / 4.0))
            .min((th.watch_fraction + th.danger_fraction) / 2.0)
    };
    Outlook {
        killer: KillerId::SystemdOomd,
        level: th.level(fraction, None),
        fraction,
        eta_s,
    }
}

/// [`oomd_pressure_outlook`] in words, for the unit `unit`.
pub fn oomd_pressure(
    unit: &str,
    full_avg10: f64,
    limit_pct: f64,
    above_for_s: f64,
    duration_s: f64,
    rate_pct_per_s: Option<f64>,
    th: &Thresholds,
) -> Threat {
    let o = oomd_pressure_outlook(
        full_avg10,
        limit_pct,
        above_for_s,
        duration_s,
        rate_pct_per_s,
        th,
    );
    let above = full_avg10 > limit_pct.max(0.01);
    let rising = rate_pct_per_s.filter(|r| *r > 0.0);
    o.with_words(
        format!("pressure on {unit}"),
        format!(
            "memory pressure on {unit} is {full_avg10:.2}% of its {limit_pct:.0}% limit{}",
            match (above, o.eta_s) {
                (true, Some(e)) => format!(
                    ", above it for {above_for_s:.0} s of {duration_s:.0} s: kills in {e:.0} s if it stays"
                ),
                (false, Some(e)) => format!(
                    ", rising {:.1} points/s: may kill in {e:.0} s (estimate: crossing, then {duration_s:.0} s above)",
                    rising.unwrap_or(0.0)
                ),
                _ => String::new(),
            }
        ),
    )
}

/// systemd-oomd's swap rule: it kills when both memory used and swap used exceed `limit`
/// (a fraction, 0.9 by default). Fractions are used / total.
pub fn oomd_swap(mem_used: f64, swap_used: f64, limit: f64, th: &Thresholds) -> Threat {
    let fraction = (mem_used.min(swap_used) / limit.max(0.01)).min(1.0);
    Threat {
        killer: KillerId::SystemdOomd,
        subject: "swap (ManagedOOMSwap)".into(),
        level: th.level(fraction, None),
        fraction,
        eta_s: None,
        detail: format!(
            "memory {:.0}% and swap {:.0}% used; systemd-oomd kills when both pass {:.0}%",
            100.0 * mem_used,
            100.0 * swap_used,
            100.0 * limit
        ),
    }
}

/// earlyoom (and nohang's similar rule): SIGTERM when MemAvailable <= `mem_pct` % and
/// SwapFree <= `swap_pct` % of their totals (no swap counts as 0 % free).
/// `avail_rate` is MemAvailable's change in bytes per second.
#[allow(clippy::too_many_arguments)]
pub fn earlyoom(
    killer: KillerId,
    mem_available: u64,
    mem_total: u64,
    swap_free: u64,
    swap_total: u64,
    mem_pct: f64,
    swap_pct: f64,
    avail_rate_bps: Option<f64>,
    th: &Thresholds,
) -> Threat {
    let trigger = mem_total as f64 * mem_pct / 100.0;
    let swap_free_pct = if swap_total == 0 {
        0.0
    } else {
        100.0 * swap_free as f64 / swap_total as f64
    };
    let swap_armed = swap_free_pct <= swap_pct;
    // Distance: from all-free (0) to the trigger (1), on MemAvailable.
    let fraction = if swap_armed {
        ((mem_total as f64 - mem_available as f64) / (mem_total as f64 - trigger).max(1.0))
            .clamp(0.0, 1.0)
    } else {
        0.0
    };
    let eta_s = if swap_armed {
        eta(
            -(mem_available as f64),
            -trigger,
            avail_rate_bps.map(|r| -r),
        )
    } else {
        None
    };
    Threat {
        killer,
        subject: format!("{} threshold {mem_pct:.0}% available", killer.name()),
        level: th.level(fraction, eta_s),
        fraction,
        eta_s,
        detail: format!(
            "MemAvailable {} ({:.1}%); {} acts at {mem_pct:.1}% with swap free {swap_free_pct:.0}% <= {swap_pct:.0}%{}",
            mib(mem_available as f64),
            100.0 * mem_available as f64 / mem_total.max(1) as f64,
            killer.name(),
            eta_words(eta_s)
        ),
    }
}

/// The threat to act on first: the highest level, then the soonest estimate, then the closest.
pub fn nearest(threats: &[Threat]) -> Option<&Threat> {
    threats
        .iter()
        .max_by(|a, b| a.outlook().urgency_cmp(&b.outlook()))
}

/// The runaway case of the safety valve: a job shielded at -1000 is itself what exhausts
/// memory. True when the nearest killer is in `danger`, the job holds more than any other
/// process of the constraint, and it is growing.
pub fn is_runaway(
    level: Level,
    job_bytes: u64,
    largest_other_bytes: u64,
    job_growth_bps: Option<f64>,
) -> bool {
    level == Level::Danger
        && job_bytes > largest_other_bytes
        && job_growth_bps.is_some_and(|r| r > 0.0)
}

/// Fires an action once per episode: when the level first reaches `danger`, at most once per
/// `min_interval_s`, and again only after the level went back to `ok`.
#[derive(Clone, Debug, Default)]
pub struct Episode {
    armed_off: bool,
    last_fire: Option<f64>,
}

impl Episode {
    /// Feed the current level at time `now_s`; true when the action should fire now.
    pub fn update(&mut self, level: Level, now_s: f64, min_interval_s: f64) -> bool {
        match level {
            Level::Ok => {
                self.armed_off = false;
                false
            }
            Level::Watch => false,
            Level::Danger => {
                let spaced = self.last_fire.is_none_or(|t| now_s - t >= min_interval_s);
                if !self.armed_off && spaced {
                    self.armed_off = true;
                    self.last_fire = Some(now_s);
                    true
                } else {
                    false
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn rate_is_the_slope() {
        let s: Vec<(f64, f64)> = (0..5)
            .map(|i| (i as f64 * 0.25, 100.0 + 50.0 * i as f64))
            .collect();
        assert!((rate(&s).unwrap() - 200.0).abs() < 1e-9);
        assert_eq!(rate(&s[..1]), None);
        assert_eq!(rate(&[(1.0, 1.0), (1.0, 5.0)]), None);
    }

    #[test]
    fn memcg_hog_at_200_mb_per_s_is_danger_early() {
        let th = Thresholds::default();
        // The scenario: 450 MiB trainer, hog growing at 200 MB/s, 800 MiB limit.
        let t = memcg("/job", 500 * MIB, 800 * MIB, Some(200e6), &th);
        assert_eq!(t.level, Level::Danger);
        let eta = t.eta_s.unwrap();
        assert!((eta - 300.0 * MIB as f64 / 200e6).abs() < 1e-6);
        assert!(t.detail.contains("estimate"), "{}", t.detail);
        // Steady at 56 %: calm.
        assert_eq!(
            memcg("/job", 450 * MIB, 800 * MIB, Some(0.0), &th).level,
            Level::Ok
        );
        assert_eq!(
            memcg("/job", 700 * MIB, 800 * MIB, None, &th).level,
            Level::Watch
        );
        assert_eq!(
            memcg("/job", 790 * MIB, 800 * MIB, None, &th).level,
            Level::Danger
        );
    }

    #[test]
    fn the_screen_passes_only_far_from_a_global_oom() {
        let th = Thresholds::default();
        const GIB: u64 = 1 << 30;
        // 20 of 24 GiB free, steady: calm, used at most 1/6.
        let u = screen_calm(20 * GIB, 24 * GIB, 1.0, Some((0.0, 20 * GIB)), &th).unwrap();
        assert!((u - 4.0 / 24.0).abs() < 1e-9);
        // Half used or more (watch at 80 %, minus 30 points): read /proc/meminfo.
        assert_eq!(screen_calm(12 * GIB - 1, 24 * GIB, 1.0, None, &th), None);
        assert!(screen_calm(12 * GIB + 1, 24 * GIB, 1.0, None, &th).is_some());
        // Falling at 6 GiB/s from 20 GiB: gone in 3.3 s, not calm.
        assert_eq!(
            screen_calm(14 * GIB, 24 * GIB, 1.0, Some((0.0, 20 * GIB)), &th),
            None
        );
        // Falling at 100 MiB/s from 20 GiB: 200 s left, more than twice watch_eta_s: calm.
        assert!(
            screen_calm(
                20 * GIB - 100 * MIB,
                24 * GIB,
                1.0,
                Some((0.0, 20 * GIB)),
                &th
            )
            .is_some()
        );
        // ... but at 200 MiB/s (100 s left) it is not.
        assert_eq!(
            screen_calm(
                20 * GIB - 200 * MIB,
                24 * GIB,
                1.0,
                Some((0.0, 20 * GIB)),
                &th
            ),
            None
        );
        // Rising free memory is calm.
        assert!(screen_calm(20 * GIB, 24 * GIB, 1.0, Some((0.0, 19 * GIB)), &th).is_some());
    }

    proptest! {
        /// Whenever the screen passes, the real global outlook from any MemAvailable at least
        /// the screened free memory is `ok` (the screen never hides a threat).
        #[test]
        fn a_passed_screen_hides_no_threat(
            total in 1u64..(1 << 45),
            free_pm in 0u64..=1000,
            extra_pm in 0u64..=1000,
            fall_pm in 0u64..=1000,
        ) {
            let th = Thresholds::default();
            let free = total / 1000 * free_pm;
            let prev = free + total / 1000 * fall_pm / 10;
            if screen_calm(free, total, 1.0, Some((0.0, prev)), &th).is_some() {
                let avail = free + (total - free) / 1000 * extra_pm;
                let rate = -((prev - free) as f64);
                let o = global_outlook(avail, total, Some(rate), &th);
                prop_assert_eq!(o.level, Level::Ok, "free {} avail {} rate {}", free, avail, rate);
            }
        }
    }

    #[test]
    fn oomd_pressure_counts_down_the_duration() {
        let th = Thresholds::default();
        let calm = oomd_pressure("user@1000.service", 10.0, 50.0, 0.0, 20.0, None, &th);
        assert_eq!((calm.level, calm.eta_s), (Level::Ok, None));
        let hot = oomd_pressure("user@1000.service", 57.97, 50.0, 12.0, 20.0, None, &th);
        // Rising past half the limit: danger before crossing, with an estimate.
        let rising = oomd_pressure("user@1000.service", 34.0, 50.0, 0.0, 5.0, Some(10.0), &th);
        assert_eq!(rising.level, Level::Danger, "{}", rising.detail);
        assert!((rising.eta_s.unwrap() - 6.6).abs() < 1e-9);
        // Past a quarter but steady: watch. Below a quarter: ok.
        let steady = oomd_pressure("user@1000.service", 34.0, 50.0, 0.0, 20.0, None, &th);
        assert_eq!(steady.level, Level::Watch, "{}", steady.detail);
        let low = oomd_pressure("user@1000.service", 10.0, 50.0, 0.0, 20.0, Some(1.0), &th);
        assert_eq!(low.level, Level::Ok, "{}", low.detail);
        assert_eq!((hot.level, hot.eta_s), (Level::Danger, Some(8.0)));
        assert!(
            hot.detail.contains("57.97% of its 50% limit"),
            "{}",
            hot.detail
        );
    }

    #[test]
    fn earlyoom_needs_both_memory_and_swap_low() {
        let th = Thresholds::default();
        let gib = 1024 * MIB;
        // No swap: armed on memory alone. 1 GiB of 16 available, acts at 10 % (1.6 GiB): past it.
        let t = earlyoom(
            KillerId::Earlyoom,
            gib,
            16 * gib,
            0,
            0,
            10.0,
            10.0,
            None,
            &th,
        );
        assert_eq!(t.level, Level::Danger);
        // Plenty of swap free: earlyoom does not act, whatever the memory.
        let t = earlyoom(
            KillerId::Earlyoom,
            gib,
            16 * gib,
            8 * gib,
            8 * gib,
            10.0,
            10.0,
            None,
            &th,
        );
        assert_eq!(t.level, Level::Ok);
        // Falling at 1 GiB/s from 8 GiB available to the 1.6 GiB trigger: 6.4 s.
        let t = earlyoom(
            KillerId::Earlyoom,
            8 * gib,
            16 * gib,
            0,
            0,
            10.0,
            10.0,
            Some(-(gib as f64)),
            &th,
        );
        assert!((t.eta_s.unwrap() - 6.4).abs() < 1e-9);
    }

    #[test]
    fn nearest_prefers_level_then_time() {
        let th = Thresholds::default();
        let a = memcg("/a", 10 * MIB, 100 * MIB, Some(1.0 * MIB as f64), &th); // 90 s: ok
        let b = memcg("/b", 50 * MIB, 100 * MIB, Some(10.0 * MIB as f64), &th); // 5 s: danger
        let c = global(MIB, 100 * MIB, None, &th); // 99 %: danger, no eta
        let all = [a, b.clone(), c];
        assert_eq!(nearest(&all).unwrap(), &b);
    }

    #[test]
    fn episodes_fire_once_and_rearm_on_ok() {
        let mut e = Episode::default();
        assert!(!e.update(Level::Watch, 0.0, 60.0));
        assert!(e.update(Level::Danger, 1.0, 60.0));
        assert!(!e.update(Level::Danger, 2.0, 60.0));
        assert!(!e.update(Level::Watch, 3.0, 60.0));
        assert!(
            !e.update(Level::Danger, 4.0, 60.0),
            "not re-armed without ok"
        );
        assert!(!e.update(Level::Ok, 5.0, 60.0));
        assert!(!e.update(Level::Danger, 6.0, 60.0), "minimum interval");
        assert!(!e.update(Level::Ok, 70.0, 60.0));
        assert!(e.update(Level::Danger, 71.0, 60.0));
    }

    #[test]
    fn runaway_needs_danger_the_largest_share_and_growth() {
        assert!(is_runaway(Level::Danger, 600 * MIB, 100 * MIB, Some(1e6)));
        assert!(!is_runaway(Level::Watch, 600 * MIB, 100 * MIB, Some(1e6)));
        assert!(
            !is_runaway(Level::Danger, 100 * MIB, 600 * MIB, Some(1e6)),
            "another process is bigger"
        );
        assert!(
            !is_runaway(Level::Danger, 600 * MIB, 100 * MIB, Some(0.0)),
            "steady: someone else grows"
        );
        assert!(!is_runaway(Level::Danger, 600 * MIB, 100 * MIB, None));
    }

    proptest! {
        #[test]
        fn eta_never_negative_and_level_monotone_in_usage(u in 0u64..1000, extra in 1u64..1000, r in -1e9f64..1e9) {
            let th = Thresholds::default();
            let a = memcg("/g", u * MIB, 1000 * MIB, Some(r), &th);
            let b = memcg("/g", (u + extra).min(1000) * MIB, 1000 * MIB, Some(r), &th);
            prop_assert!(a.eta_s.is_none_or(|e| e >= 0.0));
            prop_assert!(b.level >= a.level);
        }
    }
}

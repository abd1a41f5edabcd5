//! `oomguard history` (alias `why`): every OOM kill on this machine, by any killer, from
//! the kernel log and the journal (or the files given), in one table.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jiff::{Timestamp, tz::TimeZone};

use crate::host::logs::{self, JournalQuery};
use crate::job::registry::{self, Job};
use crate::model::event::{Clock, OomEvent, merge};

/// Arguments of `oomguard history`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  oomguard history                       every kill in the kernel log and the journal
  oomguard why train                     what killed job `train` (a job id, name or pid)
  oomguard history --since '2 days ago' --killer systemd-oomd
  journalctl -b -1 | oomguard history --file -     a pasted or saved log, any format
  oomguard history --file /var/log/syslog --json

Sources: /dev/kmsg (or `dmesg`), then `journalctl -o json` for the kernel, systemd-oomd,
systemd, earlyoom and nohang; with --file only the files (text in any syslog, journalctl,
dmesg or dmesg -T form, or a binary .journal file). Lines of one incident are one event;
application lines that reveal a kill (PyTorch DataLoader, torchrun, Slurm) are shown with
the kill they match and never counted as kills.")]
pub struct Args {
    /// A job (id, name or pid): show only the kills that ended it
    pub target: Option<String>,
    /// Only kills at or after T (`2026-11-24`, `2026-11-24 10:00`, RFC 3339, `2h`, `3 days ago`, `today`, `yesterday`)
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only kills before T (same forms as --since)
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Read these logs instead of the machine's (`-` for stdin; repeatable)
    #[arg(long, value_name = "PATH")]
    pub file: Vec<PathBuf>,
    /// Only kills by this killer (kernel, systemd-oomd, earlyoom, nohang, unknown)
    #[arg(long, value_name = "K")]
    pub killer: Option<String>,
    /// Show each event's log lines
    #[arg(long, short)]
    pub verbose: bool,
    /// JSON array of events (keys: time, killer, constraint, pid, process, cgroup, reason, lines, …)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub host: crate::cli::survey::HostArgs,
    /// Kernel log device
    #[arg(long, default_value = "/dev/kmsg", hide = true)]
    pub kmsg: PathBuf,
    /// Do not read the journal
    #[arg(long, hide = true)]
    pub no_journal: bool,
}

/// Parse a time as `--since`/`--until` accept it, relative to `now`.
pub fn parse_time(s: &str, now: Timestamp, tz: &TimeZone) -> Result<Timestamp> {
    let t = s.trim();
    let today = now.to_zoned(tz.clone()).date();
    let day_start =
        |d: jiff::civil::Date| -> Result<Timestamp> { Ok(d.to_zoned(tz.clone())?.timestamp()) };
    match t {
        "now" => return Ok(now),
        "today" => return day_start(today),
        "yesterday" => return day_start(today.yesterday()?),
        _ => {}
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts);
    }
    if let Ok(dt) = t.parse::<jiff::civil::DateTime>() {
        return Ok(dt.to_zoned(tz.clone())?.timestamp());
    }
    if let Ok(d) = t.parse::<jiff::civil::Date>() {
        return day_start(d);
    }
    // Relative: `2h`, `3 days ago`, `-90min`.
    let rel = t.trim_start_matches('-').trim_end_matches("ago").trim();
    if let Ok(span) = rel.parse::<jiff::Span>() {
        return Ok(now
            .to_zoned(tz.clone())
            .checked_sub(span)
            .context("time out of range")?
            .timestamp());
    }
    bail!(
        "cannot read the time {s:?}: use 2026-11-24, '2026-11-24 10:00', RFC 3339, \
         '2h', '3 days ago', today or yesterday"
    )
}

fn killer_name(k: &str) -> Result<&'static str> {
    Ok(match k {
        "kernel" => "kernel",
        "systemd-oomd" | "oomd" => "systemd-oomd",
        "earlyoom" => "earlyoom",
        "nohang" => "nohang",
        "unknown" => "unknown",
        other => {
            bail!("unknown killer {other:?}: use kernel, systemd-oomd, earlyoom, nohang or unknown")
        }
    })
}

/// Gather every source's events, merged and sorted. Failures of a source are returned as
/// notes (a machine without a journal, kmsg needing privilege) unless all failed.
pub fn gather(
    files: &[PathBuf],
    kmsg: &Path,
    proc: &Path,
    journal: bool,
    q: &JournalQuery,
) -> Result<(Vec<OomEvent>, Vec<String>, Vec<String>)> {
    let tz = TimeZone::system();
    let now = Timestamp::now().to_zoned(tz.clone());
    let clock = Clock {
        tz: tz.clone(),
        boot_unix: None,
        year_guess: Some(now.year()),
        now_unix: Some(now.timestamp().as_microsecond() as f64 / 1e6),
    };
    let mut all = Vec::new();
    let mut loose = Vec::new();
    let mut notes = Vec::new();
    let mut ok = 0;
    let mut take = |r: Result<logs::Found>, what: &str, notes: &mut Vec<String>| match r {
        Ok((e, l)) => {
            all.extend(e);
            loose.extend(l);
            ok += 1;
        }
        Err(e) => notes.push(format!("{what}: {e:#}")),
    };
    if !files.is_empty() {
        for f in files {
            if f.as_os_str() != "-" && logs::is_journal_file(f) {
                let q = JournalQuery {
                    file: Some(f.clone()),
                    ..q.clone()
                };
                take(
                    logs::journal(&q, clock.clone()),
                    &f.display().to_string(),
                    &mut notes,
                );
            } else {
                take(
                    logs::text(f, clock.clone()),
                    &f.display().to_string(),
                    &mut notes,
                );
            }
        }
        if ok == 0 {
            bail!("{}", notes.join("; "));
        }
    } else {
        let kclock = Clock {
            boot_unix: logs::boot_unix(proc),
            ..clock.clone()
        };
        match logs::kmsg(kmsg, kclock.clone()) {
            Ok(f) => take(Ok(f), "kernel log", &mut notes),
            Err(e) => {
                let r = logs::dmesg(kclock).map_err(|d| e.context(format!("{d:#}")));
                take(r, "kernel log (/dev/kmsg, dmesg)", &mut notes);
            }
        }
        if journal {
            take(logs::journal(q, clock.clone()), "journal", &mut notes);
        }
        if ok == 0 {
            bail!(
                "no log could be read: {} (run as root, or add yourself to the adm or \
                 systemd-journal group)",
                notes.join("; ")
            );
        }
    }
    let mut events = merge(all);
    events.sort_by(|a, b| {
        a.unix
            .partial_cmp(&b.unix)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok((events, loose, notes))
}

/// Mark the kills that ended oomguard jobs, by scope name or by pid within the job's life.
pub fn mark_jobs(events: &mut [OomEvent], jobs: &[Job]) {
    for e in events.iter_mut() {
        for j in jobs {
            let scope = format!("oomguard-{}.scope", j.id);
            let by_scope = e.cgroup.as_deref().is_some_and(|c| c.contains(&scope));
            let by_pid = e.pid == Some(j.pid as u32) && within_life(e.unix, j);
            if by_scope || by_pid {
                e.job = Some(j.id.clone());
            }
        }
    }
}

fn within_life(unix: Option<f64>, j: &Job) -> bool {
    let Some(t) = unix else { return false };
    let start = j.start_time.parse::<Timestamp>().ok();
    let end = j
        .end
        .as_ref()
        .and_then(|e| e.time.parse::<Timestamp>().ok());
    let s_ok = start.is_none_or(|s| t >= s.as_second() as f64 - 2.0);
    let e_ok = end.is_none_or(|e| t <= e.as_second() as f64 + 60.0);
    s_ok && e_ok
}

pub fn run(args: Args) -> Result<u8> {
    let tz = TimeZone::system();
    let now = Timestamp::now();
    let since = args
        .since
        .as_deref()
        .map(|s| parse_time(s, now, &tz))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| parse_time(s, now, &tz))
        .transpose()?;
    let killer = args.killer.as_deref().map(killer_name).transpose()?;
    let state = registry::state_dir().ok();
    let jobs = state.as_deref().map(registry::list).unwrap_or_default();
    let target = match &args.target {
        None => None,
        Some(t) => {
            let st = state.as_deref().context("no oomguard state directory")?;
            match registry::find(st, t) {
                Ok(j) => Some(j),
                Err(e) => match t.parse::<i32>() {
                    // A job's pid, or a pid oomguard does not know (kills of that pid).
                    Ok(pid) => jobs.iter().rev().find(|j| j.pid == pid).cloned(),
                    Err(_) => return Err(e),
                },
            }
        }
    };
    let q = JournalQuery {
        file: None,
        since: since.map(|t| t.as_second() as f64).or_else(|| {
            target
                .as_ref()
                .and_then(|j| j.start_time.parse::<Timestamp>().ok())
                .map(|t| t.as_second() as f64 - 2.0)
        }),
        until: until.map(|t| t.as_second() as f64),
    };
    let (mut events, loose, notes) = gather(
        &args.file,
        &args.kmsg,
        &args.host.proc_root,
        !args.no_journal,
        &q,
    )?;
    mark_jobs(&mut events, &jobs);
    let untimed_dropped = events
        .iter()
        .filter(|e| e.unix.is_none() && (since.is_some() || until.is_some()))
        .count();
    events.retain(|e| {
        let t_ok = match e.unix {
            Some(t) => {
                since.is_none_or(|s| t >= s.as_second() as f64)
                    && until.is_none_or(|u| t < u.as_second() as f64)
            }
            None => since.is_none() && until.is_none(),
        };
        let k_ok = killer.is_none_or(|k| e.killer == k);
        let target_ok = match (&args.target, &target) {
            (_, Some(j)) => e.job.as_deref() == Some(j.id.as_str()),
            (Some(t), None) => e.pid.map(|p| p.to_string()).as_deref() == Some(t.as_str()),
            (None, None) => true,
        };
        t_ok && k_ok && target_ok
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else {
        print_text(&events, &loose, args.verbose);
        for n in &notes {
            eprintln!("oomguard: note: could not read {n}");
        }
        if untimed_dropped > 0 {
            eprintln!(
                "oomguard: note: {untimed_dropped} kill(s) without a date were left out by --since/--until"
            );
        }
        if let (Some(t), true) = (&args.target, events.is_empty()) {
            println!("No OOM kill of {t} found in these logs.");
        }
    }
    Ok(0)
}

fn print_text(events: &[OomEvent], loose: &[String], verbose: bool) {
    if events.is_empty() {
        println!("No OOM kills found.");
    }
    for e in events {
        let who = match (&e.process, e.pid) {
            (Some(p), Some(pid)) => format!("{p} (pid {pid})"),
            (None, Some(pid)) => format!("pid {pid}"),
            (Some(p), None) => p.clone(),
            (None, None) => String::new(),
        };
        let head = [
            e.time.clone().unwrap_or_else(|| "(no date)".into()),
            format!(
                "{}{}",
                e.killer,
                e.constraint
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            ),
            who,
            e.unit().unwrap_or("").to_owned(),
            e.job
                .as_deref()
                .map(|j| format!("[job {j}]"))
                .unwrap_or_default(),
        ];
        let head: Vec<&str> = head
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        println!("{}", head.join("  "));
        if let Some(r) = &e.reason {
            println!("    {r}");
        }
        for ev in &e.evidence {
            println!("    evidence: {ev}");
        }
        if verbose {
            for l in &e.lines {
                println!("    | {l}");
            }
        }
    }
    if !events.is_empty() {
        let mut by: Vec<(String, usize)> = Vec::new();
        for e in events {
            match by.iter_mut().find(|(k, _)| *k == e.killer) {
                Some((_, n)) => *n += 1,
                None => by.push((e.killer.clone(), 1)),
            }
        }
        let parts: Vec<String> = by.iter().map(|(k, n)| format!("{n} by {k}")).collect();
        println!("{} kill(s): {}", events.len(), parts.join(", "));
    }
    if !loose.is_empty() {
        println!("Lines that suggest a kill, with no kill found for them in these logs:");
        for l in loose {
            println!("    {l}");
        }
    }
}

//! `oomguard ps`: the jobs oomguard started or protects, with a live re-check of the
//! shield (someone may have reset the adj since).

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::job::layers::State;
use crate::job::registry::{self, Job, Live};

/// Arguments of `oomguard ps`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// JSON output (an array of job records with live state)
    #[arg(long)]
    pub json: bool,
    /// Show every ended job, not only the last 10 (JSON always lists all)
    #[arg(long, short)]
    pub all: bool,
}

/// Ended jobs the table shows without `--all`.
const RECENT: usize = 10;

/// A job with its live state, as `ps --json` prints it: every key of the record, plus
/// `state` (running/ended/gone), `adj_now`, `shield_ok` and `exit_status`.
#[derive(Serialize)]
pub struct Row {
    #[serde(flatten)]
    pub job: Job,
    pub state: &'static str,
    /// The job's `oom_score_adj` read now (running jobs).
    pub adj_now: Option<i32>,
    /// False when the kernel layer was applied but the adj read now differs.
    pub shield_ok: bool,
    /// Shell-style status of an ended job (128+N for signal N).
    pub exit_status: Option<u8>,
}

/// Re-check a job against the live system.
pub fn row(job: Job, proc: &Path) -> Row {
    let live = job.live(proc);
    let adj_now = (live == Live::Running)
        .then(|| std::fs::read_to_string(proc.join(format!("{}/oom_score_adj", job.pid))).ok())
        .flatten()
        .and_then(|s| s.trim().parse().ok());
    let kernel_applied = job
        .layers
        .iter()
        .any(|l| l.layer == "kernel" && l.state == State::Applied);
    let shield_ok = live != Live::Running || !kernel_applied || adj_now == Some(job.adj);
    let exit_status = job.end.as_ref().map(|e| e.status());
    let state = match live {
        Live::Running => "running",
        Live::Ended => "ended",
        Live::Gone => "gone",
    };
    Row {
        job,
        state,
        adj_now,
        shield_ok,
        exit_status,
    }
}

fn shield_summary(r: &Row) -> String {
    let mut s: Vec<String> = r
        .job
        .layers
        .iter()
        .filter(|l| l.state != State::NotApplicable)
        .map(|l| {
            format!(
                "{}{}",
                l.layer,
                if l.state == State::Applied {
                    ""
                } else {
                    ":FAILED"
                }
            )
        })
        .collect();
    if !r.shield_ok {
        s.push(format!(
            "adj now {}!",
            r.adj_now.map_or("?".into(), |a| a.to_string())
        ));
    }
    if s.is_empty() {
        "-".into()
    } else {
        s.join(",")
    }
}

/// At most `n` characters of `s`.
fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Find, in the kernel log and the journal, the OOM kills that ended jobs a signal ended
/// (or whose end nobody saw: systemd-oomd kills the whole scope, oomguard's front with
/// it), and remember them in the job records. Best effort: logs a user cannot read are
/// skipped quietly.
fn find_kills(rows: &mut [Row], state: &Path) {
    let wanted = |r: &Row| {
        r.job.killed_by.is_none()
            && (r.state == "gone"
                || r.job
                    .end
                    .as_ref()
                    .is_some_and(|e| matches!(e.signal, Some(9) | Some(15))))
    };
    let Some(since) = rows
        .iter()
        .filter(|r| wanted(r))
        .filter_map(|r| r.job.start_time.parse::<jiff::Timestamp>().ok())
        .min()
    else {
        return;
    };
    let q = crate::host::logs::JournalQuery {
        file: None,
        since: Some(since.as_second() as f64 - 2.0),
        until: None,
    };
    let Ok((mut events, _, _)) =
        crate::cli::history::gather(&[], Path::new("/dev/kmsg"), Path::new("/proc"), true, &q)
    else {
        return;
    };
    let jobs: Vec<Job> = rows.iter().map(|r| r.job.clone()).collect();
    crate::cli::history::mark_jobs(&mut events, &jobs);
    for r in rows.iter_mut().filter(|r| wanted(r)) {
        if let Some(e) = events
            .iter()
            .find(|e| e.job.as_deref() == Some(r.job.id.as_str()))
        {
            r.job.killed_by = Some(registry::KilledBy {
                killer: e.killer.clone(),
                time: e.time.clone(),
                reason: e.reason.clone(),
            });
            let _ = registry::save(state, &r.job);
        }
    }
}

pub fn run(args: Args) -> Result<u8> {
    let state = registry::state_dir()?;
    let proc = Path::new("/proc");
    let mut rows: Vec<Row> = registry::list(&state)
        .into_iter()
        .map(|j| row(j, proc))
        .collect();
    find_kills(&mut rows, &state);
    if args.json {
        crate::cli::render::print_json(&rows)?;
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no jobs (state dir {})", state.display());
        return Ok(0);
    }
    let ended = rows.iter().filter(|r| r.state == "ended").count();
    let skip = if args.all {
        0
    } else {
        ended.saturating_sub(RECENT)
    };
    let mut skipped = 0;
    let shown: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            let hide = r.state == "ended" && skipped < skip;
            skipped += hide as usize;
            !hide
        })
        .collect();
    println!(
        "{:<7} {:<14} {:>7} {:<8} {:<28} COMMAND",
        "ID", "NAME", "PID", "STATE", "SHIELD"
    );
    for r in &shown {
        let st = match (r.state, r.exit_status) {
            (_, _) if r.job.killed_by.is_some() => "oom-kill".to_owned(),
            ("ended", Some(s)) => format!("exit {s}"),
            (s, _) => s.to_owned(),
        };
        let cmd = cut(&r.job.command.join(" "), 30);
        let name = cut(&r.job.name, 14);
        let shield = cut(&shield_summary(r), 28);
        println!(
            "{:<7} {:<14} {:>7} {:<8} {:<28} {cmd}",
            r.job.id, name, r.job.pid, st, shield
        );
    }
    if skip > 0 {
        println!("({skip} older ended jobs hidden; `oomguard ps --all` shows them)");
    }
    for r in &shown {
        if let Some(k) = &r.job.killed_by {
            println!(
                "{}: killed by {} at {}{}",
                r.job.id,
                k.killer,
                k.time.as_deref().unwrap_or("an unknown time"),
                k.reason
                    .as_deref()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(0)
}

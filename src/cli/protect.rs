//! `oomguard protect PID [--tree]` and `oomguard unprotect PID`: the shield for a job
//! that is already running.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::daemon::protocol::{self, Mode, Op};
use crate::host::adj::{self, Target};
use crate::job::layers::{self, Layer, Shield, State};
use crate::job::registry::{self, Job};

/// Arguments of `oomguard protect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The process to shield
    pub pid: i32,
    /// Also shield every descendant alive now (new children inherit the shield)
    #[arg(long)]
    pub tree: bool,
    /// oom_score_adj to set, -1000..0
    #[arg(long, default_value_t = -1000, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-1000..=0))]
    pub adj: i32,
}

/// Arguments of `oomguard unprotect`.
#[derive(clap::Args, Debug)]
pub struct UnprotectArgs {
    /// The process to unshield (its oom_score_adj goes back to 0)
    pub pid: i32,
    /// Also every descendant alive now
    #[arg(long)]
    pub tree: bool,
}

/// The layers applied, and whether the daemon guards the job.
fn apply(t: &Target, ticks: u64, args: &Args, id: &str) -> Result<(Vec<Layer>, bool)> {
    let root = rustix::process::geteuid().is_root();
    let sock = protocol::socket_path();
    if let Some(conn) = (!root).then(|| protocol::connect(&sock)).flatten() {
        let op = Op::Shield {
            pid: t.pid,
            start_ticks: ticks,
            adj: args.adj,
            job_id: id.into(),
            mode: Mode::Protect,
            tree: args.tree,
            checkpoint_signal: None,
            valve: None,
            valve_grace_ms: None,
        };
        let reply = protocol::call_on(conn, &op)?;
        if !reply.ok {
            bail!(
                "the oomguard daemon refused: {}",
                reply.error.unwrap_or_default()
            );
        }
        return Ok((reply.layers, reply.guarded));
    }
    let proc = Path::new("/proc");
    let extra: Vec<Target> = if args.tree {
        adj::descendants(proc, t.pid)
            .into_iter()
            .filter_map(|c| Target::open(proc, c, None).ok())
            .collect()
    } else {
        vec![]
    };
    let uid = t.info()?.uids[0];
    let layers = layers::shield(
        t,
        &Shield {
            adj: args.adj,
            job_id: id,
            uid,
            extra: &extra,
            root,
        },
    );
    Ok((layers, false))
}

pub fn run(args: Args) -> Result<u8> {
    let proc = Path::new("/proc");
    let t = Target::open(proc, args.pid, None)?;
    let info = t.info()?;
    let state = registry::state_dir()?;
    let (id, dir) = registry::new_job_dir(&state)?;
    let (layers, daemon_guards) = match apply(&t, info.start_time, &args, &id) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let job = Job {
        id: id.clone(),
        name: info.comm.clone(),
        command: t.cmdline().unwrap_or_default(),
        cwd: std::fs::read_link(proc.join(format!("{}/cwd", args.pid))).unwrap_or_default(),
        user: crate::daemon::auth::asker(info.uids[0], 0).user,
        uid: info.uids[0],
        pid: args.pid,
        pid_start_ticks: info.start_time,
        start_time: jiff::Timestamp::now().to_string(),
        log: Default::default(),
        adj: args.adj,
        allow_unprotected: false,
        layers: layers.clone(),
        end: None,
        daemon_guards,
        killed_by: None,
    };
    registry::save(&state, &job).context("saving the job record")?;
    for l in &layers {
        let mark = match l.state {
            State::Applied => "applied",
            State::NotApplicable => "not applicable",
            State::Failed => "FAILED",
        };
        println!("{:<13} {:<15} {}", l.layer, mark, l.detail);
    }
    let failed = layers
        .iter()
        .any(|l| l.state == State::Failed && (l.layer == "kernel" || l.layer == "systemd-oomd"));
    println!(
        "job {id}: pid {} ({}){}",
        args.pid,
        info.comm,
        if failed {
            " NOT fully protected"
        } else {
            " protected"
        }
    );
    Ok(if failed { 1 } else { 0 })
}

pub fn run_unprotect(args: UnprotectArgs) -> Result<u8> {
    let proc = Path::new("/proc");
    let t = Target::open(proc, args.pid, None)?;
    let mut pids = vec![args.pid];
    if args.tree {
        pids.extend(adj::descendants(proc, args.pid));
    }
    for p in pids {
        if let Ok(t) = Target::open(proc, p, None) {
            t.set_adj(0)
                .with_context(|| format!("resetting oom_score_adj of {p}"))?;
        }
    }
    println!(
        "pid {} ({}): oom_score_adj back to 0",
        args.pid,
        t.info()?.comm
    );
    println!("(a systemd scope it was moved into stays; it leaves when the job ends)");
    Ok(0)
}

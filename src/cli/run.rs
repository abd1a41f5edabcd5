//! `oomguard run`: start a job shielded from every OOM killer, its output in a log file.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::job::layers::{Layer, State};
use crate::job::registry;
use crate::job::spawn::{self, Spec, User};

/// Arguments of `oomguard run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Name of the job (for `ps`, `logs`, `stop`); default: the command's name
    #[arg(long)]
    pub name: Option<String>,
    /// Log file for the job's stdout and stderr (appended); default:
    /// $XDG_STATE_HOME/oomguard/jobs/ID/output.log
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Return at once with the job id; the job survives the terminal closing
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// oom_score_adj for the job, -1000 (never chosen by the kernel) .. 0
    #[arg(long, default_value_t = -1000, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-1000..=0))]
    pub adj: i32,
    /// Run even when a shield layer cannot be applied (and say which)
    #[arg(long)]
    pub allow_unprotected: bool,
    /// Signal sent to the job when a killer comes near (e.g. USR1), so it can checkpoint
    #[arg(long, value_name = "SIG")]
    pub checkpoint_signal: Option<String>,
    /// Command run (by sh) when a killer comes near; OOMGUARD_JOB_ID, OOMGUARD_PID,
    /// OOMGUARD_KILLER, OOMGUARD_LEVEL, OOMGUARD_ETA_S and OOMGUARD_REASON are set
    #[arg(long, value_name = "CMD")]
    pub on_risk: Option<String>,
    /// Never lower the job's shield, even when the job itself is exhausting memory (see
    /// "runaway safety valve" in the README)
    #[arg(long)]
    pub no_valve: bool,
    /// Seconds between the safety valve's warning and lowering the shield
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub valve_grace: f64,
    /// No desktop notification when a killer comes near
    #[arg(long)]
    pub no_notify: bool,
    /// The command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// As root under sudo, the job runs as the invoking user (`SUDO_UID`/`SUDO_GID`).
fn sudo_user() -> Option<User> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let uid: u32 = std::env::var("SUDO_UID")
        .ok()?
        .parse()
        .ok()
        .filter(|u| *u != 0)?;
    let gid: u32 = std::env::var("SUDO_GID").ok()?.parse().ok()?;
    let a = crate::daemon::auth::asker(uid, gid);
    let groups = a
        .groups
        .iter()
        .filter_map(|g| crate::daemon::auth::gid_of(g))
        .collect();
    Some(User {
        uid,
        gid,
        name: a.user,
        groups,
    })
}

/// The state dir; under sudo, the invoking user's (unless set explicitly).
fn state_for(user: Option<&User>) -> Result<PathBuf> {
    let explicit = ["OOMGUARD_STATE_DIR", "XDG_STATE_HOME"]
        .iter()
        .any(|k| std::env::var_os(k).is_some());
    if let (Some(u), false) = (user, explicit)
        && let Some(home) = registry::home_of(u.uid)
    {
        return Ok(home.join(".local/state/oomguard"));
    }
    registry::state_dir()
}

/// Create `dir` and its missing parents; under sudo, give the ones created to the user
/// (so `~/.local/state` does not end up owned by root).
fn create_dirs(dir: &std::path::Path, user: Option<&User>) -> Result<()> {
    let missing: Vec<&std::path::Path> = dir.ancestors().take_while(|p| !p.exists()).collect();
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating state dir {}", dir.display()))?;
    if let Some(u) = user {
        for p in missing {
            std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid))
                .with_context(|| format!("giving {} to {}", p.display(), u.name))?;
        }
    }
    Ok(())
}

/// On stderr: a warning per layer not applied, then one line naming the job and its log
/// and one with its shield (`kernel applied, systemd-oomd n/a, ...`).
fn announce(id: &str, pid: i32, log: &std::path::Path, layers: &[Layer], daemon_guards: bool) {
    for l in layers.iter().filter(|l| l.state == State::Failed) {
        eprintln!(
            "oomguard: warning: job {id}: {} layer not applied: {}",
            l.layer, l.detail
        );
    }
    eprintln!(
        "oomguard: job {id} (pid {pid}) started, log {}",
        log.display()
    );
    eprintln!("oomguard: shield layers:");
    for l in layers {
        let st = match l.state {
            State::Applied => "applied",
            State::NotApplicable => "not applicable",
            State::Failed => "NOT APPLIED",
        };
        eprintln!("oomguard:   {:<13} {st:<15} {}", l.layer, l.detail);
    }
    if daemon_guards {
        eprintln!(
            "oomguard: the oomguard daemon guards the job: it sends the checkpoint signal (the \
             job's, else its config's) and runs the safety valve"
        );
    }
}

/// What the detached supervisor tells the front process.
#[derive(Serialize, Deserialize)]
struct Report {
    ok: bool,
    id: String,
    pid: i32,
    log: PathBuf,
    layers: Vec<Layer>,
    error: String,
    daemon_guards: bool,
}

/// The guard of a job started by `run`: its actions on danger and the safety valve.
fn guard_config(args: &Args) -> Result<crate::guard::GuardConfig> {
    let checkpoint_signal = args
        .checkpoint_signal
        .as_deref()
        .map(crate::guard::parse_signal)
        .transpose()?;
    Ok(crate::guard::GuardConfig {
        actions: crate::guard::Actions {
            checkpoint_signal,
            on_risk: args.on_risk.clone(),
            notify: !args.no_notify,
            log_file: None,
        },
        valve: !args.no_valve,
        valve_grace_s: args.valve_grace.max(0.0),
        ..crate::guard::GuardConfig::default()
    })
}

/// systemd-oomd's pressure rule over a job whose systemd-oomd layer is not applied (run
/// unshielded, or the layer failed): the guard then watches that pressure too.
pub fn oomd_exposure(
    pid: i32,
    layers: &[crate::job::layers::Layer],
) -> Option<crate::host::systemd::PressureRule> {
    use crate::job::layers::State;
    let shielded = layers
        .iter()
        .any(|l| l.layer == "systemd-oomd" && l.state == State::Applied);
    if shielded || !crate::host::systemd::booted(std::path::Path::new("/")) {
        return None;
    }
    let sd = crate::host::systemd::Systemd::connect().ok()?;
    if !sd.oomd_active() {
        return None;
    }
    let rule = sd
        .pressure_rule(pid as u32, std::path::Path::new("/sys/fs/cgroup"))
        .ok()??;
    eprintln!(
        "oomguard: guard: watching systemd-oomd's rule on {} (pressure {}% for {} s)",
        rule.unit, rule.limit_pct, rule.duration_s
    );
    Some(rule)
}

/// Guard the job on a thread until it ends (or `stop` is set). Events go to stderr and to
/// `events.log` in the job's directory. When the root daemon guards the job too
/// (`daemon_guards`), it sends the checkpoint signal and runs the valve; this guard keeps
/// what needs the user's own session: `--on-risk`, the desktop notification, the log (and
/// the signal for a job exposed to systemd-oomd, whose pressure only this guard watches).
fn start_guard(
    state: &std::path::Path,
    id: &str,
    pid: i32,
    mut cfg: crate::guard::GuardConfig,
    daemon_guards: bool,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    cfg.actions.log_file = Some(registry::jobs_dir(state).join(id).join("events.log"));
    // The daemon's guard does not watch systemd-oomd's pressure rule: for a job left exposed
    // to it, this guard keeps its signal.
    if daemon_guards && cfg.oomd.is_none() {
        cfg.actions.checkpoint_signal = None;
        cfg.valve = false;
    }
    let id = id.to_string();
    std::thread::spawn(move || {
        let mut g = crate::guard::Guard::new(
            id,
            pid,
            cfg,
            crate::host::proc::ProcFs::default(),
            crate::host::cgroup::CgroupFs::default(),
        );
        // Under the job's MemoryHigh the kernel reclaims our own code pages, and faulting them
        // back in is charged and throttled: lock our file-backed pages as they are touched.
        let _ = g.step();
        // Word the threats once too: the code that does it is then locked with the rest.
        let _ = g.threats();
        let locked = crate::host::proc::lock_file_mappings(std::path::Path::new("/proc/self/maps"));
        if std::env::var_os("OOMGUARD_TRACE").is_some() {
            eprintln!("oomguard: trace: locked {locked} file mappings");
        }
        g.run(|| stop.load(std::sync::atomic::Ordering::Relaxed));
    })
}

pub fn run(args: Args) -> Result<u8> {
    let guard = guard_config(&args)?;
    let user = sudo_user();
    let state = state_for(user.as_ref())?;
    create_dirs(&state, user.as_ref())?;
    let spec = Spec {
        command: args.command,
        name: args.name,
        log: args.log,
        adj: args.adj,
        allow_unprotected: args.allow_unprotected,
        detach: args.detach,
        as_user: user,
        checkpoint_signal: args.checkpoint_signal.clone(),
        valve: !args.no_valve,
        valve_grace_s: args.valve_grace.max(0.0),
    };
    if args.detach {
        return detach(&state, &spec, guard);
    }
    let started = spawn::start(&state, &spec)?;
    announce(
        &started.job.id,
        started.job.pid,
        &started.job.log,
        &started.job.layers,
        started.job.daemon_guards,
    );
    let mut guard = guard;
    guard.oomd = oomd_exposure(started.job.pid, &started.job.layers);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let g = start_guard(
        &state,
        &started.job.id,
        started.job.pid,
        guard,
        started.job.daemon_guards,
        stop.clone(),
    );
    let mut out = std::io::stdout().lock();
    let code = spawn::follow(&started, &mut out);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = g.join();
    code
}

/// `--detach`: a supervisor process in its own session starts the job, reports back,
/// then waits for it to record how it ended.
fn detach(state: &std::path::Path, spec: &Spec, guard: crate::guard::GuardConfig) -> Result<u8> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // SAFETY: single-threaded here; the child goes on as a normal Rust process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        drop(r);
        // SAFETY: plain syscalls in the supervisor.
        unsafe {
            libc::setsid();
            let n = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            for fd in 0..3 {
                libc::dup2(n, fd);
            }
            if n > 2 {
                libc::close(n);
            }
            // Hold none of the caller's descriptors (a pipe of a `$(...)` or a CI runner
            // would otherwise stay open as long as the job runs), but the report pipe.
            let keep = w.as_raw_fd() as libc::c_uint;
            if keep > 3 {
                libc::syscall(
                    libc::SYS_close_range,
                    3 as libc::c_uint,
                    keep - 1,
                    0 as libc::c_uint,
                );
            }
            libc::syscall(
                libc::SYS_close_range,
                keep + 1,
                libc::c_uint::MAX,
                0 as libc::c_uint,
            );
        }
        let mut w = std::fs::File::from(w);
        let report = match spawn::start(state, spec) {
            Ok(s) => Report {
                ok: true,
                id: s.job.id.clone(),
                pid: s.job.pid,
                log: s.job.log.clone(),
                layers: s.job.layers.clone(),
                error: String::new(),
                daemon_guards: s.job.daemon_guards,
            },
            Err(e) => Report {
                ok: false,
                id: String::new(),
                pid: 0,
                log: PathBuf::new(),
                layers: vec![],
                error: format!("{e:#}"),
                daemon_guards: false,
            },
        };
        let _ = serde_json::to_writer(&mut w, &report);
        drop(w);
        if report.ok {
            // The supervisor guards the job while it waits for it.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut guard = guard;
            guard.oomd = oomd_exposure(report.pid, &report.layers);
            let g = start_guard(
                state,
                &report.id,
                report.pid,
                guard,
                report.daemon_guards,
                stop.clone(),
            );
            if let Ok(end) = spawn::wait(report.pid) {
                spawn::record_end(state, &report.id, &end);
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = g.join();
        }
        // SAFETY: leave without running the front's destructors twice.
        unsafe { libc::_exit(0) };
    }
    drop(w);
    let mut s = String::new();
    std::fs::File::from(r).read_to_string(&mut s)?;
    let report: Report =
        serde_json::from_str(&s).context("the job supervisor died before reporting")?;
    if !report.ok {
        bail!("{}", report.error);
    }
    announce(
        &report.id,
        report.pid,
        &report.log,
        &report.layers,
        report.daemon_guards,
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", report.id)?;
    Ok(0)
}

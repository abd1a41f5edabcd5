//! Starting a job with the shield in place before its first instruction.
//!
//! The job is forked as our direct child (so `waitpid` works) and `setsid`s at once (so
//! it outlives our terminal and our own death: if we die it is reparented and carries
//! on). Its stdout and stderr are the log file itself, never a pipe of ours. It waits
//! on a pipe until every layer is applied (by us with privilege, else by the daemon),
//! then execs; an exec failure comes back on a close-on-exec pipe.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::daemon::protocol::{self, Mode, Op};
use crate::host::adj::Target;
use crate::job::killers;
use crate::job::layers::{self, Layer, Shield, State};
use crate::job::registry::{self, End, Job};

/// What to start.
#[derive(Debug, Clone)]
pub struct Spec {
    pub command: Vec<String>,
    pub name: Option<String>,
    pub log: Option<PathBuf>,
    pub adj: i32,
    pub allow_unprotected: bool,
    /// Detached jobs read stdin from /dev/null.
    pub detach: bool,
    /// Run the job as this user (uid, gid, supplementary gids) instead of ours.
    pub as_user: Option<User>,
    /// The job's checkpoint signal, passed to the daemon (which guards the job when it shields
    /// it) and used for systemd-oomd's prekill hook.
    pub checkpoint_signal: Option<String>,
    /// The safety valve's settings, passed to the daemon likewise: off (`--no-valve`), and
    /// its grace in seconds.
    pub valve: bool,
    pub valve_grace_s: f64,
}

/// A user to become before exec.
#[derive(Debug, Clone)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub groups: Vec<u32>,
}

/// A started job.
pub struct Started {
    pub job: Job,
    pub state: PathBuf,
    /// Log size before the job started (where `run` starts showing it).
    pub log_offset: u64,
}

/// Which layers must hold for `run` to go ahead without `--allow-unprotected`: ours to
/// apply (kernel, systemd-oomd). earlyoom/nohang rules are reported, not enforced.
fn blocking(l: &Layer) -> bool {
    l.state == State::Failed && (l.layer == "kernel" || l.layer == "systemd-oomd")
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).with_context(|| format!("argument {s:?} contains a NUL byte"))
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// Fork, shield and exec the job. On refusal the child is killed before it ran a single
/// instruction of the job, and the error names the cause and the remedy.
pub fn start(state: &Path, spec: &Spec) -> Result<Started> {
    if spec.command.is_empty() {
        bail!("no command given: `oomguard run -- CMD ARGS...`");
    }
    if !(-1000..=0).contains(&spec.adj) {
        bail!(
            "--adj {} is out of range: the shield takes -1000..0",
            spec.adj
        );
    }
    let (id, dir) = registry::new_job_dir(state)?;
    let log_path = spec.log.clone().unwrap_or_else(|| dir.join("output.log"));
    let log_path = std::path::absolute(&log_path).unwrap_or(log_path);
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(&log_path)
        .with_context(|| format!("opening log file {}", log_path.display()))?;
    let log_offset = log.metadata()?.len();
    if let Some(u) = &spec.as_user {
        for p in [state, &registry::jobs_dir(state), &dir, &log_path] {
            std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid))
                .with_context(|| format!("giving {} to {}", p.display(), u.name))?;
        }
    }

    let argv: Vec<CString> = spec
        .command
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<_>>()?;
    let mut envp: Vec<CString> = Vec::new();
    let mut has_unbuffered = false;
    for (k, v) in std::env::vars_os() {
        has_unbuffered |= k == "PYTHONUNBUFFERED";
        let mut kv = k.into_encoded_bytes();
        kv.push(b'=');
        kv.extend(v.into_encoded_bytes());
        if let Ok(c) = CString::new(kv) {
            envp.push(c);
        }
    }
    if !has_unbuffered {
        envp.push(cstr("PYTHONUNBUFFERED=1")?);
    }
    // Tell the job who it is, and where it may keep its checkpoints (examples/train.py does).
    envp.retain(|kv| {
        !kv.as_bytes().starts_with(b"OOMGUARD_JOB_ID=")
            && !kv.as_bytes().starts_with(b"OOMGUARD_JOB_DIR=")
    });
    envp.push(cstr(&format!("OOMGUARD_JOB_ID={id}"))?);
    let mut dir_kv = b"OOMGUARD_JOB_DIR=".to_vec();
    dir_kv.extend_from_slice(dir.as_os_str().as_encoded_bytes());
    envp.push(CString::new(dir_kv).context("job directory contains a NUL byte")?);
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    let devnull = cstr("/dev/null")?;

    let (go_r, go_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let log_fd = log.as_raw_fd();
    let (go_rfd, go_wfd, err_wfd) = (go_r.as_raw_fd(), go_w.as_raw_fd(), err_w.as_raw_fd());
    let user = spec.as_user.clone();
    let detach = spec.detach;

    // SAFETY: the child calls only async-signal-safe functions on data prepared above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        unsafe {
            child(
                go_rfd,
                go_wfd,
                err_wfd,
                log_fd,
                detach,
                &devnull,
                user.as_ref(),
                &argv_p,
                &envp_p,
            )
        }
    }
    drop(go_r);
    drop(err_w);
    drop(log);

    let refuse = |msg: String| -> anyhow::Error {
        // SAFETY: plain syscalls on our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        let _ = std::fs::remove_dir_all(&dir);
        anyhow::anyhow!(msg)
    };
    let target = match Target::open(Path::new("/proc"), pid, None) {
        Ok(t) => t,
        Err(e) => {
            return Err(refuse(format!(
                "the job's process vanished before it started: {e}"
            )));
        }
    };
    let info = target.info().map_err(|e| refuse(e.to_string()))?;
    let uid = spec
        .as_user
        .as_ref()
        .map_or_else(|| rustix::process::getuid().as_raw(), |u| u.uid);
    let (layers, daemon_guards) = match apply(&target, info.start_time, spec.adj, &id, uid, spec) {
        Ok(l) => l,
        Err(e) => return Err(refuse(format!("{e:#}"))),
    };
    // earlyoom and nohang match the job by name and command line: judge them on what it
    // is about to exec, not on the waiting child (still named like us).
    let mut layers = layers;
    layers.retain(|l| l.layer != "earlyoom" && l.layer != "nohang");
    let comm: String = spec.command[0]
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .chars()
        .take(15)
        .collect();
    let adj_now = target.adj().unwrap_or(0);
    layers.extend(killers::assess(
        Path::new("/proc"),
        adj_now,
        &comm,
        &spec.command.join(" "),
    ));
    let failed: Vec<&Layer> = layers.iter().filter(|l| blocking(l)).collect();
    if !failed.is_empty() && !spec.allow_unprotected {
        let why: Vec<String> = failed
            .iter()
            .map(|l| format!("{} layer: {}", l.layer, l.detail))
            .collect();
        return Err(refuse(format!(
            "refusing to start the job unprotected: {} (or pass --allow-unprotected to run it anyway)",
            why.join("; ")
        )));
    }
    let user_name = spec.as_user.as_ref().map_or_else(
        || crate::daemon::auth::asker(uid, 0).user,
        |u| u.name.clone(),
    );
    let mut job = Job {
        id: id.clone(),
        name: spec.name.clone().unwrap_or_else(|| {
            let a = &spec.command[0];
            a.rsplit('/').next().unwrap_or(a).to_owned()
        }),
        command: spec.command.clone(),
        cwd: std::env::current_dir().unwrap_or_default(),
        user: user_name,
        uid,
        pid,
        pid_start_ticks: info.start_time,
        start_time: now(),
        log: log_path,
        adj: spec.adj,
        allow_unprotected: spec.allow_unprotected,
        layers,
        end: None,
        daemon_guards,
        killed_by: None,
    };
    registry::save(state, &job).map_err(|e| refuse(format!("{e:#}")))?;
    if let Some(u) = &spec.as_user {
        let _ = std::os::unix::fs::chown(dir.join("job.json"), Some(u.uid), Some(u.gid));
    }
    let mut go = File::from(go_w);
    go.write_all(b"G").context("releasing the job")?;
    drop(go);
    let mut errno = Vec::new();
    File::from(err_r).read_to_end(&mut errno)?;
    if errno.len() >= 4 {
        let code = i32::from_ne_bytes([errno[0], errno[1], errno[2], errno[3]]);
        let status = wait(pid)?;
        job.end = Some(status);
        registry::save(state, &job)?;
        bail!(
            "cannot run `{}`: {}",
            spec.command[0],
            std::io::Error::from_raw_os_error(code)
        );
    }
    Ok(Started {
        job,
        state: state.to_owned(),
        log_offset,
    })
}

/// Apply the layers: ourselves when root, else through the daemon when one listens,
/// else ourselves unprivileged (enough for `--adj 0`; otherwise the kernel layer fails
/// with the remedy).
fn apply(
    t: &Target,
    start_ticks: u64,
    adj: i32,
    job_id: &str,
    uid: u32,
    spec: &Spec,
) -> Result<(Vec<Layer>, bool)> {
    let root = rustix::process::geteuid().is_root();
    if !root {
        let sock = protocol::socket_path();
        if let Some(conn) = protocol::connect(&sock) {
            let op = Op::Shield {
                pid: t.pid,
                start_ticks,
                adj,
                job_id: job_id.into(),
                mode: Mode::Run,
                tree: false,
                checkpoint_signal: spec.checkpoint_signal.clone(),
                valve: (!spec.valve).then_some(false),
                valve_grace_ms: (spec.valve_grace_s
                    != crate::guard::GuardConfig::default().valve_grace_s)
                    .then(|| (spec.valve_grace_s.max(0.0) * 1000.0) as u64),
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
    }
    let layers = layers::shield(
        t,
        &Shield {
            adj,
            job_id,
            uid,
            extra: &[],
            root,
        },
    );
    Ok((layers, false))
}

/// The child between fork and exec: only async-signal-safe calls.
#[allow(clippy::too_many_arguments)]
unsafe fn child(
    go_r: i32,
    go_w: i32,
    err_w: i32,
    log: i32,
    detach: bool,
    devnull: &CString,
    user: Option<&User>,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    unsafe {
        let fail = |code: i32| -> ! {
            let b = code.to_ne_bytes();
            libc::write(err_w, b.as_ptr().cast(), 4);
            libc::_exit(127)
        };
        libc::close(go_w);
        // Rust ignores SIGPIPE; the job must get the default.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::setsid();
        if libc::dup2(log, 1) < 0 || libc::dup2(log, 2) < 0 {
            fail(*libc::__errno_location());
        }
        if detach {
            let n = libc::open(devnull.as_ptr(), libc::O_RDONLY);
            if n >= 0 {
                libc::dup2(n, 0);
                libc::close(n);
            }
        }
        libc::close(log);
        if detach {
            // A detached job keeps none of the caller's other descriptors past exec.
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
        }
        let mut b = [0u8; 1];
        let n = loop {
            let n = libc::read(go_r, b.as_mut_ptr().cast(), 1);
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            break n;
        };
        if n != 1 || b[0] != b'G' {
            libc::_exit(126);
        }
        libc::close(go_r);
        if let Some(u) = user
            && (libc::setgroups(u.groups.len(), u.groups.as_ptr()) != 0
                || libc::setgid(u.gid) != 0
                || libc::setuid(u.uid) != 0)
        {
            fail(*libc::__errno_location());
        }
        libc::execvpe(argv[0], argv.as_ptr(), envp.as_ptr());
        fail(*libc::__errno_location())
    }
}

/// Wait for `pid` (our child) to end.
pub fn wait(pid: i32) -> Result<End> {
    let mut st = 0;
    loop {
        // SAFETY: waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("waitpid");
        }
    }
    Ok(end_of(st))
}

fn end_of(st: i32) -> End {
    if libc::WIFEXITED(st) {
        End {
            time: now(),
            exit_code: Some(libc::WEXITSTATUS(st)),
            signal: None,
        }
    } else {
        End {
            time: now(),
            exit_code: None,
            signal: Some(libc::WTERMSIG(st)),
        }
    }
}

/// Record the job's end in its record (if the record is still there).
pub fn record_end(state: &Path, id: &str, end: &End) {
    if let Ok(mut j) = registry::find(state, id) {
        j.end = Some(end.clone());
        let _ = registry::save(state, &j);
    }
}

/// Foreground: show the log live on `out`, forward SIGINT/SIGTERM to the job, wait for
/// it, record its end and return its shell-style status.
pub fn follow(started: &Started, out: &mut dyn Write) -> Result<u8> {
    let pid = started.job.pid;
    let int = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    // Forward Ctrl-C and SIGTERM to the job, but not a SIGTERM that an OOM killer (earlyoom,
    // nohang) sent to this small front process: the job is shielded, we are not, and the
    // killer meant to free memory, not to end the job through us.
    let mut signals = signal_hook::iterator::SignalsInfo::<
        signal_hook::iterator::exfiltrator::WithOrigin,
    >::new([libc::SIGINT, libc::SIGTERM])?;
    let signals_handle = signals.handle();
    let forwarder = {
        let (int, term) = (Arc::clone(&int), Arc::clone(&term));
        std::thread::spawn(move || {
            for info in signals.forever() {
                if let Some(killer) = info.process.and_then(|p| oom_killer_name(p.pid)) {
                    eprintln!(
                        "oomguard: {killer} sent signal {} to oomguard's own front process; not forwarded to the shielded job",
                        info.signal
                    );
                    continue;
                }
                let flag = if info.signal == libc::SIGINT {
                    &int
                } else {
                    &term
                };
                flag.store(true, Ordering::SeqCst);
            }
        })
    };
    let mut log = File::open(&started.job.log)
        .with_context(|| format!("opening {}", started.job.log.display()))?;
    log.seek(SeekFrom::Start(started.log_offset))?;
    let mut out_ok = true;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pump = |log: &mut File, out_ok: &mut bool| {
        while let Ok(n) = log.read(&mut buf) {
            if n == 0 {
                break;
            }
            if *out_ok && out.write_all(&buf[..n]).is_err() {
                *out_ok = false;
            }
        }
        if *out_ok {
            let _ = out.flush();
        }
    };
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).context("bad pid")?,
        rustix::process::PidfdFlags::empty(),
    )?;
    loop {
        for (flag, sig) in [(&int, libc::SIGINT), (&term, libc::SIGTERM)] {
            if flag.swap(false, Ordering::SeqCst) {
                // SAFETY: signalling our own child, still unreaped.
                unsafe { libc::kill(pid, sig) };
            }
        }
        pump(&mut log, &mut out_ok);
        if exited(&pidfd, Duration::from_millis(50)) {
            break;
        }
    }
    let end = wait(pid)?;
    signals_handle.close();
    let _ = forwarder.join();
    pump(&mut log, &mut out_ok);
    record_end(&started.state, &started.job.id, &end);
    Ok(end.status())
}

/// The name of the OOM killer that `pid` is, if it is one.
fn oom_killer_name(pid: i32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let comm = comm.trim();
    ["earlyoom", "nohang", "systemd-oomd"]
        .contains(&comm)
        .then(|| comm.to_string())
}

/// Poll a pidfd for the process's exit, at most `timeout`.
fn exited(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        pidfd,
        rustix::event::PollFlags::IN,
    )];
    let ts = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: timeout.as_nanos() as i64,
    };
    matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
}

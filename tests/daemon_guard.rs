//! The daemon guards the jobs it shields with its config's `[guard]` settings: a job whose
//! `run` named no checkpoint signal gets the policy's. A job that `run` guards too gets the
//! checkpoint signal once, from the daemon.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_policy_checkpoint_signal_reaches_a_job_in_danger() {
    if !rustix::process::geteuid().is_root()
        || Command::new("setpriv").arg("--version").output().is_err()
    {
        eprintln!("SKIP: needs root and setpriv (util-linux) to run a job as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // danger_percent = 1: any machine is "1 % of the way" to a global OOM, so the job is in
    // danger at the guard's first step, and the policy's signal is the only one it can get.
    let (_daemon, sock) = Daemon::start(
        dir.path(),
        "[guard]\ncheckpoint_signal = \"USR1\"\ndanger_percent = 1\n",
    );
    let bin = env!("CARGO_BIN_EXE_oomguard");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mark = dir.path().join("checkpointed");
    let job = format!(
        "import signal, time\nsignal.signal(signal.SIGUSR1, lambda *a: open('{}', 'w').write('ok'))\ntime.sleep(30)\n",
        mark.display()
    );
    let out = run_detached(
        &sock,
        &state,
        &["--adj", "0", "--no-notify", "--", "python3", "-c", &job],
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !mark.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new(bin)
        .args(["stop", &id])
        .env("OOMGUARD_STATE_DIR", &state)
        .output();
    assert!(
        mark.exists(),
        "the job never got the policy's checkpoint signal (USR1)"
    );
}

/// `oomguard run --detach ARGS` as user nobody through the daemon on `sock`; asserts it
/// started, and returns its output (the job id on stdout).
fn run_detached(
    sock: &std::path::Path,
    state: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_oomguard"))
        .args(["run", "--detach"])
        .args(args)
        .env("OOMGUARD_SOCKET", sock)
        .env("OOMGUARD_STATE_DIR", state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A daemon on a socket in `dir` with `config`; killed when dropped.
struct Daemon(std::process::Child);

impl Daemon {
    fn start(dir: &std::path::Path, config: &str) -> (Daemon, std::path::PathBuf) {
        let sock = dir.join("oomguard.sock");
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_oomguard"))
            .args(["daemon", "--no-prekill", "--config"])
            .arg(&cfg)
            .env("OOMGUARD_SOCKET", &sock)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Daemon(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "daemon did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        (d, sock)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `run --checkpoint-signal` through the daemon: both the daemon and `run`'s own supervisor
/// watch the job, and both see it in danger (its memory cgroup past 95 % of the limit), but
/// only the daemon signals: a trainer must not be asked to checkpoint twice in a crunch.
#[test]
fn a_job_the_daemon_guards_is_signalled_once() {
    if !rustix::process::geteuid().is_root()
        || Command::new("setpriv").arg("--version").output().is_err()
    {
        eprintln!("SKIP: needs root and setpriv (util-linux) to run a job as another user");
        return;
    }
    let limit: u64 = 160 << 20;
    let cg = match common::MemcgV1::create("once", limit) {
        Ok(cg) => cg,
        Err(why) => {
            eprintln!("SKIP: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (_daemon, sock) = Daemon::start(dir.path(), "");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let signals = dir.path().join("signals");
    let go = dir.path().join("go");
    // The job counts its USR1s; once the test moved it into the group (`go`), it fills the
    // group to 97 % of its limit and holds.
    let usage = cg.dir.join("memory.usage_in_bytes");
    let job = format!(
        "import os, signal, time\n\
         signal.signal(signal.SIGUSR1, lambda *a: open('{sig}', 'a').write('usr1\\n'))\n\
         while not os.path.exists('{go}'): time.sleep(0.05)\n\
         held = []\n\
         while int(open('{usage}').read()) < {limit} * 0.97: held.append(b'x' * (1 << 20))\n\
         time.sleep(60)\n",
        sig = signals.display(),
        go = go.display(),
        usage = usage.display(),
    );
    let bin = env!("CARGO_BIN_EXE_oomguard");
    let out = run_detached(
        &sock,
        &state,
        &[
            "--adj",
            "0",
            "--no-notify",
            "--checkpoint-signal",
            "USR1",
            "--",
            "python3",
            "-c",
            &job,
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the oomguard daemon guards the job"),
        "run did not say that the daemon guards the job: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let ps = Command::new(bin)
        .args(["ps", "--json"])
        .env("OOMGUARD_STATE_DIR", &state)
        .output()
        .unwrap();
    let jobs: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    let rec = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id.as_str())
        .expect("ps --json lists the job")
        .clone();
    assert_eq!(rec["daemon_guards"], true, "{rec}");
    let pid = rec["pid"].as_i64().unwrap() as u32;
    cg.add(pid);
    std::fs::write(&go, "").unwrap();
    // Both guards find the group within a few seconds (their look-ups back off 1, 2, 4 s),
    // then fire once per episode.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !signals.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(8));
    let got = std::fs::read_to_string(&signals).unwrap_or_default();
    let _ = Command::new(bin)
        .args(["stop", &id])
        .env("OOMGUARD_STATE_DIR", &state)
        .output();
    let events = std::fs::read_to_string(state.join("jobs").join(&id).join("events.log"))
        .unwrap_or_default();
    assert_eq!(
        got.lines().count(),
        1,
        "the job got {} checkpoint signals (want 1, from the daemon); run's events:\n{events}",
        got.lines().count()
    );
    assert!(
        events.contains("in danger"),
        "run's own guard did not see the danger (the test proves nothing): {events}"
    );
}

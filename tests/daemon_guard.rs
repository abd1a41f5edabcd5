//! The daemon guards the jobs it shields with its config's `[guard]` settings: a job whose
//! `run` named no checkpoint signal gets the policy's.

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
    let sock = dir.path().join("oomguard.sock");
    let config = dir.path().join("config.toml");
    // danger_percent = 1: any machine is "1 % of the way" to a global OOM, so the job is in
    // danger at the guard's first step, and the policy's signal is the only one it can get.
    std::fs::write(
        &config,
        "[guard]\ncheckpoint_signal = \"USR1\"\ndanger_percent = 1\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_oomguard");
    let mut daemon = Command::new(bin)
        .args(["daemon", "--no-prekill", "--config"])
        .arg(&config)
        .env("OOMGUARD_SOCKET", &sock)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "daemon did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mark = dir.path().join("checkpointed");
    let job = format!(
        "import signal, time\nsignal.signal(signal.SIGUSR1, lambda *a: open('{}', 'w').write('ok'))\ntime.sleep(30)\n",
        mark.display()
    );
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin])
        .args([
            "run",
            "--detach",
            "--adj",
            "0",
            "--no-notify",
            "--",
            "python3",
            "-c",
            &job,
        ])
        .env("OOMGUARD_SOCKET", &sock)
        .env("OOMGUARD_STATE_DIR", &state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        mark.exists(),
        "the job never got the policy's checkpoint signal (USR1)"
    );
}

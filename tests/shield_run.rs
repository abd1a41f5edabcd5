//! `oomguard run` against the real kernel: output in order, exit statuses, the job
//! surviving oomguard's death, detach + ps + logs + stop, and the refusal without
//! CAP_SYS_RESOURCE. Each test uses its own state dir and a socket path with no daemon.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_oomguard"))
}

fn og(state: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env("OOMGUARD_STATE_DIR", state)
        .env("OOMGUARD_SOCKET", state.join("no-daemon.sock"))
        .env("NO_COLOR", "1");
    c
}

fn run(state: &Path, args: &[&str]) -> Output {
    og(state).args(args).output().unwrap()
}

fn has_cap_sys_resource() -> bool {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = s
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap() & (1 << 24) != 0
}

fn ps_json(state: &Path) -> serde_json::Value {
    let o = run(state, &["ps", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !matches!(
            s.rsplit(')').next().unwrap().split_whitespace().next(),
            Some("Z")
        )
    })
}

#[test]
fn twenty_thousand_lines_in_order_live_and_in_the_log() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("out.log");
    let script = "i=1; while [ $i -le 20000 ]; do if [ $((i % 7)) -eq 0 ]; then echo \"line $i\" >&2; \
                  else echo \"line $i\"; fi; i=$((i+1)); done";
    let o = run(
        d.path(),
        &[
            "run",
            "--adj",
            "0",
            "--log",
            log.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let expected: String = (1..=20000).map(|i| format!("line {i}\n")).collect();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        expected,
        "log holds every line, in order"
    );
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        expected,
        "run showed every line live"
    );
}

#[test]
fn exit_status_and_signal_status() {
    let d = tempfile::tempdir().unwrap();
    let o = run(d.path(), &["run", "--adj", "0", "--", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o = run(
        d.path(),
        &["run", "--adj", "0", "--", "sh", "-c", "kill -9 $$"],
    );
    assert_eq!(o.status.code(), Some(137));
    let jobs = ps_json(d.path());
    let st: Vec<i64> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["exit_status"].as_i64().unwrap())
        .collect();
    assert!(st.contains(&7) && st.contains(&137), "{jobs}");
}

#[test]
fn environment_and_exec_failure() {
    let d = tempfile::tempdir().unwrap();
    let o = run(
        d.path(),
        &[
            "run",
            "--adj",
            "0",
            "--",
            "sh",
            "-c",
            "echo U=$PYTHONUNBUFFERED",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "U=1\n");
    let o = og(d.path())
        .env("PYTHONUNBUFFERED", "0")
        .args([
            "run",
            "--adj",
            "0",
            "--",
            "sh",
            "-c",
            "echo U=$PYTHONUNBUFFERED",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "U=0\n",
        "a value the user set is kept"
    );
    let o = run(d.path(), &["run", "--adj", "0", "--", "/nonexistent/prog"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot run `/nonexistent/prog`"));
}

#[test]
fn job_survives_sigkill_of_oomguard_20_times() {
    for round in 0..20 {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("out.log");
        let script = "for i in $(seq 1 30); do echo \"n $i\"; sleep 0.01; done; echo done";
        let mut child = og(d.path())
            .args([
                "run",
                "--adj",
                "0",
                "--log",
                log.to_str().unwrap(),
                "--",
                "sh",
                "-c",
                script,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the job is recorded and has started writing, then kill oomguard.
        let t0 = Instant::now();
        while std::fs::read_to_string(&log).map_or(true, |s| s.is_empty()) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "job never started (round {round})"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let jobs = ps_json(d.path());
        let pid = jobs[0]["pid"].as_i64().unwrap() as i32;
        let t0 = Instant::now();
        while running(pid) {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "job {pid} never ended (round {round})"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let expected: String = (1..=30).map(|i| format!("n {i}\n")).collect::<String>() + "done\n";
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            expected,
            "round {round}: log complete"
        );
    }
}

#[test]
fn detach_ps_logs_follow_stop() {
    let d = tempfile::tempdir().unwrap();
    let o = run(
        d.path(),
        &[
            "run",
            "--detach",
            "--adj",
            "0",
            "--name",
            "trainer",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 300",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    assert_eq!(id.len(), 6, "stdout is just the id: {id:?}");
    let jobs = ps_json(d.path());
    let j = &jobs[0];
    assert_eq!(j["id"], id.as_str());
    assert_eq!(j["name"], "trainer");
    assert_eq!(j["state"], "running");
    let pid = j["pid"].as_i64().unwrap() as i32;
    assert!(running(pid));
    assert_eq!(j["layers"][0]["layer"], "kernel");
    assert_eq!(j["layers"][0]["state"], "applied");
    assert_eq!(j["adj_now"], 0);
    // The job is in its own session, with stdin from /dev/null.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(f[3], pid.to_string(), "session id is the job's own pid");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap(),
        Path::new("/dev/null")
    );

    let follower = og(d.path())
        .args(["logs", "-f", &id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let o = run(d.path(), &["stop", "--grace", "5", "trainer"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!running(pid));
    let t0 = Instant::now();
    let out = follower.wait_with_output().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "logs -f ended with the job"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
    // The detached supervisor recorded the end: SIGTERM -> 143.
    let t0 = Instant::now();
    loop {
        let j = &ps_json(d.path())[0];
        if j["state"] == "ended" {
            assert_eq!(j["exit_status"], 143);
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "end never recorded: {j}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = run(d.path(), &["ps"]);
    let table = String::from_utf8(o.stdout).unwrap();
    assert!(table.lines().all(|l| l.len() <= 100), "{table}");
    assert!(table.contains("exit 143"), "{table}");
}

#[test]
fn default_adj_refused_without_cap_sys_resource() {
    if has_cap_sys_resource() {
        eprintln!(
            "SKIP: this process has CAP_SYS_RESOURCE, so -1000 succeeds (the VM lab checks that)"
        );
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let marker = d.path().join("ran");
    let cmd = format!("touch {}", marker.display());
    let o = run(d.path(), &["run", "--", "sh", "-c", &cmd]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("CAP_SYS_RESOURCE"), "{err}");
    assert!(
        err.contains("start `oomguard daemon` as root or run with sudo"),
        "{err}"
    );
    assert!(err.contains("--allow-unprotected"), "{err}");
    assert!(
        !marker.exists(),
        "not one instruction of the refused job ran"
    );
    assert_eq!(
        ps_json(d.path()).as_array().unwrap().len(),
        0,
        "no record of a job that never ran"
    );

    let o = run(
        d.path(),
        &["run", "--allow-unprotected", "--", "sh", "-c", &cmd],
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(marker.exists());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("kernel layer not applied"), "{err}");
    let j = &ps_json(d.path())[0];
    assert_eq!(j["layers"][0]["layer"], "kernel");
    assert_eq!(j["layers"][0]["state"], "failed");
    assert_eq!(j["allow_unprotected"], true);
}

#[test]
fn ps_notices_a_reset_adj() {
    let d = tempfile::tempdir().unwrap();
    let o = run(d.path(), &["run", "-d", "--adj", "0", "--", "sleep", "30"]);
    assert!(o.status.success());
    let pid = ps_json(d.path())[0]["pid"].as_i64().unwrap();
    std::fs::write(format!("/proc/{pid}/oom_score_adj"), "500").unwrap();
    let j = &ps_json(d.path())[0];
    assert_eq!(j["adj_now"], 500);
    assert_eq!(j["shield_ok"], false);
    let id = j["id"].as_str().unwrap();
    assert!(
        run(d.path(), &["stop", "--grace", "1", id])
            .status
            .success()
    );
}

#[test]
fn ctrl_c_and_sigterm_are_forwarded() {
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let d = tempfile::tempdir().unwrap();
        let mut child = og(d.path())
            .args([
                "run",
                "--adj",
                "0",
                "--",
                "sh",
                "-c",
                "echo up; exec sleep 30",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = [0u8; 3];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
        assert_eq!(&first, b"up\n");
        unsafe { libc::kill(child.id() as i32, sig) };
        let t0 = Instant::now();
        let st = child.wait().unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(
            st.code(),
            Some(code),
            "signal {sig} reached the job, oomguard exited 128+{sig}"
        );
    }
}

#[test]
fn protect_tree_and_unprotect() {
    let d = tempfile::tempdir().unwrap();
    let mut parent = Command::new("sh")
        .args(["-c", "sleep 30 & sleep 30 & wait"])
        .spawn()
        .unwrap();
    let pid = parent.id() as i32;
    let t0 = Instant::now();
    let kids = loop {
        let o = Command::new("pgrep")
            .args(["-P", &pid.to_string()])
            .output()
            .unwrap();
        let kids: Vec<i32> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
        if kids.len() == 2 {
            break kids;
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    };
    for p in std::iter::once(pid).chain(kids.iter().copied()) {
        std::fs::write(format!("/proc/{p}/oom_score_adj"), "300").unwrap();
    }
    let o = run(
        d.path(),
        &["protect", "--adj", "0", "--tree", &pid.to_string()],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("kernel") && out.contains("applied"), "{out}");
    for p in std::iter::once(pid).chain(kids.iter().copied()) {
        assert_eq!(
            std::fs::read_to_string(format!("/proc/{p}/oom_score_adj"))
                .unwrap()
                .trim(),
            "0",
            "pid {p}"
        );
    }
    let j = &ps_json(d.path())[0];
    assert_eq!(j["pid"], pid);
    assert_eq!(j["state"], "running");
    assert!(
        run(d.path(), &["unprotect", &pid.to_string()])
            .status
            .success()
    );
    // The protected process leads no process group: `stop` signals just it (our own
    // test process group is spared), and we reap it.
    let id = j["id"].as_str().unwrap().to_owned();
    let stopper = std::thread::spawn({
        let state = d.path().to_owned();
        move || run(&state, &["stop", "--grace", "3", &id])
    });
    let st = parent.wait().unwrap();
    let o = stopper.join().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGTERM)
    );
}

/// A child memory cgroup (v1) of our own, removed on drop.
struct Memcg(PathBuf);
impl Drop for Memcg {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn job_in_a_limited_memcg_stays_there_and_says_so() {
    let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let Some(own) = cg
        .lines()
        .find_map(|l| l.strip_prefix("4:memory:"))
        .map(str::to_owned)
    else {
        eprintln!("SKIP: no cgroup v1 memory controller line in /proc/self/cgroup");
        return;
    };
    let dir = PathBuf::from(format!(
        "/sys/fs/cgroup/memory{own}/oomguard-test-{}",
        std::process::id()
    ));
    if std::fs::create_dir(&dir).is_err() {
        eprintln!(
            "SKIP: cannot create a child memory cgroup at {}",
            dir.display()
        );
        return;
    }
    let g = Memcg(dir);
    std::fs::write(g.0.join("memory.limit_in_bytes"), "314572800").unwrap();
    let d = tempfile::tempdir().unwrap();
    let procs = g.0.join("cgroup.procs");
    // Start oomguard inside the group: the job is forked there and must stay there.
    let script = format!("echo $$ > {}; exec \"$@\"", procs.display());
    let o = Command::new("sh")
        .args([
            "-c",
            &script,
            "sh",
            bin().to_str().unwrap(),
            "run",
            "--adj",
            "0",
            "--",
            "cat",
            "/proc/self/cgroup",
        ])
        .env("OOMGUARD_STATE_DIR", d.path())
        .env("OOMGUARD_SOCKET", d.path().join("none.sock"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rel = format!(
        "/{}",
        g.0.strip_prefix("/sys/fs/cgroup/memory").unwrap().display()
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("memory:{rel}\n")),
        "job ran in the group: {out} (want {rel})"
    );
    let j = &ps_json(d.path())[0];
    let detail = j["layers"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "stays in memory-limited cgroup {rel} (limit 300 MiB)"
        )),
        "{detail}"
    );
}

#[test]
fn earlyoom_rules_that_would_still_pick_the_job_are_reported() {
    let Ok(eo) = which("earlyoom") else {
        eprintln!("SKIP: earlyoom is not installed (apt-get install earlyoom)");
        return;
    };
    // --dryrun: it never kills anything, whatever memory others use meanwhile.
    let mut eo = Command::new(eo)
        .args(["--dryrun", "-m", "1", "-s", "1", "--prefer", "^sleep$"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let d = tempfile::tempdir().unwrap();
    let o = run(d.path(), &["run", "-d", "--adj", "0", "--", "sleep", "30"]);
    let _ = eo.kill();
    let _ = eo.wait();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = &ps_json(d.path())[0];
    let l = j["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "earlyoom")
        .unwrap();
    assert_eq!(l["state"], "failed", "{l}");
    assert!(
        l["detail"]
            .as_str()
            .unwrap()
            .contains("--prefer '^sleep$' matches 'sleep'"),
        "{l}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("earlyoom layer not applied"), "{err}");
    assert!(
        run(
            d.path(),
            &["stop", "--grace", "1", j["id"].as_str().unwrap()]
        )
        .status
        .success()
    );
}

fn which(prog: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn detached_job_holds_none_of_the_callers_pipes() {
    let d = tempfile::tempdir().unwrap();
    // fd 3 is a second copy of the caller's stdout pipe, inherited (not close-on-exec).
    let script = format!(
        "exec 3>&1; exec {} run -d --adj 0 -- sleep 30",
        bin().display()
    );
    let t0 = Instant::now();
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("OOMGUARD_STATE_DIR", d.path())
        .env("OOMGUARD_SOCKET", d.path().join("none.sock"))
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the caller's pipe closed at once, not with the job"
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let j = &ps_json(d.path())[0];
    assert_eq!(j["id"], id.as_str());
    assert_eq!(j["state"], "running");
    assert!(
        run(d.path(), &["stop", "--grace", "1", &id])
            .status
            .success()
    );
}

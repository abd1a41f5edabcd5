//! The guard against a real memcg OOM: the checkpoint lands before the kernel's kill.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::MemcgV1;
use oomguard::guard::{Actions, Guard, GuardConfig, parse_signal};
use oomguard::host::cgroup::CgroupFs;
use oomguard::host::proc::ProcFs;

const HOG_200MBPS: &str = r#"
import os, sys, time
open('/proc/self/oom_score_adj', 'w').write('50')
open(sys.argv[1] + '/cgroup.procs', 'w').write(str(os.getpid()))
held = []
while True:
    held.append(b'\x03' * 10_000_000)
    time.sleep(0.05)
"#;

/// One run: returns the checkpoint's lead over the kill, in seconds. `via_cli`: the trainer
/// runs under `oomguard run --checkpoint-signal USR1 --allow-unprotected` (the guard is
/// oomguard's own); otherwise a library `Guard` in this process watches it.
pub fn checkpoint_lead(tag: &str, via_cli: bool) -> Option<f64> {
    let cg = match MemcgV1::create(tag, 800 << 20) {
        Ok(cg) => cg,
        Err(why) => {
            eprintln!(
                "SKIP: the guard's memcg scenario needs a cgroup-v1 memory controller: {why}"
            );
            return None;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt.json");
    let train = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/train.py");
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec python3 {train} --steps 100000 --step-seconds 0.1 --hold-mib 450 --checkpoint {}",
        cg.dir.display(),
        ckpt.display()
    );
    let mut trainer = if via_cli {
        Command::new(env!("CARGO_BIN_EXE_oomguard"))
            .args([
                "run",
                "--checkpoint-signal",
                "USR1",
                "--allow-unprotected",
                "--no-notify",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .env("OOMGUARD_STATE_DIR", dir.path().join("state"))
            .env("OOMGUARD_SOCKET", dir.path().join("no-daemon.sock"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    } else {
        Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Wait until it holds its memory (first progress line).
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(trainer.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("train:"), "{line}");
    }
    let cfg = GuardConfig {
        actions: Actions {
            checkpoint_signal: Some(parse_signal("USR1").unwrap()),
            ..Actions::default()
        },
        ..GuardConfig::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let pid = trainer.id() as i32;
    let guard = (!via_cli).then(|| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut g = Guard::new("test", pid, cfg, ProcFs::default(), CgroupFs::default());
            g.run(|| stop.load(Ordering::Relaxed));
        })
    });
    // Calm for 6 s: past the guard's 5 s warm-up (no estimates from the start-up allocation).
    std::thread::sleep(Duration::from_millis(6000));
    assert!(
        !ckpt.exists(),
        "checkpoint before any danger: the start-up allocation set the guard off"
    );
    let mut hog = Command::new("python3")
        .args(["-c", HOG_200MBPS])
        .arg(&cg.dir)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut ckpt_at, mut killed_at) = (None, None);
    while Instant::now() < deadline && killed_at.is_none() {
        if ckpt_at.is_none() && ckpt.exists() {
            ckpt_at = Some(Instant::now());
        }
        if let Some(st) = trainer.try_wait().unwrap() {
            // Directly: killed by SIGKILL. Under `oomguard run`: exit status 128 + 9.
            let by_kill = st.signal() == Some(9) || (via_cli && st.code() == Some(137));
            assert!(by_kill, "trainer ended otherwise: {st:?}");
            killed_at = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = hog.kill();
    let _ = hog.wait();
    let _ = trainer.kill();
    let _ = trainer.wait();
    if let Some(g) = guard {
        g.join().unwrap();
    }
    let killed_at = killed_at.expect("the kernel did not kill the trainer within 30 s");
    let ckpt_at = ckpt_at.expect("no checkpoint before the kill");
    Some(killed_at.duration_since(ckpt_at).as_secs_f64())
}

/// `OOMGUARD_GUARD_RUNS` runs (default 2); every lead must be at least 1 s.
fn leads_at_least_a_second(label: &str, via_cli: bool) {
    let runs = std::env::var("OOMGUARD_GUARD_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let mut leads = Vec::new();
    for i in 0..runs {
        let Some(lead) = checkpoint_lead(
            &format!("{}{i}", if via_cli { "cli" } else { "guard" }),
            via_cli,
        ) else {
            return;
        };
        eprintln!("{label}, run {i}: checkpoint {lead:.2} s before the kill");
        leads.push(lead);
    }
    assert!(leads.iter().all(|&l| l >= 1.0), "leads {leads:?}");
}

#[test]
fn checkpoint_lands_at_least_a_second_before_the_memcg_kill() {
    leads_at_least_a_second("guard", false);
}

#[test]
fn oomguard_run_checkpoint_signal_lands_before_the_memcg_kill() {
    leads_at_least_a_second("oomguard run", true);
}

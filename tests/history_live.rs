//! `history` finds real kills: memory-cgroup OOM kills made here (cgroup v1) read back
//! from /dev/kmsg, and systemd-oomd/kernel kills written into a real journal file with
//! systemd-journal-remote (facts.md).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Hog, MemcgV1, oomguard};
use serde_json::Value;

fn json(out: std::process::Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "oomguard failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("JSON")
        .as_array()
        .expect("array")
        .clone()
}

#[test]
fn real_memcg_kills_are_found_in_kmsg() {
    if std::fs::File::open("/dev/kmsg").is_err() {
        eprintln!("SKIP: /dev/kmsg is not readable here; this test needs it");
        return;
    }
    let cg = match MemcgV1::create("history", 96 << 20) {
        Ok(cg) => cg,
        Err(why) => {
            eprintln!("SKIP: {why}");
            return;
        }
    };
    let since = jiff::Timestamp::now();
    // Two processes; the bigger one (and +adj) grows past the limit and is killed.
    let _small = Hog::start(&cg, 500, 16, None);
    let mut hog = Hog::start(&cg, 800, 20, Some(200));
    hog.grow();
    let deadline = Instant::now() + Duration::from_secs(20);
    while hog.killed_by().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(hog.killed_by(), Some(9), "the hog was not OOM-killed");
    let pid = hog.pid() as u64;
    let name = cg.dir.file_name().unwrap().to_str().unwrap().to_owned();

    // --since bounds the search to this test's kills; --no-journal keeps it to kmsg.
    let events = json(
        oomguard()
            .args(["history", "--json", "--no-journal", "--since"])
            .arg(since.to_string())
            .output()
            .unwrap(),
    );
    let ours: Vec<&Value> = events
        .iter()
        .filter(|e| e["cgroup"].as_str().is_some_and(|c| c.ends_with(&name)))
        .collect();
    assert_eq!(ours.len(), 1, "exactly one kill in our cgroup: {events:#?}");
    let e = ours[0];
    assert_eq!(e["killer"], "kernel");
    assert_eq!(e["constraint"], "memcg");
    assert_eq!(e["pid"].as_u64(), Some(pid));
    assert_eq!(e["process"], "python3");
    assert_eq!(e["oom_score_adj"].as_i64(), Some(800));
    assert!(e["oom_memcg"].as_str().unwrap().ends_with(&name));
    assert!(e["memcg_limit_kib"].as_u64() == Some(96 * 1024), "{e:#}");
    assert!(e["lines"].as_array().unwrap().len() >= 3, "{e:#}");
    for key in [
        "time",
        "killer",
        "constraint",
        "pid",
        "process",
        "cgroup",
        "reason",
        "lines",
    ] {
        assert!(e.get(key).is_some(), "missing {key}");
    }
    // The event's time is this run's, to the second.
    let t: jiff::Timestamp = e["time"].as_str().unwrap().parse().unwrap();
    let age = jiff::Timestamp::now().as_second() - t.as_second();
    assert!((-3..60).contains(&age), "time {t} is {age} s old");

    // `why PID` narrows to that pid, in text.
    let out = oomguard()
        .args(["why", &pid.to_string(), "--no-journal"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains(&format!("python3 (pid {pid})")), "{text}");
    assert!(text.contains("hit its limit"), "{text}");
    assert!(text.contains("1 kill(s): 1 by kernel"), "{text}");
}

fn journal_remote() -> Option<&'static str> {
    [
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
}

/// One entry in journal export format.
fn export(t_us: u64, fields: &[(&str, &str)]) -> String {
    let mut s = format!(
        "__REALTIME_TIMESTAMP={t_us}\n__MONOTONIC_TIMESTAMP={t_us}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n"
    );
    for (k, v) in fields {
        s.push_str(&format!("{k}={v}\n"));
    }
    s.push('\n');
    s
}

#[test]
fn kills_in_a_real_journal_file() {
    let Some(remote) = journal_remote() else {
        eprintln!(
            "SKIP: systemd-journal-remote is not installed (apt install systemd-journal-remote)"
        );
        return;
    };
    if Command::new("journalctl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: journalctl is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_790_000_000_000_000u64; // 2026-09-21
    let mut ex = String::new();
    ex += &export(
        t0,
        &[
            ("_TRANSPORT", "kernel"),
            ("SYSLOG_IDENTIFIER", "kernel"),
            (
                "MESSAGE",
                "python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
            ),
        ],
    );
    ex += &export(
        t0 + 1000,
        &[
            ("_TRANSPORT", "kernel"),
            ("SYSLOG_IDENTIFIER", "kernel"),
            (
                "MESSAGE",
                "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice/user-1000.slice/session-2.scope,task=python3,pid=4242,uid=1000",
            ),
        ],
    );
    ex += &export(
        t0 + 2000,
        &[
            ("_TRANSPORT", "kernel"),
            ("SYSLOG_IDENTIFIER", "kernel"),
            (
                "MESSAGE",
                "Out of memory: Killed process 4242 (python3) total-vm:9000000kB, anon-rss:8000000kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:16000kB oom_score_adj:0",
            ),
        ],
    );
    ex += &export(
        t0 + 5_000_000,
        &[
            ("_TRANSPORT", "journal"),
            ("SYSLOG_IDENTIFIER", "systemd-oomd"),
            (
                "MESSAGE",
                "Killed /user.slice/user-1000.slice/user@1000.service/app.slice/app-org.gnome.Terminal.slice/vte-spawn-1.scope due to memory pressure for /user.slice/user-1000.slice/user@1000.service being 57.97% > 50.00% for > 20s with reclaim activity",
            ),
        ],
    );
    ex += &export(
        t0 + 5_001_000,
        &[
            ("_TRANSPORT", "journal"),
            ("SYSLOG_IDENTIFIER", "systemd"),
            ("MESSAGE_ID", "d989611b15e44c9dbf31e3c81256e4ed"),
            (
                "MESSAGE",
                "vte-spawn-1.scope: systemd-oomd killed 3 process(es) in this unit.",
            ),
        ],
    );
    ex += &export(
        t0 + 6_000_000,
        &[
            ("_TRANSPORT", "journal"),
            ("SYSLOG_IDENTIFIER", "systemd"),
            ("MESSAGE", "Started something unrelated."),
        ],
    );
    let exp = dir.path().join("in.export");
    std::fs::write(&exp, ex).unwrap();
    let jf = dir.path().join("out.journal");
    let st = Command::new(remote)
        .arg("-o")
        .arg(&jf)
        .arg(&exp)
        .output()
        .unwrap();
    assert!(
        jf.exists(),
        "journal-remote made no file: {}",
        String::from_utf8_lossy(&st.stderr)
    );

    let events = json(
        oomguard()
            .args(["history", "--json", "--file"])
            .arg(&jf)
            .output()
            .unwrap(),
    );
    assert_eq!(events.len(), 2, "{events:#?}");
    let k = &events[0];
    assert_eq!(k["killer"], "kernel");
    assert_eq!(k["constraint"], "global");
    assert_eq!(k["pid"], 4242);
    assert_eq!(k["cgroup"], "/user.slice/user-1000.slice/session-2.scope");
    assert_eq!(k["lines"].as_array().unwrap().len(), 3);
    let t: jiff::Timestamp = k["time"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        t.as_microsecond() as u64,
        t0 + 1000,
        "the time of the kill (summary) line"
    );
    let o = &events[1];
    assert_eq!(o["killer"], "systemd-oomd");
    assert_eq!(o["constraint"], "pressure");
    assert_eq!(o["processes_killed"], 3);
    assert_eq!(
        o["reason"],
        "pressure on user@1000.service was 57.97% > 50% for 20 s"
    );
    assert_eq!(o["lines"].as_array().unwrap().len(), 2);

    // --killer and --since/--until filter.
    let only = json(
        oomguard()
            .args(["history", "--json", "--killer", "oomd", "--file"])
            .arg(&jf)
            .output()
            .unwrap(),
    );
    assert_eq!(only.len(), 1);
    let late = json(
        oomguard()
            .args([
                "history",
                "--json",
                "--since",
                "2026-09-21T14:13:23Z",
                "--file",
            ])
            .arg(&jf)
            .output()
            .unwrap(),
    );
    assert_eq!(late.len(), 1, "{late:#?}");
    assert_eq!(late[0]["killer"], "systemd-oomd");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let out = oomguard()
        .args([
            "history",
            "--since",
            "next blue moon",
            "--file",
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the time"), "{err}");
    let out = oomguard()
        .args(["history", "--killer", "zombie", "--file", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown killer"));
    let out = oomguard()
        .args(["history", "--file", "/nonexistent/log"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/log"));
}

#[test]
fn ps_and_why_name_the_kill_that_ended_a_job() {
    if std::fs::File::open("/dev/kmsg").is_err() {
        eprintln!("SKIP: /dev/kmsg is not readable here; this test needs it");
        return;
    }
    let cg = match MemcgV1::create("psjob", 64 << 20) {
        Ok(cg) => cg,
        Err(why) => {
            eprintln!("SKIP: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // The job joins the limited cgroup itself (oomguard's front stays outside), then grows
    // past the limit: the kernel kills it.
    let job = format!(
        "import os, time\nopen('{}/cgroup.procs', 'w').write(str(os.getpid()))\nopen('/proc/self/oom_score_adj', 'w').write('500')\nheld = []\nwhile True:\n    held.append(b'x' * (8 << 20)); time.sleep(0.01)\n",
        cg.dir.display()
    );
    let out = oomguard()
        .args([
            "run",
            "--allow-unprotected",
            "--no-notify",
            "--adj",
            "0",
            "--name",
            "grower",
            "--",
            "python3",
            "-c",
            &job,
        ])
        .env("OOMGUARD_STATE_DIR", &state)
        .env("OOMGUARD_SOCKET", dir.path().join("no-daemon.sock"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let ps = oomguard()
        .args(["ps", "--json"])
        .env("OOMGUARD_STATE_DIR", &state)
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&ps.stdout).unwrap();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["name"], "grower");
    assert_eq!(row["killed_by"]["killer"], "kernel", "{row:#}");
    assert!(
        row["killed_by"]["reason"]
            .as_str()
            .unwrap()
            .contains("hit its limit")
    );
    // Remembered in the record: the text view says it without searching again.
    let text = oomguard()
        .arg("ps")
        .env("OOMGUARD_STATE_DIR", &state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("oom-kill"), "{text}");
    assert!(text.contains("killed by kernel at 20"), "{text}");

    let why = oomguard()
        .args(["why", "grower", "--no-journal", "--json"])
        .env("OOMGUARD_STATE_DIR", &state)
        .output()
        .unwrap();
    let ev = json(why);
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0]["job"], row["id"]);
    assert_eq!(ev[0]["pid"], row["pid"]);
}

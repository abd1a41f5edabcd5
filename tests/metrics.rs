//! Metrics: valid for promtool, and scraped by a real Prometheus on localhost.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oomguard::guard::metrics::{Metrics, serve};
use oomguard::model::risk::{self, Level, Thresholds};

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn sample_metrics() -> Arc<Metrics> {
    let m = Arc::new(Metrics::new());
    m.job_started(
        "a1b2",
        "train",
        &[("kernel", true), ("systemd-oomd", false)],
    );
    let th = Thresholds::default();
    let threats = [
        risk::memcg("/job", 500 << 20, 800 << 20, Some(200e6), &th).outlook(),
        risk::global(10 << 30, 24 << 30, None, &th).outlook(),
    ];
    m.job_sample("a1b2", 470 << 20, &threats, Level::Danger);
    m.kills_seen("kernel", 3);
    m
}

#[test]
fn exposition_has_every_series_and_passes_promtool() {
    let m = sample_metrics();
    let addr = serve("127.0.0.1:0", m).unwrap().to_string();
    let body = get(&addr, "/metrics");
    for s in [
        "oomguard_job_memory_bytes{job_id=\"a1b2\",name=\"train\"} 492830720",
        "oomguard_job_risk_level{job_id=\"a1b2\",name=\"train\"} 2",
        "oomguard_job_seconds_to_act_estimate{job_id=\"a1b2\",killer=\"kernel\"}",
        "oomguard_job_layer_applied{job_id=\"a1b2\",layer=\"systemd-oomd\"} 0",
        "oomguard_kills_seen{killer=\"kernel\"} 3",
        "oomguard_daemon_resident_bytes",
    ] {
        assert!(body.contains(s), "missing {s:?} in\n{body}");
    }
    assert!(get(&addr, "/other").contains("serves /metrics"));
    let Ok(mut p) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!(
            "SKIP: promtool not installed (apt-get install prometheus): exposition not linted"
        );
        return;
    };
    p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_real_prometheus_scrapes_the_jobs_series() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: prometheus not installed (apt-get install prometheus): no real scrape");
        return;
    }
    let target = serve("127.0.0.1:0", sample_metrics()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: oomguard\n    static_configs:\n      - targets: ['{target}']\n"),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let web = format!("127.0.0.1:{port}");
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let found = loop {
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
        if TcpStream::connect(&web).is_err() {
            continue;
        }
        last = get(&web, "/api/v1/query?query=oomguard_job_memory_bytes");
        if last.contains("\"job\":\"oomguard\"")
            && last.contains("\"job_id\":\"a1b2\"")
            && last.contains("492830720")
        {
            break true;
        }
    };
    let _ = prom.kill();
    let _ = prom.wait();
    assert!(
        found,
        "Prometheus never returned the job's series; last answer: {last}"
    );
}

/// End to end: a job shielded through the daemon shows up in the daemon's metrics.
#[test]
fn daemon_exports_the_jobs_it_guards() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("oomguard.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let bin = env!("CARGO_BIN_EXE_oomguard");
    let mut daemon = Command::new(bin)
        .args(["daemon", "--metrics", &addr, "--no-prekill"])
        .env("OOMGUARD_SOCKET", &sock)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(sock.exists() && TcpStream::connect(&addr).is_ok()) {
        assert!(Instant::now() < deadline, "daemon did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A user's run goes through the daemon (root would shield locally): drop to nobody.
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin])
        .args([
            "run", "--detach", "--adj", "0", "--name", "metered", "--", "sleep", "30",
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
    let mut body = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        body = get(&addr, "/metrics");
        if body.contains(&format!("oomguard_job_memory_bytes{{job_id=\"{id}\"")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new(bin)
        .args(["stop", &id])
        .env("OOMGUARD_STATE_DIR", &state)
        .output();
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        body.contains(&format!("oomguard_job_memory_bytes{{job_id=\"{id}\"")),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "oomguard_job_layer_applied{{job_id=\"{id}\",layer=\"kernel\"}} 1"
        )),
        "{body}"
    );
}

/// The daemon counts OOM kills as the kernel logs them (`kills_seen`, by killer).
#[test]
fn daemon_counts_the_kills_it_sees() {
    if std::fs::File::open("/dev/kmsg").is_err() {
        eprintln!("SKIP: /dev/kmsg is not readable here; this test needs it");
        return;
    }
    let cg = match common::MemcgV1::create("killcount", 64 << 20) {
        Ok(cg) => cg,
        Err(why) => {
            eprintln!("SKIP: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_oomguard"))
        .args(["daemon", "--metrics", &addr, "--no-prekill"])
        .env("OOMGUARD_SOCKET", dir.path().join("s.sock"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "daemon did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let kernel = |body: &str| -> Option<i64> {
        body.lines()
            .find(|l| l.starts_with("oomguard_kills_seen{killer=\"kernel\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = kernel(&get(&addr, "/metrics"));
    let mut hog = common::Hog::start(&cg, 800, 10, Some(200));
    hog.grow();
    let deadline = Instant::now() + Duration::from_secs(15);
    while hog.killed_by().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut after = before;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        after = kernel(&get(&addr, "/metrics"));
        if after > before {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(hog.killed_by(), Some(9), "the hog was not OOM-killed");
    assert_eq!(before, Some(0), "the series exists from the start, at 0");
    assert!(
        after >= Some(1),
        "kills_seen did not count the kill: {after:?}"
    );
}

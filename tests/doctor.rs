//! `oomguard doctor`: each killer's detection on fake trees (proc, cgroupfs, /etc), and the
//! real machine.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn oomguard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_oomguard"))
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

fn proc_of(root: &Path, pid: u32, argv: &[&str]) {
    write(
        &root.join(format!("{pid}/cmdline")),
        &(argv.join("\0") + "\0"),
    );
}

/// A machine with every killer armed: strict overcommit, swap, systemd-oomd with oomd.conf
/// and a drop-in, earlyoom with --prefer, nohang with a config, cgroup v2 with memory.
fn armed_tree(d: &Path) {
    let proc = d.join("proc");
    write(&proc.join("sys/vm/overcommit_memory"), "2\n");
    write(&proc.join("sys/vm/overcommit_ratio"), "80\n");
    write(&proc.join("sys/vm/panic_on_oom"), "0\n");
    write(&proc.join("sys/vm/oom_kill_allocating_task"), "0\n");
    write(
        &proc.join("meminfo"),
        "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\nSwapTotal:       2000000 kB\nSwapFree:        1500000 kB\n",
    );
    proc_of(&proc, 300, &["/lib/systemd/systemd-oomd"]);
    proc_of(
        &proc,
        301,
        &[
            "/usr/bin/earlyoom",
            "-m",
            "5",
            "-s",
            "50",
            "--prefer",
            "^python3$",
        ],
    );
    proc_of(
        &proc,
        302,
        &[
            "/usr/bin/python3",
            "/usr/sbin/nohang",
            "--config",
            "/etc/nohang/nohang-desktop.conf",
        ],
    );
    write(
        &d.join("etc/etc/systemd/oomd.conf"),
        "[OOM]\n#SwapUsedLimit=90%\nDefaultMemoryPressureDurationSec=20s\n",
    );
    write(
        &d.join("etc/usr/lib/systemd/oomd.conf.d/10-vendor.conf"),
        "[OOM]\nSwapUsedLimit=70%\nDefaultMemoryPressureLimit=40%\n",
    );
    write(
        &d.join("etc/etc/systemd/oomd.conf.d/20-admin.conf"),
        "[OOM]\nSwapUsedLimit=80%\n",
    );
    write(
        &d.join("cgroup/cgroup.controllers"),
        "cpuset cpu io memory pids\n",
    );
}

fn doctor(d: &Path, extra: &[&str]) -> Value {
    let out = oomguard()
        .arg("doctor")
        .arg("--json")
        .arg("--no-oomctl")
        .arg("--proc-root")
        .arg(d.join("proc"))
        .arg("--cgroup-root")
        .arg(d.join("cgroup"))
        .arg("--etc-root")
        .arg(d.join("etc"))
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_killer_is_detected_on_a_fake_tree() {
    let d = tempfile::tempdir().unwrap();
    armed_tree(d.path());
    let v = doctor(d.path(), &[]);
    for key in [
        "kernel",
        "systemd_oomd",
        "earlyoom",
        "nohang",
        "cgroup",
        "findings",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v:#}");
    }
    let k = &v["kernel"];
    assert_eq!(k["overcommit_memory"], 2);
    assert_eq!(k["overcommit_ratio"], 80);
    assert_eq!(k["panic_on_oom"], 0);
    assert_eq!(k["swap_total_kib"], 2000000);
    let o = &v["systemd_oomd"];
    assert_eq!(o["running"], true);
    assert_eq!(o["pid"], 300);
    // Later files win: the admin's 80% over the vendor's 70%; the vendor's 40% limit.
    assert_eq!(o["swap_used_limit_pct"], 80.0);
    assert_eq!(o["default_pressure_limit_pct"], 40.0);
    assert_eq!(o["default_pressure_duration_s"], 20.0);
    assert_eq!(v["earlyoom"]["running"], true);
    assert_eq!(v["earlyoom"]["pid"], 301);
    assert_eq!(v["earlyoom"]["args"][1], "5");
    assert_eq!(v["nohang"]["running"], true);
    assert_eq!(v["nohang"]["config"], "/etc/nohang/nohang-desktop.conf");
    assert_eq!(v["cgroup"]["version"], "v2");
    assert_eq!(v["cgroup"]["memory_controller"], true);
    let f = v["findings"].as_array().unwrap();
    let find = |killer: &str, needle: &str| {
        f.iter()
            .find(|x| x["killer"] == killer && x["detail"].as_str().unwrap().contains(needle))
    };
    let eo = find("earlyoom", "available memory <= 5%").expect("earlyoom finding");
    assert!(
        eo["detail"]
            .as_str()
            .unwrap()
            .contains("--prefer '^python3$' adds 300")
    );
    assert_eq!(eo["status"], "armed");
    assert!(find("kernel", "overcommit_memory = 2 (strict, ratio 80%)").is_some());
    assert!(find("systemd-oomd", "ignores oom_score_adj").is_some());
    assert!(find("systemd-oomd", "oomctl could not be run").is_some());
    assert!(find("nohang", "nohang-desktop.conf").is_some());
    for x in f {
        assert!(!x["remedy"].as_str().unwrap().is_empty(), "{x}");
    }
}

#[test]
fn a_quiet_machine_has_nothing_armed_but_the_kernel() {
    let d = tempfile::tempdir().unwrap();
    let proc = d.path().join("proc");
    write(&proc.join("sys/vm/overcommit_memory"), "0\n");
    write(&proc.join("sys/vm/panic_on_oom"), "2\n");
    write(
        &proc.join("meminfo"),
        "MemTotal: 1000 kB\nMemAvailable: 500 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
    );
    proc_of(&proc, 5, &["/usr/bin/sleep", "9"]);
    // cgroup v1 with the memory controller.
    write(
        &d.path().join("cgroup/memory/memory.limit_in_bytes"),
        "9223372036854771712\n",
    );
    std::fs::create_dir_all(d.path().join("etc")).unwrap();
    let v = doctor(d.path(), &[]);
    assert_eq!(v["systemd_oomd"]["running"], false);
    assert_eq!(v["earlyoom"]["running"], false);
    assert_eq!(v["nohang"]["running"], false);
    assert_eq!(
        v["systemd_oomd"]["swap_used_limit_pct"], 90.0,
        "compiled-in default"
    );
    assert_eq!(v["cgroup"]["version"], "v1");
    let f = v["findings"].as_array().unwrap();
    assert!(f.iter().any(|x| {
        x["detail"]
            .as_str()
            .unwrap()
            .contains("panics on every OOM")
    }));
    assert!(
        f.iter()
            .any(|x| x["detail"].as_str().unwrap().contains("no swap"))
    );
}

#[test]
fn the_real_machine_and_one_of_its_processes() {
    let v: Value = serde_json::from_slice(
        &oomguard()
            .args(["doctor", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let real: u8 = std::fs::read_to_string("/proc/sys/vm/overcommit_memory")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(v["kernel"]["overcommit_memory"], real);

    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    let out = oomguard()
        .args(["doctor", "--json", &pid.to_string()])
        .output()
        .unwrap();
    let text = oomguard()
        .args(["doctor", &pid.to_string()])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pid"], pid);
    assert_eq!(v["process"], "sleep");
    let threats = v["threats"].as_array().unwrap();
    assert!(threats.iter().any(|t| t["killer"] == "kernel"), "{v:#}");
    let layers = v["layers"].as_array().unwrap();
    let names: Vec<&str> = layers
        .iter()
        .map(|l| l["layer"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kernel", "systemd-oomd", "earlyoom", "nohang"]);
    assert_eq!(layers[0]["state"], "failed", "sleep runs at adj 0");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("who could kill it"), "{text}");
    assert!(text.contains(&format!("oomguard protect {pid}")), "{text}");
}

#[test]
fn a_missing_pid_is_a_clear_error() {
    let out = oomguard().args(["doctor", "999999999"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no process 999999999"), "{err}");
}

//! `oomguard doctor` against fake roots (a `/proc`, a cgroupfs, an `/etc`... and a `PATH` with
//! fake `oomctl`/`systemctl`), one test per killer's detection, and once against this machine.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A fake machine: `proc/`, `cgroup/`, `root/` (for /etc, /run, /usr/lib) and `bin/` (the
/// only directory on the command's PATH).
struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        let f = Fake {
            dir: tempfile::tempdir().unwrap(),
        };
        for d in ["proc/sys/vm", "cgroup", "root", "bin"] {
            std::fs::create_dir_all(f.path(d)).unwrap();
        }
        std::fs::copy(format!("{FIX}/proc/meminfo"), f.path("proc/meminfo")).unwrap();
        for (k, v) in [
            ("overcommit_memory", "0"),
            ("overcommit_ratio", "50"),
            ("panic_on_oom", "0"),
            ("oom_kill_allocating_task", "0"),
        ] {
            f.write(&format!("proc/sys/vm/{k}"), v);
        }
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A process: status (from the python3 fixture, renamed), adj, cgroup file and cmdline.
    fn process(&self, pid: i32, name: &str, argv: &[&str], adj: i32, cgroup: &str) {
        let status = std::fs::read_to_string(format!("{FIX}/proc/4402/status"))
            .unwrap()
            .replace("Name:\tpython3", &format!("Name:\t{name}"));
        self.write(&format!("proc/{pid}/status"), &status);
        self.write(&format!("proc/{pid}/oom_score_adj"), &format!("{adj}\n"));
        self.write(&format!("proc/{pid}/cgroup"), cgroup);
        let mut cmdline = argv.join("\0");
        cmdline.push('\0');
        self.write(&format!("proc/{pid}/cmdline"), &cmdline);
    }

    /// A fake tool on the command's PATH that prints a fixture file.
    fn tool(&self, name: &str, fixture: &str) {
        let p = self.path(&format!("bin/{name}"));
        std::fs::write(
            &p,
            format!("#!/bin/sh\nexec /bin/cat '{FIX}/doctor/{fixture}'\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = common::oomguard();
        c.arg("doctor")
            .args(args)
            .arg("--proc-root")
            .arg(self.path("proc"))
            .arg("--cgroup-root")
            .arg(self.path("cgroup"))
            .arg("--root")
            .arg(self.path("root"))
            .env("PATH", self.path("bin"))
            .env_remove("OOMGUARD_PROC_ROOT")
            .env_remove("OOMGUARD_CGROUP_ROOT");
        c
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cmd(&a).output().unwrap();
        assert!(
            out.status.success(),
            "doctor failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn text(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "doctor failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn finding<'a>(v: &'a Value, killer: &str) -> &'a Value {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["killer"] == killer)
        .unwrap_or_else(|| panic!("no finding for {killer}: {v:#}"))
}

fn layer<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == name)
        .unwrap_or_else(|| panic!("no layer {name}: {v:#}"))
}

fn threat<'a>(v: &'a Value, killer: &str) -> Option<&'a Value> {
    v["threats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["killer"] == killer)
}

const V2_TERMINAL: &str =
    "/user.slice/user-1000.slice/user@1000.service/app.slice/vte-spawn-1.scope";

#[test]
fn kernel_settings_from_a_fake_proc() {
    let f = Fake::new();
    f.write("proc/sys/vm/overcommit_memory", "2\n");
    f.write("proc/sys/vm/overcommit_ratio", "80\n");
    f.write("proc/sys/vm/panic_on_oom", "1\n");
    f.write("proc/sys/vm/oom_kill_allocating_task", "1\n");
    let v = f.json(&[]);
    let k = &v["kernel"];
    assert_eq!(k["overcommit_memory"], 2);
    assert_eq!(k["overcommit_mode"], "never");
    assert_eq!(k["overcommit_ratio"], 80);
    assert_eq!(k["panic_on_oom"], 1);
    assert_eq!(k["oom_kill_allocating_task"], 1);
    assert_eq!(k["mem_total_kib"], 24684084);
    assert_eq!(k["swap_total_kib"], 0);
    let fk = finding(&v, "kernel");
    assert_eq!(fk["status"], "armed");
    let d = fk["detail"].as_str().unwrap();
    assert!(
        d.contains("panics the machine") && d.contains("ENOMEM") && d.contains("allocates"),
        "{d}"
    );
    assert!(fk["remedy"].as_str().unwrap().contains("vm.panic_on_oom=0"));
    // No process given: no per-process keys.
    assert!(v.get("pid").is_none() && v.get("threats").is_none() && v.get("layers").is_none());
    // The text report has a section per killer, a status word and a remedy each.
    let t = f.text(&[]);
    for s in [
        "Kernel OOM killer (global): armed",
        "systemd-oomd: not running",
        "earlyoom: not running",
        "nohang: not running",
        "Kernel OOM killer (memory cgroups): not applicable",
    ] {
        assert!(t.contains(s), "missing {s:?} in:\n{t}");
    }
    assert_eq!(t.matches("  → ").count(), 5, "{t}");
}

#[test]
fn systemd_oomd_conf_dropins_oomctl_and_a_fake_process() {
    let f = Fake::new();
    f.process(
        300,
        "systemd-oomd",
        &["/lib/systemd/systemd-oomd"],
        -900,
        "0::/system.slice/systemd-oomd.service\n",
    );
    f.write("root/run/systemd/system/.keep", "");
    f.write(
        "root/etc/systemd/oomd.conf",
        "[OOM]\n#SwapUsedLimit=90%\nSwapUsedLimit=80%\n",
    );
    f.write(
        "root/usr/lib/systemd/oomd.conf.d/10-defaults.conf",
        "[OOM]\nDefaultMemoryPressureLimit=40%\nDefaultMemoryPressureDurationSec=1min\n",
    );
    // Same name in /etc masks the one in /usr/lib; a later name in /run applies last.
    f.write(
        "root/etc/systemd/oomd.conf.d/10-defaults.conf",
        "[OOM]\nDefaultMemoryPressureLimit=70%\n",
    );
    f.write(
        "root/run/systemd/oomd.conf.d/50-lab.conf",
        "[OOM]\nDefaultMemoryPressureDurationSec=20s\n",
    );
    // A v2 tree: the user manager at 12 % full pressure, the terminal job inside it.
    f.write("cgroup/cgroup.controllers", "cpu io memory pids\n");
    let svc = "cgroup/user.slice/user-1000.slice/user@1000.service";
    f.write(
        &format!("{svc}/memory.pressure"),
        "some avg10=20.00 avg60=5.00 avg300=1.00 total=100\nfull avg10=12.00 avg60=3.00 avg300=0.50 total=50\n",
    );
    f.write(&format!("{svc}/memory.max"), "max\n");
    f.write(
        &format!("{svc}/app.slice/vte-spawn-1.scope/memory.max"),
        "max\n",
    );
    f.write(
        &format!("{svc}/app.slice/vte-spawn-1.scope/memory.current"),
        "1000\n",
    );
    f.process(
        4402,
        "python3",
        &["python3", "train.py"],
        -1000,
        &format!("0::{V2_TERMINAL}\n"),
    );

    // Without oomctl (nor systemctl) on PATH: the settings come from the files alone.
    let v = f.json(&["4402"]);
    let o = &v["systemd_oomd"];
    assert_eq!(o["running"], true);
    assert_eq!(o["pid"], 300);
    assert_eq!(o["systemd"], true);
    assert_eq!(o["config"]["swap_used_limit_pct"], 80.0);
    assert_eq!(o["config"]["default_memory_pressure_limit_pct"], 70.0);
    assert_eq!(o["config"]["default_memory_pressure_duration_s"], 20.0);
    assert_eq!(o["config"]["files"].as_array().unwrap().len(), 3, "{o:#}");
    assert_eq!(o["rules_from"], "none");

    // With oomctl: its rules, and the values the running daemon reports win over the files.
    f.tool("oomctl", "oomctl-dump.txt");
    let v = f.json(&["4402"]);
    let o = &v["systemd_oomd"];
    assert_eq!(o["rules_from"], "oomctl");
    assert_eq!(o["config"]["swap_used_limit_pct"], 90.0);
    assert_eq!(o["config"]["default_memory_pressure_limit_pct"], 60.0);
    assert_eq!(o["config"]["files"].as_array().unwrap().len(), 3, "{o:#}");
    let user = o["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["unit"] == "user@1000.service")
        .expect("the user@.service rule");
    assert_eq!(user["kind"], "memory_pressure");
    assert_eq!(user["limit_pct"], 50.0);
    assert_eq!(
        user["pressure_avg10"], 12.0,
        "read fresh from memory.pressure"
    );
    // The job is covered, adj -1000 does not help against systemd-oomd.
    let fo = finding(&v, "systemd-oomd");
    assert_eq!(fo["status"], "armed");
    assert!(
        fo["remedy"]
            .as_str()
            .unwrap()
            .contains("oomguard protect 4402"),
        "{fo}"
    );
    assert_eq!(layer(&v, "systemd-oomd")["state"], "failed");
    assert_eq!(layer(&v, "kernel")["state"], "applied");
    let t = threat(&v, "systemd-oomd").expect("an oomd threat");
    assert!(
        t["detail"]
            .as_str()
            .unwrap()
            .contains("user@1000.service is 12.00% of its 50% limit"),
        "{t}"
    );
    assert_eq!(t["level"], "ok");

    // The same job moved into an oomguard scope beside the user manager: omitted.
    let scope = "/user.slice/user-1000.slice/oomguard-ab12.scope";
    f.process(
        4402,
        "python3",
        &["python3", "train.py"],
        -1000,
        &format!("0::{scope}\n"),
    );
    let v = f.json(&["4402"]);
    assert_eq!(
        finding(&v, "systemd-oomd")["status"],
        "not_applicable",
        "only the swap rule covers it and there is no swap"
    );
    assert_eq!(v["process"]["oomguard_scope"], "oomguard-ab12.scope");
    let text = f.text(&["4402"]);
    assert!(text.contains("systemd-oomd: not applicable"), "{text}");
    assert!(text.contains("never fires: no swap"), "{text}");
}

#[test]
fn systemd_oomd_rules_from_systemctl_show_when_oomctl_is_missing() {
    let f = Fake::new();
    f.process(
        300,
        "systemd-oomd",
        &["/usr/lib/systemd/systemd-oomd"],
        0,
        "0::/\n",
    );
    f.tool("systemctl", "systemctl-show.txt");
    f.process(
        4402,
        "python3",
        &["python3"],
        0,
        &format!("0::{V2_TERMINAL}\n"),
    );
    let v = f.json(&["4402"]);
    let o = &v["systemd_oomd"];
    assert_eq!(o["rules_from"], "systemctl", "{o:#}");
    let rules = o["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{o:#}");
    let user = rules
        .iter()
        .find(|r| r["kind"] == "memory_pressure")
        .unwrap();
    assert_eq!(user["unit"], "user@1000.service");
    assert_eq!(user["limit_pct"], 50.0);
    assert_eq!(
        user["duration_s"], 30.0,
        "compiled default, no config files"
    );
    let fo = finding(&v, "systemd-oomd");
    assert_eq!(fo["status"], "armed");
    assert!(
        fo["detail"]
            .as_str()
            .unwrap()
            .contains("user@1000.service memory pressure above 50% for 30 s"),
        "{fo}"
    );
}

#[test]
fn systemd_oomd_not_running_and_rules_unreadable() {
    let f = Fake::new();
    let v = f.json(&[]);
    assert_eq!(v["systemd_oomd"]["running"], false);
    assert_eq!(finding(&v, "systemd-oomd")["status"], "not_running");
    // Running, but neither oomctl nor systemctl answers: say so.
    f.process(
        300,
        "systemd-oomd",
        &["/lib/systemd/systemd-oomd"],
        0,
        "0::/\n",
    );
    let v = f.json(&[]);
    let o = &v["systemd_oomd"];
    assert_eq!(o["running"], true);
    assert_eq!(o["rules_from"], "none");
    assert!(
        o["error"].as_str().unwrap().contains("cannot run oomctl"),
        "{o:#}"
    );
    assert!(
        finding(&v, "systemd-oomd")["detail"]
            .as_str()
            .unwrap()
            .contains("could not be read")
    );
}

#[test]
fn earlyoom_from_its_command_line() {
    let f = Fake::new();
    f.process(
        812,
        "earlyoom",
        &[
            "/usr/bin/earlyoom",
            "-m",
            "10",
            "-s",
            "5",
            "--prefer",
            "python",
        ],
        -100,
        "0::/\n",
    );
    f.process(4402, "python3", &["python3", "train.py"], 0, "0::/\n");
    let v = f.json(&["4402"]);
    let e = &v["earlyoom"];
    assert_eq!(e["running"], true);
    assert_eq!(e["pid"], 812);
    assert_eq!(
        e["args"],
        serde_json::json!(["-m", "10", "-s", "5", "--prefer", "python"])
    );
    assert_eq!(e["settings"]["mem_term_pct"], 10.0);
    assert_eq!(e["settings"]["mem_kill_pct"], 5.0);
    assert_eq!(e["settings"]["swap_term_pct"], 5.0);
    assert_eq!(e["settings"]["prefer"], "python");
    let fe = finding(&v, "earlyoom");
    assert_eq!(fe["status"], "armed");
    assert!(
        fe["detail"].as_str().unwrap().contains("--prefer 'python'"),
        "{fe}"
    );
    assert!(
        fe["remedy"]
            .as_str()
            .unwrap()
            .contains("oomguard protect 4402"),
        "{fe}"
    );
    let l = layer(&v, "earlyoom");
    assert_eq!(l["state"], "failed");
    assert!(
        l["detail"]
            .as_str()
            .unwrap()
            .contains("--prefer 'python' matches"),
        "{l}"
    );
    let t = threat(&v, "earlyoom").expect("an earlyoom threat");
    assert_eq!(t["level"], "ok", "{t}");
    // Shielded at -1000, earlyoom skips it.
    f.process(4402, "python3", &["python3", "train.py"], -1000, "0::/\n");
    let v = f.json(&["4402"]);
    assert_eq!(layer(&v, "earlyoom")["state"], "applied");
    assert!(
        finding(&v, "earlyoom")["remedy"]
            .as_str()
            .unwrap()
            .starts_with("nothing")
    );
}

#[test]
fn nohang_from_its_command_line_and_config() {
    let f = Fake::new();
    f.process(
        900,
        "python3",
        &[
            "/usr/bin/python3",
            "/usr/sbin/nohang",
            "--monitor",
            "--config",
            "/etc/nohang/nohang.conf",
        ],
        0,
        "0::/\n",
    );
    f.write(
        "root/etc/nohang/nohang.conf",
        &std::fs::read_to_string(format!("{FIX}/doctor/nohang.conf")).unwrap(),
    );
    f.process(4402, "python3", &["python3", "train.py"], -500, "0::/\n");
    let v = f.json(&["4402"]);
    let n = &v["nohang"];
    assert_eq!(n["running"], true);
    assert_eq!(n["pid"], 900);
    assert_eq!(n["config_path"], "/etc/nohang/nohang.conf");
    assert_eq!(n["settings"]["soft_mem_pct"], 5.0);
    assert_eq!(n["settings"]["soft_swap_pct"], 10.0);
    assert_eq!(n["settings"]["hard_mem_pct"], 2.0);
    assert_eq!(
        n["settings"]["rules"][0],
        "@BADNESS_ADJ_RE_NAME 200 /// ^python3$"
    );
    assert_eq!(finding(&v, "nohang")["status"], "armed");
    let l = layer(&v, "nohang");
    assert_eq!(
        l["state"], "failed",
        "its rule raises python3's badness: {l}"
    );
    assert!(threat(&v, "nohang").is_some());
    // Its own pid is not mistaken for earlyoom, and without a config it says so.
    assert_eq!(v["earlyoom"]["running"], false);
    std::fs::remove_file(f.path("root/etc/nohang/nohang.conf")).unwrap();
    let v = f.json(&[]);
    assert!(v["nohang"]["settings"].is_null());
    assert!(
        finding(&v, "nohang")["detail"]
            .as_str()
            .unwrap()
            .contains("running (pid 900")
    );
}

#[test]
fn cgroup_v1_limits() {
    let f = Fake::new();
    // The captured v1 group: 300 MiB limit on /job/4f2a, unlimited /job.
    let src = Path::new(FIX).join("cgroup-v1");
    common::copy_tree(&src, &f.path("cgroup"));
    f.process(
        4402,
        "python3",
        &["python3"],
        300,
        "4:memory:/job/4f2a\n0::/\n",
    );
    let v = f.json(&["4402"]);
    let c = &v["cgroup"];
    assert_eq!(c["version"], "v1");
    let chain = c["chain"].as_array().unwrap();
    assert_eq!(chain[0]["path"], "/job/4f2a");
    assert_eq!(chain[0]["limit_bytes"], 314572800);
    assert_eq!(chain[1]["path"], "/job");
    assert_eq!(c["limiting"]["path"], "/job/4f2a");
    let fm = finding(&v, "kernel-memcg");
    assert_eq!(fm["status"], "armed");
    assert!(
        fm["detail"]
            .as_str()
            .unwrap()
            .contains("memcg /job/4f2a at"),
        "{fm}"
    );
    assert!(
        fm["remedy"]
            .as_str()
            .unwrap()
            .contains("oomguard protect 4402")
    );
    let t = threat(&v, "kernel").into_iter().chain(
        v["threats"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["subject"].as_str().unwrap().starts_with("memcg")),
    );
    assert!(
        t.count() >= 2,
        "global and memcg threats: {:#}",
        v["threats"]
    );
    let text = f.text(&["4402"]);
    assert!(text.contains("/job/4f2a: limit 300 MiB"), "{text}");
}

#[test]
fn cgroup_v2_limits() {
    let f = Fake::new();
    f.write("cgroup/cgroup.controllers", "cpu io memory pids\n");
    let scope = "cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/vte-spawn-1.scope";
    f.write(&format!("{scope}/memory.max"), "max\n");
    f.write(&format!("{scope}/memory.current"), "900000000\n");
    f.write(
        "cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/memory.max",
        "max\n",
    );
    f.write(
        "cgroup/user.slice/user-1000.slice/user@1000.service/memory.max",
        "1073741824\n",
    );
    f.write(
        "cgroup/user.slice/user-1000.slice/user@1000.service/memory.high",
        "1000000000\n",
    );
    f.write(
        "cgroup/user.slice/user-1000.slice/user@1000.service/memory.current",
        "977000000\n",
    );
    f.process(
        5000,
        "python3",
        &["python3"],
        200,
        &format!("0::{V2_TERMINAL}\n"),
    );
    let v = f.json(&["5000"]);
    let c = &v["cgroup"];
    assert_eq!(c["version"], "v2");
    assert_eq!(c["v2_memory_controller"], true);
    assert_eq!(c["chain"][0]["path"], V2_TERMINAL);
    assert_eq!(
        c["limiting"]["path"],
        "/user.slice/user-1000.slice/user@1000.service"
    );
    assert_eq!(c["limiting"]["limit_bytes"], 1073741824u64);
    assert_eq!(c["limiting"]["high_bytes"], 1000000000u64);
    let fm = finding(&v, "kernel-memcg");
    assert!(
        fm["detail"]
            .as_str()
            .unwrap()
            .contains("memcg /user.slice/user-1000.slice/user@1000.service at 91% of 1.0 GiB"),
        "{fm}"
    );
    let memcg = v["threats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["subject"].as_str().unwrap().starts_with("memcg"))
        .unwrap();
    assert_eq!(memcg["level"], "watch", "{memcg}");
    assert_eq!(v["process"]["cgroup_v2"], V2_TERMINAL);
}

#[test]
fn bad_pids_fail_with_the_cause() {
    let f = Fake::new();
    let out = f.cmd(&["4242"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no process 4242"), "{err}");
    let out = f.cmd(&["0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a process id"));
    let out = common::oomguard().args(["doctor", "abc"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "wrong usage");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'abc'"));
}

#[test]
fn help_has_an_example() {
    let out = common::oomguard()
        .args(["doctor", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let h = String::from_utf8_lossy(&out.stdout);
    assert!(
        h.contains("Examples:") && h.contains("oomguard doctor 4402"),
        "{h}"
    );
    assert!(
        !h.contains("--proc-root") && !h.contains("--root"),
        "hidden options stay hidden"
    );
}

/// This machine, as it is: `doctor` and `doctor $$ --json` (the PID of a shell).
#[test]
fn the_real_machine() {
    let out = common::oomguard().arg("doctor").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Kernel OOM killer (global): armed"), "{text}");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec_doctor() {{ '{}' doctor $$ --json; }}; exec_doctor",
            env!("CARGO_BIN_EXE_oomguard")
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in [
        "kernel",
        "systemd_oomd",
        "earlyoom",
        "nohang",
        "cgroup",
        "findings",
        "pid",
        "threats",
        "layers",
    ] {
        assert!(v.get(k).is_some(), "key {k} missing: {v:#}");
    }
    let real: i64 = std::fs::read_to_string("/proc/sys/vm/overcommit_memory")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(v["kernel"]["overcommit_memory"], real);
    for f in v["findings"].as_array().unwrap() {
        assert!(
            ["armed", "not_running", "not_applicable"].contains(&f["status"].as_str().unwrap()),
            "{f}"
        );
        assert!(!f["remedy"].as_str().unwrap().is_empty(), "{f}");
    }
    if !Path::new("/run/systemd/system").is_dir() {
        eprintln!(
            "skip: systemd is not PID 1 here, so systemd-oomd's live rules are checked only in the VM lab (tests/vm/lab/doctor.sh)"
        );
    }
}

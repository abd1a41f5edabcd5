//! The VM lab (tests/vm/run.sh) as part of the suite: a real systemd, systemd-oomd, cgroup v2 and
//! full root under qemu. It takes a few minutes, so it runs when OOMGUARD_VM_LAB=1 (as CI sets it)
//! and the tools are installed; otherwise it says loudly why it was skipped.

use std::process::Command;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn vm_lab_scenarios() {
    if std::env::var("OOMGUARD_VM_LAB").as_deref() != Ok("1") {
        eprintln!(
            "SKIP: the VM lab runs only with OOMGUARD_VM_LAB=1 (a few minutes under qemu; CI sets it)"
        );
        return;
    }
    let missing: Vec<&str> = ["qemu-system-x86_64", "mmdebstrap", "mkfs.ext4"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIP: the VM lab needs {missing:?} (apt-get install qemu-system-x86 mmdebstrap e2fsprogs)"
        );
        return;
    }
    let repo = env!("CARGO_MANIFEST_DIR");
    let script = format!("{repo}/tests/vm/run.sh");
    let mut cmd = Command::new(&script);
    // With cargo-deb (CI installs it) the lab installs the Debian package with dpkg -i and runs
    // the scenarios against the packaged daemon; without it, the test binary and the unit.
    let deb = if have("cargo-deb") {
        let b = Command::new(format!("{repo}/dist/build-deb.sh"))
            .output()
            .expect("run dist/build-deb.sh");
        assert!(
            b.status.success(),
            "building the .deb failed: {}",
            String::from_utf8_lossy(&b.stderr)
        );
        let out = String::from_utf8_lossy(&b.stdout);
        let path = out
            .lines()
            .rfind(|l| l.ends_with(".deb"))
            .expect("build-deb.sh names the .deb")
            .trim()
            .to_string();
        cmd.env("OOMGUARD_DEB", format!("{repo}/{path}"));
        true
    } else {
        eprintln!(
            "NOTE: cargo-deb is not installed: the lab runs the test binary, not the .deb \
             (cargo install cargo-deb --locked; CI does)"
        );
        cmd.env("OOMGUARD_BIN", env!("CARGO_BIN_EXE_oomguard"));
        false
    };
    let out = cmd.output().expect("run tests/vm/run.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the VM lab failed: a protected job died or a control survived"
    );
    assert!(
        text.contains("LAB RESULT oomd PASS control killed"),
        "the systemd-oomd control did not run"
    );
    if deb {
        assert!(
            text.contains("LAB RESULT deb PASS"),
            "the .deb was not installed and checked"
        );
    }
}

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
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vm/run.sh");
    let out = Command::new(script)
        .env("OOMGUARD_BIN", env!("CARGO_BIN_EXE_oomguard"))
        .output()
        .expect("run tests/vm/run.sh");
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
}

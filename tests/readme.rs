//! The README's first command, taken from the README itself, works on this machine and names the
//! shield layers.

use std::process::Command;

#[test]
fn readme_first_command_runs_the_demo_and_names_the_layers() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .nth(1)
        .expect("a sh code block in the README");
    let first = block.lines().next().unwrap();
    let cmd = first.split("   #").next().unwrap().trim();
    let rest = cmd
        .strip_prefix("cargo run --release -- ")
        .expect("the first command runs oomguard through cargo");
    // Run the same arguments with the binary this test suite built (a nested cargo would wait on
    // the build lock), fewer steps to keep it short.
    let args: Vec<&str> = rest.split_whitespace().collect();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oomguard"))
        .args(&args)
        .args(["--steps", "3", "--step-seconds", "0.05"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("OOMGUARD_STATE_DIR", dir.path())
        .env("OOMGUARD_SOCKET", dir.path().join("none.sock"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{first}\n{err}{text}");
    assert!(text.contains("training complete"), "{text}");
    for layer in ["kernel", "systemd-oomd", "earlyoom", "nohang"] {
        assert!(
            err.contains(&format!("oomguard:   {layer}")),
            "layer {layer} not named:\n{err}"
        );
    }
    assert!(
        err.contains("applied") || err.contains("NOT APPLIED"),
        "{err}"
    );
}

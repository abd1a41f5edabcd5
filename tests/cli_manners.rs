//! Packaging-facing behaviour: man page, completions, --version, --help, usage errors.

mod common;

use std::process::Command;

use common::oomguard;

fn stdout(args: &[&str]) -> String {
    let out = oomguard().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn man_page_renders_with_exit_codes() {
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("SKIP: man (man-db) is not installed; apt-get install man-db");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("oomguard.1");
    std::fs::write(&page, stdout(&["generate", "man"])).unwrap();
    let out = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "NAME",
        "oomguard",
        "EXIT STATUS",
        "128+N",
        "NO_COLOR",
        "/etc/oomguard/config.toml",
    ] {
        assert!(text.contains(needle), "man page lacks {needle:?}:\n{text}");
    }
}

#[test]
fn bash_completion_completes_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("oomguard.bash");
    std::fs::write(&script, stdout(&["generate", "bash"])).unwrap();
    let probe = format!(
        "source {}; COMP_WORDS=(oomguard to); COMP_CWORD=1; COMP_LINE='oomguard to'; COMP_POINT=11; \
         _oomguard oomguard to oomguard; echo \"${{COMPREPLY[@]}}\"; complete -p oomguard",
        script.display()
    );
    let out = Command::new("bash").arg("-c").arg(probe).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.split_whitespace().any(|w| w == "top"),
        "no `top` in completions: {text}"
    );
    assert!(
        text.contains("complete") && text.contains("oomguard"),
        "{text}"
    );
    for shell in ["zsh", "fish"] {
        assert!(stdout(&["generate", shell]).contains("oomguard"));
    }
}

#[test]
fn version_help_and_usage_errors() {
    assert!(stdout(&["--version"]).starts_with(&format!("oomguard {}", env!("CARGO_PKG_VERSION"))));
    let help = stdout(&["top", "--help"]);
    assert!(
        help.contains("Examples:") && help.contains("--cgroup"),
        "{help}"
    );
    assert!(stdout(&["explain", "--help"]).contains("Examples:"));
    // Usage errors exit 2; runtime errors exit 1 with the cause on stderr.
    let out = oomguard().args(["top", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = oomguard().args(["explain", "99999999"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("oomguard: error: no process 99999999")
    );
}

#[test]
fn no_color_and_pipes_get_plain_tables() {
    let out = oomguard()
        .args(["top", "--once", "-n", "3"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b'), "escape codes in {text:?}");
    assert!(
        text.lines().all(|l| l.chars().count() <= 100),
        "a line over 100 columns:\n{text}"
    );
}

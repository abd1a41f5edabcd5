//! Read-only probes for `oomguard doctor`: systemd-oomd's config files, the output of `oomctl`
//! and `systemctl show`, `/proc/sys/vm` settings and the `user.oomd_omit` xattr. Every path is
//! taken under a root (`/` in production, a fake tree in tests). Nothing here writes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::model::armed::{self, OomdConf};

/// Drop-in directories of `oomd.conf`, highest priority first (systemd's search path).
const DROPIN_DIRS: [&str; 4] = [
    "etc/systemd/oomd.conf.d",
    "run/systemd/oomd.conf.d",
    "usr/local/lib/systemd/oomd.conf.d",
    "usr/lib/systemd/oomd.conf.d",
];

/// Where the main `oomd.conf` may be (the first found counts).
const MAIN_FILES: [&str; 4] = [
    "etc/systemd/oomd.conf",
    "run/systemd/oomd.conf",
    "usr/local/lib/systemd/oomd.conf",
    "usr/lib/systemd/oomd.conf",
];

fn show(root: &Path, p: &Path) -> String {
    match p.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => p.display().to_string(),
    }
}

/// systemd-oomd's settings: the main file, then the drop-ins in systemd's order, over the
/// compiled defaults. Files are named as they are seen from `root`.
pub fn read_oomd_conf(root: &Path) -> OomdConf {
    let mut files: Vec<(String, String)> = Vec::new();
    if let Some(p) = MAIN_FILES
        .iter()
        .map(|f| root.join(f))
        .find(|p| p.is_file())
        && let Ok(t) = std::fs::read_to_string(&p)
    {
        files.push((show(root, &p), t));
    }
    let dirs: Vec<(String, Vec<String>)> = DROPIN_DIRS
        .iter()
        .map(|d| {
            let dir = root.join(d);
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            (dir.display().to_string(), names)
        })
        .collect();
    for (dir, name) in armed::dropin_order(&dirs) {
        let p = Path::new(dir).join(name);
        // An empty file or a link to /dev/null masks a lower one: it reads as empty.
        if let Ok(t) = std::fs::read_to_string(&p) {
            files.push((show(root, &p), t));
        }
    }
    armed::parse_oomd_conf(&files)
}

/// A number from `<proc>/sys/vm/<name>`.
pub fn vm_setting(proc: &Path, name: &str) -> Option<i64> {
    std::fs::read_to_string(proc.join("sys/vm").join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether the cgroup directory carries `user.oomd_omit=1` (ManagedOOMPreference=omit).
pub fn oomd_omit(dir: &Path) -> bool {
    let mut buf = [0u8; 16];
    rustix::fs::getxattr(dir, "user.oomd_omit", &mut buf[..])
        .is_ok_and(|n| buf[..n].starts_with(b"1"))
}

/// Run a read-only tool (found on `PATH`) and return its stdout; fails when it is missing,
/// exits non-zero or takes longer than `limit`.
pub fn run_tool(prog: &str, args: &[&str], limit: Duration) -> Result<String> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .spawn()
        .with_context(|| format!("cannot run {prog}"))?;
    let mut out = child.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{prog} did not answer within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = reader.join().unwrap_or_default();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        bail!(
            "{prog} {} failed ({status}): {}",
            args.join(" "),
            err.trim()
        );
    }
    Ok(text)
}

/// `oomctl dump`, parsed.
pub fn oomctl_dump() -> Result<armed::OomctlDump> {
    let text = run_tool("oomctl", &["dump"], Duration::from_secs(5))?;
    armed::parse_oomctl(&text).context("oomctl printed something that is not a dump")
}

/// The `...=kill` rules of every loaded unit, from `systemctl show`.
pub fn systemctl_rules(conf: &OomdConf) -> Result<Vec<armed::OomdRule>> {
    let p = format!("--property={}", armed::SHOW_PROPERTIES);
    let text = run_tool(
        "systemctl",
        &["show", "--no-pager", &p, "*.slice", "*.service", "*.scope"],
        Duration::from_secs(10),
    )?;
    Ok(armed::parse_systemctl_show(&text, conf))
}

/// The cgroup v2 directory of a path relative to the unified root.
pub fn v2_dir(v2_root: &Path, path: &str) -> PathBuf {
    v2_root.join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_from_a_fake_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        assert_eq!(read_oomd_conf(r), OomdConf::default());
        for (f, t) in [
            ("etc/systemd/oomd.conf", "[OOM]\nSwapUsedLimit=80%\n"),
            (
                "usr/lib/systemd/oomd.conf.d/10-a.conf",
                "[OOM]\nDefaultMemoryPressureLimit=40%\n",
            ),
            (
                "etc/systemd/oomd.conf.d/10-a.conf",
                "[OOM]\nDefaultMemoryPressureLimit=70%\n",
            ),
            (
                "run/systemd/oomd.conf.d/20-b.conf",
                "[OOM]\nDefaultMemoryPressureDurationSec=20s\n",
            ),
        ] {
            std::fs::create_dir_all(r.join(f).parent().unwrap()).unwrap();
            std::fs::write(r.join(f), t).unwrap();
        }
        let c = read_oomd_conf(r);
        assert_eq!(c.swap_used_limit_pct, 80.0);
        assert_eq!(
            c.default_memory_pressure_limit_pct, 70.0,
            "/etc masks /usr/lib"
        );
        assert_eq!(c.default_memory_pressure_duration_s, 20.0);
        assert_eq!(
            c.files,
            [
                "/etc/systemd/oomd.conf",
                "/etc/systemd/oomd.conf.d/10-a.conf",
                "/run/systemd/oomd.conf.d/20-b.conf"
            ]
        );
    }

    #[test]
    fn tools_fail_cleanly() {
        let e = run_tool("/nonexistent/oomctl", &[], Duration::from_secs(1)).unwrap_err();
        assert!(format!("{e:#}").contains("cannot run"));
        let e = run_tool("sh", &["-c", "echo no >&2; exit 3"], Duration::from_secs(5)).unwrap_err();
        assert!(format!("{e:#}").contains("no"), "{e:#}");
        let e = run_tool("sleep", &["5"], Duration::from_millis(200)).unwrap_err();
        assert!(format!("{e:#}").contains("did not answer"));
        assert_eq!(
            run_tool("echo", &["hi"], Duration::from_secs(5)).unwrap(),
            "hi\n"
        );
    }
}

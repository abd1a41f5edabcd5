//! What the guard does on danger: signal the job (by pidfd), run a command, notify the desktop,
//! and write a log line.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use anyhow::bail;
use rustix::process::Signal;

use crate::model::risk::Threat;

/// The actions of one job.
#[derive(Clone, Debug, Default)]
pub struct Actions {
    /// Sent to the job's main process, e.g. SIGUSR1 to make it checkpoint.
    pub checkpoint_signal: Option<Signal>,
    /// Run through `sh -c` with OOMGUARD_JOB_ID, OOMGUARD_PID, OOMGUARD_KILLER, OOMGUARD_LEVEL,
    /// OOMGUARD_ETA_S (an estimate; empty if none) and OOMGUARD_REASON in its environment.
    pub on_risk: Option<String>,
    /// Send a desktop notification through the user's session bus, when there is one.
    pub notify: bool,
    /// Where log lines go besides stderr (e.g. the job's events file).
    pub log_file: Option<PathBuf>,
}

/// `USR1`, `SIGUSR1`, `usr1` or `10` -> the signal.
/// Whether `s` names a signal usable for checkpoints (see [`parse_signal`]).
pub fn is_signal_name(s: &str) -> bool {
    parse_signal(s).is_ok()
}

pub fn parse_signal(s: &str) -> anyhow::Result<Signal> {
    let t = s.trim().to_ascii_uppercase();
    let t = t.strip_prefix("SIG").unwrap_or(&t);
    let sig = match t {
        "HUP" => Signal::HUP,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "TERM" => Signal::TERM,
        "CONT" => Signal::CONT,
        "WINCH" => Signal::WINCH,
        "PWR" => Signal::POWER,
        n => match n.parse::<i32>().ok().and_then(Signal::from_named_raw) {
            Some(s) => s,
            None => {
                bail!("unknown signal {s:?}: use a name such as USR1, USR2, TERM, HUP or a number")
            }
        },
    };
    if sig == Signal::KILL || sig == Signal::STOP {
        bail!("{s} cannot be a checkpoint signal: the job could not handle it");
    }
    Ok(sig)
}

/// `SIGUSR1` for display.
pub fn signal_name(sig: Signal) -> String {
    let known = [
        (Signal::HUP, "SIGHUP"),
        (Signal::INT, "SIGINT"),
        (Signal::QUIT, "SIGQUIT"),
        (Signal::USR1, "SIGUSR1"),
        (Signal::USR2, "SIGUSR2"),
        (Signal::TERM, "SIGTERM"),
        (Signal::CONT, "SIGCONT"),
        (Signal::WINCH, "SIGWINCH"),
        (Signal::POWER, "SIGPWR"),
    ];
    known.iter().find(|(s, _)| *s == sig).map_or_else(
        || format!("signal {}", sig.as_raw()),
        |(_, n)| n.to_string(),
    )
}

impl Actions {
    /// Fire every configured action for the threat `words` gives. Failures are logged, never
    /// fatal. The threat is worded only after the signal went out.
    pub fn fire(
        &self,
        job_id: &str,
        pid: i32,
        pidfd: Option<&OwnedFd>,
        words: impl FnOnce() -> Threat,
    ) {
        // The signal first: under a memory crunch every allocation (a log line) may stall,
        // and the checkpoint must not wait for our bookkeeping.
        let sent = self.checkpoint_signal.map(|sig| {
            let r = match pidfd {
                Some(fd) => rustix::process::pidfd_send_signal(fd, sig),
                None => rustix::process::Pid::from_raw(pid)
                    .map_or(Err(rustix::io::Errno::SRCH), |p| {
                        rustix::process::kill_process(p, sig)
                    }),
            };
            (sig, r)
        });
        let threat = &words();
        let eta = threat.eta_s.map(|e| format!("{e:.1}")).unwrap_or_default();
        self.log(&format!(
            "job {job_id} (pid {pid}) in danger from {}: {}",
            threat.killer.name(),
            threat.detail
        ));
        match sent {
            Some((sig, Ok(()))) => self.log(&format!(
                "sent checkpoint signal {} to job {job_id} (pid {pid})",
                signal_name(sig)
            )),
            Some((_, Err(e))) => {
                self.log(&format!("could not signal job {job_id} (pid {pid}): {e}"))
            }
            None => {}
        }
        if let Some(cmd) = &self.on_risk {
            let r = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .env("OOMGUARD_JOB_ID", job_id)
                .env("OOMGUARD_PID", pid.to_string())
                .env("OOMGUARD_KILLER", threat.killer.name())
                .env("OOMGUARD_LEVEL", threat.level.name())
                .env("OOMGUARD_ETA_S", &eta)
                .env("OOMGUARD_REASON", &threat.detail)
                .stdin(std::process::Stdio::null())
                .spawn();
            match r {
                // Reap it in the background so it never becomes a zombie.
                Ok(mut c) => drop(std::thread::spawn(move || c.wait())),
                Err(e) => self.log(&format!("could not run --on-risk command: {e}")),
            }
        }
        if self.notify
            && std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
            && let Err(e) = notify(job_id, threat)
        {
            self.log(&format!("no desktop notification: {e}"));
        }
    }

    /// Write a line to stderr and the log file.
    pub fn log_line(&self, line: &str) {
        self.log(line)
    }

    fn log(&self, line: &str) {
        let stamp = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ");
        eprintln!("oomguard: {line}");
        if let Some(p) = &self.log_file {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                let _ = writeln!(f, "{stamp} {line}");
            }
        }
    }
}

/// org.freedesktop.Notifications.Notify on the session bus.
fn notify(job_id: &str, threat: &Threat) -> anyhow::Result<()> {
    let conn = zbus::blocking::Connection::session()?;
    let hints: std::collections::HashMap<&str, zbus::zvariant::Value> =
        [("urgency", zbus::zvariant::Value::U8(2))]
            .into_iter()
            .collect();
    conn.call_method(
        Some("org.freedesktop.Notifications"),
        "/org/freedesktop/Notifications",
        Some("org.freedesktop.Notifications"),
        "Notify",
        &(
            "oomguard",
            0u32,
            "dialog-warning",
            format!("Job {job_id} in danger from {}", threat.killer.name()),
            threat.detail.as_str(),
            Vec::<&str>::new(),
            hints,
            10_000i32,
        ),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn signals() {
        assert_eq!(parse_signal("USR1").unwrap(), Signal::USR1);
        assert_eq!(signal_name(parse_signal("usr1").unwrap()), "SIGUSR1");
        assert_eq!(parse_signal("sigusr2").unwrap(), Signal::USR2);
        assert_eq!(parse_signal("15").unwrap(), Signal::TERM);
        assert!(parse_signal("KILL").is_err());
        assert!(parse_signal("9").is_err());
        assert!(
            parse_signal("BOGUS")
                .unwrap_err()
                .to_string()
                .contains("unknown signal")
        );
    }
}

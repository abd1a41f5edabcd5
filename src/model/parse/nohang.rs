//! nohang's lines (`src/nohang`, 0.1/0.2). nohang logs one action over several lines:
//! the trigger (`Memory status that requires corrective actions:` and its indented
//! figures), the victim (`Victim status (found in 3ms):` or `Process with highest badness
//! …:` followed by `  PID: 1234, name: x, …`), the action (`Implementing a corrective
//! action:` then `  Sending SIGTERM to the victim`, or `  Executing the command: …` for a
//! soft action), and the outcome (`The victim died in 0.1s`).

use super::{after, lead_u64};

#[derive(Debug, Clone, PartialEq)]
pub enum Nohang {
    /// `>>=== STARTING implement_corrective_action() ====>>` or the memory status header.
    Start,
    /// An indented trigger figure (`MemAvailable [..] <= hard_threshold_min_mem [..]`).
    Trigger { detail: String },
    /// `  PID: 1234, name: firefox, …` (or `Name:`), with its badness when given.
    Victim {
        pid: u32,
        process: Option<String>,
        badness: Option<i64>,
    },
    /// `Sending SIGTERM to the victim`: the kill.
    Sent { signal: String },
    /// `Executing the command: kill -USR1 1234`: a soft action, not a kill.
    Command { command: String },
    /// `The victim died in 0.1s`
    Died { seconds: Option<f64> },
}

/// Parse one nohang message.
pub fn parse(msg: &str) -> Option<Nohang> {
    let m = msg.trim();
    if m.starts_with(">>=== STARTING implement_corrective_action")
        || m.starts_with("Memory status that requires corrective actions")
    {
        return Some(Nohang::Start);
    }
    if (m.starts_with("MemAvailable [") || m.starts_with("SwapFree [") || m.starts_with("PSI avg"))
        && m.contains("threshold")
    {
        return Some(Nohang::Trigger {
            detail: m.to_owned(),
        });
    }
    if let Some(r) = m.strip_prefix("PID:") {
        let r = r.trim_start();
        let pid = lead_u64(r)? as u32;
        let process = after(r, "name: ", &[','])
            .or_else(|| after(r, "Name: ", &[',']))
            .map(str::to_owned);
        let badness = after(r, "badness: ", &[',', ' ']).and_then(|v| v.parse().ok());
        return Some(Nohang::Victim {
            pid,
            process,
            badness,
        });
    }
    if let Some(r) = m.strip_prefix("Sending ")
        && let Some(sig) = r.strip_suffix(" to the victim")
    {
        return Some(Nohang::Sent {
            signal: sig.to_owned(),
        });
    }
    if let Some(r) = m.strip_prefix("Executing the command: ") {
        return Some(Nohang::Command {
            command: r.to_owned(),
        });
    }
    if let Some(r) = m.strip_prefix("The victim died in ") {
        return Some(Nohang::Died {
            seconds: r.trim_end_matches('s').parse().ok(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_action() {
        assert_eq!(
            parse(
                "2023-08-10 16:53:26,460: >>=== STARTING implement_corrective_action() ====>>"
                    .split_once(": ")
                    .unwrap()
                    .1
            ),
            Some(Nohang::Start)
        );
        assert_eq!(
            parse(
                "  PID:       1234, name: firefox, state: R, EUID: 1000, SID: 1 (x), lifetime: 1h"
            ),
            Some(Nohang::Victim {
                pid: 1234,
                process: Some("firefox".into()),
                badness: None
            })
        );
        assert_eq!(
            parse("  PID: 1234, Name: firefox, badness: 900"),
            Some(Nohang::Victim {
                pid: 1234,
                process: Some("firefox".into()),
                badness: Some(900)
            })
        );
        assert_eq!(
            parse("  Sending SIGTERM to the victim"),
            Some(Nohang::Sent {
                signal: "SIGTERM".into()
            })
        );
        assert_eq!(
            parse("The victim died in 0.105s"),
            Some(Nohang::Died {
                seconds: Some(0.105)
            })
        );
    }
}

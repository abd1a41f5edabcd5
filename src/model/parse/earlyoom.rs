//! earlyoom's lines (`kill.c`, v0.x..v1.9): the kill (`sending SIGTERM to process …`),
//! the trigger before it (`low memory! at or below SIGTERM limits: …`), the confirmation
//! after (`process exited after 2.8 seconds`), and the failure (`Could not find a process
//! to kill`).

use super::{after, lead_u64};

#[derive(Debug, Clone, PartialEq)]
pub enum Earlyoom {
    /// `sending SIGTERM to process 29410 uid 1000 "cluster": badness 1264, VmRSS 23964 MiB`
    /// (v1.6..1.8) or `…: oom_score 1146, oom_score_adj 0, VmRSS 23007 MiB, cmdline "x"`
    /// (v1.9).
    Sent {
        signal: String,
        pid: u32,
        uid: Option<u32>,
        process: Option<String>,
        oom_score: Option<i64>,
        oom_score_adj: Option<i32>,
        rss_mib: Option<u64>,
    },
    /// `low memory! at or below SIGTERM limits: mem 10.00%, swap 10.00%`
    Low { detail: String },
    /// `process exited after 2.8 seconds`
    Exited { seconds: Option<f64> },
    /// `Error: Could not find a process to kill`, `kill failed: …`
    Failed,
}

/// Parse one earlyoom message.
pub fn parse(msg: &str) -> Option<Earlyoom> {
    let m = msg.trim();
    if let Some(r) = m.strip_prefix("sending ")
        && let Some((sig, r)) = r.split_once(" to process ")
        && sig.starts_with("SIG")
    {
        let pid = lead_u64(r)? as u32;
        let uid = after(r, " uid ", &[' ']).and_then(|v| v.parse().ok());
        // `"NAME": badness …` or `"NAME": oom_score …`; a name may hold `": `, and so may
        // the cmdline after it, so the figures' keyword anchors the end of the name.
        let end = ["\": oom_score ", "\": badness "]
            .iter()
            .filter_map(|k| r.find(k))
            .min()
            .or_else(|| r.rfind("\": "));
        let process = match (r.find(" \""), end) {
            (Some(i), Some(e)) if i + 2 <= e => Some(r[i + 2..e].to_owned()),
            _ => None,
        };
        let tail = end.map(|i| &r[i..]).unwrap_or(r);
        let oom_score = after(tail, "oom_score ", &[',', ' '])
            .or_else(|| after(tail, "badness ", &[',', ' ']))
            .and_then(|v| v.parse().ok());
        return Some(Earlyoom::Sent {
            signal: sig.to_owned(),
            pid,
            uid,
            process,
            oom_score,
            oom_score_adj: after(tail, "oom_score_adj ", &[',', ' ']).and_then(|v| v.parse().ok()),
            rss_mib: after(tail, "VmRSS ", &[' ']).and_then(|v| v.parse().ok()),
        });
    }
    if let Some(r) = m.strip_prefix("low memory! ") {
        return Some(Earlyoom::Low {
            detail: r.to_owned(),
        });
    }
    if let Some(r) = m.strip_prefix("process exited after ") {
        return Some(Earlyoom::Exited {
            seconds: r.split_whitespace().next().and_then(|v| v.parse().ok()),
        });
    }
    if m.contains("Could not find a process to kill") || m.starts_with("kill failed") {
        return Some(Earlyoom::Failed);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_lines_of_every_version() {
        assert_eq!(
            parse(
                "sending SIGTERM to process 29410 uid 1000 \"cluster\": badness 1264, VmRSS 23964 MiB"
            ),
            Some(Earlyoom::Sent {
                signal: "SIGTERM".into(),
                pid: 29410,
                uid: Some(1000),
                process: Some("cluster".into()),
                oom_score: Some(1264),
                oom_score_adj: None,
                rss_mib: Some(23964)
            })
        );
        assert_eq!(
            parse(
                "sending SIGTERM to process 997 uid 1000 \"my-process-name\": oom_score 1146, oom_score_adj 0, VmRSS 23007 MiB, cmdline \"my-process-name\""
            ),
            Some(Earlyoom::Sent {
                signal: "SIGTERM".into(),
                pid: 997,
                uid: Some(1000),
                process: Some("my-process-name".into()),
                oom_score: Some(1146),
                oom_score_adj: Some(0),
                rss_mib: Some(23007)
            })
        );
        assert!(matches!(
            parse(
                "sending SIGKILL to process 291787 uid 61876 \"earlyoom\": badness 0, VmRSS 0 MiB"
            ),
            Some(Earlyoom::Sent { pid: 291787, .. })
        ));
        assert_eq!(
            parse("Error: Could not find a process to kill"),
            Some(Earlyoom::Failed)
        );
        assert_eq!(
            parse("process exited after 2.8 seconds"),
            Some(Earlyoom::Exited { seconds: Some(2.8) })
        );
    }
}

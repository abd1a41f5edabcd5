//! The daemon's wire protocol: one JSON object per line, each way, at most
//! [`MAX_LINE`] bytes, versioned by `"v"`. The client is here too.
//!
//! ```text
//! -> {"v":1,"op":"ping"}
//! <- {"v":1,"ok":true}
//! -> {"v":1,"op":"shield","pid":1234,"start_ticks":5678,"adj":-1000,"job_id":"a1b2c3","mode":"run"}
//! <- {"v":1,"ok":true,"layers":[{"layer":"kernel","state":"applied","detail":"oom_score_adj -1000"},...]}
//! <- {"v":1,"ok":false,"error":"process 1234 belongs to uid 1001, not to you (uid 1000)"}
//! ```

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::job::layers::Layer;

/// Protocol version.
pub const VERSION: u32 = 1;
/// Longest request or reply line, newline included.
pub const MAX_LINE: usize = 4096;
/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/oomguard/oomguard.sock";

/// The socket path: `$OOMGUARD_SOCKET`, else [`DEFAULT_SOCKET`].
pub fn socket_path() -> PathBuf {
    std::env::var_os("OOMGUARD_SOCKET")
        .filter(|s| !s.is_empty())
        .map_or(DEFAULT_SOCKET.into(), PathBuf::from)
}

/// How the target relates to the asker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `oomguard run`: the target must descend from the asking process.
    Run,
    /// `oomguard protect`: the target must belong to the asking user.
    Protect,
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    Ping,
    Shield {
        pid: i32,
        /// The target's start time in clock ticks (field 22 of `/proc/PID/stat`), as the
        /// asker saw it: a recycled PID is refused.
        start_ticks: u64,
        adj: i32,
        job_id: String,
        mode: Mode,
        /// Also shield every descendant alive now.
        #[serde(default)]
        tree: bool,
        /// The job's checkpoint signal (e.g. "USR1"), sent when systemd-oomd's prekill hook
        /// announces a kill of its cgroup. Optional.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkpoint_signal: Option<String>,
        /// `false` when the user turned the runaway safety valve off for this job (`run
        /// --no-valve`); the daemon's guard then leaves the shield alone. Optional.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        valve: Option<bool>,
        /// The user's grace between the valve's warning and lowering the shield, in ms
        /// (`run --valve-grace`). Optional: the policy's otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        valve_grace_ms: Option<u64>,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: u32,
    #[serde(flatten)]
    body: T,
}

/// A reply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Layer>,
    /// The daemon guards the job from now on: it sends the checkpoint signal and runs the
    /// safety valve, so the requester must not do so again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guarded: bool,
}

impl Reply {
    pub fn ok(layers: Vec<Layer>) -> Reply {
        Reply {
            v: VERSION,
            ok: true,
            error: None,
            layers,
            guarded: false,
        }
    }
    pub fn err(msg: impl Into<String>) -> Reply {
        Reply {
            v: VERSION,
            ok: false,
            error: Some(msg.into()),
            layers: vec![],
            guarded: false,
        }
    }
    /// One line, newline included.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| "{\"v\":1,\"ok\":false}".into());
        s.push('\n');
        s
    }
}

/// Parse one request line (without its newline).
pub fn parse(line: &[u8]) -> Result<Op, String> {
    let v: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("malformed request: {e}"))?;
    match v.get("v").and_then(serde_json::Value::as_u64) {
        Some(n) if n == VERSION as u64 => {}
        Some(n) => {
            return Err(format!(
                "unsupported protocol version {n}; this daemon speaks {VERSION}"
            ));
        }
        None => return Err("malformed request: missing \"v\"".into()),
    }
    let env: Envelope<Op> =
        serde_json::from_value(v).map_err(|e| format!("malformed request: {e}"))?;
    if let Op::Shield { job_id, .. } = &env.body
        && !valid_job_id(job_id)
    {
        return Err("malformed request: job_id must be 1-64 of [A-Za-z0-9_-]".into());
    }
    Ok(env.body)
}

/// Job ids name systemd units: keep them to a safe alphabet.
pub fn valid_job_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Connect to the daemon; `None` when none listens there (or we may not connect).
pub fn connect(socket: &Path) -> Option<UnixStream> {
    UnixStream::connect(socket).ok()
}

/// Send one request on a connected stream and read the reply.
pub fn call_on(mut s: UnixStream, op: &Op) -> Result<Reply> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_string(&Envelope {
        v: VERSION,
        body: op,
    })?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut r = BufReader::new(s.take_limited());
    let mut buf = String::new();
    r.read_line(&mut buf)
        .context("reading the daemon's reply")?;
    if buf.is_empty() {
        bail!("the daemon closed the connection without a reply");
    }
    serde_json::from_str(&buf).with_context(|| format!("malformed reply from the daemon: {buf:?}"))
}

trait TakeLimited {
    fn take_limited(self) -> std::io::Take<UnixStream>;
}
impl TakeLimited for UnixStream {
    fn take_limited(self) -> std::io::Take<UnixStream> {
        std::io::Read::take(self, MAX_LINE as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let op = parse(
            br#"{"v":1,"op":"shield","pid":5,"start_ticks":9,"adj":0,"job_id":"ab","mode":"run"}"#,
        )
        .unwrap();
        assert!(matches!(
            op,
            Op::Shield {
                pid: 5,
                tree: false,
                mode: Mode::Run,
                ..
            }
        ));
        assert_eq!(parse(br#"{"v":1,"op":"ping"}"#).unwrap(), Op::Ping);
        let no_valve = parse(
            br#"{"v":1,"op":"shield","pid":5,"start_ticks":9,"adj":-1000,"job_id":"ab","mode":"run","valve":false,"valve_grace_ms":2500}"#,
        )
        .unwrap();
        assert!(matches!(
            no_valve,
            Op::Shield {
                valve: Some(false),
                valve_grace_ms: Some(2500),
                ..
            }
        ));
        assert!(parse(b"garbage").unwrap_err().starts_with("malformed"));
        assert!(
            parse(br#"{"v":2,"op":"ping"}"#)
                .unwrap_err()
                .contains("version 2")
        );
        assert!(parse(br#"{"op":"ping"}"#).is_err());
        assert!(parse(br#"{"v":1,"op":"rm -rf"}"#).is_err());
        let bad_id = br#"{"v":1,"op":"shield","pid":5,"start_ticks":9,"adj":0,"job_id":"../x","mode":"run"}"#;
        assert!(parse(bad_id).unwrap_err().contains("job_id"));
        assert!(Reply::err("x").to_line().ends_with('\n'));
    }
}

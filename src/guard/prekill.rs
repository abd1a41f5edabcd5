//! systemd-oomd's prekill hook (systemd >= 260): a Varlink service `io.systemd.oom.Prekill`
//! on a socket in `/run/systemd/oomd.prekill.hook/`. Before killing a cgroup, systemd-oomd
//! calls `Notify({"cgroup": PATH})` on every socket there and waits (up to
//! `PrekillHookTimeoutSec=`) for the replies; we fire the checkpoint actions of the guarded
//! jobs in that cgroup, then reply.
//!
//! Varlink framing: each message is one JSON object followed by a NUL byte.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

/// Where systemd-oomd looks for hooks.
pub const HOOK_DIR: &str = "/run/systemd/oomd.prekill.hook";
pub const INTERFACE: &str = "io.systemd.oom.Prekill";
const MAX_MESSAGE: usize = 64 * 1024;

/// A parsed Varlink call.
#[derive(Debug, PartialEq)]
pub enum Call {
    /// `io.systemd.oom.Prekill.Notify`.
    Notify { cgroup: String, oneway: bool },
    /// `org.varlink.service.GetInfo`.
    GetInfo,
    /// Anything else: answered with `MethodNotFound`.
    Unknown { method: String, oneway: bool },
}

/// Parse one message (without its NUL). Pure: fuzzed.
pub fn parse_call(msg: &[u8]) -> Result<Call, String> {
    let v: Value = serde_json::from_slice(msg).map_err(|e| format!("not JSON: {e}"))?;
    let method = v
        .get("method")
        .and_then(Value::as_str)
        .ok_or("no \"method\" string")?;
    let oneway = v.get("oneway").and_then(Value::as_bool).unwrap_or(false);
    match method {
        "io.systemd.oom.Prekill.Notify" => {
            let cgroup = v
                .get("parameters")
                .and_then(|p| p.get("cgroup"))
                .and_then(Value::as_str)
                .filter(|c| c.starts_with('/'))
                .ok_or("Notify needs parameters.cgroup, an absolute cgroup path")?;
            Ok(Call::Notify {
                cgroup: cgroup.to_string(),
                oneway,
            })
        }
        "org.varlink.service.GetInfo" => Ok(Call::GetInfo),
        m => Ok(Call::Unknown {
            method: m.to_string(),
            oneway,
        }),
    }
}

/// The reply to a call, if one is due.
pub fn reply(call: &Call) -> Option<Value> {
    match call {
        Call::Notify { oneway: true, .. } | Call::Unknown { oneway: true, .. } => None,
        Call::Notify { .. } => Some(json!({ "parameters": {} })),
        Call::GetInfo => Some(json!({ "parameters": {
            "vendor": "oomguard", "product": "oomguard", "version": env!("CARGO_PKG_VERSION"),
            "url": "https://github.com/oomguard/oomguard", "interfaces": [INTERFACE, "org.varlink.service"]
        }})),
        Call::Unknown { method, .. } => Some(
            json!({ "error": "org.varlink.service.MethodNotFound", "parameters": { "method": method } }),
        ),
    }
}

/// The listening hook.
pub struct PrekillHook {
    pub path: PathBuf,
    listener: UnixListener,
    allowed_uids: Vec<u32>,
}

impl PrekillHook {
    /// Bind `dir/name` (creating `dir`). Only peers with a uid in `allowed_uids` (root and the
    /// systemd-oom user) are served: anyone else could make jobs checkpoint at will.
    pub fn bind(dir: &Path, name: &str, allowed_uids: Vec<u32>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        // Connect rights for all; each peer is judged by its credentials.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        Ok(PrekillHook {
            path,
            listener,
            allowed_uids,
        })
    }

    /// Serve forever, one thread per connection. `on_notify(cgroup)` fires the actions of the
    /// jobs in that cgroup and returns their ids (for the log).
    pub fn serve(self, on_notify: impl Fn(&str) -> Vec<String> + Send + Sync + 'static) {
        let on_notify = Arc::new(on_notify);
        for conn in self.listener.incoming() {
            let Ok(stream) = conn else { continue };
            let uid = rustix::net::sockopt::socket_peercred(&stream)
                .map(|c| c.uid.as_raw())
                .ok();
            if !uid.is_some_and(|u| self.allowed_uids.contains(&u)) {
                eprintln!(
                    "oomguard: prekill hook: refused a connection from uid {uid:?} (not systemd-oomd)"
                );
                continue;
            }
            let on_notify = on_notify.clone();
            std::thread::spawn(move || {
                if let Err(e) = handle(stream, &*on_notify) {
                    eprintln!("oomguard: prekill hook: {e}");
                }
            });
        }
    }
}

fn handle(mut s: UnixStream, on_notify: &dyn Fn(&str) -> Vec<String>) -> anyhow::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = memchr::memchr(0, &buf) {
            let msg: Vec<u8> = buf.drain(..=end).collect();
            let call = match parse_call(&msg[..end]) {
                Ok(c) => c,
                Err(e) => {
                    let err = json!({ "error": "org.varlink.service.InvalidParameter", "parameters": { "parameter": e } });
                    send(&mut s, &err)?;
                    return Ok(());
                }
            };
            if let Call::Notify { cgroup, .. } = &call {
                let jobs = on_notify(cgroup);
                eprintln!(
                    "oomguard: systemd-oomd is about to kill {cgroup}: checkpoint sent to {} job(s) {jobs:?}",
                    jobs.len()
                );
            }
            if let Some(r) = reply(&call) {
                send(&mut s, &r)?;
            }
        }
        if buf.len() > MAX_MESSAGE {
            anyhow::bail!("message over {MAX_MESSAGE} bytes: connection closed");
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn send(s: &mut UnixStream, v: &Value) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(v)?;
    out.push(0);
    s.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_notify_and_answers() {
        let c = parse_call(br#"{"method":"io.systemd.oom.Prekill.Notify","parameters":{"cgroup":"/user.slice/a.scope"}}"#);
        assert_eq!(
            c,
            Ok(Call::Notify {
                cgroup: "/user.slice/a.scope".into(),
                oneway: false
            })
        );
        assert_eq!(reply(&c.unwrap()), Some(json!({"parameters": {}})));
        assert!(
            parse_call(br#"{"method":"io.systemd.oom.Prekill.Notify","parameters":{}}"#).is_err()
        );
        assert!(
            parse_call(
                br#"{"method":"io.systemd.oom.Prekill.Notify","parameters":{"cgroup":"rel"}}"#
            )
            .is_err()
        );
        assert!(parse_call(b"{").is_err());
        let u = parse_call(br#"{"method":"x.Y"}"#).unwrap();
        assert_eq!(
            reply(&u).unwrap()["error"],
            "org.varlink.service.MethodNotFound"
        );
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_call(&b);
        }
    }
}

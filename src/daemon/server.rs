//! The daemon's server: a Unix socket, one short-lived thread per connection (bounded),
//! one request per connection, every decision logged on stderr (the journal under
//! systemd).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::daemon::auth::{self, Peer};
use crate::daemon::protocol::{self, MAX_LINE, Mode, Op, Reply};
use crate::host::adj::{self, Target};
use crate::job::layers::{self, Shield, State};
use crate::model::policy::Policy;

/// A request must arrive complete within this time.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are answered "busy" at once.
pub const MAX_CONNECTIONS: usize = 64;

/// A job this daemon shielded, pinned by its pidfd (to count live jobs per user).
struct Protected {
    uid: u32,
    pid: i32,
    pidfd: OwnedFd,
}

/// Shared daemon state.
pub struct Daemon {
    policy: Policy,
    proc: PathBuf,
    jobs: Mutex<Vec<Protected>>,
    busy: AtomicUsize,
    /// Guards every job shielded here (risk, valve, metrics, prekill), when set.
    guards: Option<Arc<crate::guard::set::GuardSet>>,
}

fn log(msg: &str) {
    eprintln!("oomguard-daemon: {msg}");
}

impl Daemon {
    pub fn new(policy: Policy) -> Daemon {
        Daemon {
            policy,
            proc: "/proc".into(),
            jobs: Mutex::new(Vec::new()),
            busy: AtomicUsize::new(0),
            guards: None,
        }
    }

    /// Guard each job this daemon shields.
    pub fn with_guards(mut self, guards: Arc<crate::guard::set::GuardSet>) -> Daemon {
        self.guards = Some(guards);
        self
    }

    /// Bind the socket (mode and group from the policy), creating its directory.
    pub fn bind(&self, path: &Path) -> Result<UnixListener> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // A socket left by an earlier run is stale once nothing answers on it.
        let is_socket = std::fs::symlink_metadata(path)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
        if is_socket {
            if UnixStream::connect(path).is_ok() {
                anyhow::bail!("another daemon already listens on {}", path.display());
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
        let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(
            path,
            std::fs::Permissions::from_mode(self.policy.socket_mode.value),
        )?;
        if let Some(g) = &self.policy.socket_group.value {
            let gid =
                auth::gid_of(g).with_context(|| format!("socket_group {g}: no such group"))?;
            std::os::unix::fs::chown(path, None, Some(gid))?;
        }
        Ok(l)
    }

    /// Serve forever.
    pub fn serve(self: Arc<Self>, l: UnixListener) -> Result<()> {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            if self.busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                self.busy.fetch_sub(1, Ordering::SeqCst);
                let _ =
                    (&conn).write_all(Reply::err("daemon busy, try again").to_line().as_bytes());
                continue;
            }
            let d = Arc::clone(&self);
            let spawned = std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    d.connection(conn);
                    d.busy.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                self.busy.fetch_sub(1, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    fn connection(&self, mut conn: UnixStream) {
        let peer = match auth::peer(&conn) {
            Ok(p) => p,
            Err(e) => {
                log(&format!("connection without peer credentials: {e}"));
                return;
            }
        };
        let reply = match read_line(&mut conn) {
            Ok(line) => match protocol::parse(&line) {
                Ok(op) => self.handle(&peer, op),
                Err(e) => Reply::err(e),
            },
            Err(e) if e.is_empty() => return,
            Err(e) => Reply::err(e),
        };
        if let Some(e) = &reply.error {
            log(&format!("uid {} pid {}: refused: {e}", peer.uid, peer.pid));
        }
        let _ = conn.set_write_timeout(Some(REQUEST_TIMEOUT));
        let _ = conn.write_all(reply.to_line().as_bytes());
    }

    /// Judge and carry out one request from `peer`.
    pub fn handle(&self, peer: &Peer, op: Op) -> Reply {
        match op {
            Op::Ping => Reply::ok(vec![]),
            Op::Shield {
                pid,
                start_ticks,
                adj,
                job_id,
                mode,
                tree,
                checkpoint_signal,
                valve,
                valve_grace_ms,
            } => match self.shield(peer, pid, start_ticks, adj, &job_id, mode, tree) {
                Ok(mut r) => {
                    let prefs = UserGuard {
                        checkpoint_signal: checkpoint_signal.as_deref(),
                        valve,
                        valve_grace_ms,
                    };
                    r.guarded = self.guard(&job_id, pid, &r, &prefs);
                    r
                }
                Err(e) => Reply::err(e),
            },
        }
    }

    /// Start guarding a job just shielded (when this daemon guards jobs); whether it does.
    fn guard(&self, job_id: &str, pid: i32, reply: &Reply, prefs: &UserGuard) -> bool {
        let Some(g) = &self.guards else {
            return false;
        };
        if !reply.ok {
            return false;
        }
        // The request's signal, else the policy's default (`[guard] checkpoint_signal`).
        let gp = &self.policy.guard;
        let (valve, valve_grace_s) = gp.job_valve(prefs.valve, prefs.valve_grace_ms);
        let signal = prefs
            .checkpoint_signal
            .or(gp.checkpoint_signal.as_deref())
            .and_then(|s| crate::guard::parse_signal(s).ok());
        let cfg = crate::guard::GuardConfig {
            actions: crate::guard::Actions {
                checkpoint_signal: signal,
                ..Default::default()
            },
            thresholds: crate::model::risk::Thresholds {
                danger_eta_s: gp.danger_seconds as f64,
                danger_fraction: gp.danger_percent as f64 / 100.0,
                ..Default::default()
            },
            min_interval_s: gp.min_interval_seconds as f64,
            valve,
            valve_grace_s,
            ..Default::default()
        };
        let name = adj::read_info(&self.proc, pid)
            .map(|i| i.comm)
            .unwrap_or_default();
        let layers: Vec<(&str, bool)> = reply
            .layers
            .iter()
            .map(|l| (l.layer.as_str(), l.state == State::Applied))
            .collect();
        g.add(job_id, &name, pid, cfg, &layers);
        log(&format!("guarding job {job_id} (pid {pid})"));
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn shield(
        &self,
        peer: &Peer,
        pid: i32,
        start_ticks: u64,
        adj: i32,
        job_id: &str,
        mode: Mode,
        tree: bool,
    ) -> Result<Reply, String> {
        if !(-1000..=1000).contains(&adj) {
            return Err(format!("oom_score_adj {adj} is out of range -1000..1000"));
        }
        let t = Target::open(&self.proc, pid, Some(start_ticks)).map_err(|e| e.to_string())?;
        let info = t.info().map_err(|e| e.to_string())?;
        if peer.uid != 0 && info.uids.iter().any(|u| *u != peer.uid) {
            return Err(format!(
                "process {pid} belongs to uid {}, not to you (uid {}): you may shield only your own processes",
                info.uids[0], peer.uid
            ));
        }
        if mode == Mode::Run && !adj::descends_from(&self.proc, pid, peer.pid) {
            return Err(format!(
                "process {pid} does not descend from the asking process {}: `run` shields only its own child",
                peer.pid
            ));
        }
        let asker = auth::asker(peer.uid, peer.gid);
        let active = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.retain(|j| adj::running(&j.pidfd));
            jobs.iter()
                .filter(|j| j.uid == peer.uid && j.pid != pid)
                .count() as u32
        };
        if peer.uid != 0 {
            self.policy
                .decide(&asker, adj, active)
                .map_err(|r| r.to_string())?;
        }
        let extra: Vec<Target> = if tree {
            adj::descendants(&self.proc, pid)
                .into_iter()
                .filter_map(|c| {
                    let i = adj::read_info(&self.proc, c)?;
                    let ok = peer.uid == 0 || i.uids.iter().all(|u| *u == peer.uid);
                    ok.then(|| Target::open(&self.proc, c, Some(i.start_time)).ok())
                        .flatten()
                })
                .collect()
        } else {
            vec![]
        };
        let out = layers::shield(
            &t,
            &Shield {
                adj,
                job_id,
                uid: info.uids[0],
                extra: &extra,
                root: true,
            },
        );
        if out.first().is_some_and(|l| l.state == State::Applied) {
            let pidfd = t.pidfd().try_clone().map_err(|e| e.to_string())?;
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.retain(|j| j.pid != pid);
            jobs.push(Protected {
                uid: info.uids[0],
                pid,
                pidfd,
            });
        }
        let summary: Vec<String> = out
            .iter()
            .map(|l| format!("{}={:?}", l.layer, l.state))
            .collect();
        log(&format!(
            "uid {} ({}) pid {}: shield pid {pid} ({}) adj {adj} job {job_id} mode {mode:?}{}: {}",
            peer.uid,
            asker.user,
            peer.pid,
            info.comm,
            if tree { " tree" } else { "" },
            summary.join(" ")
        ));
        Ok(Reply::ok(out))
    }
}

/// Read one request line within [`REQUEST_TIMEOUT`] and [`MAX_LINE`] bytes.
fn read_line(conn: &mut UnixStream) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "request timed out: send one JSON line within {} s",
                REQUEST_TIMEOUT.as_secs()
            ));
        }
        let _ = conn.set_read_timeout(Some(left));
        match conn.read(&mut chunk) {
            // A bare connect-and-close (a client checking that we listen): no reply.
            Ok(0) if buf.is_empty() => return Err(String::new()),
            Ok(0) => return Err("incomplete request: connection closed before a newline".into()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    buf.truncate(i);
                    return Ok(buf);
                }
                if buf.len() >= MAX_LINE {
                    return Err(format!(
                        "request too long: at most {MAX_LINE} bytes per line"
                    ));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "request timed out: send one JSON line within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading request: {e}")),
        }
    }
}

/// What the requester asked of the daemon's guard for its job.
struct UserGuard<'a> {
    checkpoint_signal: Option<&'a str>,
    valve: Option<bool>,
    valve_grace_ms: Option<u64>,
}

//! Protection layers: one per killer, each reporting applied / not applicable / failed.
//! [`shield`] applies them to a pinned process; it runs in the root daemon, or in
//! `oomguard run`/`protect` when they run with privilege (or need none, e.g. `--adj 0`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::host::adj::{AdjError, Target};
use crate::host::systemd;
use crate::job::{killers, memcg};

/// State of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Applied,
    NotApplicable,
    Failed,
}

/// One layer's outcome, as stored in the job record and shown by `ps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// `kernel`, `systemd-oomd`, `earlyoom` or `nohang`.
    pub layer: String,
    pub state: State,
    /// What was done, why it does not apply, or why it failed (with the remedy).
    pub detail: String,
}

impl Layer {
    pub fn new(layer: &str, state: State, detail: impl Into<String>) -> Layer {
        Layer {
            layer: layer.into(),
            state,
            detail: detail.into(),
        }
    }
}

/// The remedy named whenever a privileged step is missing.
pub const REMEDY: &str = "start `oomguard daemon` as root or run with sudo";

/// Options of one shielding.
pub struct Shield<'a> {
    /// `oom_score_adj` to write.
    pub adj: i32,
    /// Job id (names the systemd scope).
    pub job_id: &'a str,
    /// Owner of the job (names the user slice).
    pub uid: u32,
    /// Further processes to cover (`protect --tree`): their adj is written too.
    pub extra: &'a [Target],
    /// Whether this process may use the system bus as root (euid 0).
    pub root: bool,
}

/// Apply every layer to `t` (and `opts.extra`). Never fails as a whole: each layer says
/// what became of it.
pub fn shield(t: &Target, opts: &Shield) -> Vec<Layer> {
    let kernel = match t.set_adj(opts.adj).and_then(|()| {
        opts.extra
            .iter()
            .try_for_each(|e| match e.set_adj(opts.adj) {
                Err(AdjError::NoSuchProcess(_)) => Ok(()),
                r => r,
            })
    }) {
        Ok(()) => Layer::new(
            "kernel",
            State::Applied,
            format!("oom_score_adj {}", opts.adj),
        ),
        Err(e @ AdjError::NoCapability { .. }) => {
            Layer::new("kernel", State::Failed, format!("{e}; {REMEDY}"))
        }
        Err(e) => Layer::new("kernel", State::Failed, e.to_string()),
    };
    let mut kernel = kernel;
    if let Some(l) = t
        .cgroup()
        .ok()
        .and_then(|c| memcg::tightest(Path::new("/"), &c))
    {
        kernel.detail.push_str(&format!(
            "; it stays in memory-limited cgroup {} (limit {} MiB): no limit is lifted",
            l.cgroup,
            l.bytes >> 20
        ));
    }
    let adj_now = t.adj().unwrap_or(0);
    let mut out = vec![kernel, oomd_layer(t, opts)];
    let comm = t.info().map(|i| i.comm).unwrap_or_default();
    let cmdline = t.cmdline().unwrap_or_default().join(" ");
    out.extend(killers::assess(
        Path::new("/proc"),
        adj_now,
        &comm,
        &cmdline,
    ));
    out
}

fn oomd_layer(t: &Target, opts: &Shield) -> Layer {
    const L: &str = "systemd-oomd";
    if !systemd::booted(Path::new("/")) {
        return Layer::new(L, State::NotApplicable, "systemd is not running here");
    }
    let sd = match systemd::Systemd::connect() {
        Ok(sd) => sd,
        Err(e) => return Layer::new(L, State::Failed, format!("{e:#}")),
    };
    if !sd.oomd_active() {
        return Layer::new(L, State::NotApplicable, "systemd-oomd is not running");
    }
    let pid = t.pid as u32;
    let watch = match sd.oomd_watch(pid) {
        Ok(Some(w)) => w,
        Ok(None) => {
            let unit = sd.unit_of(pid).unwrap_or_else(|_| "its unit".into());
            return Layer::new(
                L,
                State::NotApplicable,
                format!("no oomd rule watches {unit}"),
            );
        }
        Err(e) => return Layer::new(L, State::Failed, format!("{e:#}")),
    };
    // systemd-oomd's swap rule acts only when swap is nearly full: on a machine without swap it
    // never fires, and moving the job out of its unit would split that unit's memory budget
    // (lifting a limit, which oomguard never does). Only the pressure rule justifies a move then.
    if watch.rules.iter().all(|r| r.starts_with("ManagedOOMSwap")) && !has_swap() {
        return Layer::new(
            L,
            State::NotApplicable,
            format!(
                "{} is watched only by ManagedOOMSwap=kill on {}, and this machine has no swap: the job stays where it is",
                watch.unit, watch.watched_by
            ),
        );
    }
    let rules = watch.rules.join(", ");
    if !opts.root {
        return Layer::new(
            L,
            State::Failed,
            format!(
                "{} is watched by {rules} on {}; moving the job out needs root on the system bus; {REMEDY}",
                watch.unit, watch.watched_by
            ),
        );
    }
    let mut pids = vec![pid];
    pids.extend(opts.extra.iter().map(|e| e.pid as u32));
    match sd.move_to_scope(&pids, opts.job_id, opts.uid, &watch.unit) {
        Ok((scope, limits)) => {
            let kept = if limits.is_empty() {
                "no memory limit to carry".to_owned()
            } else {
                let l: Vec<String> = limits
                    .iter()
                    .map(|(k, v)| format!("{k}={}M", v >> 20))
                    .collect();
                format!("carrying {}", l.join(" "))
            };
            Layer::new(
                L,
                State::Applied,
                format!(
                    "moved from {} ({rules} on {}) to {scope} with ManagedOOMPreference=omit, {kept}",
                    watch.unit, watch.watched_by
                ),
            )
        }
        Err(e) => Layer::new(L, State::Failed, format!("{e:#}")),
    }
}

/// Whether the machine has any swap (SwapTotal > 0).
fn has_swap() -> bool {
    crate::host::proc::ProcFs::default()
        .meminfo()
        .is_ok_and(|m| m.swap_total_kib > 0)
}

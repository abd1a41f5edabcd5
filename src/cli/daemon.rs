//! `oomguard daemon`: the root service that shields users' jobs under an admin policy.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::daemon::protocol;
use crate::daemon::server::Daemon;
use crate::model::policy::Policy;

/// Default policy file.
pub const DEFAULT_CONFIG: &str = "/etc/oomguard/config.toml";

/// Arguments of `oomguard daemon`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Policy file (default /etc/oomguard/config.toml; built-in defaults when absent)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464); off by default
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Directory of systemd-oomd's prekill hooks (systemd >= 260)
    #[arg(long, value_name = "DIR", default_value = crate::guard::prekill::HOOK_DIR)]
    pub prekill_dir: PathBuf,
    /// Do not serve systemd-oomd's prekill hook
    #[arg(long)]
    pub no_prekill: bool,
}

/// Count OOM kills by killer as they are logged, for the `kills_seen` metric.
fn start_kill_counter(m: Arc<crate::guard::metrics::Metrics>) {
    let clock = crate::model::event::Clock {
        tz: jiff::tz::TimeZone::system(),
        boot_unix: crate::host::logs::boot_unix(std::path::Path::new("/proc")),
        ..Default::default()
    };
    for k in ["kernel", "systemd-oomd", "earlyoom", "nohang"] {
        m.kills_seen(k, 0);
    }
    std::thread::spawn(move || {
        let mut counts: std::collections::HashMap<String, u64> = Default::default();
        let r = crate::host::logs::follow_kills(std::path::Path::new("/dev/kmsg"), clock, |e| {
            let n = counts.entry(e.killer.clone()).or_default();
            *n += 1;
            m.kills_seen(&e.killer, *n);
        });
        if let Err(e) = r {
            eprintln!("oomguard-daemon: not counting kills: {e:#}");
        }
    });
}

fn load(args: &Args) -> Result<Policy> {
    let path = args.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into());
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Policy::parse(&text, &path.to_string_lossy())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.config.is_none() => {
            Ok(Policy::default())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub fn run(args: Args) -> Result<u8> {
    let policy = load(&args)?;
    let sock = protocol::socket_path();
    let metrics = args
        .metrics
        .as_ref()
        .map(|_| Arc::new(crate::guard::metrics::Metrics::new()));
    let guards = Arc::new(crate::guard::set::GuardSet::new(
        metrics.clone(),
        crate::host::proc::ProcFs::default(),
        crate::host::cgroup::CgroupFs::default(),
    ));
    let d = Arc::new(Daemon::new(policy.clone()).with_guards(guards.clone()));
    let l = d.bind(&sock)?;
    // Stay resident under memory pressure (pages locked as they are touched).
    // SAFETY: mlockall has no memory-safety preconditions.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) } != 0 {
        eprintln!(
            "oomguard-daemon: mlockall failed ({}); continuing unlocked",
            std::io::Error::last_os_error()
        );
    }
    eprintln!(
        "oomguard-daemon: listening on {} (mode {:o}); policy: max {} jobs per user ({}), lowest adj {} ({})",
        sock.display(),
        policy.socket_mode.value,
        policy.max_jobs_per_user.value,
        policy.max_jobs_per_user.source,
        policy.lowest_adj.value,
        policy.lowest_adj.source,
    );
    if let (Some(addr), Some(m)) = (&args.metrics, &metrics) {
        let bound = crate::guard::metrics::serve(addr, m.clone())?;
        eprintln!("oomguard-daemon: metrics on http://{bound}/metrics");
        start_kill_counter(m.clone());
    }
    if !args.no_prekill {
        start_prekill_hook(&args.prekill_dir, guards.clone());
    }
    std::thread::spawn(move || guards.run());
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    d.serve(l)?;
    Ok(0)
}

/// Serve systemd-oomd's prekill hook when its directory's parent exists (systemd is running):
/// systemd-oomd (>= 260) then calls us before killing a cgroup, and the jobs in it checkpoint.
fn start_prekill_hook(dir: &std::path::Path, guards: Arc<crate::guard::set::GuardSet>) {
    if !dir.parent().is_some_and(|p| p.is_dir()) {
        return;
    }
    // Root and the user systemd-oomd runs as.
    let users = crate::host::users::UserNames::load(std::path::Path::new("/etc/passwd"));
    let uids: Vec<u32> = std::iter::once(0)
        .chain(users.uid_of("systemd-oom"))
        .collect();
    match crate::guard::prekill::PrekillHook::bind(dir, "oomguard", uids) {
        Ok(hook) => {
            eprintln!(
                "oomguard-daemon: systemd-oomd prekill hook at {}",
                hook.path.display()
            );
            std::thread::spawn(move || hook.serve(move |cg| guards.prekill(cg)));
        }
        Err(e) => eprintln!("oomguard-daemon: no prekill hook: {e:#}"),
    }
}

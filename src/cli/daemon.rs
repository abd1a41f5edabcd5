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
    let d = Arc::new(Daemon::new(policy.clone()));
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
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    d.serve(l)?;
    Ok(0)
}

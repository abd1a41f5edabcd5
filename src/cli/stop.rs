//! `oomguard stop JOB`: SIGTERM to the job's process group, then SIGKILL after a grace
//! period. The job is pinned by pidfd and start time, so a recycled PID is never hit.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::host::adj::Target;
use crate::job::registry;

/// Arguments of `oomguard stop`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds between SIGTERM and SIGKILL
    #[arg(long, default_value_t = 10)]
    pub grace: u64,
    /// Job id, id prefix or name
    pub job: String,
}

fn signal_group(t: &Target, sig: i32) {
    if t.alive() {
        // The job is a session (and process group) leader: signal its whole group so
        // its workers go too. Its being alive guarantees the group id is still its own.
        // SAFETY: plain kill(2).
        unsafe { libc::kill(-t.pid, sig) };
    }
}

pub fn run(args: Args) -> Result<u8> {
    let state = registry::state_dir()?;
    let job = registry::find(&state, &args.job)?;
    if job.end.is_some() {
        bail!("job {} has already ended", job.id);
    }
    let Ok(t) = Target::open(Path::new("/proc"), job.pid, Some(job.pid_start_ticks)) else {
        bail!("job {} (pid {}) is no longer running", job.id, job.pid);
    };
    signal_group(&t, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(args.grace);
    while t.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if t.alive() {
        eprintln!(
            "oomguard: job {} did not stop within {} s: sending SIGKILL",
            job.id, args.grace
        );
        signal_group(&t, libc::SIGKILL);
        while t.alive() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!("oomguard: job {} stopped", job.id);
    Ok(0)
}

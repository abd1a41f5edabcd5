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

/// Signal the job: its whole process group when it leads one (jobs `run` started are
/// session leaders, so their workers go too), else just the process, through its pidfd.
fn signal_job(t: &Target, sig: i32) {
    if !t.alive() {
        return;
    }
    let leads_group = std::fs::read_to_string(format!("/proc/{}/stat", t.pid))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()?
                .split_whitespace()
                .nth(2)?
                .parse::<i32>()
                .ok()
        })
        == Some(t.pid);
    // SAFETY: plain kill(2) / pidfd_send_signal(2). The leader being alive guarantees the
    // group id is still its own.
    unsafe {
        if leads_group {
            libc::kill(-t.pid, sig);
        } else {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                std::os::fd::AsRawFd::as_raw_fd(t.pidfd()),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
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
    signal_job(&t, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(args.grace);
    while t.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if t.alive() {
        eprintln!(
            "oomguard: job {} did not stop within {} s: sending SIGKILL",
            job.id, args.grace
        );
        signal_job(&t, libc::SIGKILL);
        while t.alive() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!("oomguard: job {} stopped", job.id);
    Ok(0)
}

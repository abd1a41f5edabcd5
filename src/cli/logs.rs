//! `oomguard logs [-f] JOB`: print a job's output log, or follow it until the job ends.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::job::registry::{self, Live};

/// Arguments of `oomguard logs`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Follow the log until the job ends
    #[arg(short, long)]
    pub follow: bool,
    /// Job id, id prefix or name
    pub job: String,
}

pub fn run(args: Args) -> Result<u8> {
    let state = registry::state_dir()?;
    let job = registry::find(&state, &args.job)?;
    if job.log.as_os_str().is_empty() {
        anyhow::bail!(
            "job {} was protected, not started, by oomguard: it has no log",
            job.id
        );
    }
    let mut f =
        std::fs::File::open(&job.log).with_context(|| format!("opening {}", job.log.display()))?;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n > 0 {
            if out.write_all(&buf[..n]).is_err() {
                return Ok(0);
            }
            continue;
        }
        let _ = out.flush();
        if !args.follow {
            return Ok(0);
        }
        let now = registry::find(&state, &job.id).unwrap_or_else(|_| job.clone());
        if now.live(Path::new("/proc")) != Live::Running {
            // Drain what was written between the last read and the end.
            std::io::copy(&mut f, &mut out)?;
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

//! Lines from applications that reveal a kill without being one: PyTorch's DataLoader,
//! torchrun, Slurm, Jupyter, container runtimes, VS Code. `history` links them to a kill
//! when one matches (same pid, or close in time) and never counts them as kills.

use super::{after, lead_u64};

#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Who wrote it: `pytorch`, `torchrun`, `slurm`, `jupyter`, `container`, `vscode`.
    pub source: &'static str,
    /// The pid the line names, when it names one.
    pub pid: Option<u32>,
    /// What it reveals, in plain words.
    pub says: String,
}

/// Parse one application message.
pub fn parse(msg: &str) -> Option<Evidence> {
    let m = msg.trim();
    if let Some(i) = m.find("DataLoader worker (pid ")
        && m.contains("killed by signal")
    {
        let r = &m[i + "DataLoader worker (pid ".len()..];
        let pid = lead_u64(r).map(|p| p as u32);
        let sig = after(r, "killed by signal: ", &['.']).unwrap_or("?");
        return Some(Evidence {
            source: "pytorch",
            pid,
            says: format!("a PyTorch DataLoader worker was killed by signal {sig}"),
        });
    }
    if m.contains("exitcode: -9") && m.contains("local_rank") {
        return Some(Evidence {
            source: "torchrun",
            pid: after(m, "(pid: ", &[')']).and_then(|v| v.trim().parse().ok()),
            says: "a torchrun worker died of SIGKILL (exitcode -9)".into(),
        });
    }
    if let Some(r) = m.split_once("Detected ").map(|x| x.1)
        && r.contains("oom-kill event")
    {
        let n = lead_u64(r).unwrap_or(1);
        return Some(Evidence {
            source: "slurm",
            pid: None,
            says: format!("Slurm saw {n} OOM kill(s) in the job step's cgroup"),
        });
    }
    if m.starts_with("srun: error:") && m.ends_with("Out Of Memory") {
        return Some(Evidence {
            source: "slurm",
            pid: None,
            says: "a Slurm task ended Out Of Memory".into(),
        });
    }
    if m.contains("KernelRestarter: restarting kernel") {
        return Some(Evidence {
            source: "jupyter",
            pid: None,
            says: "a Jupyter kernel died and was restarted".into(),
        });
    }
    if m.contains("terminated with exit code 137") || m.contains("exited with code 137") {
        return Some(Evidence {
            source: "container",
            pid: None,
            says: "a command ended with exit code 137 (SIGKILL)".into(),
        });
    }
    if m.contains("pty host process exited") {
        return Some(Evidence {
            source: "vscode",
            pid: None,
            says: "VS Code's terminal host died with all its terminals".into(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_lines() {
        let e = parse("RuntimeError: DataLoader worker (pid 4161) is killed by signal: Killed.")
            .unwrap();
        assert_eq!(e.pid, Some(4161));
        assert!(e.says.contains("signal Killed"));
        let e = parse("ERROR:torch.distributed.elastic.multiprocessing.api:failed (exitcode: -9) local_rank: 1 (pid: 1168) of binary: /opt/conda/bin/python").unwrap();
        assert_eq!((e.source, e.pid), ("torchrun", Some(1168)));
        assert_eq!(
            parse("slurmstepd: error: Detected 2 oom-kill event(s) in step 3756240.batch cgroup.")
                .unwrap()
                .source,
            "slurm"
        );
        assert!(parse("srun: error: sdumont6156: task 0: Out Of Memory").is_some());
        assert!(parse("command terminated with exit code 137").is_some());
        assert!(parse("all good").is_none());
    }
}

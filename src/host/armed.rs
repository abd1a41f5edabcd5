//! Gather what `doctor` reports: the kernel's OOM sysctls, systemd-oomd (running? its
//! oomd.conf and, through `oomctl`, every unit it watches), earlyoom and nohang (running?
//! their arguments and config), and the cgroup setup. All rooted, for fake-tree tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::host::cgroup::CgroupFs;
use crate::job::killers;
use crate::model::armed::{self, Cgroup, Daemon, Kernel, Machine, Oomd};

/// Where to look.
#[derive(Debug, Clone)]
pub struct Roots {
    pub proc: PathBuf,
    pub cgroup: PathBuf,
    /// The root of `/etc`, `/usr/lib`, `/run` (oomd.conf and its drop-ins).
    pub etc: PathBuf,
    /// Ask systemd-oomd itself (`oomctl dump`) for the units it watches.
    pub oomctl: bool,
}

fn read_num<T: std::str::FromStr>(p: &Path) -> Option<T> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn kernel(proc: &Path) -> Kernel {
    let vm = proc.join("sys/vm");
    let mem = std::fs::read(proc.join("meminfo"))
        .ok()
        .and_then(|b| crate::host::proc::parse_meminfo(&b))
        .unwrap_or_default();
    Kernel {
        overcommit_memory: read_num(&vm.join("overcommit_memory")),
        overcommit_ratio: read_num(&vm.join("overcommit_ratio")),
        panic_on_oom: read_num(&vm.join("panic_on_oom")),
        oom_kill_allocating_task: read_num(&vm.join("oom_kill_allocating_task")),
        mem_total_kib: mem.mem_total_kib,
        swap_total_kib: mem.swap_total_kib,
    }
}

fn daemon(proc: &Path, name: &str) -> Daemon {
    match killers::find(proc, name).into_iter().next() {
        Some(f) => {
            let config = (name == "nohang").then(|| {
                let mut it = f.args.iter();
                let mut c = None;
                while let Some(a) = it.next() {
                    if a == "--config" || a == "-c" {
                        c = it.next().cloned();
                    } else if let Some(v) = a.strip_prefix("--config=") {
                        c = Some(v.to_owned());
                    }
                }
                c.unwrap_or_else(|| "/etc/nohang/nohang.conf".into())
            });
            Daemon {
                running: true,
                pid: Some(f.pid),
                args: f.args,
                config,
            }
        }
        None => Daemon::default(),
    }
}

fn oomd(r: &Roots) -> Oomd {
    let mut o = Oomd::default();
    // systemd-oomd runs as /lib/systemd/systemd-oomd (found by its base name).
    if let Some(f) = killers::find(&r.proc, "systemd-oomd").into_iter().next() {
        o.running = true;
        o.pid = Some(f.pid);
    }
    let (swap, limit, duration) = armed::oomd_conf(&crate::host::systemd::read_oomd_conf(&r.etc));
    o.swap_used_limit_pct = swap;
    o.default_pressure_limit_pct = limit;
    o.default_pressure_duration_s = duration;
    if o.running
        && r.oomctl
        && let Ok(out) = Command::new("oomctl").arg("dump").output()
        && out.status.success()
    {
        armed::parse_oomctl(&String::from_utf8_lossy(&out.stdout), &mut o);
    }
    o
}

fn cgroup(root: &Path) -> Cgroup {
    let fs = CgroupFs::new(root);
    let v1 = fs.v1_memory_root().is_some();
    let v2 = fs.v2_root().is_some();
    let (version, memory) = match (v1, v2) {
        (true, true) => ("hybrid", true),
        (true, false) => ("v1", true),
        (false, true) => ("v2", fs.v2_has_memory()),
        (false, false) => ("none", false),
    };
    Cgroup {
        version: version.into(),
        memory_controller: memory,
    }
}

/// Everything `doctor` reports about the machine.
pub fn machine(r: &Roots) -> Machine {
    Machine {
        kernel: kernel(&r.proc),
        systemd_oomd: oomd(r),
        earlyoom: daemon(&r.proc, "earlyoom"),
        nohang: daemon(&r.proc, "nohang"),
        cgroup: cgroup(&r.cgroup),
    }
}

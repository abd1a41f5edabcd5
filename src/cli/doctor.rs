//! `oomguard doctor [PID]`: which OOM killers are armed on this machine and how; with a
//! PID, which of them could kill it, how close each is, and which shield layers it has.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Serialize;

use super::survey::HostArgs;
use crate::host::armed::{self, Roots};
use crate::host::cgroup::CgroupFs;
use crate::host::proc::ProcFs;
use crate::job::layers::{Layer, State};
use crate::model::armed::{Finding, Machine, earlyoom_rules, findings};
use crate::model::killer::KillerId;
use crate::model::risk::{self, Threat, Thresholds};

/// Arguments of `oomguard doctor`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  oomguard doctor                 which killers are armed here, and what to do about each
  oomguard doctor $(pgrep -f train.py)   which could kill this job, how close each is, its shield
  oomguard doctor --json | jq '.findings[] | select(.status == \"armed\")'

Reads only: oomguard never changes kernel parameters or the killers' configuration.")]
pub struct Args {
    /// A process to examine: the killers that could kill it, how close, its shield layers
    pub pid: Option<i32>,
    /// One JSON object (keys: kernel, systemd_oomd, earlyoom, nohang, cgroup, findings;
    /// with a PID also pid, threats, layers)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub host: HostArgs,
    /// Root for /etc, /usr/lib and /run (oomd.conf and its drop-ins)
    #[arg(long, hide = true, default_value = "/")]
    pub etc_root: PathBuf,
    /// Do not ask systemd-oomd (oomctl) for the units it watches
    #[arg(long, hide = true)]
    pub no_oomctl: bool,
}

/// A threat to one process, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct ThreatOut {
    pub killer: &'static str,
    pub level: crate::model::risk::Level,
    pub subject: String,
    pub fraction: f64,
    pub detail: String,
}

impl From<&Threat> for ThreatOut {
    fn from(t: &Threat) -> ThreatOut {
        ThreatOut {
            killer: t.killer.name(),
            level: t.level,
            subject: t.subject.clone(),
            fraction: t.fraction,
            detail: t.detail.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    #[serde(flatten)]
    machine: Machine,
    findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threats: Option<Vec<ThreatOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    layers: Option<Vec<Layer>>,
}

/// Whether cgroup `path` is `ancestor` or lies under it.
fn under(path: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || path == ancestor
        || path
            .strip_prefix(ancestor)
            .is_some_and(|r| r.starts_with('/'))
}

/// The threats to `pid` and its shield layers.
fn examine(m: &Machine, pid: i32, host: &HostArgs) -> Result<(String, Vec<Threat>, Vec<Layer>)> {
    let procfs = ProcFs::new(&host.proc_root);
    let Some(info) = procfs.sample(pid) else {
        bail!("no process {pid} (it may have ended); `oomguard top` lists them");
    };
    let th = Thresholds::default();
    let cgfs = CgroupFs::new(&host.cgroup_root);
    let mut threats = Vec::new();
    let mem = procfs.meminfo().ok();
    if let Some(t) = mem {
        threats.push(risk::global(
            (t.mem_available_kib + t.swap_free_kib) * 1024,
            (t.mem_total_kib + t.swap_total_kib) * 1024,
            None,
            &th,
        ));
    }
    if let Some(g) = cgfs
        .memcg_dir(&info.cgroup)
        .and_then(|d| cgfs.limiting_group(&d))
        && let (Some(limit), Some(usage)) = (g.limit_bytes, g.usage_bytes)
    {
        let name = cgfs
            .hierarchy_root(&g.dir)
            .and_then(|r| {
                g.dir
                    .strip_prefix(r)
                    .ok()
                    .map(|p| format!("/{}", p.display()))
            })
            .unwrap_or_else(|| g.dir.display().to_string());
        threats.push(risk::memcg(&name, usage, limit, None, &th));
    }
    let unified = info.cgroup.unified.clone().unwrap_or_default();
    let in_oomguard_scope = unified
        .rsplit('/')
        .next()
        .is_some_and(|s| s.starts_with("oomguard-") && s.ends_with(".scope"));
    let o = &m.systemd_oomd;
    let mut oomd_rules = Vec::new();
    if o.running {
        for r in o.rules.iter().filter(|r| under(&unified, &r.cgroup)) {
            oomd_rules.push(r.cgroup.clone());
            if in_oomguard_scope {
                continue;
            }
            match r.kind {
                "pressure" => {
                    let avg10 = r.pressure_avg10.or_else(|| {
                        let f = Path::new(&host.cgroup_root)
                            .join(r.cgroup.trim_start_matches('/'))
                            .join("memory.pressure");
                        crate::host::psi::read_pressure(&f)
                            .ok()
                            .map(|p| p.full.avg10 as f64)
                    });
                    threats.push(risk::oomd_pressure(
                        &r.cgroup,
                        avg10.unwrap_or(0.0),
                        r.limit_pct.unwrap_or(o.default_pressure_limit_pct),
                        0.0,
                        r.duration_s.unwrap_or(o.default_pressure_duration_s),
                        None,
                        &th,
                    ));
                }
                _ if m.kernel.swap_total_kib > 0 => {
                    if let Some(t) = mem {
                        let used = |total: u64, free: u64| {
                            total.saturating_sub(free) as f64 / total.max(1) as f64
                        };
                        threats.push(risk::oomd_swap(
                            used(t.mem_total_kib, t.mem_available_kib),
                            used(t.swap_total_kib, t.swap_free_kib),
                            o.swap_used_limit_pct / 100.0,
                            &th,
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    if m.earlyoom.running
        && info.oom_score_adj > -1000
        && let Some(t) = mem
    {
        let r = earlyoom_rules(&m.earlyoom.args);
        threats.push(risk::earlyoom(
            KillerId::Earlyoom,
            t.mem_available_kib * 1024,
            t.mem_total_kib * 1024,
            t.swap_free_kib * 1024,
            t.swap_total_kib * 1024,
            r.mem_term_pct,
            r.swap_term_pct,
            None,
            &th,
        ));
    }
    threats.sort_by(|a, b| {
        b.level
            .cmp(&a.level)
            .then(b.fraction.total_cmp(&a.fraction))
    });
    // Shield layers, as `ps` names them.
    let mut layers = vec![if info.oom_score_adj == -1000 {
        Layer::new("kernel", State::Applied, "oom_score_adj -1000")
    } else {
        Layer::new(
            "kernel",
            State::Failed,
            format!(
                "oom_score_adj {}: the kernel may choose it; `oomguard protect {pid}`",
                info.oom_score_adj
            ),
        )
    }];
    layers.push(if in_oomguard_scope {
        Layer::new(
            "systemd-oomd",
            State::Applied,
            format!("in {unified} (ManagedOOMPreference=omit)"),
        )
    } else if !o.running {
        Layer::new(
            "systemd-oomd",
            State::NotApplicable,
            "systemd-oomd is not running",
        )
    } else if oomd_rules.is_empty() {
        Layer::new(
            "systemd-oomd",
            State::NotApplicable,
            if o.rules_known {
                "no systemd-oomd rule watches its cgroup".to_string()
            } else {
                "unknown: oomctl could not list oomd's rules".to_string()
            },
        )
    } else {
        Layer::new(
            "systemd-oomd",
            State::Failed,
            format!(
                "{} watched by systemd-oomd; `oomguard protect {pid}` moves it into its own scope",
                oomd_rules.join(", ")
            ),
        )
    });
    let cmdline = procfs.cmdline(pid).unwrap_or_default().join(" ");
    layers.extend(crate::job::killers::assess(
        &host.proc_root,
        info.oom_score_adj,
        &info.name,
        &cmdline,
    ));
    Ok((info.name, threats, layers))
}

pub fn run(args: Args) -> Result<u8> {
    let roots = Roots {
        proc: args.host.proc_root.clone(),
        cgroup: args.host.cgroup_root.clone(),
        etc: args.etc_root.clone(),
        oomctl: !args.no_oomctl,
    };
    let machine = armed::machine(&roots);
    let found = findings(&machine);
    let (process, threats, layers) = match args.pid {
        Some(pid) => {
            let (n, t, l) = examine(&machine, pid, &args.host)?;
            (Some(n), Some(t), Some(l))
        }
        None => (None, None, None),
    };
    if args.json {
        let report = Report {
            machine,
            findings: found,
            pid: args.pid,
            process,
            threats: threats.map(|t| t.iter().map(ThreatOut::from).collect()),
            layers,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    let mut last = "";
    for f in &found {
        if f.killer != last {
            println!("{}:", f.killer);
            last = f.killer;
        }
        println!("  [{}] {}", f.status, f.detail);
        println!("      → {}", f.remedy);
    }
    if let (Some(pid), Some(threats), Some(layers)) = (args.pid, threats, layers) {
        println!(
            "\nprocess {pid} ({}): who could kill it, nearest first",
            process.unwrap_or_default()
        );
        for t in &threats {
            println!(
                "  {:<7} {:<13} {}",
                format!("{:?}", t.level).to_lowercase(),
                t.killer.name(),
                t.detail
            );
        }
        println!("its shield:");
        for l in &layers {
            let st = match l.state {
                State::Applied => "applied",
                State::NotApplicable => "n/a",
                State::Failed => "missing",
            };
            println!("  {:<13} {:<8} {}", l.layer, st, l.detail);
        }
        if layers.iter().any(|l| l.state == State::Failed) {
            println!("  → `oomguard protect {pid}` adds the missing layers (the daemon must run)");
        }
    }
    Ok(0)
}

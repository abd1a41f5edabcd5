//! `oomguard doctor [PID]`: which OOM killers are armed on this machine and how; with a PID,
//! which of them could kill it, how close each is, and which shields it has. Read-only: it
//! never writes a setting, a cgroup or a process.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use super::render::print_json;
use super::survey::HostArgs;
use crate::host::cgroup::{CgroupFs, read_memcg};
use crate::host::oomd;
use crate::host::psi::read_pressure;
use crate::host::systemd;
use crate::job::killers;
use crate::job::layers::{Layer, State};
use crate::model::armed::{
    self, CgroupState, EarlyoomConf, Finding, GroupLimit, KernelSettings, NohangConf, OomdRule,
    OomdState, RuleKind, Subject,
};
use crate::model::badness;
use crate::model::killer::KillerId;
use crate::model::process::{MemTotals, ProcInfo};
use crate::model::risk::{self, Threat, Thresholds};

/// Arguments of `oomguard doctor`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  oomguard doctor\n  oomguard doctor 4402\n  \
    oomguard doctor $(pgrep -f train.py) --json\n\n\
    Each finding says whether a killer is armed, not running or not applicable, and ends with\n\
    what to do about it. Nothing is changed: doctor only reads."
)]
pub struct Args {
    /// A process to check: which killers could take it, how close each is, which shields it has
    pub pid: Option<i32>,
    /// Print one JSON object (keys: kernel, systemd_oomd, earlyoom, nohang, cgroup, findings;
    /// with a PID also pid, process, threats, layers)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub host: HostArgs,
    /// Root of the filesystem holding /etc, /run and /usr/lib config files
    #[arg(long, hide = true, env = "OOMGUARD_ROOT", default_value = "/")]
    pub root: PathBuf,
}

/// A peer killer (earlyoom, nohang) as found in `/proc`.
#[derive(Debug, Serialize)]
pub struct Peer<C> {
    pub running: bool,
    pub pid: Option<i32>,
    pub args: Vec<String>,
    /// nohang: the config file read (as named on its command line, or the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
    /// Its thresholds and rules; null when not running (or, for nohang, no config was found).
    pub settings: Option<C>,
}

/// The process asked about.
#[derive(Debug, Serialize)]
pub struct ProcessView {
    pub pid: i32,
    pub name: String,
    pub uid: u32,
    pub oom_score_adj: i32,
    pub cmdline: String,
    /// Its memory cgroup path (v1 memory controller's, else the unified one).
    pub cgroup: Option<String>,
    pub cgroup_v2: Option<String>,
    pub oomguard_scope: Option<String>,
    pub oomd_omit: bool,
}

/// Everything doctor found, as `--json` prints it. The keys are a contract.
#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel: KernelSettings,
    pub systemd_oomd: OomdState,
    pub earlyoom: Peer<EarlyoomConf>,
    pub nohang: Peer<NohangConf>,
    pub cgroup: CgroupState,
    pub findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threats: Option<Vec<Threat>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<Layer>>,
}

fn kernel_settings(proc: &Path, t: &MemTotals) -> KernelSettings {
    let oc = oomd::vm_setting(proc, "overcommit_memory");
    KernelSettings {
        overcommit_memory: oc,
        overcommit_mode: oc.and_then(armed::overcommit_mode),
        overcommit_ratio: oomd::vm_setting(proc, "overcommit_ratio"),
        panic_on_oom: oomd::vm_setting(proc, "panic_on_oom"),
        oom_kill_allocating_task: oomd::vm_setting(proc, "oom_kill_allocating_task"),
        mem_total_kib: t.mem_total_kib,
        mem_available_kib: t.mem_available_kib,
        swap_total_kib: t.swap_total_kib,
        swap_free_kib: t.swap_free_kib,
    }
}

/// A group's path as the kernel prints it: relative to its hierarchy's root.
fn rel_path(cg: &CgroupFs, dir: &Path) -> String {
    cg.hierarchy_root(dir)
        .and_then(|r| dir.strip_prefix(r).ok())
        .map(|p| format!("/{}", p.display()))
        .unwrap_or_else(|| dir.display().to_string())
}

fn group_limit(cg: &CgroupFs, g: &crate::host::cgroup::MemCgroup) -> GroupLimit {
    GroupLimit {
        path: rel_path(cg, &g.dir),
        limit_bytes: g.limit_bytes,
        high_bytes: g.high_bytes,
        usage_bytes: g.usage_bytes,
    }
}

fn cgroup_state(cg: &CgroupFs, p: Option<&ProcInfo>) -> CgroupState {
    let v1 = cg.v1_memory_root();
    let v2 = cg.v2_root();
    let v2_mem = cg.v2_has_memory();
    let version = match (&v1, &v2) {
        (Some(_), Some(_)) => "hybrid",
        (Some(_), None) => "v1",
        (None, Some(_)) => "v2",
        (None, None) => "none",
    };
    let mut st = CgroupState {
        version,
        v1_memory_root: v1.map(|p| p.display().to_string()),
        v2_root: v2.map(|p| p.display().to_string()),
        v2_memory_controller: v2_mem,
        ..CgroupState::default()
    };
    let Some(dir) = p.and_then(|p| cg.memcg_dir(&p.cgroup)) else {
        return st;
    };
    let root = cg.hierarchy_root(&dir);
    let mut cur = Some(dir.as_path());
    while let Some(d) = cur {
        if let Ok(g) = read_memcg(d) {
            st.chain.push(group_limit(cg, &g));
        }
        if root.as_deref() == Some(d) {
            break;
        }
        cur = d.parent();
    }
    st.limiting = cg.limiting_group(&dir).map(|g| group_limit(cg, &g));
    st
}

fn oomd_state(host: &HostArgs, root: &Path, who: Option<&ProcInfo>) -> OomdState {
    let found = killers::find(&host.proc_root, "systemd-oomd");
    let config = oomd::read_oomd_conf(root);
    let mut st = OomdState {
        systemd: systemd::booted(root),
        running: !found.is_empty(),
        pid: found.first().map(|f| f.pid),
        config,
        rules_from: "none",
        rules: Vec::new(),
        error: None,
    };
    if !st.running {
        return st;
    }
    let mut errors = Vec::new();
    match oomd::oomctl_dump() {
        Ok(d) => {
            // What systemd-oomd runs with now (the files may have changed since it started).
            let c = &mut st.config;
            c.swap_used_limit_pct = d.swap_used_limit_pct.unwrap_or(c.swap_used_limit_pct);
            c.default_memory_pressure_limit_pct = d
                .default_memory_pressure_limit_pct
                .unwrap_or(c.default_memory_pressure_limit_pct);
            c.default_memory_pressure_duration_s = d
                .default_memory_pressure_duration_s
                .unwrap_or(c.default_memory_pressure_duration_s);
            st.rules = d.rules;
            st.rules_from = "oomctl";
            return st;
        }
        Err(e) => errors.push(format!("{e:#}")),
    }
    match oomd::systemctl_rules(&st.config) {
        Ok(r) => {
            st.rules = r;
            st.rules_from = "systemctl";
            return st;
        }
        Err(e) => errors.push(format!("{e:#}")),
    }
    // Last resort, for one process: ask PID 1 which unit's rule watches it.
    if st.systemd
        && let Some(p) = who
    {
        match systemd::Systemd::connect().and_then(|sd| sd.oomd_watch(p.pid as u32)) {
            Ok(w) => {
                st.rules_from = "dbus";
                if let Some(w) = w {
                    let cgroup = p.cgroup.unified.clone().unwrap_or_default();
                    for r in w.rules {
                        let pressure = r.starts_with("ManagedOOMMemoryPressure");
                        st.rules.push(OomdRule {
                            unit: w.watched_by.clone(),
                            // The rule's own cgroup is unknown here: the process's covers it.
                            cgroup: cgroup.clone(),
                            kind: if pressure {
                                RuleKind::MemoryPressure
                            } else {
                                RuleKind::Swap
                            },
                            limit_pct: if pressure {
                                st.config.default_memory_pressure_limit_pct
                            } else {
                                st.config.swap_used_limit_pct
                            },
                            duration_s: pressure
                                .then_some(st.config.default_memory_pressure_duration_s),
                            pressure_avg10: None,
                        });
                    }
                }
                return st;
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    st.error = Some(errors.join("; "));
    st
}

fn nohang_config_path(args: &[String], root: &Path) -> String {
    if let Some(p) = armed::arg_value(args, "--config", Some("-c")) {
        return p.to_owned();
    }
    [
        "/etc/nohang/nohang.conf",
        "/usr/local/etc/nohang/nohang.conf",
    ]
    .into_iter()
    .find(|p| under(root, p).is_file())
    .unwrap_or("/etc/nohang/nohang.conf")
    .to_owned()
}

fn under(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// How close each killer that could act on the process is.
fn threats(r: &Report, nohang_conf: Option<&NohangConf>, who: &Subject) -> Vec<Threat> {
    let th = Thresholds::default();
    let k = &r.kernel;
    let kib = 1024u64;
    let mut out = vec![risk::global(
        (k.mem_available_kib + k.swap_free_kib) * kib,
        (k.mem_total_kib + k.swap_total_kib) * kib,
        None,
        &th,
    )];
    if let Some(g) = &r.cgroup.limiting
        && let (Some(limit), Some(usage)) = (g.limit_bytes, g.usage_bytes)
    {
        out.push(risk::memcg(&g.path, usage, limit, None, &th));
    }
    let path = who.cgroup_v2.as_deref().unwrap_or("");
    for rule in r.systemd_oomd.rules.iter().filter(|x| x.covers(path)) {
        match rule.kind {
            RuleKind::MemoryPressure => {
                let Some(avg10) = rule.pressure_avg10 else {
                    continue;
                };
                let dur = rule
                    .duration_s
                    .unwrap_or(r.systemd_oomd.config.default_memory_pressure_duration_s);
                let mut t =
                    risk::oomd_pressure(&rule.unit, avg10, rule.limit_pct, 0.0, dur, None, &th);
                if t.eta_s.is_some() {
                    // One sample cannot tell how long it has been above: it may act at any moment.
                    t.level = risk::Level::Danger;
                    t.eta_s = None;
                    t.detail = format!(
                        "memory pressure on {} is {avg10:.2}% of its {:.0}% limit, above it: systemd-oomd kills once it stays above for {dur:.0} s (one sample: how long it has been above is unknown)",
                        rule.unit, rule.limit_pct
                    );
                }
                out.push(t);
            }
            RuleKind::Swap if k.swap_total_kib > 0 => {
                let mem_used = 1.0 - k.mem_available_kib as f64 / k.mem_total_kib.max(1) as f64;
                let swap_used = 1.0 - k.swap_free_kib as f64 / k.swap_total_kib as f64;
                out.push(risk::oomd_swap(
                    mem_used,
                    swap_used,
                    rule.limit_pct / 100.0,
                    &th,
                ));
            }
            RuleKind::Swap => {}
        }
    }
    let peer = |killer, mem_pct: f64, swap_pct: f64| {
        risk::earlyoom(
            killer,
            k.mem_available_kib * kib,
            k.mem_total_kib * kib,
            k.swap_free_kib * kib,
            k.swap_total_kib * kib,
            mem_pct,
            swap_pct,
            None,
            &th,
        )
    };
    if let Some(c) = &r.earlyoom.settings {
        out.push(peer(KillerId::Earlyoom, c.mem_term_pct, c.swap_term_pct));
    }
    if let Some(c) = nohang_conf
        && let Some(m) = c.soft_mem_pct
    {
        // nohang's documented default for soft_threshold_min_swap is 10 %.
        out.push(peer(KillerId::Nohang, m, c.soft_swap_pct.unwrap_or(10.0)));
    }
    out
}

/// Gather everything and decide. Never writes anything.
pub fn doctor(args: &Args) -> anyhow::Result<Report> {
    let host = &args.host;
    let procfs = host.procfs();
    let proc_root = &host.proc_root;
    let totals = procfs.meminfo()?;
    let info = match args.pid {
        None => None,
        Some(pid) if pid <= 0 => bail!("{pid} is not a process id (PIDs are 1 or more)"),
        Some(pid) => Some(procfs.sample(pid).with_context(|| {
            format!(
                "no process {pid} in {} (it may have exited, or belong to another PID namespace)",
                proc_root.display()
            )
        })?),
    };
    let cg = host.cgroupfs();
    let kernel = kernel_settings(proc_root, &totals);
    let cgroup = cgroup_state(&cg, info.as_ref());
    let systemd_oomd = oomd_state(host, &args.root, info.as_ref());

    let eo = killers::find(proc_root, "earlyoom").into_iter().next();
    let earlyoom = Peer {
        running: eo.is_some(),
        pid: eo.as_ref().map(|f| f.pid),
        args: eo.as_ref().map(|f| f.args.clone()).unwrap_or_default(),
        config_path: None,
        settings: eo
            .as_ref()
            .map(|f| armed::earlyoom_conf(&f.args, totals.mem_total_kib, totals.swap_total_kib)),
    };
    let nh = killers::find(proc_root, "nohang").into_iter().next();
    let nh_path = nh.as_ref().map(|f| nohang_config_path(&f.args, &args.root));
    let nh_text = nh_path
        .as_deref()
        .and_then(|p| std::fs::read_to_string(under(&args.root, p)).ok());
    let nohang = Peer {
        running: nh.is_some(),
        pid: nh.as_ref().map(|f| f.pid),
        args: nh.as_ref().map(|f| f.args.clone()).unwrap_or_default(),
        config_path: nh_path.clone(),
        settings: nh_text
            .as_deref()
            .map(|t| armed::nohang_conf(t, totals.mem_total_kib, totals.swap_total_kib)),
    };

    let subject = info.as_ref().map(|p| {
        let v2 = p.cgroup.unified.clone();
        let omit = match (cg.v2_root(), &v2) {
            (Some(r), Some(path)) => oomd::oomd_omit(&oomd::v2_dir(&r, path)),
            _ => false,
        };
        Subject {
            pid: p.pid,
            name: p.name.clone(),
            oom_score_adj: p.oom_score_adj,
            oomguard_scope: v2
                .as_deref()
                .and_then(armed::oomguard_scope)
                .map(str::to_owned),
            cgroup_v2: v2,
            oomd_omit: omit,
            never_picked: badness::unkillable(p).map(|u| u.describe()),
        }
    });
    let mut report = Report {
        kernel,
        systemd_oomd,
        earlyoom,
        nohang,
        cgroup,
        findings: Vec::new(),
        pid: args.pid,
        process: None,
        threats: None,
        layers: None,
    };
    // Fresh pressure of every pressure rule's cgroup (oomctl's figure is a fallback).
    if let Some(v2) = cg.v2_root() {
        for r in &mut report.systemd_oomd.rules {
            if r.kind == RuleKind::MemoryPressure
                && let Ok(p) = read_pressure(&oomd::v2_dir(&v2, &r.cgroup).join("memory.pressure"))
            {
                r.pressure_avg10 = Some(p.full.avg10 as f64);
            }
        }
    }

    let who = subject.as_ref();
    let (cmdline, eo_layer, nh_layer) = match (&info, who) {
        (Some(p), Some(s)) => {
            let cmdline = procfs.cmdline(p.pid).unwrap_or_default().join(" ");
            let eo_layer = eo
                .as_ref()
                .map(|f| killers::earlyoom(f, s.oom_score_adj, &s.name));
            let nh_layer = nh.as_ref().map(|f| {
                killers::nohang(
                    f,
                    nh_text.as_deref().unwrap_or(""),
                    s.oom_score_adj,
                    &s.name,
                    &cmdline,
                )
            });
            (cmdline, eo_layer, nh_layer)
        }
        _ => (String::new(), None, None),
    };
    fn verdict(l: &Option<Layer>) -> Option<(bool, &str)> {
        l.as_ref()
            .map(|l| (l.state == State::Applied, l.detail.as_str()))
    }
    let swap = report.kernel.swap_total_kib;
    report.findings = vec![
        armed::kernel_finding(&report.kernel, who),
        armed::memcg_finding(&report.cgroup, who),
        armed::oomd_finding(&report.systemd_oomd, swap, who),
        armed::earlyoom_finding(
            report.earlyoom.pid,
            &report.earlyoom.args,
            report.earlyoom.settings.as_ref(),
            verdict(&eo_layer),
            who,
        ),
        armed::nohang_finding(
            report.nohang.pid,
            &report.nohang.args,
            nh_path
                .as_deref()
                .map(|p| if nh_text.is_some() { p } else { "(not found)" }),
            report.nohang.settings.as_ref(),
            verdict(&nh_layer),
            who,
        ),
    ];
    if let (Some(p), Some(s)) = (&info, who) {
        let mut layers = vec![
            armed::kernel_layer(s),
            armed::oomd_layer(&report.systemd_oomd, swap, s),
        ];
        layers.push(eo_layer.unwrap_or_else(|| {
            Layer::new("earlyoom", State::NotApplicable, "earlyoom is not running")
        }));
        layers.push(nh_layer.unwrap_or_else(|| {
            Layer::new("nohang", State::NotApplicable, "nohang is not running")
        }));
        report.threats = Some(threats(&report, report.nohang.settings.as_ref(), s));
        report.layers = Some(layers);
        report.process = Some(ProcessView {
            pid: p.pid,
            name: p.name.clone(),
            uid: p.uid,
            oom_score_adj: p.oom_score_adj,
            cmdline,
            cgroup: p.cgroup.display().map(str::to_owned),
            cgroup_v2: s.cgroup_v2.clone(),
            oomguard_scope: s.oomguard_scope.clone(),
            oomd_omit: s.oomd_omit,
        });
    }
    Ok(report)
}

fn title(killer: &str) -> &str {
    match killer {
        "kernel" => "Kernel OOM killer (global)",
        "kernel-memcg" => "Kernel OOM killer (memory cgroups)",
        other => other,
    }
}

fn state_word(s: State) -> &'static str {
    match s {
        State::Applied => "applied",
        State::NotApplicable => "not applicable",
        State::Failed => "failed",
    }
}

/// The text report: a section per killer, each with its status word, details and remedy.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "OOM killers on this machine");
    for f in &r.findings {
        let _ = writeln!(o, "\n{}: {}", title(f.killer), f.status.word());
        for part in f.detail.split("; ") {
            let _ = writeln!(o, "  {part}");
        }
        if f.killer == "kernel-memcg" {
            for g in &r.cgroup.chain {
                let b = |v: Option<u64>| v.map_or("max".to_owned(), |v| format!("{} MiB", v >> 20));
                let _ = writeln!(
                    o,
                    "    {}: limit {}, high {}, usage {}",
                    g.path,
                    b(g.limit_bytes),
                    b(g.high_bytes),
                    g.usage_bytes
                        .map_or("?".into(), |v| format!("{} MiB", v >> 20))
                );
            }
        }
        let _ = writeln!(o, "  → {}", f.remedy);
    }
    if let Some(p) = &r.process {
        let _ = writeln!(
            o,
            "\nProcess {} ({}), oom_score_adj {}, cgroup {}",
            p.pid,
            p.name,
            p.oom_score_adj,
            p.cgroup.as_deref().unwrap_or("?")
        );
        if let Some(ts) = &r.threats {
            let _ = writeln!(o, "  How close each killer is:");
            for t in ts {
                let _ = writeln!(
                    o,
                    "    {:<7} {:<13} {}",
                    t.level.name(),
                    t.killer.name(),
                    t.detail
                );
            }
        }
        if let Some(ls) = &r.layers {
            let _ = writeln!(o, "  Shield layers:");
            for l in ls {
                let _ = writeln!(
                    o,
                    "    {:<14} {:<13} {}",
                    state_word(l.state),
                    l.layer,
                    l.detail
                );
            }
        }
    }
    o
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let r = doctor(&args)?;
    if args.json {
        print_json(&r)?;
    } else {
        print!("{}", render(&r));
    }
    Ok(0)
}

//! `history`'s parsers against real lines from public bug reports and a real dmesg
//! capture (../shared/corpus, copied into tests/fixtures/corpus; the copy is checked
//! against the original when it is present).

use oomguard::model::event::{Clock, OomEvent, from_text};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/corpus");

fn read(name: &str) -> String {
    let copy = std::fs::read_to_string(format!("{FIX}/{name}")).unwrap();
    let shared = format!("{}/../shared/corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    match std::fs::read_to_string(&shared) {
        Ok(orig) => assert_eq!(orig, copy, "{name}: the fixture copy differs from {shared}"),
        Err(_) => eprintln!("note: {shared} absent; using the fixture copy only"),
    }
    copy
}

/// What a corpus line must yield: `None` for lines that record no kill, else the killer
/// and what identifies the victim (pid, process, or the end of its cgroup).
/// Killer, pid, process, end of the cgroup.
type Victim = (
    &'static str,
    Option<u32>,
    Option<&'static str>,
    Option<&'static str>,
);

struct Want {
    /// A piece of the line that identifies the row.
    key: &'static str,
    kill: Option<Victim>,
    constraint: Option<&'static str>,
}

const fn kill(
    key: &'static str,
    killer: &'static str,
    pid: Option<u32>,
    process: Option<&'static str>,
    cgroup_end: Option<&'static str>,
    constraint: Option<&'static str>,
) -> Want {
    Want {
        key,
        kill: Some((killer, pid, process, cgroup_end)),
        constraint,
    }
}

const fn none(key: &'static str) -> Want {
    Want {
        key,
        kill: None,
        constraint: None,
    }
}

/// Every row of public_reports.tsv. Decision lines (`Considered N cgroups for killing`,
/// `Memory pressure for … is …`, `invoked oom-killer`, earlyoom's `low memory!`, nohang's
/// `STARTING implement_corrective_action`) precede a kill but are also logged when no
/// kill follows (systemd-oomd dumps its candidates after a failed attempt too), so alone
/// they are not kills: they join the kill of their incident when it is in the log.
const WANT: &[Want] = &[
    kill(
        "vte-spawn-dbb4a75e",
        "systemd-oomd",
        None,
        None,
        Some("vte-spawn-dbb4a75e-031f-480d-924b-5de5af7579d2.scope"),
        Some("pressure"),
    ),
    kill(
        "google\\x2dchrome-11396.scope due",
        "systemd-oomd",
        None,
        None,
        Some("app-gnome-google\\x2dchrome-11396.scope"),
        Some("swap"),
    ),
    kill(
        "org.gnome.Shell@wayland.service due",
        "systemd-oomd",
        None,
        None,
        Some("org.gnome.Shell@wayland.service"),
        Some("swap"),
    ),
    kill(
        "app-kitty-47f7730eb1474ba3848f1b5d6135a33f.scope due",
        "systemd-oomd",
        None,
        None,
        Some("app-kitty-47f7730eb1474ba3848f1b5d6135a33f.scope"),
        Some("pressure"),
    ),
    kill(
        "systemd-oomd killed 65 process",
        "systemd-oomd",
        None,
        None,
        Some("app-kitty-47f7730eb1474ba3848f1b5d6135a33f.scope"),
        None,
    ),
    none("Considered 10 cgroups"),
    none("Considered 35 cgroups"),
    kill(
        "xdg\\x2dterminal\\x2dexec-0ae8dde6.scope: Failed with result 'oom-kill'",
        "unknown",
        None,
        None,
        Some("app-Hyprland-xdg\\x2dterminal\\x2dexec-0ae8dde6.scope"),
        None,
    ),
    none("Memory pressure for /system.slice is 85.03%"),
    kill(
        "systemd-journald.service: systemd-oomd killed 1",
        "systemd-oomd",
        None,
        None,
        Some("systemd-journald.service"),
        None,
    ),
    none("No swap; memory pressure usage will be degraded"),
    kill(
        "user@1021.service: A process of this unit",
        "kernel",
        None,
        None,
        Some("user@1021.service"),
        None,
    ),
    kill(
        "apache2.service: Failed with result",
        "unknown",
        None,
        None,
        Some("apache2.service"),
        None,
    ),
    none("Comm: GC Thread#9 Not tainted"),
    kill(
        "task=simplescreenrec,pid=140113",
        "kernel",
        Some(140113),
        Some("simplescreenrec"),
        Some("session-22.scope"),
        Some("global"),
    ),
    kill(
        "oom_reaper: reaped process 140113",
        "kernel",
        Some(140113),
        Some("simplescreenrec"),
        None,
        None,
    ),
    kill(
        "task=python,pid=7899",
        "kernel",
        Some(7899),
        Some("python"),
        Some("init.scope"),
        Some("global"),
    ),
    kill(
        "Killed process 7748 (python)",
        "kernel",
        Some(7748),
        Some("python"),
        None,
        None,
    ),
    kill(
        "Killed process 935 (python)",
        "kernel",
        Some(935),
        Some("python"),
        None,
        None,
    ),
    none("python3 invoked oom-killer: gfp_mask=0xd0"),
    kill(
        "Killed process 63214 (uwsgi)",
        "kernel",
        Some(63214),
        Some("uwsgi"),
        None,
        Some("memcg"),
    ),
    none("[  pid  ]   uid  tgid total_vm"),
    kill(
        "Killed process 265 (plymouthd)",
        "kernel",
        Some(265),
        Some("plymouthd"),
        None,
        Some("global"),
    ),
    kill(
        "Killed process 419562 (rg)",
        "kernel",
        Some(419562),
        Some("rg"),
        None,
        Some("global"),
    ),
    kill(
        "app-org.gnome.Terminal.slice/vte-s>",
        "kernel",
        None,
        None,
        Some("vte-s"),
        Some("global"),
    ),
    kill(
        "Killed process 251538 (rustc)",
        "kernel",
        Some(251538),
        Some("rustc"),
        None,
        Some("global"),
    ),
    none("kswapd0: page allocation failure"),
    none("low memory! at or below SIGTERM limits"),
    kill(
        "sending SIGTERM to process 29410",
        "earlyoom",
        Some(29410),
        Some("cluster"),
        None,
        Some("global"),
    ),
    kill(
        "process exited after 2.8 seconds",
        "earlyoom",
        None,
        None,
        None,
        None,
    ),
    kill(
        "sending SIGTERM to process 997",
        "earlyoom",
        Some(997),
        Some("my-process-name"),
        None,
        Some("global"),
    ),
    kill(
        "sending SIGKILL to process 291787",
        "earlyoom",
        Some(291787),
        Some("earlyoom"),
        None,
        Some("global"),
    ),
    none("Could not find a process to kill"),
    none("STARTING implement_corrective_action"),
    none("DataLoader worker (pid 4161)"),
    none("DataLoader worker (pid 11011)"),
    none("DataLoader worker (pid 23616)"),
    none("failed (exitcode: -9)"),
    none("Detected 1 oom-kill event(s) in StepId=191.batch"),
    none("task 0: Out Of Memory"),
    none("Detected 2 oom-kill event(s) in step 3756240"),
    none("KernelRestarter: restarting kernel (1/5), keep random ports"),
    none("pty host process exited"),
    none("command terminated with exit code 137"),
];

fn events_of(line: &str) -> (Vec<OomEvent>, Vec<String>) {
    from_text(line, "corpus", Clock::default())
}

#[test]
fn every_corpus_line_yields_the_right_event_or_none() {
    let tsv = read("public_reports.tsv");
    let mut rows = 0;
    let mut kills = 0;
    for row in tsv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = row.splitn(4, '\t').collect();
        assert_eq!(cols.len(), 4, "malformed row: {row}");
        let line = cols[3];
        let wants: Vec<&Want> = WANT.iter().filter(|w| line.contains(w.key)).collect();
        assert!(!wants.is_empty(), "row needs an expectation: {line}");
        assert!(
            wants.iter().all(|w| w.kill.is_none()) || wants.len() == 1,
            "ambiguous: {line}"
        );
        let want = wants[0];
        let _ = &want.key;
        let (events, evidence) = events_of(line);
        rows += 1;
        match want.kill {
            None => {
                assert!(
                    events.is_empty(),
                    "no kill expected from {line}: {events:#?}"
                );
                // Application lines are kept as evidence.
                if cols[0].starts_with("pytorch")
                    || ["torchrun", "slurm", "jupyter", "vscode", "k8s"].contains(&cols[0])
                {
                    assert_eq!(evidence.len(), 1, "{line} should be evidence");
                }
            }
            Some((killer, pid, process, cg_end)) => {
                kills += 1;
                assert_eq!(
                    events.len(),
                    1,
                    "one kill expected from {line}: {events:#?}"
                );
                let e = &events[0];
                assert_eq!(e.killer, killer, "{line}");
                assert_eq!(e.pid, pid, "{line}");
                assert_eq!(e.process.as_deref(), process, "{line}");
                if let Some(end) = cg_end {
                    assert!(
                        e.cgroup.as_deref().is_some_and(|c| c.ends_with(end)),
                        "{line}: cgroup {:?} should end with {end}",
                        e.cgroup
                    );
                }
                if want.constraint.is_some() {
                    assert_eq!(e.constraint.as_deref(), want.constraint, "{line}");
                }
                assert!(e.reason.as_deref().is_some_and(|r| !r.is_empty()), "{line}");
                assert_eq!(e.lines.len(), 1, "{line}");
                assert!(
                    e.time.is_some()
                        || !line.starts_with(char::is_alphabetic)
                        || line.starts_with("sending")
                        || line.starts_with("process")
                        || line.starts_with("Killed")
                );
            }
        }
    }
    for w in WANT {
        assert!(tsv.contains(w.key), "expectation without a row: {}", w.key);
    }
    assert_eq!(rows, 45);
    assert_eq!(kills, WANT.iter().filter(|w| w.kill.is_some()).count());
}

#[test]
fn the_pressure_reason_reads_as_the_issue_says() {
    let (ev, _) = events_of(
        "Dec 18 19:34:56 user-desktop systemd-oomd[840]: Killed /user.slice/user-1001.slice/user@1001.service/app.slice/app-org.gnome.Terminal.slice/vte-spawn-x.scope due to memory pressure for /user.slice/user-1001.slice/user@1001.service being 57.97% > 50.00% for > 20s with reclaim activity",
    );
    assert_eq!(
        ev[0].reason.as_deref(),
        Some("pressure on user@1001.service was 57.97% > 50% for 20 s")
    );
    assert_eq!(ev[0].time.as_deref(), Some("Dec 18 19:34:56"));
}

#[test]
fn the_real_dmesg_capture_yields_exactly_its_two_memcg_kills() {
    let text = read("dmesg_memcg_v1_kernel6.18.txt");
    let (ev, loose) = from_text(&text, "dmesg", Clock::default());
    assert!(loose.is_empty());
    assert_eq!(ev.len(), 2, "{ev:#?}");
    for (e, pid, rss) in [(&ev[0], 2242, 160384), (&ev[1], 2284, 306304)] {
        assert_eq!(e.killer, "kernel");
        assert_eq!(e.constraint.as_deref(), Some("memcg"));
        assert_eq!(e.pid, Some(pid));
        assert_eq!(e.process.as_deref(), Some("python3"));
        assert_eq!(e.cgroup.as_deref(), Some("/job/4f2a/ootest"));
        assert_eq!(e.oom_memcg.as_deref(), Some("/job/4f2a/ootest"));
        assert_eq!(e.memcg_limit_kib, Some(307200));
        assert_eq!(e.anon_rss_kib, Some(rss));
        // invoked, usage, summary, kill: one incident, one event.
        assert_eq!(e.lines.len(), 4, "{:#?}", e.lines);
        assert!(
            e.reason.as_deref().unwrap().starts_with(
                "memory cgroup /job/4f2a/ootest hit its limit (300 MiB used of 300 MiB)"
            )
        );
    }
}

#[test]
fn one_incident_from_a_pasted_journal_is_one_event() {
    // systemd-oomd v258+: kill, then candidates, then the user manager's unit line.
    let text = "\
9月 18 02:27:12 host systemd[1398]: app-zcode-7806.scope: systemd-oomd killed some process(es) in this unit.
9月 18 02:27:12 host systemd-oomd[944]: Killed /user.slice/user-1000.slice/user@1000.service/app.slice/app-zcode-7806.scope due to memory pressure for /user.slice/user-1000.slice/user@1000.service being 82.63% > 50.00% for > 20s with reclaim activity
9月 18 02:27:12 host systemd-oomd[944]: Considered 61 cgroups for killing, top candidates were:
9月 18 02:27:12 host systemd-oomd[944]:         Path: /user.slice/user-1000.slice/user@1000.service/app.slice/app-zcode-7806.scope
9月 18 02:27:12 host systemd[1398]: app-zcode-7806.scope: Failed with result 'oom-kill'.
";
    let (ev, _) = events_of(text);
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0].killer, "systemd-oomd");
    // The `Path:` line of the dump is not kept (the kill line names the cgroup).
    assert_eq!(ev[0].lines.len(), 4, "{:#?}", ev[0].lines);
    assert_eq!(ev[0].time.as_deref(), Some("9月 18 02:27:12"));

    // A failed attempt: candidates dumped, nothing killed.
    let (ev, _) = events_of(
        "systemd-oomd[1]: Considered 3 cgroups for killing, top candidates were:\nsystemd-oomd[1]: Failed to kill any cgroup(s) under /user.slice based on pressure",
    );
    assert!(ev.is_empty());

    // The kernel's kill and PID 1's line about it.
    let (ev, _) = events_of(
        "Aug 31 05:43:05 h kernel: [60949.262923] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/system.slice/apache2.service,task=apache2,pid=140113,uid=33
Aug 31 05:43:05 h kernel: [60949.262950] Out of memory: Killed process 140113 (apache2) total-vm:1000kB, anon-rss:900kB, file-rss:0kB, shmem-rss:0kB, UID:33 pgtables:10kB oom_score_adj:0
Aug 31 05:43:07 h kernel: [60951.105852] oom_reaper: reaped process 140113 (apache2), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB
Aug 31 05:43:07 h systemd[1]: apache2.service: A process of this unit has been killed by the OOM killer.
Aug 31 05:43:07 h systemd[1]: apache2.service: Failed with result 'oom-kill'.",
    );
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0].killer, "kernel");
    assert_eq!(ev[0].lines.len(), 5);
    assert_eq!(ev[0].uid, Some(33));
}

/// The fast path (prefilter) passes every line a parser recognises: checked on every
/// corpus and capture line, and each one's message alone.
#[test]
fn the_prefilter_passes_every_line_a_parser_knows() {
    use oomguard::model::parse::{classify, line::split, prefilter::candidate};
    let tsv = read("public_reports.tsv");
    let dmesg = read("dmesg_memcg_v1_kernel6.18.txt");
    let lines = tsv
        .lines()
        .skip(1)
        .filter_map(|r| r.splitn(4, '\t').nth(3))
        .chain(dmesg.lines());
    let mut known = 0;
    for l in lines {
        let s = split(l);
        if classify(s.ident, s.msg).is_some() {
            known += 1;
            assert!(candidate(l.as_bytes()), "prefilter drops {l}");
            assert!(candidate(s.msg.as_bytes()), "prefilter drops {}", s.msg);
        }
    }
    assert!(known > 40, "{known}");
}

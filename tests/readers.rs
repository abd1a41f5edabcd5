//! Host readers against fake roots built from captured real files (tests/fixtures/README.md).

use std::path::{Path, PathBuf};

use oomguard::host::cgroup::{CgroupFs, CgroupVersion, procs_recursive, read_memcg};
use oomguard::host::proc::ProcFs;
use oomguard::host::psi::system_memory_pressure;
use oomguard::model::killer::{KernelOom, Killer, Snapshot};

mod common;
use common::copy_tree;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn proc_scan_reads_captured_processes() {
    let procfs = ProcFs::new(fixtures().join("proc"));
    let procs = procfs.scan().unwrap();
    let pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
    assert_eq!(pids, vec![1, 2, 4402, 5000]);
    let kthreadd = &procs[1];
    assert!(kthreadd.kthread && kthreadd.mem.is_none());
    let py = &procs[2];
    assert_eq!((py.name.as_str(), py.oom_score_adj), ("python3", 300));
    let m = py.mem.unwrap();
    assert_eq!(
        (m.rss_anon_kib, m.rss_file_kib, m.pgtables_kib),
        (129780, 6656, 312)
    );
    assert_eq!(py.cgroup.v1_memory.as_deref(), Some("/job/4f2a"));
    assert_eq!(procs[3].uid, 1000);
    assert!(procfs.cmdline(4402).unwrap()[0].ends_with("python3"));
    assert_eq!(procfs.stat(4402).unwrap().comm, "python3");
}

#[test]
fn computed_oom_score_equals_the_captured_kernel_value() {
    let procfs = ProcFs::new(fixtures().join("proc"));
    let snap = Snapshot {
        totals: procfs.meminfo().unwrap(),
        page_kib: 4,
        procs: procfs.scan().unwrap(),
    };
    for pid in [1, 4402] {
        let p = snap.procs.iter().find(|p| p.pid == pid).unwrap();
        assert_eq!(
            Some(snap.proc_oom_score(p)),
            procfs.oom_score(pid),
            "pid {pid}"
        );
    }
}

#[test]
fn meminfo_and_psi() {
    let root = fixtures().join("proc");
    let t = ProcFs::new(&root).meminfo().unwrap();
    assert!(t.mem_total_kib > 20 << 20 && t.mem_available_kib <= t.mem_total_kib);
    assert_eq!(t.swap_total_kib, 0);
    let p = system_memory_pressure(&root).unwrap();
    assert!(p.some.avg10 >= 0.0 && p.full.total_us <= p.some.total_us);
}

#[test]
fn garbled_and_missing_files_are_skipped_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixtures().join("proc"), dir.path());
    // 4402: binary garbage in status; 5000: oom_score_adj gone (vanished mid-scan);
    // 1: unreadable cgroup keeps the process without a path; plus a non-process entry.
    std::fs::write(dir.path().join("4402/status"), b"\x00\xff\xfe garbage\n\n:").unwrap();
    std::fs::remove_file(dir.path().join("5000/oom_score_adj")).unwrap();
    std::fs::remove_file(dir.path().join("1/cgroup")).unwrap();
    std::fs::create_dir(dir.path().join("777")).unwrap();
    std::fs::write(dir.path().join("self"), "x").unwrap();
    let procfs = ProcFs::new(dir.path());
    let procs = procfs.scan().unwrap();
    assert_eq!(procs.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(procs[0].cgroup.display(), None);
    assert!(procfs.sample(777).is_none() && procfs.oom_score(777).is_none());
    std::fs::write(dir.path().join("meminfo"), "MemTotal: lots\n").unwrap();
    assert!(procfs.meminfo().is_err());
    assert!(ProcFs::new(dir.path().join("nope")).scan().is_err());
}

#[test]
fn cgroup_v1_captured_group() {
    let cg = CgroupFs::new(fixtures().join("cgroup-v1"));
    let root = cg.v1_memory_root().unwrap();
    assert!(cg.v2_root().is_none());
    let g = read_memcg(&root.join("job/4f2a")).unwrap();
    assert_eq!(g.version, CgroupVersion::V1);
    assert_eq!(g.limit_bytes, Some(300 << 20));
    // Captured after the process moved in: v1 leaves earlier charges behind, so usage is small.
    assert!(g.usage_bytes.is_some());
    assert_eq!(g.events.unwrap().oom_kill, 0);
    assert_eq!(procs_recursive(&root.join("job")), vec![4402]);
    // The unlimited parent is not the limiting group; the 300 MiB child is.
    assert_eq!(read_memcg(&root.join("job")).unwrap().limit_bytes, None);
    assert_eq!(
        cg.limiting_group(&root.join("job/4f2a")).unwrap().dir,
        root.join("job/4f2a")
    );
    assert!(cg.limiting_group(&root.join("job")).is_none());
    let procs = ProcFs::new(fixtures().join("proc")).scan().unwrap();
    let py = procs.iter().find(|p| p.pid == 4402).unwrap();
    assert_eq!(cg.memcg_dir(&py.cgroup), Some(root.join("job/4f2a")));
}

#[test]
fn cgroup_v2_user_slice() {
    let cg = CgroupFs::new(fixtures().join("cgroup-v2"));
    assert!(cg.v1_memory_root().is_none() && cg.v2_has_memory());
    let user = cg
        .v2_root()
        .unwrap()
        .join("user.slice/user-1000.slice/user@1000.service");
    let g = read_memcg(&user).unwrap();
    assert_eq!(g.version, CgroupVersion::V2);
    assert_eq!(
        (g.limit_bytes, g.high_bytes),
        (Some(4 << 30), Some(150 << 20))
    );
    assert_eq!(g.events.unwrap().high, 5312);
    assert_eq!(g.pressure.unwrap().full.avg10, 57.97);
    let procs = ProcFs::new(fixtures().join("proc")).scan().unwrap();
    let job = procs.iter().find(|p| p.pid == 5000).unwrap();
    let dir = cg.memcg_dir(&job.cgroup).unwrap();
    assert!(dir.ends_with("vte-spawn-dbb4a75e.scope"));
    // The scope's own 250 MiB limit is smaller than user@1000.service's 4 GiB.
    assert_eq!(
        cg.limiting_group(&dir).unwrap().limit_bytes,
        Some(262144000)
    );
    assert_eq!(procs_recursive(&user), vec![5000]);
}

#[test]
fn garbled_cgroup_files() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixtures().join("cgroup-v2"), dir.path());
    let s = dir
        .path()
        .join("user.slice/user-1000.slice/user@1000.service");
    std::fs::write(s.join("memory.max"), "banana").unwrap();
    std::fs::write(s.join("memory.events"), "\u{0}\u{1}").unwrap();
    std::fs::remove_file(s.join("memory.pressure")).unwrap();
    std::fs::write(s.join("cgroup.procs"), "12\nnot-a-pid\n").unwrap();
    let g = read_memcg(&s).unwrap();
    assert_eq!((g.limit_bytes, g.pressure), (None, None));
    assert_eq!(g.events.unwrap().high, 0);
    assert!(procs_recursive(&s).contains(&12));
    assert!(read_memcg(dir.path().join("nope").as_path()).is_err());
}

#[test]
fn memcg_ranking_on_fixtures() {
    let procfs = ProcFs::new(fixtures().join("proc"));
    let snap = Snapshot {
        totals: procfs.meminfo().unwrap(),
        page_kib: 4,
        procs: procfs.scan().unwrap(),
    };
    let k = KernelOom::memcg("/job/4f2a", [4402], (300 << 20) / 4096);
    let r = k.rank(&snap);
    assert_eq!(r.len(), 1);
    // rss 129780 + 6656 KiB = 34109 pages, page tables 312 KiB = 78 pages;
    // adj 300 x (76800 / 1000 = 76) = 22800 pages.
    assert_eq!(r[0].badness, Some(34109 + 78 + 22800));
}

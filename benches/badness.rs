//! Pure-model costs: ranking 10,000 processes, and parsing one captured /proc/PID/status.

use criterion::{Criterion, criterion_group, criterion_main};
use oomguard::host::proc::parse_status;
use oomguard::model::killer::{KernelOom, Killer, Snapshot};
use oomguard::model::process::{MemCounters, MemTotals, ProcInfo};

fn snapshot(n: i32) -> Snapshot {
    let procs = (1..=n)
        .map(|pid| ProcInfo {
            pid,
            ppid: 1,
            name: format!("p{pid}"),
            mem: Some(MemCounters {
                rss_anon_kib: (pid as u64 * 7919) % 500_000,
                rss_file_kib: 2048,
                pgtables_kib: 64,
                ..Default::default()
            }),
            oom_score_adj: (pid % 7) * 100 - 300,
            ..Default::default()
        })
        .collect();
    Snapshot {
        totals: MemTotals {
            mem_total_kib: 24 << 20,
            ..Default::default()
        },
        page_kib: 4,
        procs,
    }
}

fn bench(c: &mut Criterion) {
    let snap = snapshot(10_000);
    c.bench_function("rank_global_10k", |b| {
        b.iter(|| KernelOom::global().rank(std::hint::black_box(&snap)).len())
    });
    let members: Vec<i32> = (1..=10_000).step_by(2).collect();
    c.bench_function("rank_memcg_5k_of_10k", |b| {
        b.iter(|| {
            KernelOom::memcg("/g", members.iter().copied(), 1 << 20)
                .rank(std::hint::black_box(&snap))
                .len()
        })
    });
    let status = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/proc/4402/status"
    ))
    .unwrap();
    c.bench_function("parse_status", |b| {
        b.iter(|| parse_status(std::hint::black_box(&status)).unwrap().pid)
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

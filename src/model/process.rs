//! What the model knows about one process: plain data gathered by `host::proc`.

use serde::Serialize;

/// Memory counters of a process, in KiB, as `/proc/PID/status` reports them.
/// The kernel keeps these in pages; KiB values are exact multiples of the page size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemCounters {
    /// `RssAnon`: anonymous resident memory.
    pub rss_anon_kib: u64,
    /// `RssFile`: file-backed resident memory.
    pub rss_file_kib: u64,
    /// `RssShmem`: shared memory (tmpfs, SysV shm, shared anonymous).
    pub rss_shmem_kib: u64,
    /// `VmSwap`: swapped-out anonymous memory.
    pub swap_kib: u64,
    /// `VmPTE`: page tables.
    pub pgtables_kib: u64,
}

impl MemCounters {
    /// Resident set: anon + file + shmem, what the kernel's `get_mm_rss()` returns.
    pub fn rss_kib(&self) -> u64 {
        self.rss_anon_kib + self.rss_file_kib + self.rss_shmem_kib
    }
}

/// Membership of a process in the cgroup hierarchies, from `/proc/PID/cgroup`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CgroupPaths {
    /// Path in the cgroup v1 hierarchy that has the `memory` controller, if any.
    pub v1_memory: Option<String>,
    /// Path in the unified (v2) hierarchy (`0::/...`), if any.
    pub unified: Option<String>,
}

impl CgroupPaths {
    /// The path to show users: the memory controller's where there is one, else the unified one.
    pub fn display(&self) -> Option<&str> {
        self.v1_memory.as_deref().or(self.unified.as_deref())
    }
}

/// One process (thread group) as sampled from `/proc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    /// `Name:` from status (the kernel's `comm`, at most 15 bytes).
    pub name: String,
    /// Real uid.
    pub uid: u32,
    /// A kernel thread (no user address space; never an OOM victim).
    pub kthread: bool,
    /// Memory counters; `None` when the task has no address space (kernel thread, zombie).
    pub mem: Option<MemCounters>,
    /// `/proc/PID/oom_score_adj`, -1000..=1000.
    pub oom_score_adj: i32,
    pub cgroup: CgroupPaths,
}

/// System-wide memory totals, from `/proc/meminfo` (KiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemTotals {
    pub mem_total_kib: u64,
    pub mem_available_kib: u64,
    pub swap_total_kib: u64,
    pub swap_free_kib: u64,
}

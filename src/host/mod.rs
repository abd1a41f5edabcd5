//! Readers (and the few writers) of the live system. Every reader takes a root path
//! (`/` in production, a temp dir laid out like one in tests).

pub mod adj;
pub mod cgroup;
pub mod logs;
pub mod oomd;
pub mod proc;
pub mod psi;
pub mod systemd;
pub mod users;

/// The page size of this machine, in KiB.
pub fn page_kib() -> u64 {
    (rustix::param::page_size() / 1024).max(1) as u64
}

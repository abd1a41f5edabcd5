//! Readers (and the few writers) of the live system. Every reader takes a root path
//! (`/` in production, a temp dir laid out like one in tests).

pub mod adj;
pub mod cgroup;
pub mod proc;
pub mod psi;
pub mod systemd;

//! oomguard: keep long-running jobs alive through memory crunches, and say exactly
//! what happened when one dies.
//!
//! Layout:
//! - [`model`]: pure code. Formulas (the kernel's `oom_badness`), victim models of every
//!   killer, log parsers, policy. No I/O; tested with fixtures.
//! - [`host`]: readers and writers of the live system (`/proc`, cgroupfs, PSI, kmsg,
//!   journal, systemd). Every reader takes a root path so tests can point it at a fake tree.
//! - [`job`]: starting, recording and following guarded jobs.
//! - [`daemon`]: the root service that shields users' jobs under an admin policy.
//! - [`cli`]: one module per command: gather, call the model, render. Thin.

pub mod cli;
pub mod daemon;
pub mod guard;
pub mod host;
pub mod job;
pub mod model;

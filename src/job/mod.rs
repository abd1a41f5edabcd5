//! Guarded jobs: spawning with the shield in place, the registry, log files.

pub mod killers;
pub mod layers;
pub mod registry;
pub mod spawn;

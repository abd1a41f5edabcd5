//! Guarded jobs: spawning with the shield in place, the registry, log files.

pub mod killers;
pub mod layers;
pub mod memcg;
pub mod registry;
pub mod spawn;

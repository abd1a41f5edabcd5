//! Guarded jobs: spawning with the shield in place, the registry, log files.

//! Pure model code: no I/O. Everything here is computed from values the `host`
//! readers gathered, so it can be tested with fixtures and fuzzed.

pub mod armed;
pub mod badness;
pub mod event;
pub mod killer;
pub mod parse;
pub mod policy;
pub mod process;
pub mod risk;
pub mod standing;

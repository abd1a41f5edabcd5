//! The root daemon: socket server, protocol, authentication, policy.

pub mod auth;
pub mod protocol;
pub mod server;

//! The root daemon: socket server, protocol, authentication, policy.

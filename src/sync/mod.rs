//! The sync side: the toki wire format, the listener (TLS or plaintext on one port) and the
//! per-connection session state machine.

pub mod frame;
pub mod listener;
pub mod registry;
pub mod session;
pub mod wire;

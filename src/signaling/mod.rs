//! Signaling: the message protocol shared by every carrier, the per-session handler that turns
//! requests into room and media-plane operations, and the QUIC session runner.

pub mod context;
pub mod messages;
pub mod quic_session;
pub mod runner;
pub mod session;
pub mod ws_session;

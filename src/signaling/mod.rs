//! Signaling: the message protocol shared by every carrier, the per-session handler that turns
//! requests into room, call and media-plane operations, and the two carriers (QUIC, WebSocket).

mod calling;
pub mod client_addr;
pub mod context;
mod meeting;
pub mod messages;
mod publishing;
pub mod quic_session;
pub mod runner;
pub mod session;
mod translate;
pub mod ws_session;

pub use meeting::PasscodeGuard;

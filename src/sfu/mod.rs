//! The forwarding core, sans-IO: it decides what each subscriber receives and rewrites packets,
//! but it never touches a socket, never reads the clock (callers pass `now`) and never spawns.

pub mod forwarder;
pub mod nack;
pub mod packet;
pub mod rewriter;
pub mod simulcast;
pub mod speakers;
pub mod stats;

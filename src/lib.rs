//! Switchboard: a self-hosted communications server — an SFU plus the identity, call and meeting
//! services around it, wire-compatible with the Azure Communication Services data-plane API.
//!
//! See `ARCHITECTURE.md` for the map of modules and the invariants they keep.

pub mod api;
pub mod auth;
pub mod backup;
pub mod bootstrap;
pub mod call_automation;
pub mod calls;
pub mod client;
pub mod config;
pub mod devices;
pub mod https;
pub mod identity;
pub mod lean_queue;
pub mod media;
pub mod meeting_directory;
pub mod meeting_policy;
pub mod metrics;
pub mod organization;
pub mod panics;
pub mod room_directory;
pub mod rooms;
pub mod rtp;
pub mod server;
pub mod sfu;
pub mod signaling;
pub mod store;
pub mod tls;
pub mod webhooks;

//! The media plane: media workers (one per core) that own sockets, connections and forwarding
//! state, and the handles the control plane uses to command them.

pub mod admission;
pub mod bwe;
pub mod cid;
pub mod command;
pub mod ids;
pub mod metrics;
pub mod plane;
pub mod quic;
pub mod quic_tls;
pub mod recv_batch;
pub mod rx_time;
pub mod send_batch;
pub mod webrtc;
pub mod webrtc_bwe;
pub mod worker;

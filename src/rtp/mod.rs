//! Wire formats of the media plane: RTP, RTCP, the VP8 payload descriptor, and the RoQ framing
//! (QUIC varints) that carries them over QUIC datagrams. Pure parsing and writing; no I/O.

pub mod h264;
pub mod packet;
pub mod rtcp;
pub mod stun;
pub mod varint;
pub mod vp8;

pub use packet::{RtpBuilder, RtpError, RtpHeader, is_rtcp};

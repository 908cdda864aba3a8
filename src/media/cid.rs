//! QUIC connection IDs that name the worker owning the connection. Every worker binds the same
//! UDP port (`SO_REUSEPORT`); the kernel spreads clients by address, and when a packet reaches the
//! wrong worker (after a client's address changed), its connection ID says where to send it.

use quinn_proto::{ConnectionId, ConnectionIdGenerator};
use std::time::Duration;

/// Length of the connection IDs this server issues.
pub const CID_LEN: usize = 8;

/// Issues `CID_LEN`-byte IDs: the worker index, then random bytes.
pub struct WorkerCidGenerator {
    worker: u8,
}

impl WorkerCidGenerator {
    pub fn new(worker: u8) -> Self {
        Self { worker }
    }
}

impl ConnectionIdGenerator for WorkerCidGenerator {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut bytes = [0u8; CID_LEN];
        // A failing system RNG leaves zeros; IDs stay unique enough per worker only with
        // randomness, so fall back to a counter-like value rather than panic.
        if aws_lc_rs::rand::fill(&mut bytes[1..]).is_err() {
            bytes[1..].copy_from_slice(&std::process::id().to_be_bytes().repeat(2)[..CID_LEN - 1]);
        }
        bytes[0] = self.worker;
        ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// The worker a QUIC packet belongs to, when its destination connection ID is one we issued.
/// Initial and 0-RTT packets carry a client-chosen ID and stay where the kernel put them.
pub fn owning_worker(packet: &[u8], workers: usize) -> Option<usize> {
    let first = *packet.first()?;
    let worker = if first & 0x80 == 0 {
        // Short header: flags, then the destination connection ID.
        *packet.get(1)?
    } else {
        // Long header: flags, version (4), DCID length, DCID.
        let packet_type = (first >> 4) & 0x03;
        if packet_type == 0 || packet_type == 1 || usize::from(*packet.get(5)?) != CID_LEN {
            return None;
        }
        *packet.get(6)?
    };
    let worker = usize::from(worker);
    (worker < workers).then_some(worker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_name_the_worker() {
        let mut g = WorkerCidGenerator::new(3);
        let a = g.generate_cid();
        let b = g.generate_cid();
        assert_eq!(a.len(), CID_LEN);
        assert_eq!(a[0], 3);
        assert_ne!(a, b);
    }

    #[test]
    fn routes_short_and_handshake_packets_only() {
        let mut short = vec![0x40, 2];
        short.extend_from_slice(&[0; 20]);
        assert_eq!(owning_worker(&short, 4), Some(2));
        assert_eq!(owning_worker(&short, 2), None, "index out of range");
        let handshake = [0xe0, 0, 0, 0, 1, 8, 1, 9, 9, 9, 9, 9, 9, 9];
        assert_eq!(owning_worker(&handshake, 4), Some(1));
        let initial = [0xc0, 0, 0, 0, 1, 8, 1, 9, 9, 9, 9, 9, 9, 9];
        assert_eq!(owning_worker(&initial, 4), None);
        let other_len = [0xe0, 0, 0, 0, 1, 4, 1, 9, 9, 9];
        assert_eq!(owning_worker(&other_len, 4), None);
        assert_eq!(owning_worker(&[], 4), None);
        assert_eq!(owning_worker(&[0xe0, 0], 4), None);
    }
}

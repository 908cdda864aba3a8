//! The server side of QUIC's TLS 1.3 handshake: quinn-proto's `crypto::ServerConfig` on rustls,
//! holding as little per connection as an established connection needs.
//!
//! quinn-proto's own rustls glue keeps a connection's whole rustls state for as long as the
//! connection lives, and derives the packet keys of the next key update as soon as the handshake
//! is over. For an idle participant that was about 5.5 KB of its 24 KiB: the rustls connection
//! (about 3 KB, plus two TLS record-layer AES-GCM contexts QUIC never uses) and two precomputed
//! AES-GCM contexts. Here a session drops its rustls connection once the handshake is over and
//! nothing is left to write (session tickets included), keeps only the secrets of the next key
//! generation (under 200 bytes), and derives a generation's packet keys when a key update first
//! uses them.
//!
//! Initial keys and Retry tags need no per-connection state; quinn-proto's implementation does
//! them.

use quinn_proto::crypto::{self, ExportKeyingMaterialError, KeyPair, Keys, UnsupportedVersion};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectionId, Side, TransportError, TransportErrorCode};
use rustls::quic::{PacketKeySet, Secrets, Suite, Version};
use std::any::Any;
use std::sync::{Arc, OnceLock};

/// A TLS configuration QUIC cannot use.
#[derive(Debug, thiserror::Error)]
pub enum QuicTlsError {
    #[error("the TLS configuration has no TLS13_AES_128_GCM_SHA256, which QUIC's Initial packets need")]
    NoInitialSuite,
    #[error("the TLS configuration cannot serve QUIC: {0}")]
    Config(rustls::Error),
}

/// Server crypto for quinn-proto (`quinn_proto::ServerConfig::with_crypto`).
pub struct ServerCrypto {
    tls: Arc<rustls::ServerConfig>,
    /// Initial keys and Retry tags (no per-connection state).
    stateless: crypto::rustls::QuicServerConfig,
    /// TLS13_AES_128_GCM_SHA256, which protects Initial packets.
    initial: Suite,
    /// Connections whose rustls state is held: those still in their handshake.
    held: prometheus::IntGauge,
}

impl ServerCrypto {
    /// `held` counts the connections that still hold rustls state (`switchboard_quic_tls_sessions`).
    pub fn new(tls: rustls::ServerConfig, held: prometheus::IntGauge) -> Result<Self, QuicTlsError> {
        let tls = Arc::new(tls);
        // Fail here, not per connection: rustls refuses a QUIC server without TLS 1.3 or with
        // an early-data limit other than 0 or 2^32 - 1.
        rustls::quic::ServerConnection::new(tls.clone(), Version::V1, Vec::new()).map_err(QuicTlsError::Config)?;
        let initial = tls
            .crypto_provider()
            .cipher_suites
            .iter()
            .filter(|s| s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
            .find_map(|s| s.tls13()?.quic_suite())
            .ok_or(QuicTlsError::NoInitialSuite)?;
        let stateless =
            crypto::rustls::QuicServerConfig::try_from(tls.clone()).map_err(|_| QuicTlsError::NoInitialSuite)?;
        Ok(ServerCrypto { tls, stateless, initial, held })
    }
}

/// The rustls version for a QUIC version quinn-proto accepted (its `initial_keys` refuses the
/// others, so no session starts for them): the drafts 29-32 use the draft's labels, the rest
/// (version 1, drafts 33 and 34) version 1's.
fn tls_version(quic: u32) -> Version {
    match quic {
        0xff00_001d..=0xff00_0020 => Version::V1Draft,
        _ => Version::V1,
    }
}

impl crypto::ServerConfig for ServerCrypto {
    fn initial_keys(&self, version: u32, dst_cid: &ConnectionId) -> Result<Keys, UnsupportedVersion> {
        self.stateless.initial_keys(version, dst_cid)
    }

    fn retry_tag(&self, version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
        self.stateless.retry_tag(version, orig_dst_cid, packet)
    }

    fn start_session(self: Arc<Self>, version: u32, params: &TransportParameters) -> Box<dyn crypto::Session> {
        let version = tls_version(version);
        let mut encoded = Vec::new();
        params.write(&mut encoded);
        let tls = rustls::quic::ServerConnection::new(self.tls.clone(), version, encoded)
            .expect("ServerCrypto::new built a connection from this same configuration");
        self.held.inc();
        Box::new(ServerSession {
            config: self,
            version,
            tls: Some(Box::new(rustls::quic::Connection::Server(tls))),
            got_handshake_data: false,
            protocol: None,
            server_name: None,
            next: None,
        })
    }
}

/// One connection's TLS: the rustls connection until the handshake is over, then only what an
/// established connection can still ask for.
struct ServerSession {
    config: Arc<ServerCrypto>,
    version: Version,
    /// Boxed so that dropping it returns its memory (the session itself is boxed whole).
    tls: Option<Box<rustls::quic::Connection>>,
    got_handshake_data: bool,
    /// The negotiated ALPN protocol and the client's server name, kept for `handshake_data`.
    protocol: Option<Box<[u8]>>,
    server_name: Option<Box<str>>,
    /// The secrets of the next key generation, from the handshake's 1-RTT key change.
    next: Option<Secrets>,
}

impl ServerSession {
    /// Drop the rustls connection: the handshake is over and it has nothing left to write.
    fn release(&mut self) {
        if let Some(tls) = self.tls.take() {
            self.protocol = tls.alpn_protocol().map(Into::into);
            self.server_name = server_name(&tls).map(Into::into);
            self.config.held.dec();
        }
    }
}

impl Drop for ServerSession {
    fn drop(&mut self) {
        if self.tls.is_some() {
            self.config.held.dec();
        }
    }
}

/// The name the client asked for (SNI).
fn server_name(tls: &rustls::quic::Connection) -> Option<&str> {
    match tls {
        rustls::quic::Connection::Server(server) => server.server_name(),
        rustls::quic::Connection::Client(_) => None,
    }
}

fn boxed_keys(keys: rustls::quic::Keys) -> Keys {
    Keys {
        header: KeyPair { local: Box::new(keys.local.header), remote: Box::new(keys.remote.header) },
        packet: KeyPair { local: Box::new(keys.local.packet), remote: Box::new(keys.remote.packet) },
    }
}

impl crypto::Session for ServerSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        boxed_keys(self.config.initial.keys(dst_cid, side.into(), self.version))
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        if !self.got_handshake_data {
            return None;
        }
        let (protocol, server_name) = match &self.tls {
            Some(tls) => (tls.alpn_protocol().map(<[u8]>::to_vec), server_name(tls).map(str::to_owned)),
            None => (self.protocol.as_deref().map(<[u8]>::to_vec), self.server_name.as_deref().map(str::to_owned)),
        };
        Some(Box::new(crypto::rustls::HandshakeData { protocol, server_name }))
    }

    /// Clients are not authenticated by certificate (the server's TLS config asks for none).
    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        let certs = self.tls.as_ref()?.peer_certificates()?;
        let owned: Vec<rustls::pki_types::CertificateDer<'static>> =
            certs.iter().map(|c| c.clone().into_owned()).collect();
        Some(Box::new(owned))
    }

    fn early_crypto(&self) -> Option<(Box<dyn crypto::HeaderKey>, Box<dyn crypto::PacketKey>)> {
        let keys = self.tls.as_ref()?.zero_rtt_keys()?;
        Some((Box::new(keys.header), Box::new(keys.packet)))
    }

    fn early_data_accepted(&self) -> Option<bool> {
        None
    }

    fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.is_handshaking())
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        let Some(tls) = self.tls.as_mut() else {
            if buf.is_empty() {
                return Ok(false);
            }
            // A QUIC client sends no TLS message after its Finished (RFC 9001 §4.1.2 and §6):
            // TLS's unexpected_message alert, as rustls would answer.
            return Err(TransportError {
                code: TransportErrorCode::crypto(10),
                frame: None,
                reason: "TLS data after the handshake".into(),
            });
        };
        if let Err(e) = tls.read_hs(buf) {
            return Err(match tls.alert() {
                Some(alert) => TransportError {
                    code: TransportErrorCode::crypto(alert.into()),
                    frame: None,
                    reason: e.to_string(),
                },
                None => TransportError {
                    code: TransportErrorCode::PROTOCOL_VIOLATION,
                    frame: None,
                    reason: format!("TLS error: {e}"),
                },
            });
        }
        // rustls signals neither "ClientHello read" nor "ALPN agreed": the server name or the
        // protocol appearing (or the handshake ending) is when quinn-proto may ask for them.
        if !self.got_handshake_data
            && (tls.alpn_protocol().is_some() || server_name(tls).is_some() || !tls.is_handshaking())
        {
            self.got_handshake_data = true;
            return Ok(true);
        }
        Ok(false)
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        // quinn-proto asks a server once, when the client's Initial has been read.
        let Some(raw) = self.tls.as_ref().and_then(|tls| tls.quic_transport_parameters()) else { return Ok(None) };
        let mut raw = raw;
        Ok(Some(TransportParameters::read(Side::Server, &mut raw)?))
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        let tls = self.tls.as_mut()?;
        let written = buf.len();
        let change = tls.write_hs(buf);
        let keys = match change {
            Some(rustls::quic::KeyChange::Handshake { keys }) => keys,
            Some(rustls::quic::KeyChange::OneRtt { keys, next }) => {
                self.next = Some(next);
                keys
            }
            None => {
                // quinn-proto writes until a call gives nothing: after the client's Finished,
                // that call comes after the session tickets.
                if buf.len() == written && !tls.is_handshaking() && self.next.is_some() {
                    self.release();
                }
                return None;
            }
        };
        Some(boxed_keys(keys))
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn crypto::PacketKey>>> {
        let next = self.next.as_mut()?;
        let generation = Arc::new(NextKeys { secrets: next.clone(), keys: OnceLock::new() });
        // Step `next` on a generation. rustls derives that generation's keys on the way (it
        // has no other public step); they are dropped here, and derived again if used.
        drop(next.next_packet_keys());
        Some(KeyPair {
            local: Box::new(NextKey { generation: generation.clone(), local: true }),
            remote: Box::new(NextKey { generation, local: false }),
        })
    }

    /// Only a client receives Retry packets.
    fn is_valid_retry(&self, _orig_dst_cid: &ConnectionId, _header: &[u8], _payload: &[u8]) -> bool {
        false
    }

    /// Never available: rustls exports only once the handshake is over, when the session has
    /// dropped its TLS state (nothing in Switchboard exports keying material).
    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        let tls = self.tls.as_ref().ok_or(ExportKeyingMaterialError)?;
        tls.export_keying_material(output, label, Some(context)).map_err(|_| ExportKeyingMaterialError)?;
        Ok(())
    }
}

/// The packet keys of one key generation, derived from its secrets when first used.
struct NextKeys {
    secrets: Secrets,
    keys: OnceLock<PacketKeySet>,
}

/// One direction of a [`NextKeys`]: quinn-proto holds the next generation's keys from the end
/// of the handshake, but uses them only when the peer or it updates the keys.
struct NextKey {
    generation: Arc<NextKeys>,
    local: bool,
}

impl NextKey {
    #[expect(clippy::borrowed_box, reason = "quinn-proto's PacketKey is implemented for the Box")]
    fn key(&self) -> &Box<dyn rustls::quic::PacketKey> {
        let set = self.generation.keys.get_or_init(|| self.generation.secrets.clone().next_packet_keys());
        if self.local { &set.local } else { &set.remote }
    }
}

impl crypto::PacketKey for NextKey {
    fn encrypt(&self, packet: u64, buf: &mut [u8], header_len: usize) {
        crypto::PacketKey::encrypt(self.key(), packet, buf, header_len);
    }

    fn decrypt(&self, packet: u64, header: &[u8], payload: &mut bytes::BytesMut) -> Result<(), crypto::CryptoError> {
        crypto::PacketKey::decrypt(self.key(), packet, header, payload)
    }

    fn tag_len(&self) -> usize {
        crypto::PacketKey::tag_len(self.key())
    }

    fn confidentiality_limit(&self) -> u64 {
        crypto::PacketKey::confidentiality_limit(self.key())
    }

    fn integrity_limit(&self) -> u64 {
        crypto::PacketKey::integrity_limit(self.key())
    }
}

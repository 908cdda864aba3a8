//! Media-plane metrics. Workers count into thread-local handles and flush them about once a
//! second, so the per-packet cost is a plain add with no shared cache line.

use super::webrtc_bwe::Fallback;
use crate::metrics::{counter, counter_vec};
use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The shared metric families (registered once).
pub struct MediaMetrics {
    pub packets: IntCounterVec,
    pub bytes: IntCounterVec,
    pub forwarded: IntCounterVec,
    pub drops: IntCounterVec,
    pub nacks: IntCounterVec,
    pub retransmissions: IntCounterVec,
    pub keyframe_requests: IntCounterVec,
    pub layer_switches: IntCounterVec,
    pub handoffs: prometheus::IntCounter,
    /// `switchboard_quic_backlog_copies_total`.
    pub backlog_copies: prometheus::IntCounter,
    /// `switchboard_simulcast_reorders_total`.
    pub layer_reorders: prometheus::IntCounter,
    /// `switchboard_webrtc_bwe_probes_total`.
    pub bwe_probes: prometheus::IntCounter,
    pub forwarding_latency: Histogram,
    pub sessions: IntGaugeVec,
    /// `switchboard_quic_handshakes_total{result}`.
    pub quic_handshakes: IntCounterVec,
    /// `switchboard_quic_tls_sessions`: QUIC connections holding rustls state (in their handshake).
    pub quic_tls_sessions: prometheus::IntGauge,
    /// `switchboard_webrtc_offers_total{result}`.
    pub offers: IntCounterVec,
    /// `switchboard_webrtc_ice_events_total{event}`.
    pub ice_events: IntCounterVec,
    /// `switchboard_webrtc_bwe_fallbacks_total{reason}`.
    pub bwe_fallbacks: IntCounterVec,
    /// `switchboard_worker_command_waits_total{worker}`: state changes that waited for room in a
    /// full worker queue (delayed, not dropped).
    pub command_waits: IntCounterVec,
    /// `switchboard_worker_state{worker,what}`: forwarding state each worker holds.
    pub worker_state: IntGaugeVec,
    /// `switchboard_worker_queue_peak{worker,queue}`: the most messages that waited in a worker's
    /// `commands` or `peer` queue during the last report interval (about a second).
    pub queue_peak: IntGaugeVec,
}

/// Gauges of the forwarding state one worker holds, set once a second.
pub struct StateGauges {
    pub tracks: prometheus::IntGauge,
    pub subscriptions: prometheus::IntGauge,
    pub admitted_sessions: prometheus::IntGauge,
    /// Entries in the worker's timer heap (about one per connection; stale ones included).
    pub timers: prometheus::IntGauge,
    /// QUIC connections the worker holds, with a session or not (handshaking, closing, draining).
    pub quic_connections: prometheus::IntGauge,
    pub command_queue_peak: prometheus::IntGauge,
    pub peer_queue_peak: prometheus::IntGauge,
}

impl StateGauges {
    pub fn new(m: &MediaMetrics, worker: usize) -> Self {
        let w = worker.to_string();
        Self {
            tracks: m.worker_state.with_label_values(&[&w, "tracks"]),
            subscriptions: m.worker_state.with_label_values(&[&w, "subscriptions"]),
            admitted_sessions: m.worker_state.with_label_values(&[&w, "admitted_sessions"]),
            timers: m.worker_state.with_label_values(&[&w, "timers"]),
            quic_connections: m.worker_state.with_label_values(&[&w, "quic_connections"]),
            command_queue_peak: m.queue_peak.with_label_values(&[&w, "commands"]),
            peer_queue_peak: m.queue_peak.with_label_values(&[&w, "peer"]),
        }
    }
}

/// The longest a queue got between two reports. Sampled each time the worker takes a message
/// (what still waits behind it), so a burst that fills and drains within a second still shows,
/// which a gauge of the length read once a second would miss.
#[derive(Debug, Default)]
pub struct QueuePeak {
    peak: usize,
}

impl QueuePeak {
    /// A message was taken from the queue; `left` more wait behind it.
    pub fn taken(&mut self, left: usize) {
        self.peak = self.peak.max(left + 1);
    }

    /// The peak since the last report; the next interval starts at what waits now.
    pub fn report(&mut self, waiting: usize) -> i64 {
        let peak = self.peak.max(waiting);
        self.peak = waiting;
        i64::try_from(peak).unwrap_or(i64::MAX)
    }
}

/// Drop reasons, each a label value of `switchboard_media_drops_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Drop {
    MalformedDatagram,
    UnknownFlow,
    NotJoined,
    MalformedRtp,
    MalformedRtcp,
    DatagramTooLarge,
    DatagramUnsupported,
    PeerQueueFull,
    SocketBusy,
    StalePacket,
    NotForwarded,
    MalformedSignal,
    InboxFull,
    /// A track muted by its publisher or a moderator.
    Muted,
    /// A datagram on the QUIC port that no connection took and that started none (junk, a
    /// packet too short or malformed to parse, or one for a connection long gone).
    QuicUnroutable,
    /// Media for a QUIC subscriber the server has heard nothing from (not even an ACK) for
    /// `UNRESPONSIVE_AFTER`: its path is down or it vanished; its queue is not grown for it.
    SubscriberUnresponsive,
}

const DROP_NAMES: [&str; 16] = [
    "malformed_datagram",
    "unknown_flow",
    "not_joined",
    "malformed_rtp",
    "malformed_rtcp",
    "datagram_too_large",
    "datagram_unsupported",
    "peer_queue_full",
    "socket_busy",
    "stale_packet",
    "not_forwarded",
    "malformed_signal",
    "inbox_full",
    "muted",
    "quic_unroutable",
    "subscriber_unresponsive",
];

impl MediaMetrics {
    pub fn new(registry: &Registry) -> Self {
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "forwarding_latency_seconds",
                "Time from reading a media packet to sending its copies (QUIC, and WebRTC up to str0m's pacer), per forwarded packet",
            )
            .buckets(vec![0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05]),
        )
        .expect("constant histogram options are valid");
        registry.register(Box::new(latency.clone())).expect("registered once");
        let sessions = IntGaugeVec::new(
            Opts::new("media_sessions", "Media sessions by transport and worker"),
            &["transport", "worker"],
        )
        .expect("constant gauge options are valid");
        registry.register(Box::new(sessions.clone())).expect("registered once");
        let worker_state = IntGaugeVec::new(
            Opts::new(
                "worker_state",
                "Forwarding state held by each media worker: tracks, subscriptions, admitted sessions",
            ),
            &["worker", "what"],
        )
        .expect("constant gauge options are valid");
        registry.register(Box::new(worker_state.clone())).expect("registered once");
        let queue_peak = IntGaugeVec::new(
            Opts::new(
                "worker_queue_peak",
                "Most messages waiting in a media worker's queue (commands from the control plane, \
                 peer: media and state from other workers) during the last second",
            ),
            &["worker", "queue"],
        )
        .expect("constant gauge options are valid");
        registry.register(Box::new(queue_peak.clone())).expect("registered once");
        Self {
            queue_peak,
            command_waits: counter_vec(
                registry,
                "worker_command_waits_total",
                "State changes that waited for room in a full worker command queue",
                &["worker"],
            ),
            worker_state,
            packets: counter_vec(
                registry,
                "media_packets_total",
                "Media packets by direction, kind and transport",
                &["direction", "kind", "transport"],
            ),
            bytes: counter_vec(
                registry,
                "media_bytes_total",
                "Media bytes by direction, kind and transport",
                &["direction", "kind", "transport"],
            ),
            forwarded: counter_vec(
                registry,
                "forwarded_packets_total",
                "RTP packets forwarded to subscribers",
                &["kind"],
            ),
            drops: counter_vec(
                registry,
                "media_drops_total",
                "Media packets and frames dropped, by reason",
                &["reason"],
            ),
            nacks: counter_vec(
                registry,
                "nacks_total",
                "NACKed packets: received from subscribers or sent to publishers",
                &["direction"],
            ),
            retransmissions: counter_vec(
                registry,
                "retransmissions_total",
                "Retransmissions to subscribers, by result",
                &["result"],
            ),
            keyframe_requests: counter_vec(
                registry,
                "keyframe_requests_total",
                "PLI/FIR: received from subscribers or sent to publishers",
                &["direction"],
            ),
            layer_switches: counter_vec(registry, "layer_switches_total", "Simulcast layer switches", &["direction"]),
            handoffs: counter(
                registry,
                "worker_handoffs_total",
                "Media packets handed from the publisher's worker to a subscriber's worker",
            ),
            backlog_copies: counter(
                registry,
                "quic_backlog_copies_total",
                "Datagrams copied (instead of sliced from the egress arena) for QUIC connections with a send backlog (congested, or a client that stopped acknowledging)",
            ),
            layer_reorders: counter(
                registry,
                "simulcast_reorders_total",
                "Browser-published simulcast tracks whose rids were not listed lowest first, and whose layers the server put in order (by keyframe height, else bitrate)",
            ),
            bwe_probes: counter(
                registry,
                "webrtc_bwe_probes_total",
                "Probes the server had a browser's TWCC estimator send because its estimate stayed short of the layers the browser's subscriptions want (every 2 s, backing off to 5 s, while short)",
            ),
            forwarding_latency: latency,
            sessions,
            quic_handshakes: counter_vec(
                registry,
                "quic_handshakes_total",
                "New QUIC connections by result: accepted, retried (asked to validate its address first, under load), refused (worker full or stopping, or an invalid Retry token)",
                &["result"],
            ),
            quic_tls_sessions: {
                let g = prometheus::IntGauge::new(
                    "quic_tls_sessions",
                    "QUIC connections holding TLS handshake state: those in their handshake (a connection drops it once the handshake is over)",
                )
                .expect("metric names are valid constants");
                registry.register(Box::new(g.clone())).expect("each metric name is registered once");
                g
            },
            offers: counter_vec(
                registry,
                "webrtc_offers_total",
                "Server SDP offers by what happened: sent, resent (not answered in time), answered, rejected (by the client), voided (a client offer crossed it)",
                &["result"],
            ),
            ice_events: counter_vec(
                registry,
                "webrtc_ice_events_total",
                "Browser connectivity: lost (ICE consent lapsed, or the browser restarted ICE: the grace period starts), recovered (checks passed again within it), restarted (the client restarted ICE), expired (the grace period ran out; the browser left)",
                &["event"],
            ),
            bwe_fallbacks: counter_vec(
                registry,
                "webrtc_bwe_fallbacks_total",
                "Browsers whose layers are driven by their RTCP receiver reports instead of TWCC: no_twcc (none negotiated or none came), twcc_stuck (the TWCC estimate never moved while more was wanted: feedback the estimator cannot use)",
                &["reason"],
            ),
        }
    }
}

/// What happened to a server SDP offer (`switchboard_webrtc_offers_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum OfferEvent {
    Sent,
    Resent,
    Answered,
    Rejected,
    Voided,
}

/// A browser's connectivity event (`switchboard_webrtc_ice_events_total{event}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum IceEvent {
    Lost,
    Recovered,
    Restarted,
    Expired,
}

/// What became of a new QUIC connection (`switchboard_quic_handshakes_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Accepted,
    Retried,
    Refused,
}

/// Packets and bytes in and out of one transport on one worker, by kind (`[audio, video]`).
pub struct TrafficCounters {
    packets_in: [LocalIntCounter; 2],
    bytes_in: [LocalIntCounter; 2],
    packets_out: [LocalIntCounter; 2],
    bytes_out: [LocalIntCounter; 2],
}

impl TrafficCounters {
    pub fn new(m: &MediaMetrics, transport: &str) -> Self {
        let pair = |vec: &IntCounterVec, direction: &str| -> [LocalIntCounter; 2] {
            [
                vec.with_label_values(&[direction, "audio", transport]).local(),
                vec.with_label_values(&[direction, "video", transport]).local(),
            ]
        };
        Self {
            packets_in: pair(&m.packets, "in"),
            bytes_in: pair(&m.bytes, "in"),
            packets_out: pair(&m.packets, "out"),
            bytes_out: pair(&m.bytes, "out"),
        }
    }

    /// One packet of `bytes` received; `kind` from `kind_index`.
    pub fn received(&mut self, kind: usize, bytes: usize) {
        self.packets_in[kind].inc();
        self.bytes_in[kind].inc_by(bytes as u64);
    }

    /// One packet of `bytes` sent; `kind` from `kind_index`.
    pub fn sent(&mut self, kind: usize, bytes: usize) {
        self.packets_out[kind].inc();
        self.bytes_out[kind].inc_by(bytes as u64);
    }

    pub fn flush(&mut self) {
        for c in self
            .packets_in
            .iter_mut()
            .chain(self.bytes_in.iter_mut())
            .chain(self.packets_out.iter_mut())
            .chain(self.bytes_out.iter_mut())
        {
            c.flush();
        }
    }
}

/// One worker's local counters: QUIC traffic and the forwarding counters of every transport.
pub struct WorkerCounters {
    pub traffic: TrafficCounters,
    pub forwarded: [LocalIntCounter; 2],
    drops: Vec<LocalIntCounter>,
    pub nacks_received: LocalIntCounter,
    pub nacks_sent: LocalIntCounter,
    pub retransmitted: LocalIntCounter,
    pub retransmit_missed: LocalIntCounter,
    /// NACKed packets forwarded within the subscriber's round trip: not sent twice.
    pub retransmit_too_recent: LocalIntCounter,
    /// NACKed packets over the subscriber's retransmission budget: refused.
    pub retransmit_over_budget: LocalIntCounter,
    pub keyframes_received: LocalIntCounter,
    pub keyframes_sent: LocalIntCounter,
    pub switches_up: LocalIntCounter,
    pub switches_down: LocalIntCounter,
    pub handoffs: LocalIntCounter,
    pub backlog_copies: LocalIntCounter,
    pub layer_reorders: prometheus::IntCounter,
    pub latency: LocalHistogram,
    /// `[accepted, retried, refused]`: rare enough to count straight into the registry.
    handshakes: [prometheus::IntCounter; 3],
}

/// Index into the `[audio, video]` counter pairs.
pub fn kind_index(kind: crate::sfu::packet::MediaKind) -> usize {
    match kind {
        crate::sfu::packet::MediaKind::Audio => 0,
        crate::sfu::packet::MediaKind::Video => 1,
    }
}

impl WorkerCounters {
    pub fn new(m: &MediaMetrics, transport: &str) -> Self {
        Self {
            traffic: TrafficCounters::new(m, transport),
            forwarded: [
                m.forwarded.with_label_values(&["audio"]).local(),
                m.forwarded.with_label_values(&["video"]).local(),
            ],
            drops: DROP_NAMES.iter().map(|r| m.drops.with_label_values(&[r]).local()).collect(),
            nacks_received: m.nacks.with_label_values(&["from_subscriber"]).local(),
            nacks_sent: m.nacks.with_label_values(&["to_publisher"]).local(),
            retransmitted: m.retransmissions.with_label_values(&["sent"]).local(),
            retransmit_missed: m.retransmissions.with_label_values(&["not_in_history"]).local(),
            retransmit_too_recent: m.retransmissions.with_label_values(&["too_recent"]).local(),
            retransmit_over_budget: m.retransmissions.with_label_values(&["over_budget"]).local(),
            keyframes_received: m.keyframe_requests.with_label_values(&["from_subscriber"]).local(),
            keyframes_sent: m.keyframe_requests.with_label_values(&["to_publisher"]).local(),
            switches_up: m.layer_switches.with_label_values(&["up"]).local(),
            switches_down: m.layer_switches.with_label_values(&["down"]).local(),
            handoffs: m.handoffs.local(),
            backlog_copies: m.backlog_copies.local(),
            layer_reorders: m.layer_reorders.clone(),
            latency: m.forwarding_latency.local(),
            handshakes: ["accepted", "retried", "refused"].map(|r| m.quic_handshakes.with_label_values(&[r])),
        }
    }

    pub fn handshake(&mut self, result: Handshake) {
        self.handshakes[result as usize].inc();
    }

    pub fn drop(&mut self, reason: Drop) {
        self.drops[reason as usize].inc();
    }

    pub fn drops(&mut self, reason: Drop, n: usize) {
        if n > 0 {
            self.drops[reason as usize].inc_by(n as u64);
        }
    }

    /// Publish the local counts to the shared registry.
    pub fn flush(&mut self) {
        self.traffic.flush();
        for c in self.forwarded.iter_mut().chain(self.drops.iter_mut()) {
            c.flush();
        }
        for c in [
            &mut self.nacks_received,
            &mut self.nacks_sent,
            &mut self.retransmitted,
            &mut self.retransmit_missed,
            &mut self.retransmit_too_recent,
            &mut self.retransmit_over_budget,
            &mut self.keyframes_received,
            &mut self.keyframes_sent,
            &mut self.switches_up,
            &mut self.switches_down,
            &mut self.handoffs,
            &mut self.backlog_copies,
        ] {
            c.flush();
        }
        self.latency.flush();
    }
}

/// One worker's local counters for the WebRTC transport.
pub struct RtcCounters {
    pub traffic: TrafficCounters,
    drops: Vec<LocalIntCounter>,
    offers: [prometheus::IntCounter; 5],
    ice: [prometheus::IntCounter; 4],
    bwe_fallbacks: [prometheus::IntCounter; 2],
    pub bwe_probes: prometheus::IntCounter,
}

/// WebRTC drop reasons, label values of `switchboard_media_drops_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum RtcDrop {
    /// Neither STUN, DTLS, RTP nor RTCP.
    MalformedUdp,
    /// From an address no peer uses, and not a STUN request naming one of our peers.
    UnknownSource,
    /// The peer's WebRTC stack refused the input (bad DTLS, SRTP authentication, RTP).
    RejectedInput,
    /// RTP on an m-line or SSRC that is not published.
    UnboundRtp,
    /// A subscription's m-line is not negotiated yet.
    NotNegotiated,
    /// The browser's ICE consent lapsed: nothing reaches it until it comes back.
    Unresponsive,
}

const RTC_DROP_NAMES: [&str; 6] =
    ["malformed_udp", "unknown_source", "rejected_input", "unbound_rtp", "not_negotiated", "subscriber_unresponsive"];

impl RtcCounters {
    pub fn new(m: &MediaMetrics) -> Self {
        Self {
            traffic: TrafficCounters::new(m, "webrtc"),
            drops: RTC_DROP_NAMES.iter().map(|r| m.drops.with_label_values(&[r]).local()).collect(),
            offers: ["sent", "resent", "answered", "rejected", "voided"].map(|r| m.offers.with_label_values(&[r])),
            ice: ["lost", "recovered", "restarted", "expired"].map(|e| m.ice_events.with_label_values(&[e])),
            bwe_fallbacks: [Fallback::NoTwcc, Fallback::TwccStuck]
                .map(|f| m.bwe_fallbacks.with_label_values(&[f.label()])),
            bwe_probes: m.bwe_probes.clone(),
        }
    }

    pub fn drop(&mut self, reason: RtcDrop) {
        self.drops[reason as usize].inc();
    }

    pub fn offer(&self, event: OfferEvent) {
        self.offers[event as usize].inc();
    }

    pub fn ice(&self, event: IceEvent) {
        self.ice[event as usize].inc();
    }

    pub fn bwe_fallback(&self, why: Fallback) {
        let i = match why {
            Fallback::NoTwcc => 0,
            Fallback::TwccStuck => 1,
        };
        self.bwe_fallbacks[i].inc();
    }

    pub fn flush(&mut self) {
        self.traffic.flush();
        for c in &mut self.drops {
            c.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_peak_keeps_the_longest_queue_between_reports() {
        let mut q = QueuePeak::default();
        assert_eq!(q.report(0), 0, "an idle queue");
        // A burst of five commands, all taken before the report.
        for left in (0..5).rev() {
            q.taken(left);
        }
        assert_eq!(q.report(0), 5, "the burst shows though the queue is empty again");
        assert_eq!(q.report(0), 0, "and only in its own interval");
        // Three wait at the report and nothing is taken after: they are the next peak too.
        q.taken(1);
        assert_eq!(q.report(3), 3);
        assert_eq!(q.report(0), 3);
        assert_eq!(q.report(0), 0);
    }

    #[test]
    fn queue_peaks_are_exported_per_worker_and_queue() {
        let registry = Registry::new_custom(Some("switchboard".to_owned()), None).expect("registry");
        let m = MediaMetrics::new(&registry);
        let gauges = StateGauges::new(&m, 1);
        let mut q = QueuePeak::default();
        q.taken(6);
        gauges.command_queue_peak.set(q.report(0));
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).expect("encodes");
        assert!(text.contains("switchboard_worker_queue_peak{queue=\"commands\",worker=\"1\"} 7"), "{text}");
        assert!(text.contains("switchboard_worker_queue_peak{queue=\"peer\",worker=\"1\"} 0"), "{text}");
    }
}

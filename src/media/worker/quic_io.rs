//! The worker's QUIC I/O: reading the socket, driving `quinn-proto` connections, the signaling
//! stream, and flushing queued transmits.

use super::{RECV_BATCH, Worker};
use crate::lean_queue;
use crate::media::cid;
use crate::media::command::{ControlEvent, PeerMsg, SessionInput};
use crate::media::ids::SessionId;
use crate::media::metrics::{Drop, Handshake};
use crate::media::quic::{QuicConn, close_code, take_frames};
use crate::media::recv_batch::RecvBatch;
use bytes::{Bytes, BytesMut};
use quinn_proto::{DatagramEvent, Dir, Event, StreamEvent, VarInt};
use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::Instant;

/// Largest UDP datagram read.
const MAX_UDP: usize = 2048;
/// Signaling frames a session may have queued for its control-plane task.
const INBOX_CAPACITY: usize = 128;
/// How long a closing connection may take to deliver its last signaling message.
const CLOSE_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Worker {
    pub(super) fn drain_socket(&mut self) {
        // (Lent out of `self` while its datagrams are handled, which needs all of `self`.)
        let mut batch = std::mem::replace(&mut self.recv_batch, RecvBatch::empty());
        let mut read = 0;
        while read < RECV_BATCH {
            match self.socket.recv_batch(&mut batch) {
                Ok(0) => break,
                Ok(n) => {
                    read += n;
                    let now = Instant::now();
                    for k in 0..n {
                        let (data, got) = batch.get(k);
                        // `recv` is an arena: each datagram is copied to its end and split off,
                        // so this allocates only when the arena is used up.
                        if self.recv.capacity() < MAX_UDP {
                            self.recv.reserve(256 * 1024);
                        }
                        self.recv.extend_from_slice(data);
                        let data = self.recv.split();
                        // (QUIC copies wait for the end of the turn: sending them after each
                        // datagram cost 20 % more CPU per packet at 1 → 40 and did not lower the
                        // latency the subscribers saw; BENCHMARKS.md.)
                        self.on_udp(now, got.from, data);
                    }
                }
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        tracing::debug!(worker = self.index, error = %e, "UDP receive failed");
                    }
                    break;
                }
            }
        }
        self.recv_batch = batch;
    }

    pub(super) fn on_udp(&mut self, now: Instant, from: SocketAddr, data: BytesMut) {
        if let Some(owner) = cid::owning_worker(&data, self.workers)
            && owner != self.index
        {
            if self.peer_txs[owner].try_send(PeerMsg::QuicDatagram { from, data }).is_err() {
                self.out.counters.drop(Drop::PeerQueueFull);
            }
            return;
        }
        // quinn-proto's endpoint calls (handle, refuse, retry, accept) append their packet to
        // the buffer and report its length as the whole buffer's: it must start empty, or the
        // datagram sent is an older packet with the new one behind it. (It was not always: a
        // Retry went out as the previous Retry, addressed to another client, and a client could
        // not get in through Retry when the server was busy, which is when Retry is used.)
        self.transmit.clear();
        match self.endpoint.handle(now, from, None, None, data, &mut self.transmit) {
            Some(DatagramEvent::ConnectionEvent(ch, event)) => {
                if let Some(c) = self.out.conns.get_mut(ch.0).and_then(Option::as_mut) {
                    c.last_heard = Some(now);
                    c.conn.handle_event(event);
                    self.drive(ch.0, now);
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                self.transmit.clear();
                if self.stopping || self.full() {
                    self.out.counters.handshake(Handshake::Refused);
                    let t = self.endpoint.refuse(incoming, &mut self.transmit);
                    self.send_transmit(t.destination, t.size);
                    return;
                }
                // Under load, a client proves it receives at its address before it costs more
                // than a Retry packet (no larger than what it sent: no amplification).
                if self.handshakes >= self.retry_above_handshakes && !incoming.remote_address_validated() {
                    match self.endpoint.retry(incoming, &mut self.transmit) {
                        Ok(t) => {
                            self.out.counters.handshake(Handshake::Retried);
                            self.send_transmit(t.destination, t.size);
                        }
                        // Not retriable (it already carried a token that does not validate).
                        Err(e) => {
                            self.out.counters.handshake(Handshake::Refused);
                            self.transmit.clear();
                            let t = self.endpoint.refuse(e.into_incoming(), &mut self.transmit);
                            self.send_transmit(t.destination, t.size);
                        }
                    }
                    return;
                }
                match self.endpoint.accept(incoming, now, &mut self.transmit, None) {
                    Ok((ch, conn)) => {
                        self.out.counters.handshake(Handshake::Accepted);
                        self.handshakes += 1;
                        if self.out.conns.len() <= ch.0 {
                            self.out.conns.resize_with(ch.0 + 1, || None);
                        }
                        self.out.conns[ch.0] = Some(Box::new(QuicConn::new(conn, ch)));
                        self.drive(ch.0, now);
                    }
                    Err(e) => {
                        if let Some(t) = e.response {
                            self.send_transmit(t.destination, t.size);
                        }
                    }
                }
            }
            Some(DatagramEvent::Response(t)) => self.send_transmit(t.destination, t.size),
            None => self.out.counters.drop(Drop::QuicUnroutable),
        }
    }

    /// Process everything a connection has to say after an input.
    pub(super) fn drive(&mut self, idx: usize, now: Instant) {
        loop {
            let Some(c) = self.out.conns.get_mut(idx).and_then(Option::as_mut) else { return };
            let Some(event) = c.conn.poll_endpoint_events() else { break };
            if let Some(back) = self.endpoint.handle_event(c.handle, event) {
                c.conn.handle_event(back);
            }
        }
        loop {
            let Some(c) = self.out.conns.get_mut(idx).and_then(Option::as_mut) else { return };
            let Some(event) = c.conn.poll() else { break };
            match event {
                Event::Connected => self.on_connected(idx),
                Event::ConnectionLost { reason } => {
                    tracing::debug!(worker = self.index, %reason, "QUIC connection lost");
                    self.end_session(idx);
                }
                Event::Stream(StreamEvent::Opened { dir: Dir::Bi }) => self.accept_streams(idx),
                Event::Stream(StreamEvent::Readable { id }) => self.read_signal(idx, id),
                Event::Stream(StreamEvent::Writable { .. }) => self.write_pending(idx),
                Event::Stream(StreamEvent::Finished { id }) => {
                    if let Some(c) = self.out.conns[idx].as_mut()
                        && c.signal == Some(id)
                        && let Some((code, reason)) = c.closing.take()
                    {
                        self.close(idx, code, &reason);
                    }
                }
                Event::DatagramReceived => {
                    let mut received: Vec<Bytes> = Vec::new();
                    while let Some(d) = c.conn.datagrams().recv() {
                        received.push(d);
                    }
                    for d in received {
                        self.on_datagram(idx, d, now);
                    }
                }
                _ => {}
            }
        }
        self.mark_dirty(idx);
    }

    fn on_connected(&mut self, idx: usize) {
        let now = self.now();
        let Some(c) = self.out.conns[idx].as_mut() else { return };
        if std::mem::take(&mut c.handshaking) {
            self.handshakes -= 1;
        }
        let session = SessionId::next();
        let (tx, rx) = lean_queue::channel(INBOX_CAPACITY);
        let opened = ControlEvent::SessionOpened { session, worker: self.index, remote: c.remote, inbox: rx };
        if self.control.try_send(opened).is_err() {
            c.conn.close(now, VarInt::from_u32(close_code::OVERLOADED), "server overloaded".into());
            return;
        }
        c.session = Some(session);
        c.inbox = Some(tx);
        self.sessions.insert(session, idx);
        self.sessions_gauge.inc();
    }

    fn accept_streams(&mut self, idx: usize) {
        let Some(c) = self.out.conns[idx].as_mut() else { return };
        let Some(id) = c.conn.streams().accept(Dir::Bi) else { return };
        if c.signal.is_some() {
            // Only one signaling stream per connection.
            self.close(idx, close_code::PROTOCOL_ERROR, "only one bidirectional stream per connection");
            return;
        }
        c.signal = Some(id);
        self.read_signal(idx, id);
        // A second stream opened in the same packet.
        self.accept_streams(idx);
    }

    fn read_signal(&mut self, idx: usize, id: quinn_proto::StreamId) {
        let now = self.now();
        let max = self.max_message_bytes;
        let Some(c) = self.out.conns[idx].as_mut() else { return };
        if c.signal != Some(id) {
            return;
        }
        let mut finished = false;
        {
            let mut stream = c.conn.recv_stream(id);
            let Ok(mut chunks) = stream.read(true) else { return };
            loop {
                match chunks.next(usize::MAX) {
                    Ok(Some(chunk)) => {
                        c.frame_buf.extend_from_slice(&chunk.bytes);
                        if c.frame_buf.len() > max + 4 + 64 * 1024 {
                            break; // the frame check below closes the connection
                        }
                    }
                    Ok(None) => {
                        finished = true;
                        break;
                    }
                    Err(quinn_proto::ReadError::Blocked) => break,
                    Err(_) => {
                        finished = true;
                        break;
                    }
                }
            }
            let _ = chunks.finalize();
        }
        let mut frames = Vec::new();
        let result = take_frames(&mut c.frame_buf, max, |f| frames.push(f));
        if c.frame_buf.is_empty() {
            // Signaling is rare: an idle participant keeps no buffer (a join's frames left
            // about 650 bytes behind in each connection).
            c.frame_buf = Vec::new();
        }
        let inbox = c.inbox.clone();
        for f in frames {
            match &inbox {
                Some(tx) if tx.try_send(SessionInput::Frame(f)).is_ok() => {}
                Some(_) => {
                    self.out.counters.drop(Drop::InboxFull);
                    self.close(idx, close_code::OVERLOADED, "too many signaling messages pending");
                    return;
                }
                None => self.out.counters.drop(Drop::NotJoined),
            }
        }
        if let Err(e) = result {
            self.out.counters.drop(Drop::MalformedSignal);
            // Read no more; the session answers MessageTooLarge, and the connection closes once
            // that answer is delivered (or after CLOSE_FLUSH_LIMIT).
            let reason = "signaling frame too large";
            if let Some(c) = self.out.conns[idx].as_mut() {
                let _ = c.conn.recv_stream(id).stop(VarInt::from_u32(close_code::MESSAGE_TOO_LARGE));
                c.frame_buf = Vec::new();
                c.close_after_next_message = Some((close_code::MESSAGE_TOO_LARGE, reason.to_owned()));
                self.closing_deadlines.push((now + CLOSE_FLUSH_LIMIT, idx, c.handle));
            }
            match &inbox {
                Some(tx) if tx.try_send(SessionInput::Malformed { reason: e.to_string() }).is_ok() => {}
                _ => self.close(idx, close_code::MESSAGE_TOO_LARGE, reason),
            }
        } else if finished {
            // The client has nothing more to say: without signaling the connection has no use,
            // so it is not left for the idle timeout (which keep-alives would defer forever).
            self.close(idx, close_code::NORMAL, "signaling stream finished");
        }
    }

    /// Close with `code` once the signaling stream's queued bytes have been delivered and
    /// acknowledged (a connection close would discard them), or after `CLOSE_FLUSH_LIMIT`.
    pub(super) fn close_after_flush(&mut self, idx: usize, code: u32, reason: String, now: Instant) {
        let Some(c) = self.out.conns[idx].as_mut() else { return };
        if c.signal.is_none() || c.closing.is_some() {
            self.close(idx, code, &reason);
            return;
        }
        c.closing = Some((code, reason));
        self.closing_deadlines.push((now + CLOSE_FLUSH_LIMIT, idx, c.handle));
        self.write_pending(idx);
    }

    /// Close the connections whose flush took too long.
    pub(super) fn expire_closing(&mut self, now: Instant) {
        if self.closing_deadlines.is_empty() {
            return;
        }
        let mut due = Vec::new();
        self.closing_deadlines.retain(|&(at, idx, handle)| {
            let keep = at > now;
            if !keep {
                due.push((idx, handle));
            }
            keep
        });
        for (idx, handle) in due {
            let Some(c) = self.out.conns.get_mut(idx).and_then(Option::as_mut) else { continue };
            if c.handle != handle {
                continue; // the slot holds a newer connection
            }
            let pending = c.closing.take().or_else(|| c.close_after_next_message.take());
            if let Some((code, reason)) = pending {
                self.close(idx, code, &reason);
            }
        }
    }

    pub(super) fn close(&mut self, idx: usize, code: u32, reason: &str) {
        let now = self.now();
        if let Some(c) = self.out.conns[idx].as_mut() {
            c.conn.close(now, VarInt::from_u32(code), Bytes::copy_from_slice(reason.as_bytes()));
        }
        self.end_session(idx);
        self.mark_dirty(idx);
    }

    pub(super) fn write_pending(&mut self, idx: usize) {
        let Some(c) = self.out.conns[idx].as_mut() else { return };
        let Some(id) = c.signal else { return };
        if c.pending_out.is_empty() {
            return;
        }
        match c.conn.send_stream(id).write(&c.pending_out) {
            Ok(n) if n == c.pending_out.len() => {
                // All written: keep no buffer while idle (see `read_signal`).
                c.pending_out = Vec::new();
            }
            Ok(n) => {
                c.pending_out.drain(..n);
            }
            Err(quinn_proto::WriteError::Blocked) => {}
            Err(_) => c.pending_out.clear(),
        }
        if c.pending_out.is_empty() && c.closing.is_some() && !c.finishing {
            c.finishing = true;
            if c.conn.send_stream(id).finish().is_err() {
                let (code, reason) = c.closing.take().expect("checked is_some just above");
                self.close(idx, code, &reason);
                return;
            }
        }
        self.mark_dirty(idx);
    }

    pub(super) fn mark_dirty(&mut self, idx: usize) {
        if let Some(c) = self.out.conns.get_mut(idx).and_then(Option::as_mut)
            && !c.dirty
        {
            c.dirty = true;
            self.out.dirty.push(idx);
        }
    }

    /// A QUIC connection's deadline passed.
    pub(super) fn quic_timeout(&mut self, idx: usize, at: Instant, now: Instant) {
        let Some(c) = self.out.conns.get_mut(idx).and_then(Option::as_mut) else { return };
        if c.timeout != Some(at) {
            return; // an earlier entry was armed since; it re-armed what is due after it
        }
        c.timeout = None;
        // The connection's deadline may have moved later since this entry was armed (every
        // packet moves the idle timeout): quinn does nothing before a timer is due.
        c.conn.handle_timeout(now);
        self.drive(idx, now);
        self.arm_quic_timer(idx);
    }

    /// Put the connection's next deadline in the worker's timer heap, unless an entry at or
    /// before it is there already: when that one fires, the next is armed. The heap so holds
    /// about one entry per connection, not one per change of its deadline (which moves with
    /// every packet received).
    fn arm_quic_timer(&mut self, idx: usize) {
        let Some(c) = self.out.conns.get_mut(idx).and_then(Option::as_mut) else { return };
        if let Some(t) = c.conn.poll_timeout()
            && c.timeout.is_none_or(|armed| t < armed)
        {
            c.timeout = Some(t);
            self.out.timers.push(Reverse((t, super::Timer::Quic(idx))));
        }
    }

    /// Send everything queued: media batches to peers, QUIC packets of dirty connections, and
    /// handle WebRTC events deferred while forwarding (which can write media too: it goes out in
    /// `send_forwarded`).
    pub(super) fn flush(&mut self, now: Instant) {
        super::rtc_egress::drive_written(&mut self.out, now);
        self.handle_deferred_rtc_events(now);
        self.flush_backlogs();
        for w in 0..self.outgoing.len() {
            if self.outgoing[w].is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut self.outgoing[w]);
            let n = batch.len();
            if self.peer_txs[w].try_send(PeerMsg::Media(batch)).is_err() {
                for _ in 0..n {
                    self.out.counters.drop(Drop::PeerQueueFull);
                }
            }
        }
        self.send_forwarded(now);
    }

    /// Send the copies of what was forwarded: browsers' packets (`drive_written`), QUIC packets
    /// of dirty connections, then both queues; and observe each forwarded packet's latency,
    /// read → sent. Called at the end of every loop turn, and after each WebRTC datagram read
    /// that forwarded something: a video frame arrives as a burst of packets, and its first
    /// packet's copies should not wait for the whole burst's fan-out.
    pub(super) fn send_forwarded(&mut self, now: Instant) {
        super::rtc_egress::drive_written(&mut self.out, now);
        let dirty = std::mem::take(&mut self.out.dirty);
        for idx in dirty {
            let Some(c) = self.out.conns.get_mut(idx).and_then(Option::as_mut) else { continue };
            c.dirty = false;
            loop {
                self.transmit.clear();
                let Some(t) = c.conn.poll_transmit(now, 1, &mut self.transmit) else { break };
                let done = self.socket.queue(&self.transmit[..t.size], t.destination);
                self.out.counters.drops(Drop::SocketBusy, done.busy);
            }
            if let Some(t) = c.conn.poll_timeout()
                && c.timeout.is_none_or(|armed| t < armed)
            {
                c.timeout = Some(t);
                self.out.timers.push(Reverse((t, super::Timer::Quic(idx))));
            }
            if c.conn.is_drained() {
                if c.handshaking {
                    self.handshakes -= 1;
                }
                self.end_session(idx);
                self.out.conns[idx] = None;
            }
        }
        let done = self.socket.send_queued();
        self.out.counters.drops(Drop::SocketBusy, done.busy);
        let done = self.out.rtc_socket.send_queued();
        self.out.counters.drops(Drop::SocketBusy, done.busy);
        if !self.out.forwarded_at.is_empty() {
            // (An upper bound for copies that went out earlier, in a full batch.)
            let sent = self.now();
            for at in self.out.forwarded_at.drain(..) {
                self.out.counters.latency.observe(sent.saturating_duration_since(at).as_secs_f64());
            }
        }
    }

    /// Send `self.transmit[..size]` (an endpoint-level response).
    fn send_transmit(&mut self, to: SocketAddr, size: usize) {
        if let Err(e) = self.socket.try_send_to(&self.transmit[..size], to)
            && e.kind() == std::io::ErrorKind::WouldBlock
        {
            self.out.counters.drop(Drop::SocketBusy);
        }
    }
}

//! The forwarding core's cost per egress packet: one published VP8 packet fanned out to 1, 10,
//! 100 and 1,000 subscribers (select, rewrite, write into the egress arena), and the rewrite path
//! alone. Criterion's throughput is per egress packet.

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};
use switchboard::rtp::{RtpBuilder, varint, vp8};
use switchboard::sfu::forwarder::{SubscriptionSpec, TrackForwarder};
use switchboard::sfu::packet::{Codec, MediaPacket, write_rewritten};
use switchboard::sfu::rewriter::Rewrite;
use switchboard::sfu::simulcast::LayerWish;

fn packet(seq: u16, key: bool, now: Instant) -> MediaPacket {
    let mut payload = Vec::new();
    vp8::synthetic_payload(seq & 0x7fff, 0, true, key, (1280, 720), 1000, &mut payload);
    let raw = RtpBuilder { payload_type: 96, seq, timestamp: u32::from(seq) * 3000, ssrc: 7, ..Default::default() }
        .build(&payload);
    MediaPacket::parse(Bytes::from(raw), Codec::Vp8, None, now).expect("valid synthetic packet")
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out");
    for n in [1usize, 10, 100, 1000] {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(Codec::Vp8, &[720]);
        for id in 0..n as u64 {
            f.add_subscription(SubscriptionSpec {
                id,
                sink: id,
                out_ssrc: id as u32,
                initial: Rewrite { seq: id as u16, timestamp: 0, picture_id: Some(0), tl0_pic_idx: Some(0) },
                wish: LayerWish::default(),
            });
        }
        let key = packet(0, true, t0);
        f.on_packet(t0, 0, &key, |_, _| {});
        let mut kf = Vec::new();
        f.tick(t0, &mut kf);
        f.on_packet(t0, 0, &packet(1, true, t0), |_, _| {});
        assert_eq!(f.subscriptions().iter().filter(|s| s.layer() == Some(0)).count(), n);
        let packets: Vec<MediaPacket> = (2..1026u16).map(|s| packet(s, false, t0)).collect();
        let mut arena = BytesMut::with_capacity(2 * 1024 * 1024);
        let mut i = 0usize;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let pkt = &packets[i % packets.len()];
                i += 1;
                let now = t0 + Duration::from_millis(i as u64);
                if arena.capacity() - arena.len() < 1200 * n {
                    arena.clear();
                }
                f.on_packet(now, 0, pkt, |sub, rw| {
                    varint::write(u64::from(sub.out_ssrc & 0x3fff), &mut arena);
                    write_rewritten(pkt, rw, sub.out_ssrc, &mut arena);
                })
            })
        });
    }
    group.finish();
}

fn rewrite_only(c: &mut Criterion) {
    let t0 = Instant::now();
    let pkt = packet(10, false, t0);
    let rw = Rewrite { seq: 1, timestamp: 2, picture_id: Some(3), tl0_pic_idx: Some(4) };
    let mut out = BytesMut::with_capacity(4096);
    c.bench_function("rewrite_packet", |b| {
        b.iter(|| {
            out.clear();
            write_rewritten(black_box(&pkt), black_box(&rw), 99, &mut out);
        })
    });
}

criterion_group!(benches, fan_out, rewrite_only);
criterion_main!(benches);

//! A QUIC device that answers every call and presses keys: it registers as an identity,
//! accepts each incoming call (leaving the call it is in first, as "end and accept" on a phone;
//! an invitation into a group call joins that group call), publishes an audio track, and then sends the `--tones` as RFC 4733
//! telephone-events (payload type 101, `docs/PROTOCOL.md`) (ACS tone names: one, two, pound, ...) every `--every` seconds while the call
//! lasts. The SDK tests and the IVR sample use it as "a phone a person holds". Progress is
//! printed as JSON lines on stdout. Runs until killed.
//!
//!   cargo run --example dtmf_device -- --quic 127.0.0.1:4433 --ca data/tls/ca.pem --token T --tones one,two,pound

use anyhow::{Context as _, bail};
use std::collections::HashMap;
use std::time::Duration;
use switchboard::call_automation::audio::dtmf::{Tone, tone_packets};
use switchboard::client::{Client, ClientEvent, ClientOptions, PublishedTrack};
use switchboard::sfu::packet::{Codec, MediaKind};
use switchboard::signaling::messages::{CallState, ServerMessage};

fn args() -> anyhow::Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        map.insert(k.trim_start_matches("--").to_owned(), v);
    }
    Ok(map)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let get = |k: &str| args.get(k).cloned().with_context(|| format!("--{k} is required"));
    let tones: Vec<Tone> = get("tones")?.split(',').map(|t| t.trim().parse::<Tone>()).collect::<Result<_, _>>()?;
    if tones.is_empty() {
        bail!("--tones names no tone");
    }
    let every = Duration::from_secs_f64(args.get("every").map_or(Ok(1.0), |s| s.parse())?);
    let mut options = ClientOptions::new(get("quic")?.parse()?, std::fs::read(get("ca")?)?);
    options.request_timeout = Duration::from_secs(10);
    let mut client = Client::connect(options).await?;
    let identity = client.register(&get("token")?, Some("DTMF device")).await?;
    println!("{}", serde_json::json!({ "event": "registered", "identity": identity }));

    let mut track: Option<PublishedTrack> = None;
    let mut left_calls = 0u32;
    let mut press = tokio::time::interval(every);
    let (mut seq, mut ts) = (1u16, 48_000u32);
    loop {
        tokio::select! {
            event = client.next_event() => match event {
                Some(ClientEvent::Signal(ServerMessage::IncomingCall { call_id, group_id, .. })) => {
                    if track.take().is_some() {
                        client.hang_up(false).await?;
                        // The `Disconnected` of the call left is still to be read: not the new one's.
                        left_calls += 1;
                        println!("{}", serde_json::json!({ "event": "left", "for": call_id }));
                    }
                    let joined = client.accept_call(&call_id).await?;
                    track = Some(client.publish(MediaKind::Audio, Codec::Opus, vec![]).await?);
                    let event = serde_json::json!({ "event": "accepted", "callId": call_id, "groupId": group_id, "room": joined.room });
                    println!("{event}");
                }
                Some(ClientEvent::Signal(ServerMessage::CallStateChanged { state: CallState::Disconnected, .. })) => {
                    if left_calls > 0 {
                        left_calls -= 1;
                        continue;
                    }
                    track = None;
                    println!("{}", serde_json::json!({ "event": "disconnected" }));
                }
                Some(ClientEvent::Closed { reason }) => bail!("the connection closed: {reason}"),
                None => bail!("the connection closed"),
                Some(_) => {}
            },
            _ = press.tick() => {
                let Some(t) = &track else { continue };
                let start = tokio::time::Instant::now();
                let packets = tone_packets(&tones, 0x0d7f, 101, seq, ts, 48_000);
                seq = seq.wrapping_add(u16::try_from(packets.len()).unwrap_or(u16::MAX));
                ts = ts.wrapping_add(48_000 * (u32::try_from(tones.len()).unwrap_or(u32::MAX / 48_000) + 1));
                for (offset, packet) in packets {
                    tokio::time::sleep_until(start + offset).await;
                    client.send_rtp(t, 0, packet)?;
                }
                let names: Vec<&str> = tones.iter().map(|t| t.name()).collect();
                println!("{}", serde_json::json!({ "event": "pressed", "tones": names }));
            }
        }
    }
}

//! Signaling messages as clients send them over either carrier (`signaling::messages`,
//! `parse_client`). A message that parses must serialize and parse back to the same message
//! (the protocol has one reading), and the locator fields a join names go through the same
//! parsers the session uses (ACS room IDs, UUIDs).
//!
//! Input: one message (the body of a QUIC frame or a WebSocket text message).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::room_directory::AcsRoomId;
use switchboard::signaling::messages::{ClientMessage, parse_client};

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = parse_client(data) else { return };
    let text = serde_json::to_string(&envelope).expect("a parsed message serializes");
    let back = parse_client(text.as_bytes()).expect("what the server writes, it reads");
    assert_eq!(back.id, envelope.id);
    assert_eq!(back.message, envelope.message, "{text}");
    if let ClientMessage::Join { at, .. } = &envelope.message {
        if let Some(room) = at.room_id.as_deref() {
            if let Some(id) = AcsRoomId::parse(room) {
                assert_eq!(id.to_string(), room, "a room ID has one spelling");
                assert!(id.get() > 0);
            }
        }
    }
});

//! A browser's SDP offer on its way to str0m (`media::webrtc`, as `rtc_io.rs` `accept_offer`
//! uses it): `restrict_offer` turns the sending media lines the session may not publish into
//! receive-only or inactive ones, `sdp_mids` lists the lines, str0m parses the result
//! (`SdpOffer::from_sdp_string`); and the answer's candidates are copied into every bundled
//! section (`candidates_in_every_section`). Neither rewrite may add, drop or reorder a media
//! line, and refusing nothing must change nothing.
//!
//! Input: one byte whose bits say which media lines (by position) are allowed, then the SDP.

#![no_main]

use libfuzzer_sys::fuzz_target;
use str0m::change::SdpOffer;
use switchboard::media::webrtc::{candidates_in_every_section, restrict_offer, sdp_mids};

fuzz_target!(|data: &[u8]| {
    let Some((&mask, rest)) = data.split_first() else { return };
    // Offers arrive in JSON strings: always UTF-8.
    let Ok(sdp) = std::str::from_utf8(rest) else { return };
    let mids = sdp_mids(sdp);

    let (same, none) = restrict_offer(sdp, |_, _| true);
    assert_eq!(same, sdp, "allowing everything changes nothing");
    assert!(none.is_empty());

    let mut asked = Vec::new();
    let (restricted, refused) = restrict_offer(sdp, |mid, _| {
        asked.push(mid.to_owned());
        mask & (1 << (asked.len() % 8)) != 0
    });
    assert_eq!(sdp_mids(&restricted), mids, "restricting keeps every media line");
    assert!(refused.iter().all(|r| asked.contains(r)), "only lines that were asked about are refused");
    assert!(refused.len() <= asked.len());
    if refused.is_empty() {
        assert_eq!(restricted, sdp);
    }
    // Section by section: the lines asked about and refused no longer send; all others are
    // unchanged.
    let (before, after) = (sections(sdp), sections(&restricted));
    assert_eq!(before.len(), after.len(), "restricting keeps every section");
    let mut answers = asked.iter().enumerate().map(|(i, _)| mask & (1 << ((i + 1) % 8)) != 0);
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let media = i > 0 && (b[0].starts_with("m=audio") || b[0].starts_with("m=video"));
        let has_mid = b.iter().any(|l| l.trim_end().starts_with("a=mid:"));
        let sends = direction(b).is_none_or(|d| d == "a=sendonly" || d == "a=sendrecv");
        if media && has_mid && sends && !answers.next().expect("asked about every sending media line") {
            assert!(matches!(direction(a), Some("a=recvonly" | "a=inactive")), "a refused line still sends: {a:?}");
        } else {
            assert_eq!(a, b, "a line that was not refused changed");
        }
    }
    assert!(answers.next().is_none(), "asked only about sending media lines");

    let _ = SdpOffer::from_sdp_string(&restricted);

    let with_candidates = candidates_in_every_section(sdp);
    assert_eq!(sdp_mids(&with_candidates), mids, "copying candidates keeps every media line");
    assert!(with_candidates.len() >= sdp.len());
});

/// The sections of an SDP as `restrict_offer` sees them: the session part, then one per `m=`.
fn sections(sdp: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = vec![Vec::new()];
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") {
            out.push(Vec::new());
        }
        out.last_mut().expect("starts non-empty").push(line);
    }
    out
}

/// The first direction attribute of a section.
fn direction<'a>(section: &[&'a str]) -> Option<&'a str> {
    section
        .iter()
        .map(|l| l.trim_end())
        .find(|l| matches!(*l, "a=sendonly" | "a=sendrecv" | "a=recvonly" | "a=inactive"))
}

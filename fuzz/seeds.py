#!/usr/bin/env python3
"""Write the seed corpus of every fuzz target into fuzz/corpus/<target>/.

The seeds are built by hand in the shapes Chromium sends (RTP header extensions, VP8 descriptors,
RTCP compounds, STUN binding requests, an SDP offer with simulcast), the shapes the QUIC client
library sends (RoQ flows, signaling frames), and requests and tokens signed with the keys the
targets trust. No capture of a real browser session is written anywhere by the tests (see
README.md). Deterministic: running it again rewrites the same files. Needs `cryptography` (for the
ES256 token seeds) and nothing else.

    python3 fuzz/seeds.py
"""

import base64
import hashlib
import hmac
import json
import random
import struct
import zlib
from email.utils import formatdate
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
NOW = 1_800_000_000  # the clock of the hmac and token targets
RES = "11111111-2222-4333-8444-555555555555"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# --- RTP ------------------------------------------------------------------------------------

def rtp(pt, seq, ts, ssrc, payload, marker=False, ext=(), padding=0):
    """An RTP packet; `ext` is a list of one-byte header extension elements (id, value)."""
    b0 = 0x80 | (0x10 if ext else 0) | (0x20 if padding else 0)
    out = bytearray([b0, (0x80 if marker else 0) | pt])
    out += struct.pack(">HII", seq, ts, ssrc)
    if ext:
        body = bytearray()
        for i, v in ext:
            body.append((i << 4) | (len(v) - 1))
            body += v
        while len(body) % 4:
            body.append(0)
        out += struct.pack(">HH", 0xBEDE, len(body) // 4) + body
    out += payload
    if padding:
        out += bytes(padding - 1) + bytes([padding])
    return bytes(out)


# The extensions Chromium negotiates with this server: audio level (1), abs-send-time (2),
# transport-wide cc (3), mid (4), rid (10).
def chrome_ext(seq, level=None, mid=b"0", rid=None):
    ext = []
    if level is not None:
        ext.append((1, bytes([0x80 | level])))
    ext += [(2, b"\x12\x34\x56"), (3, struct.pack(">H", seq)), (4, mid)]
    if rid:
        ext.append((10, rid))
    return ext


def vp8_descriptor(pic, tl0, start=True, tid=None):
    x = 0x80 | 0x40 | (0x20 if tid is not None else 0)
    d = bytearray([0x90 if start else 0x80, x, 0x80 | (pic >> 8), pic & 0xFF, tl0])
    if tid is not None:
        d.append((tid << 6) | 0x20)
    return bytes(d)


def vp8_keyframe_header(w, h):
    # Frame tag (key frame, version 0, show frame, first partition size), start code, size.
    return bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + struct.pack("<HH", w, h)


VP8_KEY = vp8_descriptor(0x1234, 7) + vp8_keyframe_header(320, 180) + bytes(range(40))
VP8_DELTA = vp8_descriptor(0x1235, 7, tid=0) + bytes([0x31, 0x02, 0x00]) + bytes(range(40))
VP8_CONT = vp8_descriptor(0x1235, 7, start=False) + bytes(range(60))
VP8_SHORT = bytes([0x90, 0x80, 0x55]) + bytes([0x00, 0x00, 0x00])  # 7-bit picture ID
H264_STAP_SPS_PPS = bytes([0x18, 0x00, 0x05, 0x67, 0x42, 0xC0, 0x1F, 0xDA, 0x00, 0x03, 0x68, 0xCE, 0x3C])
H264_FU_A_IDR_START = bytes([0x7C, 0x85]) + bytes(range(50))
H264_FU_A_MIDDLE = bytes([0x7C, 0x05]) + bytes(range(50))
H264_NON_IDR = bytes([0x41, 0x9A]) + bytes(range(30))
OPUS = bytes([0xFC, 0xFF, 0xFE]) + bytes(range(60))

RTP_SEEDS = {
    "opus_level": rtp(111, 1000, 48000, 0x1111, OPUS, ext=chrome_ext(1, level=30)),
    "vp8_key_rid": rtp(96, 2000, 90000, 0x2222, VP8_KEY, marker=False, ext=chrome_ext(2, mid=b"1", rid=b"q")),
    "vp8_delta": rtp(96, 2001, 93000, 0x2222, VP8_DELTA, marker=True, ext=chrome_ext(3, mid=b"1")),
    "vp8_continuation": rtp(96, 2002, 93000, 0x2222, VP8_CONT, marker=True),
    "vp8_7bit": rtp(96, 5, 7, 9, VP8_SHORT),
    "h264_stap": rtp(102, 3000, 90000, 0x3333, H264_STAP_SPS_PPS, ext=chrome_ext(4, mid=b"2")),
    "h264_fu_a": rtp(102, 3001, 90000, 0x3333, H264_FU_A_IDR_START, marker=True),
    "padding_probe": rtp(96, 2003, 93000, 0x2222, b"", padding=224, ext=chrome_ext(5, mid=b"1")),
    "csrc": bytes([0x82, 0x60]) + struct.pack(">HII", 7, 8, 9) + struct.pack(">II", 10, 11) + OPUS,
    "two_byte_ext": bytes([0x90, 111]) + struct.pack(">HII", 1, 2, 3) + struct.pack(">HH", 0x1000, 2)
    + bytes([1, 1, 0x85, 0, 4, 2, 9, 9]) + OPUS,
}
for name, pkt in RTP_SEEDS.items():
    write("rtp", name, pkt)

for name, p in {"key": VP8_KEY, "delta": VP8_DELTA, "continuation": VP8_CONT, "seven_bit": VP8_SHORT,
                "plain": bytes([0x10, 0x01, 0x02])}.items():
    write("vp8", name, p)
for name, p in {"stap_sps_pps": H264_STAP_SPS_PPS, "fu_a_idr_start": H264_FU_A_IDR_START,
                "fu_a_middle": H264_FU_A_MIDDLE, "non_idr": H264_NON_IDR, "idr": bytes([0x65, 0x88, 0x84])}.items():
    write("h264", name, p)


# --- RTCP -----------------------------------------------------------------------------------

def rtcp_header(count, pt, body):
    assert len(body) % 4 == 0
    return bytes([0x80 | count, pt]) + struct.pack(">H", len(body) // 4) + body


def report_block(ssrc, lost_fraction=12, cumulative=3, highest=70000, jitter=40, lsr=0x12345678, dlsr=6553):
    return struct.pack(">IB", ssrc, lost_fraction) + cumulative.to_bytes(3, "big", signed=True) + struct.pack(
        ">IIII", highest, jitter, lsr, dlsr)


def sr(ssrc, blocks=()):
    body = struct.pack(">IQIII", ssrc, 0xE8F1_2345_6789_ABCD, 123456, 500, 400000) + b"".join(blocks)
    return rtcp_header(len(blocks), 200, body)


def rr(ssrc, blocks):
    return rtcp_header(len(blocks), 201, struct.pack(">I", ssrc) + b"".join(blocks))


def sdes(ssrc, cname=b"fuzz-cname"):
    item = bytes([1, len(cname)]) + cname + b"\x00"
    chunk = struct.pack(">I", ssrc) + item
    while len(chunk) % 4:
        chunk += b"\x00"
    return rtcp_header(1, 202, chunk)


def nack(sender, media, items):
    return rtcp_header(1, 205, struct.pack(">II", sender, media) + b"".join(struct.pack(">HH", p, b) for p, b in items))


def pli(sender, media):
    return rtcp_header(1, 206, struct.pack(">II", sender, media))


def fir(sender, media, seq):
    return rtcp_header(4, 206, struct.pack(">II", sender, 0) + struct.pack(">IB3x", media, seq))


def remb(sender, bps, ssrcs):
    exp = 0
    while bps > 0x3FFFF:
        bps >>= 1
        exp += 1
    body = struct.pack(">II", sender, 0) + b"REMB" + bytes([len(ssrcs), (exp << 2) | (bps >> 16)]) + struct.pack(
        ">H", bps & 0xFFFF) + b"".join(struct.pack(">I", s) for s in ssrcs)
    return rtcp_header(15, 206, body)


def twcc(sender, media):
    # Transport-wide congestion control feedback (RTPFB FMT 15), as Chromium sends it: base
    # sequence number, status count, reference time, feedback count, one run-length chunk, deltas.
    body = struct.pack(">IIHH", sender, media, 100, 3) + (0x123456).to_bytes(3, "big") + bytes([1])
    body += struct.pack(">H", 0x2003) + bytes([4, 8, 2])
    while len(body) % 4:
        body += b"\x00"
    return rtcp_header(15, 205, body)


RTCP_SEEDS = {
    "sr_sdes": sr(0x2222, [report_block(0x9999)]) + sdes(0x2222),
    "rr_nack_pli": rr(0x1, [report_block(0x2222)]) + nack(0x1, 0x2222, [(1000, 0b101), (65535, 0)]) + pli(0x1, 0x2222),
    "rr_remb": rr(0x1, []) + remb(0x1, 2_500_000, [0x2222, 0x3333]),
    "fir": rr(0x1, []) + fir(0x1, 0x2222, 3),
    "twcc": rr(0x1, []) + twcc(0x1, 0x2222),
    "padded_pli": bytes([0xA1, 206, 0, 3]) + struct.pack(">II", 1, 2) + bytes([0, 0, 0, 4]),
    "bye_app": rtcp_header(1, 203, struct.pack(">I", 0x2222)) + rtcp_header(0, 204, struct.pack(">I", 1) + b"name"),
}
for name, pkt in RTCP_SEEDS.items():
    write("rtcp", name, pkt)


# --- RoQ datagrams and signaling frames ------------------------------------------------------

def varint(v, size=None):
    size = size or (1 if v < 64 else 2 if v < 16384 else 4 if v < 2**30 else 8)
    prefix = {1: 0, 2: 1, 4: 2, 8: 3}[size]
    return (v | (prefix << (8 * size - 2))).to_bytes(size, "big")


def frame(obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(data)) + data


write("roq", "opus_flow_0", varint(0) + RTP_SEEDS["opus_level"])
write("roq", "vp8_flow_1", varint(1) + RTP_SEEDS["vp8_key_rid"])
write("roq", "h264_flow_2_long_varint", varint(2, 2) + RTP_SEEDS["h264_stap"])
write("roq", "nack_flow_4000", varint(4000) + RTCP_SEEDS["rr_nack_pli"])
write("roq", "sr_flow_8byte", varint(5, 8) + RTCP_SEEDS["sr_sdes"])
write("roq", "signaling_frames", frame({"type": "ping", "id": 1}) + frame({"type": "leave"}) + b"\x00\x00")


# --- STUN -----------------------------------------------------------------------------------

UFRAG, PASS = "fuzzsrv1", "fuzzpassword0123456789ab"


def stun_attr(kind, value):
    a = struct.pack(">HH", kind, len(value)) + value
    while len(a) % 4:
        a += b"\x00"
    return a


def stun_request(username, integrity=True, fingerprint=True, tid=b"\x07" * 12):
    attrs = stun_attr(0x0006, username.encode())
    attrs += stun_attr(0x0024, struct.pack(">I", 0x6E7F1EFF))  # PRIORITY
    attrs += stun_attr(0x802A, struct.pack(">Q", 0x1234_5678_9ABC_DEF0))  # ICE-CONTROLLING
    attrs += stun_attr(0x0025, b"")  # USE-CANDIDATE
    cookie = bytes([0x21, 0x12, 0xA4, 0x42])
    if integrity:
        length = len(attrs) + 24
        msg = struct.pack(">HH", 0x0001, length) + cookie + tid + attrs
        mac = hmac.new(PASS.encode(), msg, hashlib.sha1).digest()
        attrs += stun_attr(0x0008, mac)
    if fingerprint:
        length = len(attrs) + 8
        msg = struct.pack(">HH", 0x0001, length) + cookie + tid + attrs
        crc = (zlib.crc32(msg) ^ 0x5354554E) & 0xFFFFFFFF
        attrs += stun_attr(0x8028, struct.pack(">I", crc))
    return struct.pack(">HH", 0x0001, len(attrs)) + cookie + tid + attrs


write("stun", "binding_request_valid", stun_request(f"{UFRAG}:brwsr123"))
write("stun", "binding_request_other_peer", stun_request("someoneelse:brwsr123"))
write("stun", "binding_request_no_integrity", stun_request(f"{UFRAG}:brwsr123", integrity=False))
write("stun", "dtls_client_hello_header", bytes([22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 1, 0, 0, 28]) + bytes(28))
write("stun", "rtp", RTP_SEEDS["vp8_delta"])


# --- Signaling JSON and SDP -------------------------------------------------------------------

# An offer in the shape Chromium makes for the demo page: audio, simulcast video (q, h, f), and
# a screen share; BUNDLE, rtcp-mux, the header extensions above.
CHROME_OFFER = "\r\n".join([
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1 2",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS stream",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 126",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:brwsr123",
    "a=ice-pwd:browserpassword0123456789",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sendrecv",
    "a=msid:stream audio0",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:1111 cname:fuzzcname",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:brwsr123",
    "a=ice-pwd:browserpassword0123456789",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08",
    "a=setup:actpass",
    "a=mid:1",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=sendonly",
    "a=msid:stream video0",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 goog-remb",
    "a=rtcp-fb:96 transport-cc",
    "a=rtcp-fb:96 ccm fir",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=rtpmap:102 H264/90000",
    "a=rtcp-fb:102 nack pli",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "a=rtpmap:103 rtx/90000",
    "a=fmtp:103 apt=102",
    "a=rid:q send",
    "a=rid:h send",
    "a=rid:f send",
    "a=simulcast:send q;h;f",
    "m=video 9 UDP/TLS/RTP/SAVPF 96",
    "c=IN IP4 0.0.0.0",
    "a=ice-ufrag:brwsr123",
    "a=ice-pwd:browserpassword0123456789",
    "a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08",
    "a=setup:actpass",
    "a=mid:2",
    "a=sendonly",
    "a=rtcp-mux",
    "a=rtpmap:96 VP8/90000",
    "a=ssrc:4444 cname:fuzzcname",
    "",
])
ANSWER_WITH_CANDIDATE = CHROME_OFFER.replace(
    "a=mid:0\r\n", "a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n").replace(
    "a=sendonly", "a=recvonly")
write("sdp_offer", "chrome_allow_all", b"\xff" + CHROME_OFFER.encode())
write("sdp_offer", "chrome_refuse_some", b"\x05" + CHROME_OFFER.encode())
write("sdp_offer", "answer_with_candidate", b"\x00" + ANSWER_WITH_CANDIDATE.encode())
write("sdp_offer", "bare_lf", b"\x02" + "v=0\nm=audio 9 RTP/AVP 0\na=mid:a\nm=video 9 RTP/AVP 96\na=mid:v\na=inactive\n".encode())

SIGNALING = {
    "register": {"type": "register", "id": 1, "token": "eyJhbGciOiJFUzI1NiJ9.e30.c2ln", "displayName": "Ada"},
    "join_group": {"type": "join", "id": 2, "groupId": "3f2504e0-4f89-41d3-9a0c-0305e82c3301"},
    "join_room": {"type": "join", "id": 3, "roomId": "99012345678901234", "token": "t", "displayName": "Bob"},
    "join_meeting": {"type": "join", "id": 4, "meetingId": "123456789012", "passcode": "Xy7"},
    "join_link": {"type": "join", "meetingLink": "https://127.0.0.1:8443/meet/abc"},
    "start_call": {"type": "startCall", "id": 5, "targets": ["8:acs:" + RES + "_00000000-0000-4000-8000-000000000001"]},
    "accept_call": {"type": "acceptCall", "callId": "3f2504e0-4f89-41d3-9a0c-0305e82c3301"},
    "publish_simulcast": {"type": "publish", "id": 6, "kind": "video", "codec": "VP8",
                          "layers": [{"rid": "q", "height": 180}, {"rid": "h", "height": 360}, {"rid": "f", "height": 720}],
                          "source": "camera"},
    "publish_audio_audience": {"type": "publish", "kind": "audio", "codec": "opus", "audioLevelExtId": 1,
                               "audience": ["8:acs:x_y"]},
    "subscribe": {"type": "subscribe", "id": 7, "trackId": 3, "preferredLayer": 1, "maxHeight": 360},
    "set_preferences": {"type": "setPreferences", "subscriptionId": 9, "preferredLayer": 0},
    "mute": {"type": "mute", "trackId": 3, "muted": True},
    "admit_lobby": {"type": "admitLobby", "participantIds": [1, 2], "all": False},
    "hang_up": {"type": "hangUp", "forEveryone": True},
    "offer": {"type": "offer", "id": 8, "sdp": CHROME_OFFER, "sources": {"2": "screen"}},
    "answer": {"type": "answer", "sdp": ANSWER_WITH_CANDIDATE},
    "answer_offer_id": {"type": "answer", "id": 10, "sdp": ANSWER_WITH_CANDIDATE, "offerId": 3},
    "reject_offer": {"type": "rejectOffer", "id": 11, "offerId": 4, "reason": "m-lines do not match"},
    "candidate": {"type": "candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"},
    "ping": {"type": "ping", "id": 18446744073709551615},
}
for name, msg in SIGNALING.items():
    write("signaling", name, json.dumps(msg))


# --- HMAC-signed requests -------------------------------------------------------------------

KEY = b"fuzz access key, 32 bytes long!!"


def signed_request(method, path, host, body, key=KEY, when=NOW):
    date = formatdate(when, usegmt=True)
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    to_sign = f"{method}\n{path}\n{date};{host};{digest}"
    sig = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
    head = [
        f"{method} {path} HTTP/1.1",
        f"host: {host}",
        f"x-ms-date: {date}",
        f"x-ms-content-sha256: {digest}",
        f"authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={sig}",
        "content-type: application/json",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# Mode 0 (checked as is): requests the ACS SDKs would send.
write("hmac", "issue_token", b"\x00\x00" + signed_request(
    "POST", "/identities/8%3Aacs%3Ar_1/:issueAccessToken?api-version=2023-10-01", "127.0.0.1:8443",
    b'{"scopes":["voip"],"expiresInMinutes":60}'))
write("hmac", "create_identity", b"\x00\x00" + signed_request(
    "POST", "/identities?api-version=2023-10-01", "127.0.0.1:8443", b"{}"))
write("hmac", "get_room", b"\x00\x00" + signed_request(
    "GET", "/rooms/99012345678901234?api-version=2024-04-15", "localhost:8443", b""))
write("hmac", "wrong_key", b"\x00\x00" + signed_request("DELETE", "/identities/x?api-version=2023-10-01",
                                                        "h", b"", key=b"not the key"))
# Modes 1 and 2: the target signs (with the trusted key, then another), 8 s and 6 min off.
write("hmac", "self_signed", b"\x01\x02" + signed_request("patch", "/rooms/1?x=%41%zz", "h:1", b"[1]"))
write("hmac", "other_key_stale", b"\x02\x5a" + signed_request("PUT", "/a", "h", b""))


# --- Tokens ---------------------------------------------------------------------------------

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_seeds():
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = serialization.load_pem_private_key((HERE / "fuzz_signing_key.pem").read_bytes(), password=None)
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    kid = b64url(hashlib.sha256(point).digest()[:12])

    def sign(header, claims):
        signing_input = f"{b64url(header)}.{b64url(claims)}"
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    header = json.dumps({"alg": "ES256", "typ": "JWT", "kid": kid}, separators=(",", ":")).encode()

    def claims(sub="$SUB", scp="voip", iat=NOW - 60, exp=NOW + 3600, res="$RES", rgen="$RGEN", org=None):
        """Claims JSON; `rgen` is an integer, or the `$RGEN` placeholder (written bare)."""
        c = {"sub": sub, "skypeid": "acs:x", "scp": scp, "acsScope": scp.replace(" ", ","), "iat": iat, "exp": exp,
             "resourceId": res, "rgen": rgen}
        if org:
            c["org"] = org
        text = json.dumps(c, separators=(",", ":"))
        return text.replace('"$RGEN"', "$RGEN").encode()

    # Mode 0: a whole token, validly signed (its identity does not exist in the target's store).
    real = claims(sub=f"8:acs:{RES}_00000000-0000-4000-8000-000000000001", res=RES, rgen=0)
    write("token", "signed_unknown_identity", b"\x02" + sign(header, real).encode())
    write("token", "garbage", b"\x00" + b"a.b.c")
    # Mode 1: claims the target signs.
    write("token", "claims_voip", b"\x01" + claims())
    write("token", "claims_join_only", b"\x03" + claims(scp="voip.join", org="member"))
    write("token", "claims_expired", b"\x05" + claims(exp=NOW - 600))
    write("token", "claims_other_resource", b"\x01" + claims(res="22222222-2222-4333-8444-555555555555"))
    write("token", "header_and_claims", b"\x01" + json.dumps({"alg": "ES256", "kid": kid}).encode() + b"\x00" + claims())
    write("token", "header_alg_none", b"\x01" + b'{"alg":"none"}' + b"\x00" + claims())


token_seeds()


# --- Forwarder ------------------------------------------------------------------------------

# The forwarder target reads its operations with `arbitrary`; any bytes are a valid program.
rng = random.Random(12)
for size in (256, 1024, 4096):
    write("forwarder", f"random_{size}", bytes(rng.getrandbits(8) for _ in range(size)))

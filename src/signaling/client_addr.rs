//! Who a client is, for limits: the address a join counts against, through trusted reverse
//! proxies (`[http] trusted_proxies`, `X-Forwarded-For`), and the per-address join limiter.
//!
//! IPv6 addresses are counted by /64 (one subscriber's network: a client changing its interface
//! ID gains nothing), IPv4 addresses one by one. The limiter's window resets as a whole once a
//! second, so a join costs O(1) amortized however many addresses join; past `MAX_TRACKED`
//! addresses in one window, newcomers share one budget.

use serde::Deserialize;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limiter's window.
const WINDOW: Duration = Duration::from_secs(1);
/// Addresses (or /64s) tracked in one window; newcomers past it share one budget.
pub const MAX_TRACKED: usize = 100_000;

/// One `[http] trusted_proxies` entry: an IP address or a CIDR range (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

/// Why a `trusted_proxies` entry is not an address or range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{entry}` is not an IP address or CIDR range ({reason})")]
pub struct IpRangeError {
    entry: String,
    reason: &'static str,
}

impl IpRange {
    pub fn parse(entry: &str) -> Result<Self, IpRangeError> {
        let fail = |reason| IpRangeError { entry: entry.to_owned(), reason };
        let (addr, prefix) = match entry.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| fail("the prefix length is not a number"))?)),
            None => (entry.trim(), None),
        };
        let network: IpAddr = addr.parse().map_err(|_| fail("not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(fail("the prefix length is longer than the address"));
        }
        Ok(Self { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl TryFrom<String> for IpRange {
    type Error = IpRangeError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client behind a request from `peer`: when `peer` is a trusted proxy, the right-most
/// `X-Forwarded-For` address that is not itself a trusted proxy (what the outermost trusted proxy
/// saw); otherwise `peer`. Entries left of an untrusted one could be forged by the client, so they
/// are never used; an unreadable header counts as no header.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpRange]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return canonical(peer);
    }
    let Some(header) = forwarded_for else { return canonical(peer) };
    let mut client = canonical(peer);
    for hop in header.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else { return client };
        client = canonical(ip);
        if !is_trusted(client) {
            break;
        }
    }
    client
}

/// What a join counts against: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    V4(Ipv4Addr),
    V6Prefix(u64),
}

pub(crate) fn key_of(ip: IpAddr) -> Key {
    match canonical(ip) {
        IpAddr::V4(v4) => Key::V4(v4),
        IpAddr::V6(v6) => Key::V6Prefix((u128::from(v6) >> 64) as u64),
    }
}

/// Join attempts per second per client address (IPv6: per /64).
pub struct JoinLimiter {
    per_second: u32,
    window: Mutex<Window>,
}

struct Window {
    start: Option<Instant>,
    counts: HashMap<Key, u32>,
    /// Attempts of addresses that found the table full, sharing one budget.
    overflow: u32,
}

impl JoinLimiter {
    pub fn new(per_second: u32) -> Self {
        Self { per_second, window: Mutex::new(Window { start: None, counts: HashMap::new(), overflow: 0 }) }
    }

    /// Record an attempt from `addr`; false when its address (or /64) is over its budget.
    pub fn allow(&self, addr: IpAddr, now: Instant) -> bool {
        // A panic while holding the lock leaves counts that are merely stale: keep going.
        let mut w = self.window.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if w.start.is_none_or(|s| now.saturating_duration_since(s) >= WINDOW) {
            // Once a second, whatever the number of joins: O(1) amortized per join. A table
            // grown by a spray shrinks back when it is mostly empty.
            w.counts.clear();
            if w.counts.capacity() > 4 * 1024 {
                w.counts.shrink_to(1024);
            }
            w.overflow = 0;
            w.start = Some(now);
        }
        let key = key_of(addr);
        let per_second = self.per_second;
        if let Some(count) = w.counts.get_mut(&key) {
            *count = count.saturating_add(1);
            return *count <= per_second;
        }
        if w.counts.len() < MAX_TRACKED {
            w.counts.insert(key, 1);
            return 1 <= per_second;
        }
        w.overflow = w.overflow.saturating_add(1);
        w.overflow <= per_second
    }

    /// Addresses tracked in the current window (tests).
    pub fn tracked(&self) -> usize {
        self.window.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().expect("v6"))
    }

    #[test]
    fn ipv6_counts_by_64_and_ipv4_by_address_per_second() {
        let l = JoinLimiter::new(2);
        let t0 = Instant::now();
        assert!(l.allow(v6("2001:db8:1:2::1"), t0));
        assert!(l.allow(v6("2001:db8:1:2::ffff"), t0), "same /64, second attempt");
        assert!(!l.allow(v6("2001:db8:1:2:abcd::9"), t0), "a third interface ID of that /64 is over");
        assert!(l.allow(v6("2001:db8:1:3::1"), t0), "another /64 has its own budget");
        let a: IpAddr = "192.0.2.1".parse().expect("v4");
        let b: IpAddr = "192.0.2.2".parse().expect("v4");
        assert!(l.allow(a, t0) && l.allow(a, t0) && !l.allow(a, t0));
        assert!(!l.allow(v6("::ffff:192.0.2.1"), t0), "IPv4-mapped is the same address");
        assert!(l.allow(b, t0));
        assert!(l.allow(a, t0 + WINDOW), "a new second, a new budget");
    }

    #[test]
    fn a_spray_of_addresses_is_bounded_and_shares_one_budget() {
        let l = JoinLimiter::new(5);
        let t0 = Instant::now();
        let known: IpAddr = "198.51.100.7".parse().expect("v4");
        assert!(l.allow(known, t0));
        let mut allowed = 0;
        for i in 0..(MAX_TRACKED as u64 + 50_000) {
            let ip = IpAddr::V6(Ipv6Addr::from((u128::from(0x2001_0db8_u32) << 96) | (u128::from(i) << 64)));
            allowed += usize::from(l.allow(ip, t0));
        }
        assert_eq!(l.tracked(), MAX_TRACKED, "the table stops growing");
        // Each /64 that found room is allowed once; the 50,001 that did not share 5.
        assert_eq!(allowed, (MAX_TRACKED - 1) + 5, "newcomers past the table share one budget");
        assert!(l.allow(known, t0), "an address already tracked keeps its own budget");
        assert!(l.allow(known, t0 + WINDOW));
        assert_eq!(l.tracked(), 1, "the next second starts empty");
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        let trusted = [IpRange::parse("10.0.0.0/8").expect("range"), IpRange::parse("::1").expect("ip")];
        let proxy: IpAddr = "10.1.2.3".parse().expect("v4");
        let stranger: IpAddr = "203.0.113.9".parse().expect("v4");
        let client: IpAddr = "198.51.100.20".parse().expect("v4");
        assert_eq!(client_ip(proxy, Some("198.51.100.20"), &trusted), client);
        // A forged entry on the left is skipped: the right-most untrusted hop is the client.
        assert_eq!(client_ip(proxy, Some("6.6.6.6, 198.51.100.20, 10.9.9.9"), &trusted), client);
        assert_eq!(client_ip(stranger, Some("198.51.100.20"), &trusted), stranger, "not from a proxy: ignored");
        assert_eq!(client_ip(proxy, None, &trusted), proxy);
        assert_eq!(client_ip(proxy, Some("junk"), &trusted), proxy);
        assert_eq!(client_ip(v6("::1"), Some(" 198.51.100.20 "), &trusted), client);
        assert_eq!(client_ip(proxy, Some("10.0.0.1"), &trusted), "10.0.0.1".parse::<IpAddr>().expect("v4"));
    }

    #[test]
    fn ranges_parse_and_match() {
        let r = IpRange::parse("192.168.0.0/16").expect("range");
        assert!(r.contains("192.168.44.1".parse().expect("v4")));
        assert!(!r.contains("192.169.0.1".parse().expect("v4")));
        assert!(r.contains(v6("::ffff:192.168.1.1")), "IPv4-mapped");
        assert!(IpRange::parse("0.0.0.0/0").expect("all").contains("8.8.8.8".parse().expect("v4")));
        assert!(IpRange::parse("fd00::/8").expect("ula").contains(v6("fd12::1")));
        for bad in ["", "10.0.0.0/33", "10.0.0.0/x", "example.com", "::/129"] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
    }
}

//! Per-board webhooks (docs/WEBHOOKS.md): what a webhook may be, and its
//! tables.
//!
//! - this module: the rules a new webhook must meet (target URL, event
//!   filter, secret) and which addresses a target may not reach. Pure
//!   except for resolving a target's host name.
//! - [`registry`]: the API's side of the `webhooks` and
//!   `webhook_deliveries` tables (create, list, delete, recent attempts).
//! - [`queue`]: the dispatchers' side (claim a webhook under a lease, the
//!   next event to deliver, record an attempt, advance the cursor).
//! - [`dispatcher`]: what the projector runs: delivers each webhook's
//!   events in version order, at least once, signed, on a persisted retry
//!   schedule ([`dispatcher::delivery`]).
//!
//! The events come from the PostgreSQL archive (`events`), so nothing here
//! depends on Redis: webhooks behave the same whichever projector folded a
//! board, on a single Redis or a cluster.

pub mod dispatcher;
pub mod queue;
pub mod registry;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use streamboard_core::domain::EventData;
use streamboard_core::postgres::DbError;

/// Webhooks one board may have.
pub const MAX_PER_BOARD: i64 = 20;
/// Recent attempts kept per webhook (`GET .../deliveries`).
pub const DELIVERIES_KEPT: i64 = 100;
/// Bytes of randomness in a generated secret (hex: twice as many characters).
pub const SECRET_BYTES: usize = 32;
const MIN_SECRET_CHARS: usize = 32;
const MAX_SECRET_CHARS: usize = 256;
const MAX_URL_CHARS: usize = 2048;
/// How long creating a webhook waits for its host name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a webhook cannot be made or read; mapped to responses in
/// `http::error`.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("a board has at most {MAX_PER_BOARD} webhooks")]
    LimitReached,
    #[error("webhook not found")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<tokio_postgres::Error> for WebhookError {
    fn from(error: tokio_postgres::Error) -> Self {
        WebhookError::Db(error.into())
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> WebhookError {
    WebhookError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The `events` filter of a new webhook: known type names, without
/// repeats, in the order given; `None` delivers every type.
pub fn event_filter(events: Option<Vec<String>>) -> Result<Option<Vec<String>>, WebhookError> {
    let Some(events) = events else {
        return Ok(None);
    };
    if events.is_empty() {
        return Err(invalid(
            "events",
            "name at least one event type, or leave `events` out for all",
        ));
    }
    let mut filter: Vec<String> = Vec::with_capacity(events.len());
    for name in events {
        if !EventData::TYPE_NAMES.contains(&name.as_str()) {
            return Err(invalid(
                "events",
                format!(
                    "unknown event type '{name}'; known: {}",
                    EventData::TYPE_NAMES.join(", ")
                ),
            ));
        }
        if !filter.contains(&name) {
            filter.push(name);
        }
    }
    Ok(Some(filter))
}

/// A secret given in the body, or a fresh one: [`SECRET_BYTES`] random
/// bytes from the OS, in hex.
pub fn secret(given: Option<String>) -> Result<String, WebhookError> {
    match given {
        Some(secret) => {
            let chars = secret.chars().count();
            if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&chars)
                || !secret.chars().all(|c| c.is_ascii_graphic())
            {
                return Err(invalid(
                    "secret",
                    format!(
                        "{MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} visible ASCII characters \
                         (e.g. `openssl rand -hex 32`)"
                    ),
                ));
            }
            Ok(secret)
        }
        None => {
            let mut bytes = [0u8; SECRET_BYTES];
            getrandom::fill(&mut bytes)
                .map_err(|e| WebhookError::Internal(anyhow::anyhow!("OS RNG: {e}")))?;
            Ok(hex::encode(bytes))
        }
    }
}

/// A target URL that parses, is `http` or `https`, and names a host.
pub fn target(url: &str) -> Result<url::Url, WebhookError> {
    if url.chars().count() > MAX_URL_CHARS {
        return Err(invalid(
            "url",
            format!("at most {MAX_URL_CHARS} characters"),
        ));
    }
    let parsed = url::Url::parse(url).map_err(|e| invalid("url", format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("url", "must be an http or https URL"));
    }
    if parsed.host().is_none() {
        return Err(invalid("url", "must name a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "url",
            "must not carry credentials; verify deliveries by their signature",
        ));
    }
    Ok(parsed)
}

/// Refuses a target whose host is, or resolves to, an address a webhook
/// may not reach (see [`is_forbidden`]); the `prod` profile's rule.
pub async fn check_reachable(url: &url::Url) -> Result<(), WebhookError> {
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses: Vec<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        Some(url::Host::Domain(name)) => {
            let lookup = tokio::net::lookup_host((name, port));
            match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                Ok(Err(_)) | Err(_) => {
                    return Err(invalid("url", format!("host '{name}' does not resolve")))
                }
            }
        }
        None => return Err(invalid("url", "must name a host")),
    };
    if addresses.is_empty() {
        return Err(invalid("url", "host does not resolve"));
    }
    if let Some(ip) = addresses.into_iter().find(|ip| is_forbidden(*ip)) {
        return Err(invalid(
            "url",
            format!(
                "resolves to {ip}, a loopback, private, link-local or metadata address \
                 (webhooks.allow_private_targets allows them)"
            ),
        ));
    }
    Ok(())
}

/// Addresses a webhook must not reach unless the operator allows it:
/// loopback, private and shared (CGNAT) ranges, link-local (which holds
/// the cloud metadata services, 169.254.169.254 and fd00:ec2::254 alike),
/// unique-local, unspecified, multicast, broadcast, reserved and
/// documentation ranges; and every IPv6 form that carries an IPv4 address
/// a packet may end up at (mapped, compatible, SIIT-translated, NAT64,
/// 6to4, Teredo) when that IPv4 address is forbidden.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_forbidden_v4(ip),
        IpAddr::V6(ip) => is_forbidden_v6(ip),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        // 100.64.0.0/10: shared address space (CGNAT; some clouds' metadata).
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24: IETF protocol assignments (NAT64 discovery, DS-Lite).
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15: benchmarking; 240.0.0.0/4: reserved.
        || (a == 198 && (18..20).contains(&b))
        || a >= 240
}

/// IPv6 prefixes refused whatever follows them: `(prefix, length)`.
const FORBIDDEN_V6: [(u128, u32); 9] = [
    (0xfc00 << 112, 7),           // unique local (fd00:ec2::254: AWS metadata)
    (0xfe80 << 112, 10),          // link-local
    (0xfec0 << 112, 10),          // site-local (deprecated, still routed inside)
    (0xff00 << 112, 8),           // multicast
    (0x0064_ff9b_0001 << 80, 48), // NAT64 for local use (RFC 8215)
    (0x2001_0000 << 96, 32),      // Teredo: tunnels to an address we cannot see
    (0x2001_0db8 << 96, 32),      // documentation
    (0x0100 << 112, 64),          // discard-only
    (0x2001_0002 << 96, 48),      // benchmarking
];

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let in_prefix = |prefix: u128, length: u32| {
        let mask = u128::MAX << (128 - length);
        bits & mask == prefix & mask
    };
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    if FORBIDDEN_V6
        .iter()
        .any(|&(prefix, length)| in_prefix(prefix, length))
    {
        return true;
    }
    embedded_v4(bits, in_prefix).is_some_and(is_forbidden_v4)
}

/// The IPv4 address an IPv6 address carries, in the forms that deliver to
/// it: `::ffff:a.b.c.d` (mapped), `::a.b.c.d` (compatible, deprecated),
/// `::ffff:0:a.b.c.d` (SIIT), `64:ff9b::a.b.c.d` (NAT64) in the last 32
/// bits, and `2002:AABB:CCDD::/48` (6to4) in bits 16 to 47.
fn embedded_v4(bits: u128, in_prefix: impl Fn(u128, u32) -> bool) -> Option<Ipv4Addr> {
    let last = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if in_prefix(0xffff << 32, 96)
        || in_prefix(0, 96)
        || in_prefix(0xffff_0000 << 32, 96)
        || in_prefix(0x0064_ff9b << 96, 96)
    {
        return Some(last);
    }
    if in_prefix(0x2002 << 112, 16) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_with_a_host_are_targets() {
        for good in [
            "https://hooks.example.com/streamboard",
            "http://127.0.0.1:9000/x?y=1",
        ] {
            assert!(target(good).is_ok(), "{good}");
        }
        for bad in [
            "ftp://example.com/",
            "not a url",
            "",
            "https://",
            "mailto:a@example.com",
            "https://user:pw@example.com/",
            "file:///etc/passwd",
        ] {
            assert!(
                matches!(target(bad), Err(WebhookError::Invalid { field: "url", .. })),
                "{bad}"
            );
        }
    }

    /// Every shape of address a target may take, and whether it is refused.
    const SHAPES: [(&str, bool); 56] = [
        // IPv4: private, loopback, link-local (metadata), shared, special.
        ("127.0.0.1", true),
        ("127.255.255.254", true),
        ("10.1.2.3", true),
        ("172.16.0.1", true),
        ("172.31.255.255", true),
        ("192.168.1.1", true),
        ("169.254.169.254", true),
        ("100.100.100.200", true),
        ("100.64.0.1", true),
        ("0.0.0.0", true),
        ("0.1.2.3", true),
        ("224.0.0.1", true),
        ("239.255.255.250", true),
        ("255.255.255.255", true),
        ("240.0.0.1", true),
        ("192.0.0.170", true),
        ("192.0.2.1", true),
        ("198.18.0.1", true),
        ("203.0.113.9", true),
        // IPv6 of its own: loopback, unspecified, unique-local, link-local.
        ("::1", true),
        ("::", true),
        ("fd00:ec2::254", true),
        ("fc00::1", true),
        ("fe80::1", true),
        ("febf::1", true),
        ("fec0::1", true),
        ("ff02::1", true),
        ("2001:db8::1", true),
        ("100::1", true),
        // IPv4 inside IPv6: mapped, compatible, SIIT, NAT64, 6to4, Teredo.
        ("::ffff:10.0.0.1", true),
        ("::ffff:127.0.0.1", true),
        ("::ffff:169.254.169.254", true),
        ("::a9fe:a9fe", true),
        ("::127.0.0.1", true),
        ("::ffff:0:a9fe:a9fe", true),
        ("64:ff9b::a9fe:a9fe", true),
        ("64:ff9b::7f00:1", true),
        ("64:ff9b::10.0.0.1", true),
        ("64:ff9b:1::a9fe:a9fe", true),
        ("64:ff9b:1:ffff::5db8:d70e", true),
        ("2002:a9fe:a9fe::", true),
        ("2002:7f00:1::1", true),
        ("2002:c0a8:101::", true),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", true),
        ("2001::1", true),
        // Public: allowed, including public IPv4 in the embedding forms.
        ("93.184.215.14", false),
        ("8.8.8.8", false),
        ("100.128.0.1", false),
        ("172.32.0.1", false),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", false),
        ("2a00:1450:4001:81a::200e", false),
        ("::ffff:93.184.215.14", false),
        ("64:ff9b::5db8:d70e", false),
        ("64:ff9b::8.8.8.8", false),
        ("2002:5db8:d70e::1", false),
        ("2001:4860:4860::8888", false),
    ];

    #[test]
    fn every_address_shape_is_judged() {
        for (ip, forbidden) in SHAPES {
            assert_eq!(is_forbidden(ip.parse().unwrap()), forbidden, "{ip}");
        }
    }

    #[tokio::test]
    async fn ipv6_literals_reaching_private_space_are_refused_as_urls() {
        for host in [
            "[64:ff9b::a9fe:a9fe]",
            "[64:ff9b::7f00:1]",
            "[2002:a9fe:a9fe::]",
            "[::a9fe:a9fe]",
            "[::127.0.0.1]",
            "[::ffff:169.254.169.254]",
        ] {
            let url = target(&format!("http://{host}/hook")).unwrap();
            assert!(check_reachable(&url).await.is_err(), "{host}");
        }
        let public = target("http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/").unwrap();
        assert!(check_reachable(&public).await.is_ok());
    }

    #[tokio::test]
    async fn a_loopback_target_is_refused_when_checked() {
        let url = target("http://127.0.0.1:8080/hook").unwrap();
        assert!(check_reachable(&url).await.is_err());
        let url = target("http://[::1]/hook").unwrap();
        assert!(check_reachable(&url).await.is_err());
    }

    #[test]
    fn filters_name_known_types_once() {
        assert_eq!(event_filter(None).unwrap(), None);
        let filter = event_filter(Some(vec![
            "task.created".into(),
            "task.moved".into(),
            "task.created".into(),
        ]))
        .unwrap();
        assert_eq!(
            filter,
            Some(vec!["task.created".into(), "task.moved".into()])
        );
        assert!(event_filter(Some(vec![])).is_err());
        assert!(event_filter(Some(vec!["task.exploded".into()])).is_err());
    }

    #[test]
    fn secrets_are_long_random_hex_unless_given() {
        let one = secret(None).unwrap();
        let two = secret(None).unwrap();
        assert_eq!(one.len(), SECRET_BYTES * 2);
        assert!(one.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(one, two);
        let given = "x".repeat(40);
        assert_eq!(secret(Some(given.clone())).unwrap(), given);
        assert!(secret(Some("short".into())).is_err());
        assert!(secret(Some(format!("{} spaces", "y".repeat(40)))).is_err());
    }
}

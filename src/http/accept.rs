//! What bounds a client connection in number and in time, from accept to
//! close (`serve` drives it):
//!
//! - [`Admission`]: at most `server.max_connections` open sockets, and at
//!   most `server.max_connections_per_address` from one IP address. A
//!   socket over either is answered at once with a fixed 503 (server
//!   full) or 429 (that address), without reading from it, and closed.
//!   The [`Slot`] it holds travels with the socket, into a WebSocket
//!   session too, so upgraded connections count until they close.
//! - [`Clock`]: which deadline a connection is under. Waiting for a request
//!   with nothing received: `server.idle_timeout_seconds` (a new silent
//!   socket, or keep-alive between requests); once a request's first byte
//!   is in: `server.header_read_timeout_seconds` for the rest of its head
//!   (slowloris). While a request is served the connection has no deadline
//!   of its own: its body has `server.body_read_timeout_seconds`
//!   (`request::body_bytes`), WebSocket and SSE have their own limits.
//!
//! Go's `net/http` (IdleTimeout, ReadHeaderTimeout) works the same way;
//! hyper's own header timer is not used, since it runs from the moment a
//! head is awaited and so cannot tell idle from slow.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use streamboard_core::settings::ServerSettings;

/// The connection limits of `server.*`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// 0: no per-address cap (behind a proxy every client has its address).
    pub max_per_address: usize,
    pub idle: Duration,
    pub header_read: Duration,
}

impl From<&ServerSettings> for ConnectionLimits {
    fn from(server: &ServerSettings) -> Self {
        ConnectionLimits {
            max_connections: server.max_connections,
            max_per_address: server.max_connections_per_address,
            idle: Duration::from_secs(server.idle_timeout_seconds),
            header_read: Duration::from_secs(server.header_read_timeout_seconds),
        }
    }
}

/// Who a per-address limit is kept for: the IPv4 address, or the IPv6
/// /64 (one host or household gets a whole /64, so counting /128s would
/// let it open as many as it likes).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        },
        v4 => v4,
    }
}

/// Open sockets, in total and by address.
pub struct Admission {
    limits: ConnectionLimits,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Why a socket was turned away at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ServerFull,
    AddressFull,
}

impl Refusal {
    /// The whole answer, written once without reading the request: the
    /// contract's error shape, `Retry-After`, and `Connection: close`.
    pub fn response(self) -> &'static [u8] {
        match self {
            Refusal::ServerFull => b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: 105\r\n\r\n\
{\"error\":{\"code\":\"service_unavailable\",\"message\":\"the server is at its connection limit; retry shortly\"}}",
            Refusal::AddressFull => b"HTTP/1.1 429 Too Many Requests\r\n\
content-type: application/json\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: 94\r\n\r\n\
{\"error\":{\"code\":\"too_many_requests\",\"message\":\"too many open connections from this address\"}}",
        }
    }
}

impl Admission {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Admission {
            limits,
            open: Mutex::default(),
        })
    }

    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// A slot for a socket from `address`, or why there is none.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Slot, Refusal> {
        let address = client_key(address);
        let mut open = self.open.lock();
        if open.total >= self.limits.max_connections {
            return Err(Refusal::ServerFull);
        }
        let from_address = open.by_address.entry(address).or_default();
        if self.limits.max_per_address != 0 && *from_address >= self.limits.max_per_address {
            return Err(Refusal::AddressFull);
        }
        *from_address += 1;
        open.total += 1;
        Ok(Slot {
            admission: Arc::clone(self),
            address,
        })
    }

    /// Open sockets now (for tests and metrics).
    pub fn open(&self) -> usize {
        self.open.lock().total
    }
}

/// One admitted socket; its place is given back when this drops.
pub struct Slot {
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock();
        open.total -= 1;
        if let Some(count) = open.by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

const WAITING: u8 = 0;
const HEAD_STARTED: u8 = 1;
const SERVING: u8 = 2;

/// Which deadline a connection is under (see the module doc).
pub struct Clock {
    phase: AtomicU8,
    /// When the current phase began.
    since: Mutex<Instant>,
    changed: Notify,
    /// Requests awaited so far: a new value means a new head to check.
    heads: std::sync::atomic::AtomicU64,
    upgraded: std::sync::atomic::AtomicBool,
}

impl Clock {
    pub fn new() -> Arc<Self> {
        Arc::new(Clock {
            phase: AtomicU8::new(WAITING),
            since: Mutex::new(Instant::now()),
            changed: Notify::new(),
            heads: std::sync::atomic::AtomicU64::new(0),
            upgraded: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn enter(&self, phase: u8) {
        *self.since.lock() = Instant::now();
        self.phase.store(phase, Ordering::Release);
        self.changed.notify_one();
    }

    /// Bytes arrived: if a request was awaited, its head has begun.
    fn received(&self) {
        if self.phase.load(Ordering::Relaxed) == WAITING
            && self
                .phase
                .compare_exchange(WAITING, HEAD_STARTED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            *self.since.lock() = Instant::now();
            self.changed.notify_one();
        }
    }

    /// A request's head is complete and being served.
    pub fn serving(&self) {
        self.enter(SERVING);
    }

    /// The response is written: the next request is awaited.
    pub fn waiting(&self) {
        self.heads.fetch_add(1, Ordering::AcqRel);
        self.enter(WAITING);
    }

    /// A response is written: the next request is awaited, unless the
    /// connection was upgraded.
    fn finished(&self) {
        if !self.upgraded.load(Ordering::Acquire) {
            self.waiting();
        }
    }

    /// The connection was upgraded (WebSocket): no more heads, no deadline.
    pub fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
        self.enter(SERVING);
    }

    fn reading_head(&self) -> Option<u64> {
        (self.phase.load(Ordering::Acquire) != SERVING).then(|| self.heads.load(Ordering::Acquire))
    }

    /// When the connection is to be closed if nothing changes; `None`
    /// while a request is served.
    pub fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let since = *self.since.lock();
        match self.phase.load(Ordering::Acquire) {
            WAITING => Some(since + limits.idle),
            HEAD_STARTED => Some(since + limits.header_read),
            _ => None,
        }
    }

    /// Resolves when the phase changes.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// A client's socket as hyper and WebSocket sessions use it: its bytes
/// move the [`Clock`], and its [`Slot`] is held as long as it is open.
pub struct ClientStream {
    stream: TcpStream,
    clock: Arc<Clock>,
    head: HeadCheck,
    _slot: Slot,
}

impl ClientStream {
    pub fn new(stream: TcpStream, clock: Arc<Clock>, slot: Slot) -> Self {
        ClientStream {
            stream,
            clock,
            head: HeadCheck::default(),
            _slot: slot,
        }
    }
}

/// Lines of a request head end in CRLF (RFC 9112): a bare LF, which
/// hyper's parser lets through, could make a proxy in front and this
/// server read different requests from the same bytes. Checked from a
/// head's first byte to its blank line.
#[derive(Default)]
struct HeadCheck {
    /// Which awaited request these bytes belong to (`Clock::heads`).
    head: u64,
    /// The head's blank line was seen: what follows is its body.
    done: bool,
    /// The last bytes seen, across reads.
    last: [u8; 3],
}

impl HeadCheck {
    /// False if `bytes` hold a bare LF in the head of request `head`.
    fn check(&mut self, head: u64, bytes: &[u8]) -> bool {
        if head != self.head {
            *self = HeadCheck {
                head,
                ..HeadCheck::default()
            };
        }
        for &byte in bytes {
            if self.done {
                return true;
            }
            if byte == b'\n' {
                if self.last[2] != b'\r' {
                    return false;
                }
                // CR LF CR LF: the blank line that ends the head.
                self.done = self.last[..2] == *b"\r\n";
            }
            self.last = [self.last[1], self.last[2], byte];
        }
        true
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.received();
            if let Some(head) = self.clock.reading_head() {
                let this = &mut *self;
                if !this.head.check(head, &buf.filled()[before..]) {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a request head line ends in a bare LF",
                    )));
                }
            }
        }
        polled
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A response body that puts its connection back to waiting once hyper
/// has written it all (or given up on it): hyper drops a body when done.
pub struct Finished<B> {
    body: B,
    clock: Arc<Clock>,
}

impl<B> Finished<B> {
    pub fn new(body: B, clock: Arc<Clock>) -> Self {
        Finished { body, clock }
    }
}

impl<B> Drop for Finished<B> {
    fn drop(&mut self) {
        self.clock.finished();
    }
}

impl<B> hyper::body::Body for Finished<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_address: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: total,
            max_per_address: per_address,
            idle: Duration::from_secs(60),
            header_read: Duration::from_secs(10),
        }
    }

    #[test]
    fn caps_count_open_sockets_in_total_and_by_address() {
        let admission = Admission::new(limits(3, 2));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some(Refusal::AddressFull));
        let _third = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).err(), Some(Refusal::ServerFull));
        drop(first);
        let again = admission.admit(a);
        assert!(again.is_ok(), "a closed socket frees its place");
        assert_eq!(admission.open(), 3);
        let unlimited = Admission::new(limits(10, 0));
        let many: Vec<_> = (0..10).map(|_| unlimited.admit(a).unwrap()).collect();
        assert_eq!(many.len(), 10);
    }

    #[test]
    fn limits_are_kept_per_ipv4_address_and_per_ipv6_64() {
        let key = |ip: &str| client_key(ip.parse().unwrap()).to_string();
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn refusals_are_complete_responses() {
        for refusal in [Refusal::ServerFull, Refusal::AddressFull] {
            let text = std::str::from_utf8(refusal.response()).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(body.len(), length, "{text}");
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(json["error"]["code"].is_string());
        }
    }

    #[test]
    fn head_lines_must_end_in_crlf() {
        let check = |parts: &[&[u8]]| {
            let mut head = HeadCheck::default();
            parts.iter().all(|part| head.check(0, part))
        };
        assert!(check(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]));
        assert!(check(&[b"GET / HTTP/1.1\r", b"\nHost: x\r\n\r", b"\n"]));
        assert!(!check(&[b"GET / HTTP/1.1\nHost: x\r\n\r\n"]));
        assert!(!check(&[b"GET / HTTP/1.1\r\nHost: x\n\n"]));
        // A body after the blank line may hold any bytes.
        assert!(check(&[
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n{\n}"
        ]));
        let mut head = HeadCheck::default();
        assert!(head.check(0, b"GET / HTTP/1.1\r\n\r\nbody\n"));
        assert!(
            !head.check(1, b"GET / HTTP/1.1\n"),
            "the next request's head is checked"
        );
    }

    #[test]
    fn the_deadline_follows_the_phase() {
        let limits = limits(1, 1);
        let clock = Clock::new();
        let remaining = |clock: &Clock| {
            clock
                .deadline(&limits)
                .map(|d| d.saturating_duration_since(Instant::now()))
        };
        let idle = remaining(&clock).unwrap();
        assert!(idle > limits.header_read && idle <= limits.idle, "{idle:?}");
        clock.received();
        let head = remaining(&clock).unwrap();
        assert!(head <= limits.header_read, "{head:?}");
        let first = clock.deadline(&limits);
        clock.received();
        assert_eq!(
            clock.deadline(&limits),
            first,
            "more bytes of the same head do not extend it"
        );
        clock.serving();
        assert_eq!(clock.deadline(&limits), None);
        clock.received();
        assert_eq!(clock.deadline(&limits), None, "body bytes start no head");
        clock.waiting();
        assert!(remaining(&clock).unwrap() > limits.header_read);
    }
}

//! [`Receiver`]: a webhook receiver on loopback, inside the test. It
//! records every request it gets, and can be told to fail the next N
//! (HTTP 500) or to take its time answering.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::oneshot;
use warp::http::{HeaderMap, StatusCode};
use warp::Filter;

/// One request as the receiver got it, and what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    /// The version in `X-Streamboard-Event-Id: <board_id>:<version>`.
    pub fn version(&self) -> u64 {
        let id = self.header("x-streamboard-event-id");
        id.rsplit_once(':')
            .and_then(|(_, version)| version.parse().ok())
            .unwrap_or_else(|| panic!("event id {id}"))
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn delivered(&self) -> bool {
        (200..300).contains(&self.answered)
    }

    /// Whether `X-Streamboard-Signature-256` is the HMAC-SHA256 of the raw
    /// body with `secret`, checked as a receiver would (constant time).
    pub fn signed_with(&self, secret: &str) -> bool {
        let Some(hex_mac) = self
            .header("x-streamboard-signature-256")
            .strip_prefix("sha256=")
        else {
            return false;
        };
        let Ok(expected) = hex::decode(hex_mac) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(&self.body);
        mac.verify_slice(&expected).is_ok()
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    failures_left: AtomicUsize,
    delay_ms: AtomicU64,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

pub struct Receiver {
    /// Where to point a webhook: `http://127.0.0.1:<port>/hook`.
    pub url: String,
    state: Arc<State>,
    _shutdown: oneshot::Sender<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let route = warp::path("hook")
            .and(warp::post())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(move |headers: HeaderMap, body: Bytes| {
                let state = Arc::clone(&shared);
                async move {
                    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    state.most_in_flight.fetch_max(now, Ordering::SeqCst);
                    let delay = state.delay_ms.load(Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    let fail = state
                        .failures_left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let status = if fail {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    };
                    let headers = headers
                        .iter()
                        .map(|(name, value)| {
                            (
                                name.as_str().to_owned(),
                                value.to_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect();
                    state.received.lock().unwrap().push(Received {
                        headers,
                        body: body.to_vec(),
                        answered: status.as_u16(),
                    });
                    state.in_flight.fetch_sub(1, Ordering::SeqCst);
                    warp::reply::with_status(warp::reply(), status)
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the receiver");
        let addr = listener.local_addr().expect("an address");
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(route)
                .incoming(listener)
                .graceful(async move {
                    let _ = stopped.await;
                })
                .run(),
        );
        Receiver {
            url: format!("http://{addr}/hook"),
            state,
            _shutdown: shutdown,
        }
    }

    /// Answers the next `count` requests with 500.
    pub fn fail_next(&self, count: usize) {
        self.state.failures_left.store(count, Ordering::SeqCst);
    }

    /// Waits this long before answering each request.
    pub fn delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// The most requests it was answering at one time.
    pub fn most_in_flight(&self) -> usize {
        self.state.most_in_flight.load(Ordering::SeqCst)
    }

    /// Every request so far, in the order they were answered.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits (at most `within`) until `done` holds for what was received.
    pub async fn wait_until(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            if tokio::time::Instant::now() > deadline {
                let versions: Vec<(u64, u16)> =
                    received.iter().map(|r| (r.version(), r.answered)).collect();
                panic!("the receiver did not get {what} within {within:?}; got {versions:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until versions `from..=to` were each answered with a 2xx.
    pub async fn wait_for_versions(&self, from: u64, to: u64) -> Vec<Received> {
        self.wait_until(
            Duration::from_secs(60),
            &format!("versions {from}..={to}"),
            |received| {
                (from..=to).all(|v| received.iter().any(|r| r.delivered() && r.version() == v))
            },
        )
        .await
    }
}

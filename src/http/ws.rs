//! The WebSocket gateway, shared by `/quick/ws` and `/ws`.
//!
//! Per connection: one task reads client frames and live board frames, one
//! task writes. Between them an outbox bounded in bytes: a client that does
//! not read fills it and is closed (1008) instead of slowing anyone else.
//!
//! Each board a client subscribes to is a [`Subscription`], which delivers
//! every version once, in order, from history and then live.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::BoxStream;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_stream::StreamMap;
use uuid::Uuid;
use warp::filters::ws::{Message, WebSocket, Ws};
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::connections::ConnectionCap;
use super::error::ApiError;
use super::subscription::{OpenError, Subscription, Update};
use crate::presence::{Presence, Present};
use crate::settings::WebSocketSettings;
use crate::store::Caller;
use crate::store::{BoardStore, StoreError};
use tokio_stream::wrappers::BroadcastStream;

/// Subscriptions one connection may hold at once.
const MAX_SUBSCRIPTIONS: usize = 100;
/// How long the writer may make no progress with a full outbound queue
/// before the client is disconnected as too slow.
const STALL_LIMIT: Duration = Duration::from_secs(2);
/// How long a closing connection may take to flush its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

pub struct Gateway {
    store: Arc<dyn BoardStore>,
    /// Who watches which board; `None` in quick-win, which has no users.
    presence: Option<Arc<Presence>>,
    limits: Limits,
    /// Shared with the SSE tail: both hold connections open.
    connections: Arc<ConnectionCap>,
    shutdown: watch::Receiver<bool>,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub outbound_queue_bytes: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    /// The largest client message (and frame); larger ones close with 1009.
    pub max_message_bytes: usize,
}

impl From<&WebSocketSettings> for Limits {
    fn from(settings: &WebSocketSettings) -> Self {
        Limits {
            outbound_queue_bytes: settings.outbound_queue_bytes,
            ping_interval: Duration::from_secs(settings.ping_interval_seconds.max(1)),
            idle_timeout: Duration::from_secs(settings.idle_timeout_seconds.max(2)),
            max_message_bytes: settings.max_message_bytes.max(1024),
        }
    }
}

impl Gateway {
    pub fn new(
        store: Arc<dyn BoardStore>,
        presence: Option<Arc<Presence>>,
        limits: Limits,
        connections: Arc<ConnectionCap>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(Gateway {
            store,
            presence,
            limits,
            connections,
            shutdown,
        })
    }

    /// `GET <prefix>/ws`: upgrades within the connection cap, else 503.
    pub fn route(self: Arc<Self>, caller: BoxedFilter<(Caller,)>) -> BoxedFilter<(Response,)> {
        warp::path("ws")
            .and(warp::path::end())
            .and(caller)
            .and(warp::ws())
            .and_then(move |caller: Caller, upgrade: Ws| {
                let gateway = Arc::clone(&self);
                async move {
                    let slot = gateway
                        .connections
                        .claim(caller)
                        .map_err(warp::reject::custom)?;
                    let max_message_bytes = gateway.limits.max_message_bytes;
                    Ok::<_, Rejection>(
                        upgrade
                            .max_message_size(max_message_bytes)
                            .max_frame_size(max_message_bytes)
                            .on_upgrade(move |socket| async move {
                                let _slot = slot;
                                Session::new(gateway, caller).run(socket).await;
                            })
                            .into_response(),
                    )
                }
            })
            .boxed()
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientFrame {
    Subscribe {
        board_id: Uuid,
        since: Option<u64>,
        /// Also send `presence` frames when watchers come and go.
        #[serde(default)]
        presence: bool,
    },
    Unsubscribe {
        board_id: Uuid,
    },
    Ping,
}

/// Why a session ended, sent as the close frame where the client can read it.
struct Ending {
    code: u16,
    reason: &'static str,
}

/// Frames waiting for the writer, bounded by their total size.
/// Frames waiting for the writer. While more than `limit` bytes wait, the
/// session takes no more updates from its subscriptions (their history
/// and the hub hold them meanwhile). If the writer then makes no progress
/// for `STALL_LIMIT` (the client stopped reading and the socket buffers are
/// full), the client is disconnected.
struct Outbox {
    queue: mpsc::UnboundedSender<Message>,
    queued_bytes: Arc<AtomicUsize>,
    /// Signalled by the writer each time it has sent a frame.
    drained: Arc<Notify>,
    limit: usize,
}

impl Outbox {
    fn has_room(&self) -> bool {
        self.queued_bytes.load(Ordering::Acquire) < self.limit
    }

    fn push(&self, message: Message) -> Result<(), Ending> {
        let size = message.as_bytes().len();
        self.queued_bytes.fetch_add(size, Ordering::AcqRel);
        self.queue.send(message).map_err(|_| Ending {
            code: close::GOING_AWAY,
            reason: "connection closed",
        })
    }

    fn text(&self, text: impl Into<String>) -> Result<(), Ending> {
        self.push(Message::text(text))
    }
}

struct Session {
    gateway: Arc<Gateway>,
    caller: Caller,
    /// One ordered update stream per subscribed board.
    subscriptions: StreamMap<Uuid, BoxStream<'static, Update>>,
}

/// The subscription's updates; `present` (the user's presence on the board)
/// lives as long as the stream does.
fn updates(subscription: Subscription, present: Option<Present>) -> BoxStream<'static, Update> {
    futures_util::stream::unfold(
        (subscription, present),
        |(mut subscription, present)| async move {
            let update = subscription.next().await?;
            Some((update, (subscription, present)))
        },
    )
    .boxed()
}

impl Session {
    fn new(gateway: Arc<Gateway>, caller: Caller) -> Self {
        Session {
            gateway,
            caller,
            subscriptions: StreamMap::new(),
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut incoming) = socket.split();
        let (queue, mut outgoing) = mpsc::unbounded_channel::<Message>();
        let (close_tx, close_rx) = oneshot::channel::<Ending>();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let drained = Arc::new(Notify::new());
        let outbox = Outbox {
            queue,
            queued_bytes: Arc::clone(&queued_bytes),
            drained: Arc::clone(&drained),
            limit: self.gateway.limits.outbound_queue_bytes,
        };

        let writer = tokio::spawn(async move {
            let mut close_rx = close_rx;
            // The close signal interrupts even a send that is stuck because
            // the client stopped reading.
            let ending = loop {
                let message = tokio::select! {
                    biased;
                    ending = &mut close_rx => break ending.ok(),
                    message = outgoing.recv() => message,
                };
                let Some(message) = message else { break None };
                let size = message.as_bytes().len();
                tokio::select! {
                    biased;
                    ending = &mut close_rx => break ending.ok(),
                    sent = sink.send(message) => {
                        if sent.is_err() {
                            break None;
                        }
                        queued_bytes.fetch_sub(size, Ordering::AcqRel);
                        drained.notify_one();
                    }
                }
            };
            if let Some(ending) = ending {
                let frame = Message::close_with(ending.code, ending.reason);
                let _ = tokio::time::timeout(CLOSE_WAIT, sink.send(frame)).await;
            }
            let _ = tokio::time::timeout(CLOSE_WAIT, sink.close()).await;
        });

        let limits = self.gateway.limits;
        let mut shutdown = self.gateway.shutdown.clone();
        let stopping = async move { shutdown.wait_for(|stopping| *stopping).await.map(|_| ()) };
        let mut stopping = std::pin::pin!(stopping);
        let mut heartbeat = tokio::time::interval(limits.ping_interval);
        heartbeat.tick().await;
        let mut last_heard = Instant::now();

        // Since when the outbox is full with the writer making no progress.
        let mut stalled_since: Option<tokio::time::Instant> = None;
        let ending = loop {
            let room = outbox.has_room();
            stalled_since = match (room, stalled_since) {
                (true, _) => None,
                (false, None) => Some(tokio::time::Instant::now()),
                (false, since) => since,
            };
            let give_up_at = stalled_since.map(|since| since + STALL_LIMIT);
            let step = tokio::select! {
                message = incoming.next() => match message {
                    Some(Ok(message)) => {
                        last_heard = Instant::now();
                        // Boxed: the subscribe path is large, and inlining it into
                        // this loop's state would cost every idle connection.
                        Box::pin(self.on_client_message(&outbox, message)).await
                    }
                    Some(Err(error)) if is_too_big(&error) => Err(Ending {
                        code: close::TOO_BIG,
                        reason: "message too big: larger than websocket.max_message_bytes",
                    }),
                    _ => Err(Ending { code: close::GOING_AWAY, reason: "connection closed" }),
                },
                _ = outbox.drained.notified(), if !room => {
                    stalled_since = Some(tokio::time::Instant::now());
                    Ok(())
                }
                _ = tokio::time::sleep_until(give_up_at.unwrap_or_else(tokio::time::Instant::now)),
                    if give_up_at.is_some() => {
                    Err(Ending { code: close::POLICY, reason: "too slow: outbound queue limit exceeded" })
                }
                Some((board_id, update)) = self.subscriptions.next(), if room => match update {
                    Update::Event(frame) => outbox.text(frame.text.as_ref()),
                    Update::Presence(frame) => outbox.text(frame.as_ref()),
                    Update::Ended { code, message } => {
                        self.subscriptions.remove(&board_id);
                        outbox.text(error_frame(Some(board_id), code, &message))
                    }
                },
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > limits.idle_timeout {
                        Err(Ending { code: close::GOING_AWAY, reason: "idle timeout: no frames or pongs" })
                    } else {
                        outbox.push(Message::ping(Vec::new()))
                    }
                }
                _ = &mut stopping => {
                    Err(Ending { code: close::GOING_AWAY, reason: "server shutting down" })
                }
            };
            if let Err(ending) = step {
                break ending;
            }
        };

        let _ = close_tx.send(ending);
        drop(outbox);
        // The writer gives up on a client that does not read within
        // CLOSE_WAIT per step; dropping it closes the socket.
        let _ = tokio::time::timeout(CLOSE_WAIT * 3, writer).await;
    }

    async fn on_client_message(&mut self, outbox: &Outbox, message: Message) -> Result<(), Ending> {
        if message.is_close() {
            return Err(Ending {
                code: 1000,
                reason: "bye",
            });
        }
        if message.is_ping() || message.is_pong() {
            return Ok(());
        }
        let Ok(text) = message.to_str() else {
            return outbox.text(error_frame(None, "bad_request", "frames must be JSON text"));
        };
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(e) => {
                return outbox.text(error_frame(
                    None,
                    "bad_request",
                    &format!("unrecognised frame: {e}"),
                ))
            }
        };
        match frame {
            ClientFrame::Ping => outbox.text(r#"{"type":"pong"}"#),
            // The contract has no reply to unsubscribe: events just stop.
            ClientFrame::Unsubscribe { board_id } => {
                self.subscriptions.remove(&board_id);
                Ok(())
            }
            ClientFrame::Subscribe {
                board_id,
                since,
                presence,
            } => self.subscribe(outbox, board_id, since, presence).await,
        }
    }

    async fn subscribe(
        &mut self,
        outbox: &Outbox,
        board_id: Uuid,
        since: Option<u64>,
        wants_presence: bool,
    ) -> Result<(), Ending> {
        self.subscriptions.remove(&board_id);
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return outbox.text(error_frame(
                Some(board_id),
                "limit_reached",
                &format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
            ));
        }
        let store = Arc::clone(&self.gateway.store);
        match Subscription::open(store, self.caller, board_id, since).await {
            Ok((subscription, version)) => {
                let mut subscribed =
                    json!({"type": "subscribed", "board_id": board_id, "version": version});
                let mut present = None;
                let mut presence_frames = None;
                if let (Some(presence), Some(user)) = (&self.gateway.presence, self.caller.user()) {
                    let (here, watchers) = presence.join(board_id, user).await;
                    subscribed["presence"] = json!(watchers);
                    present = Some(here);
                    presence_frames = wants_presence.then(|| presence.frames(board_id));
                }
                outbox.text(subscribed.to_string())?;
                let mut stream = updates(subscription, present);
                if let Some(frames) = presence_frames {
                    let frames = BroadcastStream::new(frames)
                        .filter_map(|frame| async move { frame.ok().map(Update::Presence) });
                    stream = futures_util::stream::select(stream, frames).boxed();
                }
                self.subscriptions.insert(board_id, stream);
                Ok(())
            }
            Err(OpenError::SinceAhead { version }) => outbox.text(error_frame(
                Some(board_id),
                "invalid_since",
                &format!("since is ahead of the board's version {version}"),
            )),
            Err(OpenError::Store(error)) => outbox.text(store_error_frame(board_id, error)),
        }
    }
}

/// Whether reading failed on a client message or frame over the size limit.
fn is_too_big(error: &warp::Error) -> bool {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error};
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<Error>())
        .is_some_and(|error| matches!(error, Error::Capacity(CapacityError::MessageTooLong { .. })))
}

fn error_frame(board_id: Option<Uuid>, code: &str, message: &str) -> String {
    let mut frame = json!({"type": "error", "code": code, "message": message});
    if let Some(board_id) = board_id {
        frame["board_id"] = json!(board_id);
    }
    frame.to_string()
}

fn store_error_frame(board_id: Uuid, error: StoreError) -> String {
    let api = ApiError::from(error);
    error_frame(Some(board_id), api.code, &api.message)
}

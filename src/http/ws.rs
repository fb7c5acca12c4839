//! The WebSocket gateway, shared by `/quick/ws` and `/ws`.
//!
//! One task per connection reads client frames, takes live board frames
//! and writes them, so an idle connection costs that task and its
//! socket's small buffers (see [`socket_config`]). Frames wait in an
//! outbox bounded in bytes and are written in bursts, one flush per burst.
//!
//! A client that stops reading fills the outbox; the connection then takes
//! no more updates. If it stays full with nothing written for
//! [`STALL_LIMIT`], the client is too slow: the queued frames are dropped
//! and a close 1008 is written behind what the socket already holds, for
//! up to `websocket.slow_client_grace_seconds`; a client that reads again
//! within that time finds it. Then the connection is dropped.
//!
//! Each board a client subscribes to is a [`Subscription`], which delivers
//! every version once, in order, from history and then live.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::stream::{BoxStream, SplitSink, SplitStream};
use futures_util::{FutureExt, Sink, SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamMap;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as SocketError};
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::connections::{ConnectionCap, ConnectionSlot};
use super::error::ApiError;
use super::handshake::{handshake, Handshake, Socket};
use super::route::{FromRequest, Ids, Inputs, Table};
use super::serve::stopped;
use super::subscription::{OpenError, Subscription, Update};
use crate::fanout::ResyncReason;
use crate::presence::{Presence, Present};
use crate::store::Caller;
use crate::store::{BoardStore, StoreError};
use streamboard_core::settings::WebSocketSettings;
use streamboard_core::telemetry::names;

/// Subscriptions one connection may hold at once.
const MAX_SUBSCRIPTIONS: usize = 100;
/// How long the outbox may stay full with nothing written before the
/// client is judged too slow.
const STALL_LIMIT: Duration = Duration::from_secs(2);
/// How long any other closing connection may take to write its close
/// frame, and to hear the client's close in reply.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// The socket's read buffer: client messages are small (a larger one grows
/// it while it is read).
const READ_BUFFER_BYTES: usize = 512;
/// Frames are gathered up to this size before a write to the socket; a
/// flush at the end of each burst writes the rest.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

pub mod close {
    pub const NORMAL: u16 = 1000;
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
    /// How long a client judged too slow has to read its close frame.
    pub slow_client_grace: Duration,
}

impl From<&WebSocketSettings> for Limits {
    fn from(settings: &WebSocketSettings) -> Self {
        Limits {
            outbound_queue_bytes: settings.outbound_queue_bytes,
            ping_interval: Duration::from_secs(settings.ping_interval_seconds.max(1)),
            idle_timeout: Duration::from_secs(settings.idle_timeout_seconds.max(2)),
            max_message_bytes: settings.max_message_bytes.max(1024),
            slow_client_grace: Duration::from_secs(settings.slow_client_grace_seconds.max(1)),
        }
    }
}

/// Small buffers: an idle connection holds them for as long as it lives.
fn socket_config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(Some(limits.max_message_bytes))
        .max_frame_size(Some(limits.max_message_bytes))
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

    /// `GET <prefix>/ws`: upgrades within the connection cap, else 503;
    /// `inputs.caller` says who asks.
    pub fn routes(self: Arc<Self>, inputs: Inputs) -> Table {
        Table::over(self, inputs)
            .route(Method::GET, "/ws", upgrade)
            .build()
    }
}

/// An upgrade to a WebSocket session, and who asks for it.
struct Upgrade {
    caller: Caller,
    handshake: Handshake,
}

impl FromRequest for Upgrade {
    fn filter(matched: BoxedFilter<(Ids,)>, inputs: &Inputs) -> BoxedFilter<(Self,)> {
        matched
            .and(inputs.caller.clone())
            .and(handshake())
            .map(|_, caller, handshake| Upgrade { caller, handshake })
            .boxed()
    }
}

async fn upgrade(request: Upgrade, gateway: Arc<Gateway>) -> Result<Response, Rejection> {
    let Upgrade { caller, handshake } = request;
    let slot = gateway
        .connections
        .claim(caller)
        .map_err(warp::reject::custom)?;
    let config = socket_config(&gateway.limits);
    Ok(handshake.accept(config, move |socket| {
        Session::new(gateway, caller, slot).run(socket)
    }))
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

impl Ending {
    const GONE: Ending = Ending {
        code: close::GOING_AWAY,
        reason: "connection closed",
    };
    const TOO_SLOW: Ending = Ending {
        code: close::POLICY,
        reason: "too slow: outbound queue limit exceeded",
    };
}

/// Frames waiting to be written, in order. While more than `limit` bytes
/// wait, the session takes no more updates from its subscriptions (their
/// history and the hub hold them meanwhile).
struct Outbox {
    frames: VecDeque<Message>,
    bytes: usize,
    limit: usize,
    /// Frames handed to the socket and not flushed yet.
    unflushed: bool,
}

impl Outbox {
    fn new(limit: usize) -> Self {
        Outbox {
            frames: VecDeque::new(),
            bytes: 0,
            limit,
            unflushed: false,
        }
    }

    fn has_room(&self) -> bool {
        self.bytes < self.limit
    }

    fn has_work(&self) -> bool {
        self.unflushed || !self.frames.is_empty()
    }

    fn push(&mut self, message: Message) {
        self.bytes += message.len();
        self.frames.push_back(message);
    }

    fn text(&mut self, text: impl Into<Utf8Bytes>) {
        self.push(Message::Text(text.into()));
    }

    /// Hands queued frames to the socket while it takes them, then flushes
    /// once. Ready once something was written, or all is flushed. A frame
    /// leaves the queue only when the socket has taken it, so dropping
    /// this future loses nothing.
    async fn write_to(&mut self, sink: &mut SplitSink<Socket, Message>) -> Result<(), SocketError> {
        poll_fn(|cx| {
            let mut wrote = false;
            while !self.frames.is_empty() {
                match Pin::new(&mut *sink).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending if wrote => return Poll::Ready(Ok(())),
                    Poll::Pending => return Poll::Pending,
                }
                let message = self.pop();
                Pin::new(&mut *sink).start_send(message)?;
                self.unflushed = true;
                wrote = true;
            }
            match Pin::new(&mut *sink).poll_flush(cx) {
                Poll::Ready(result) => {
                    self.unflushed = false;
                    Poll::Ready(result)
                }
                Poll::Pending if wrote => Poll::Ready(Ok(())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    fn pop(&mut self) -> Message {
        let message = self.frames.pop_front().expect("a queued frame");
        self.bytes -= message.len();
        if self.frames.is_empty() {
            // Given back once empty: most connections are idle most of the
            // time, and a burst's queue is cheap to make again.
            self.frames = VecDeque::new();
        }
        message
    }
}

struct Session {
    gateway: Arc<Gateway>,
    caller: Caller,
    /// One ordered update stream per subscribed board.
    subscriptions: StreamMap<Uuid, BoxStream<'static, Update>>,
    /// The connection's place under the cap, given back when it ends.
    _slot: ConnectionSlot,
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
    fn new(gateway: Arc<Gateway>, caller: Caller, slot: ConnectionSlot) -> Self {
        Session {
            gateway,
            caller,
            // Most connections watch one board.
            subscriptions: StreamMap::with_capacity(1),
            _slot: slot,
        }
    }

    /// The session's future: every idle connection holds one for its life,
    /// so what it keeps across awaits is kept small. The socket is split
    /// before the future is made, so its state holds the two halves only
    /// (both handles to one shared socket), not a dead copy of the socket.
    fn run(self, socket: Socket) -> impl Future<Output = ()> + Send + 'static {
        let (sink, incoming) = socket.split();
        self.serve(sink, incoming)
    }

    async fn serve(
        mut self,
        mut sink: SplitSink<Socket, Message>,
        mut incoming: SplitStream<Socket>,
    ) {
        let gateway = Arc::clone(&self.gateway);
        let limits = &gateway.limits;
        let mut outbox = Outbox::new(limits.outbound_queue_bytes);
        let mut shutdown = gateway.shutdown.clone();
        let mut stopping = std::pin::pin!(stopped(&mut shutdown));
        let mut heartbeat = tokio::time::interval(limits.ping_interval);
        heartbeat.tick().await;
        let mut last_heard = Instant::now();
        // Since when the outbox is full with nothing written.
        let mut stalled_since: Option<tokio::time::Instant> = None;

        let ending = loop {
            let room = outbox.has_room();
            stalled_since = match (room, stalled_since) {
                (true, _) => None,
                (false, None) => Some(tokio::time::Instant::now()),
                (false, since) => since,
            };
            let give_up_at = stalled_since.map(|since| since + STALL_LIMIT);
            // Biased: updates are queued before the burst is written, so a
            // burst costs one flush.
            let step = tokio::select! {
                biased;
                _ = &mut stopping => {
                    Err(Ending { code: close::GOING_AWAY, reason: "server shutting down" })
                }
                message = incoming.next() => match message {
                    Some(Ok(message)) => {
                        last_heard = Instant::now();
                        // Boxed: the subscribe path is large, and inlining it into
                        // this loop's state would cost every idle connection.
                        Box::pin(self.on_client_message(&mut outbox, message)).await
                    }
                    Some(Err(SocketError::Capacity(CapacityError::MessageTooLong { .. }))) => Err(Ending {
                        code: close::TOO_BIG,
                        reason: "message too big: larger than websocket.max_message_bytes",
                    }),
                    _ => Err(Ending::GONE),
                },
                Some((board_id, update)) = self.subscriptions.next(), if room => {
                    self.on_burst(&mut outbox, board_id, update);
                    Ok(())
                }
                written = outbox.write_to(&mut sink), if outbox.has_work() => match written {
                    Ok(()) => {
                        stalled_since = None;
                        Ok(())
                    }
                    Err(_) => Err(Ending::GONE),
                },
                _ = tokio::time::sleep_until(give_up_at.unwrap_or_else(tokio::time::Instant::now)),
                    if give_up_at.is_some() => Err(Ending::TOO_SLOW),
                _ = heartbeat.tick() => match last_heard.elapsed() > limits.idle_timeout {
                    true => Err(Ending { code: close::GOING_AWAY, reason: "idle timeout: no frames or pongs" }),
                    false => {
                        outbox.push(Message::Ping(Bytes::new()));
                        Ok(())
                    }
                },
            };
            if let Err(ending) = step {
                break ending;
            }
        };

        let wait = self.grace_for(&ending, &outbox);
        // Nothing more is sent but the close frame, behind what the socket
        // already holds.
        drop(outbox);
        // The subscriptions go now; the slot stays until the socket closes.
        let Session {
            subscriptions,
            _slot,
            ..
        } = self;
        drop(subscriptions);
        say_goodbye(sink, incoming, ending, wait).await;
    }

    /// How long the close frame may take to send: a client that stopped
    /// reading gets `websocket.slow_client_grace_seconds`, and is counted.
    fn grace_for(&self, ending: &Ending, outbox: &Outbox) -> Duration {
        if ending.code != close::POLICY {
            return CLOSE_WAIT;
        }
        let limits = &self.gateway.limits;
        tracing::warn!(
            caller = ?self.caller,
            queued_bytes = outbox.bytes,
            grace_seconds = limits.slow_client_grace.as_secs(),
            "WebSocket client stopped reading: closing it with 1008"
        );
        metrics::counter!(names::WS_SLOW_CLIENTS).increment(1);
        limits.slow_client_grace
    }

    /// An update, and every update already waiting behind it, without a
    /// turn of the loop each: a burst costs one flush.
    fn on_burst(&mut self, outbox: &mut Outbox, board_id: Uuid, update: Update) {
        self.on_update(outbox, board_id, update);
        while outbox.has_room() {
            let Some(Some((board_id, update))) = self.subscriptions.next().now_or_never() else {
                break;
            };
            self.on_update(outbox, board_id, update);
        }
    }

    fn on_update(&mut self, outbox: &mut Outbox, board_id: Uuid, update: Update) {
        match update {
            Update::Event(frame) => outbox.push(Message::Text(frame.text.clone())),
            Update::Presence(frame) => outbox.text(frame.as_ref()),
            Update::Resync { version, reason } => {
                outbox.text(resync_frame(board_id, version, reason))
            }
            Update::Ended { code, message } => {
                self.subscriptions.remove(&board_id);
                outbox.text(error_frame(Some(board_id), code, &message))
            }
        }
    }

    async fn on_client_message(
        &mut self,
        outbox: &mut Outbox,
        message: Message,
    ) -> Result<(), Ending> {
        let text = match message {
            Message::Close(_) => {
                return Err(Ending {
                    code: close::NORMAL,
                    reason: "bye",
                })
            }
            Message::Text(text) => text,
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
            Message::Binary(_) | Message::Frame(_) => {
                outbox.text(error_frame(None, "bad_request", "frames must be JSON text"));
                return Ok(());
            }
        };
        let frame: ClientFrame = match serde_json::from_str(&text) {
            Ok(frame) => frame,
            Err(e) => {
                outbox.text(error_frame(
                    None,
                    "bad_request",
                    &format!("unrecognised frame: {e}"),
                ));
                return Ok(());
            }
        };
        match frame {
            ClientFrame::Ping => {
                outbox.text(Utf8Bytes::from_static(r#"{"type":"pong"}"#));
                Ok(())
            }
            // The contract has no reply to unsubscribe: events just stop.
            ClientFrame::Unsubscribe { board_id } => {
                self.subscriptions.remove(&board_id);
                Ok(())
            }
            ClientFrame::Subscribe {
                board_id,
                since,
                presence,
            } => {
                self.subscribe(outbox, board_id, since, presence).await;
                Ok(())
            }
        }
    }

    async fn subscribe(
        &mut self,
        outbox: &mut Outbox,
        board_id: Uuid,
        since: Option<u64>,
        wants_presence: bool,
    ) {
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
                outbox.text(subscribed.to_string());
                let mut stream = updates(subscription, present);
                if let Some(frames) = presence_frames {
                    let frames = BroadcastStream::new(frames)
                        .filter_map(|frame| async move { frame.ok().map(Update::Presence) });
                    stream = futures_util::stream::select(stream, frames).boxed();
                }
                self.subscriptions.insert(board_id, stream);
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

fn error_frame(board_id: Option<Uuid>, code: &str, message: &str) -> String {
    let mut frame = json!({"type": "error", "code": code, "message": message});
    if let Some(board_id) = board_id {
        frame["board_id"] = json!(board_id);
    }
    frame.to_string()
}

/// Tells the client to reload the board: see docs/asyncapi.yaml, `resync`.
fn resync_frame(board_id: Uuid, version: u64, reason: ResyncReason) -> String {
    json!({
        "type": "resync",
        "board_id": board_id,
        "version": version,
        "reason": reason.as_str(),
    })
    .to_string()
}

fn store_error_frame(board_id: Uuid, error: StoreError) -> String {
    let api = ApiError::from(error);
    error_frame(Some(board_id), api.code, &api.message)
}

/// Sends the close frame within `wait`, then hears the client's close, so
/// the socket closes cleanly.
async fn say_goodbye(
    mut sink: SplitSink<Socket, Message>,
    mut incoming: SplitStream<Socket>,
    ending: Ending,
    wait: Duration,
) {
    let frame = Message::Close(Some(CloseFrame {
        code: ending.code.into(),
        reason: ending.reason.into(),
    }));
    if let Ok(Ok(())) = tokio::time::timeout(wait, sink.send(frame)).await {
        let _ = tokio::time::timeout(CLOSE_WAIT, sink.close()).await;
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(_)) = incoming.next().await {}
        })
        .await;
    }
}

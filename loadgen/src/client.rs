//! The generator's clients: a minimal HTTP/1.1 keep-alive client (one
//! request in flight, `Content-Length` bodies only, so that the generator
//! spends little of the CPU it shares with the server) and the helpers that
//! open subscribed WebSocket connections (`/quick/ws`, or `/ws` with a
//! token, or a Socket.IO room for the peer benchmark).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 keep-alive client
// ---------------------------------------------------------------------------

/// One keep-alive connection, one request in flight. Handles responses with
/// `Content-Length` (or no body); anything else is an error.
pub struct Http {
    stream: TcpStream,
    host: String,
    request: Vec<u8>,
    buffer: Vec<u8>,
    body: Vec<u8>,
    closed: bool,
    /// `Authorization: Bearer ...` sent with every request, if set.
    bearer: Option<String>,
}

impl Http {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Http> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Http {
            stream,
            host: addr.to_string(),
            request: Vec::with_capacity(512),
            buffer: Vec::with_capacity(8192),
            body: Vec::with_capacity(4096),
            closed: false,
            bearer: None,
        })
    }

    /// A connection that authenticates every request with `token`, if any.
    pub async fn connect_as(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<Http> {
        let mut http = Http::connect(addr).await?;
        http.bearer = token.map(str::to_owned);
        Ok(http)
    }

    /// Sends a request and reads the response; the body is then in `self.body`.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> anyhow::Result<u16> {
        use std::io::Write as _;
        if self.closed {
            bail!("connection closed by the server");
        }
        self.request.clear();
        write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n",
            self.host
        )?;
        if let Some(token) = &self.bearer {
            write!(self.request, "Authorization: Bearer {token}\r\n")?;
        }
        if let Some(body) = body {
            write!(
                self.request,
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )?;
            self.request.extend_from_slice(body);
        } else {
            self.request.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&self.request).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> anyhow::Result<u16> {
        loop {
            let parsed = {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.buffer)? {
                    httparse::Status::Complete(head_len) => {
                        let mut content_length = 0usize;
                        let mut close = false;
                        for header in response.headers.iter() {
                            if header.name.eq_ignore_ascii_case("content-length") {
                                content_length =
                                    std::str::from_utf8(header.value)?.trim().parse()?;
                            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                                bail!("chunked responses are not supported by loadgen's client");
                            } else if header.name.eq_ignore_ascii_case("connection")
                                && header.value.eq_ignore_ascii_case(b"close")
                            {
                                close = true;
                            }
                        }
                        Some((response.code.unwrap_or(0), head_len, content_length, close))
                    }
                    httparse::Status::Partial => None,
                }
            };
            if let Some((status, head_len, content_length, close)) = parsed {
                let end = head_len + content_length;
                while self.buffer.len() < end {
                    self.fill().await?;
                }
                self.body.clear();
                self.body.extend_from_slice(&self.buffer[head_len..end]);
                self.buffer.drain(..end);
                self.closed = close;
                return Ok(status);
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        self.buffer.reserve(8192);
        let read = self.stream.read_buf(&mut self.buffer).await?;
        if read == 0 {
            self.closed = true;
            bail!("connection closed by the server");
        }
        Ok(())
    }

    /// The body of the last response.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// `send`, expecting `want`, returning the JSON body.
    pub async fn json(
        &mut self,
        method: &str,
        path: &str,
        body: &Value,
        want: u16,
    ) -> anyhow::Result<Value> {
        let body = serde_json::to_vec(body)?;
        let status = self.send(method, path, Some(&body)).await?;
        if status != want {
            bail!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&self.body)
            );
        }
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// `POST` expecting 201, returning the `id` of what was created.
    pub async fn create(&mut self, path: &str, body: &Value) -> anyhow::Result<Uuid> {
        let created = self.json("POST", path, body, 201).await?;
        created["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| anyhow!("no \"id\" in {created}"))
    }
}

// ---------------------------------------------------------------------------
// Subscribed WebSocket connections (`/quick/ws`, or `/ws` with a token)
// ---------------------------------------------------------------------------

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Where subscribers connect: `/quick/ws`, or the event-sourced `/ws` with
/// the token in the query (as browsers pass it).
#[derive(Clone)]
pub struct WsEndpoint {
    path_and_query: Arc<str>,
}

impl WsEndpoint {
    pub fn quick() -> WsEndpoint {
        WsEndpoint {
            path_and_query: "/quick/ws".into(),
        }
    }

    pub fn api(token: &str) -> WsEndpoint {
        WsEndpoint {
            path_and_query: format!("/ws?token={token}").into(),
        }
    }
}

/// The read buffer of a subscriber's socket. tungstenite zeroes up to its
/// whole read buffer (128 KiB by default) before each read from the socket:
/// with a frame per read, at 100k deliveries/s that was half of the
/// generator's CPU, taken from the stack under test on the same cores.
const WS_READ_BUFFER_BYTES: usize = 4096;

/// Opens a client WebSocket at `url` with the generator's buffer size.
async fn connect_ws(url: &str) -> Result<WsStream, tokio_tungstenite::tungstenite::Error> {
    let config = WebSocketConfig::default().read_buffer_size(WS_READ_BUFFER_BYTES);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false).await?;
    Ok(ws)
}

/// Opens a WebSocket at `endpoint`, subscribes to every one of `boards` and
/// waits for each `subscribed`.
pub async fn ws_subscribe(
    addr: SocketAddr,
    endpoint: &WsEndpoint,
    boards: &[Uuid],
) -> anyhow::Result<WsStream> {
    let url = format!("ws://{addr}{}", endpoint.path_and_query);
    let mut ws = connect_ws(&url).await.context("WebSocket handshake")?;
    for board in boards {
        ws.feed(Message::text(
            json!({"type": "subscribe", "board_id": board}).to_string(),
        ))
        .await?;
    }
    ws.flush().await?;
    let ack = tokio::time::timeout(Duration::from_secs(30), async {
        let mut acknowledged = 0;
        while acknowledged < boards.len() {
            let Some(message) = ws.next().await else {
                bail!("closed before subscribed");
            };
            match message? {
                Message::Text(text) if text.contains(r#""subscribed""#) => acknowledged += 1,
                // Presence frames may come between the acknowledgements.
                Message::Text(text) if text.contains(r#""presence""#) => {}
                Message::Text(text) => bail!("unexpected frame before subscribed: {text}"),
                Message::Close(frame) => bail!("closed before subscribed: {frame:?}"),
                _ => {}
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| anyhow!("not every board subscribed within 30 s"))?;
    ack?;
    Ok(ws)
}

/// Opens `count` subscribed connections, `concurrency` handshakes at a time;
/// connection i subscribes to `boards[i % boards.len()]`.
pub async fn open_subscribers(
    addr: SocketAddr,
    endpoint: &WsEndpoint,
    boards: &[Uuid],
    count: usize,
    concurrency: usize,
) -> Vec<anyhow::Result<(usize, WsStream)>> {
    let boards: Arc<[Uuid]> = boards.into();
    let endpoint = endpoint.clone();
    open_many(count, concurrency, move |i| {
        let board = boards[i % boards.len()];
        let endpoint = endpoint.clone();
        async move { ws_subscribe(addr, &endpoint, &[board]).await }
    })
    .await
}

/// Opens `count` connections with `connect(i)`, `concurrency` at a time;
/// each result comes back with its i, in order.
pub async fn open_many<F, Fut>(
    count: usize,
    concurrency: usize,
    connect: F,
) -> Vec<anyhow::Result<(usize, WsStream)>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<WsStream>> + Send + 'static,
{
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let gate = Arc::clone(&gate);
        let connecting = connect(i);
        handles.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            connecting.await.map(|ws| (i, ws))
        }));
    }
    let mut out = Vec::with_capacity(count);
    for handle in handles {
        out.push(handle.await.map_err(anyhow::Error::from).and_then(|r| r));
    }
    out
}

// ---------------------------------------------------------------------------
// A Socket.IO v5 (Engine.IO v4) subscriber, framed by hand
// ---------------------------------------------------------------------------

/// Connects to a Socket.IO server over WebSocket only, joins `board`'s room
/// (bench/peers/socketio: event `join`, answered by `joined`) and returns
/// the connection. Engine.IO frames are text: "0{..}" open, "2"/"3"
/// ping/pong; Socket.IO's go inside "4": "40" connect, "42[...]" an event.
pub async fn socketio_join(addr: SocketAddr, board: &str) -> anyhow::Result<WsStream> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let mut ws = connect_ws(&url)
        .await
        .context("Socket.IO WebSocket handshake")?;
    let joined = format!(r#"42["joined","{board}"]"#);
    let handshake = async {
        loop {
            let Some(message) = ws.next().await else {
                bail!("closed before joined");
            };
            let text = match message? {
                Message::Text(text) => text,
                Message::Close(frame) => bail!("closed before joined: {frame:?}"),
                _ => continue,
            };
            match text.as_str() {
                open if open.starts_with("0{") => ws.send(Message::text("40")).await?,
                connected if connected.starts_with("40") => {
                    ws.send(Message::text(format!(r#"42["join","{board}"]"#)))
                        .await?
                }
                "2" => ws.send(Message::text("3")).await?,
                done if done == joined => return Ok(()),
                other => bail!("unexpected frame before joined: {other}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), handshake)
        .await
        .map_err(|_| anyhow!("not joined within 30 s"))??;
    Ok(ws)
}

/// The handshakes that failed over one or more `open_subscribers` batches:
/// how many, and the first one's error.
#[derive(Default)]
pub struct ConnectFailures {
    pub count: usize,
    pub first: Option<String>,
}

impl ConnectFailures {
    /// The connections `open_subscribers` opened; the failures are counted.
    pub fn keep_open(
        &mut self,
        opened: Vec<anyhow::Result<(usize, WsStream)>>,
    ) -> Vec<(usize, WsStream)> {
        let mut open = Vec::with_capacity(opened.len());
        for result in opened {
            match result {
                Ok(connection) => open.push(connection),
                Err(e) => {
                    self.count += 1;
                    self.first.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
        open
    }
}

//! [`WsClient`]: a WebSocket client speaking the JSON frame protocol of
//! `/ws` and `/quick/ws`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::checks::WAIT;

pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    pub async fn connect(url: &str) -> WsClient {
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket connect");
        WsClient { stream }
    }

    pub async fn send(&mut self, frame: Value) {
        self.stream
            .send(Message::text(frame.to_string()))
            .await
            .expect("WebSocket send");
    }

    /// The next JSON frame, skipping control frames; panics after `WAIT`.
    pub async fn next(&mut self) -> Value {
        self.try_next(WAIT).await.expect("a frame within the wait")
    }

    /// The next JSON frame within `wait`, or `None`.
    pub async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            match message.ok()? {
                Message::Text(text) => {
                    return Some(serde_json::from_str(&text).expect("JSON frame"))
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Subscribes and returns the `subscribed` frame.
    pub async fn subscribe(&mut self, board_id: &str, since: Option<u64>) -> Value {
        let mut frame = json!({ "type": "subscribe", "board_id": board_id });
        if let Some(since) = since {
            frame["since"] = json!(since);
        }
        self.send(frame).await;
        let reply = self.next().await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        reply
    }

    /// Collects `count` event frames, asserting each is an event.
    pub async fn events(&mut self, count: usize) -> Vec<Value> {
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            let frame = self.next().await;
            assert_eq!(frame["type"], "event", "{frame}");
            events.push(frame);
        }
        events
    }

    /// Every JSON frame that arrives within `wait` (stops early on close).
    pub async fn drain(&mut self, wait: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return frames;
            }
            match self.try_next(left).await {
                Some(frame) => frames.push(frame),
                None => return frames,
            }
        }
    }

    /// Reads frames until the connection ends (close, error or EOF) or `wait`
    /// passes; returns the frames and whether the connection ended.
    pub async fn read_until_closed(&mut self, wait: Duration) -> (Vec<Value>, bool) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return (frames, false),
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                    return (frames, true)
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    frames.push(serde_json::from_str(&text).expect("JSON frame"))
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

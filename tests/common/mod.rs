//! The test harness: starts the real `streamboard` binary on a free port
//! and talks to it over HTTP and WebSocket, as a client app would.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    child: Child,
}

impl TestServer {
    /// A server in the `test` profile with only quick-win available.
    pub async fn spawn() -> TestServer {
        Self::spawn_with(&[]).await
    }

    /// A server with extra `STREAMBOARD__...` settings.
    pub async fn spawn_with(env: &[(&str, &str)]) -> TestServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_streamboard"));
        for (key, _) in std::env::vars() {
            if key.starts_with("STREAMBOARD") {
                command.env_remove(key);
            }
        }
        command
            .env("STREAMBOARD_ENV", "test")
            .env(
                "STREAMBOARD_CONFIG_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
            )
            .env("STREAMBOARD__SERVER__ADDR", "127.0.0.1:0")
            .envs(env.iter().copied())
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("starting the streamboard binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("reading stdout") {
                if let Some(url) = line.strip_prefix("streamboard listening on http://") {
                    return url.parse::<SocketAddr>().expect("a socket address");
                }
            }
            panic!("streamboard exited before listening");
        })
        .await
        .expect("streamboard did not start within 30 s");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        TestServer {
            addr,
            http: reqwest::Client::new(),
            child,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn patch(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .patch(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("PATCH")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.http
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    /// Creates a quick-win board and returns its JSON.
    pub async fn quick_board(&self, name: &str) -> Value {
        let response = self.post("/quick/boards", json!({ "name": name })).await;
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    /// Creates a task on a quick-win board and returns its JSON.
    pub async fn quick_task(&self, board_id: &str, title: &str) -> Value {
        let response = self
            .post(
                &format!("/quick/boards/{board_id}/tasks"),
                json!({ "title": title }),
            )
            .await;
        assert_eq!(response.status(), 201, "creating task {title}");
        response.json().await.unwrap()
    }

    pub async fn ws(&self, path: &str) -> WsClient {
        let (stream, _) = tokio_tungstenite::connect_async(self.ws_url(path))
            .await
            .expect("WebSocket connect");
        WsClient { stream }
    }

    /// Stops the server with SIGKILL (no graceful shutdown).
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY-free: `kill` via the command line avoids a libc dependency.
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("exit within 15 s")
            .expect("wait")
    }
}

pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
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
}

/// The versions of a list of event frames or envelopes.
pub fn versions(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect()
}

/// Asserts the contract's error shape and returns the error object.
pub async fn error_body(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let body: Value = response.json().await.expect("a JSON error body");
    let error = body["error"].clone();
    assert!(error["code"].is_string(), "error.code in {body}");
    assert!(error["message"].is_string(), "error.message in {body}");
    error
}

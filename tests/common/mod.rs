//! The test harness: starts the real `streamboard` binary on a free port
//! and talks to it over HTTP and WebSocket, as a client app would.
#![allow(dead_code)]

pub mod services;

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

// ---------------------------------------------------------------------------
// Helpers for the quick-win end-to-end suites (quick_http, quick_ws,
// quick_bad_input).

/// The board version in a response's `ETag: "<version>"`; panics when the
/// header is missing or is not a quoted version.
pub fn etag_version(response: &reqwest::Response) -> u64 {
    let raw = response
        .headers()
        .get("etag")
        .expect("an ETag header")
        .to_str()
        .expect("an ASCII ETag");
    raw.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("ETag {raw} is not a quoted version"))
}

/// The sorted keys of a JSON object (panics on anything else).
pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("an object, got {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// Sorted owned strings, to compare with `keys`.
pub fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    names.sort();
    names
}

impl TestServer {
    /// Any request, with extra headers and an optional raw body.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        request.send().await.expect("sending a request")
    }

    /// A JSON request with extra headers (`If-Match`, `Idempotency-Key`).
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> reqwest::Response {
        self.send_raw(method, path, headers, Some(body.to_string().into_bytes()))
            .await
    }

    /// GET that must answer 200; returns the JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    /// GET that must answer 200; returns the raw body bytes.
    pub async fn get_bytes(&self, path: &str) -> Vec<u8> {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.bytes().await.expect("a body").to_vec()
    }

    /// A quick-win board's whole history, read page by page.
    pub async fn quick_history(&self, board_id: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after = 0u64;
        loop {
            let page = self
                .get_json(&format!(
                    "/quick/boards/{board_id}/events?after={after}&limit=1000"
                ))
                .await;
            let batch = page["events"].as_array().expect("events array").clone();
            if batch.is_empty() {
                assert!(page["next_after"].is_null(), "{page}");
                return events;
            }
            after = page["next_after"].as_u64().expect("next_after");
            events.extend(batch);
        }
    }
}

impl WsClient {
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
}

// ---------------------------------------------------------------------------
// Helpers for the event-sourced (`/api`) end-to-end suites (api_*).

pub use services::{StreamEntry, TestDb, TestRedis};

/// A username no other test uses: `<prefix>_<8 hex>` (keep `prefix` short;
/// usernames are 3 to 32 characters).
pub fn unique_name(prefix: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &suffix[..8])
}

/// The Redis Stream key of a board: `board:{<id>}:events`.
pub fn stream_key(board_id: &str) -> String {
    format!("board:{{{board_id}}}:events")
}

/// The password every api_* test user gets.
pub const PASSWORD: &str = "correct horse battery";

impl TestServer {
    /// A server in the `test` profile with `/api` on this Redis and database.
    pub async fn spawn_api(redis: &TestRedis, db: &TestDb) -> TestServer {
        let redis_url = redis.url();
        let db_url = db.url();
        Self::spawn_with(&[
            ("STREAMBOARD__REDIS__URL", redis_url.as_str()),
            ("STREAMBOARD__POSTGRES__URL", db_url.as_str()),
        ])
        .await
    }

    /// Registers an account; asserts 201 and returns `(token, user_id)`.
    pub async fn register(&self, username: &str, password: &str) -> (String, String) {
        let response = self
            .post(
                "/api/auth/register",
                json!({ "username": username, "password": password }),
            )
            .await;
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON register body");
        assert_eq!(status, 201, "registering {username}: {body}");
        let token = body["token"].as_str().expect("a token").to_owned();
        let user_id = body["user"]["id"].as_str().expect("a user id").to_owned();
        (token, user_id)
    }

    /// Registers a fresh user named `<prefix>_<8 hex>`; returns `(token, user_id)`.
    pub async fn new_user(&self, prefix: &str) -> (String, String) {
        self.register(&unique_name(prefix), PASSWORD).await
    }

    /// Any request with `Authorization: Bearer <token>`, extra headers and an
    /// optional JSON body.
    pub async fn send_auth(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method.clone(), self.url(path))
            .bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn get_auth(&self, token: &str, path: &str) -> reqwest::Response {
        self.send_auth(reqwest::Method::GET, path, token, &[], None)
            .await
    }

    pub async fn post_auth(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.send_auth(reqwest::Method::POST, path, token, &[], Some(body))
            .await
    }

    pub async fn patch_auth(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.send_auth(reqwest::Method::PATCH, path, token, &[], Some(body))
            .await
    }

    pub async fn delete_auth(&self, token: &str, path: &str) -> reqwest::Response {
        self.send_auth(reqwest::Method::DELETE, path, token, &[], None)
            .await
    }

    /// Authenticated GET that must answer 200; returns the JSON body.
    pub async fn get_json_auth(&self, token: &str, path: &str) -> Value {
        let response = self.get_auth(token, path).await;
        let status = response.status();
        let body = response.text().await.expect("a body");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("a JSON body")
    }

    /// Creates an `/api` board as the token's user; asserts 201.
    pub async fn api_board(&self, token: &str, name: &str) -> Value {
        let response = self
            .post_auth(token, "/api/boards", json!({ "name": name }))
            .await;
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON board");
        assert_eq!(status, 201, "creating board {name}: {body}");
        body
    }

    /// Creates a task on an `/api` board; asserts 201.
    pub async fn api_task(&self, token: &str, board_id: &str, title: &str) -> Value {
        let response = self
            .post_auth(
                token,
                &format!("/api/boards/{board_id}/tasks"),
                json!({ "title": title }),
            )
            .await;
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON task");
        assert_eq!(status, 201, "creating task {title}: {body}");
        body
    }

    /// The ids of the boards in the token user's `GET /api/boards`.
    pub async fn api_board_ids(&self, token: &str) -> Vec<String> {
        let list = self.get_json_auth(token, "/api/boards").await;
        list["boards"]
            .as_array()
            .unwrap_or_else(|| panic!("boards array in {list}"))
            .iter()
            .map(|b| b["id"].as_str().expect("board id").to_owned())
            .collect()
    }

    /// A board's whole `/api` history, read page by page.
    pub async fn api_history(&self, token: &str, board_id: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after = 0u64;
        loop {
            let page = self
                .get_json_auth(
                    token,
                    &format!("/api/boards/{board_id}/events?after={after}&limit=1000"),
                )
                .await;
            let batch = page["events"].as_array().expect("events array").clone();
            if batch.is_empty() {
                return events;
            }
            after = page["next_after"].as_u64().expect("next_after");
            events.extend(batch);
        }
    }
}

/// Asserts that a stream holds versions 1..=n with no gap: ids `<v>-0`, the
/// `version` field equal to the id, and all six contract fields present.
/// Returns n.
pub fn assert_contiguous(entries: &[StreamEntry]) -> u64 {
    for (index, entry) in entries.iter().enumerate() {
        let expected = index as u64 + 1;
        assert_eq!(entry.id, format!("{expected}-0"), "entry #{index}");
        assert_eq!(
            entry.get("version"),
            expected.to_string(),
            "entry {}",
            entry.id
        );
        let mut names = entry.field_names();
        names.sort_unstable();
        assert_eq!(
            names,
            ["actor", "at", "data", "type", "v", "version"],
            "fields of entry {}",
            entry.id
        );
        let _ = entry.data();
    }
    entries.len() as u64
}

// ---------------------------------------------------------------------------
// More helpers for the quick-win suites.

impl TestServer {
    /// Sends raw request bytes on a fresh connection while reading the
    /// reply, and returns whatever the server answered. Write errors are
    /// ignored: a server may answer (e.g. 413) and close before reading the
    /// whole body. Send `Connection: close` so the reply ends with EOF.
    pub async fn raw_http(&self, request: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let stream = TcpStream::connect(self.addr).await.expect("connect");
        let (mut reader, mut writer) = stream.into_split();
        let writing = tokio::spawn(async move {
            let _ = writer.write_all(&request).await;
            let _ = writer.flush().await;
            writer
        });
        let mut reply = Vec::new();
        let mut buffer = [0u8; 8192];
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, reader.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => reply.extend_from_slice(&buffer[..n]),
            }
        }
        writing.abort();
        String::from_utf8_lossy(&reply).into_owned()
    }
}

/// The status code and the body of a raw HTTP/1.1 reply.
pub fn raw_status_and_body(reply: &str) -> (u16, &str) {
    let status = reply
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 reply: {reply:?}"));
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body)
}

/// Where two JSON values first differ (`$.tasks[3].created_at: "a" != "b"`),
/// or `None` when they are equal. Keeps assertion messages short.
pub fn first_difference(left: &Value, right: &Value) -> Option<String> {
    fn walk(path: String, left: &Value, right: &Value) -> Option<String> {
        match (left, right) {
            (Value::Object(a), Value::Object(b)) => {
                for (key, value) in a {
                    match b.get(key) {
                        Some(other) => {
                            if let Some(found) = walk(format!("{path}.{key}"), value, other) {
                                return Some(found);
                            }
                        }
                        None => return Some(format!("{path}.{key}: only on the left")),
                    }
                }
                b.keys()
                    .find(|key| !a.contains_key(*key))
                    .map(|key| format!("{path}.{key}: only on the right"))
            }
            (Value::Array(a), Value::Array(b)) => {
                for (index, (x, y)) in a.iter().zip(b).enumerate() {
                    if let Some(found) = walk(format!("{path}[{index}]"), x, y) {
                        return Some(found);
                    }
                }
                (a.len() != b.len())
                    .then(|| format!("{path}: {} items != {} items", a.len(), b.len()))
            }
            (a, b) if a == b => None,
            (a, b) => Some(format!("{path}: {a} != {b}")),
        }
    }
    walk("$".to_owned(), left, right)
}

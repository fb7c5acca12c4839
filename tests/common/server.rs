//! [`TestServer`]: one running `streamboard` process on a free loopback
//! port, and the typed HTTP helpers the suites talk to it with, as a
//! client app would.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::process::Child;

use super::checks::{unique_name, PASSWORD, WAIT};
use super::client::ApiClient;
use super::process;
use super::ws::WsClient;

pub struct TestServer {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    child: Child,
}

/// A registered user and a board they own.
#[derive(Clone, Debug)]
pub struct BoardOwner {
    pub token: String,
    pub user_id: String,
    pub board_id: String,
}

impl TestServer {
    /// Starts the binary with these settings (see [`crate::common::TestEnv`]
    /// for the ones a test asks for) and waits until it listens.
    pub async fn start(settings: &[(String, String)]) -> TestServer {
        let mut settings = settings.to_vec();
        settings.insert(
            0,
            ("STREAMBOARD__SERVER__ADDR".into(), "127.0.0.1:0".into()),
        );
        let command = process::command(process::streamboard_bin(), &settings);
        let (child, addr) =
            process::spawn_until_ready(command, "streamboard", Duration::from_secs(30), |line| {
                let url = line.strip_prefix("streamboard listening on http://")?;
                Some(url.parse::<SocketAddr>().expect("a socket address"))
            })
            .await;
        TestServer {
            addr,
            http: super::client::http_client(),
            child,
        }
    }

    /// The server process's resident memory (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.child.id().expect("a running server");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }

    /// Stops the server with SIGKILL (no graceful shutdown).
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        process::terminate(&mut self.child, Duration::from_secs(15)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub async fn ws(&self, path: &str) -> WsClient {
        WsClient::connect(&self.ws_url(path)).await
    }

    /// A `'static` handle that writes as `token`'s user, for spawned tasks.
    pub fn client(&self, token: &str) -> ApiClient {
        ApiClient::new(self.url(""), token)
    }

    // --- Plain requests --------------------------------------------------

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.send_json(reqwest::Method::POST, path, &[], body).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> reqwest::Response {
        self.send_json(reqwest::Method::PATCH, path, &[], body)
            .await
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.send_raw(reqwest::Method::DELETE, path, &[], None)
            .await
    }

    /// Any request, with extra headers and an optional raw JSON body.
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

    // --- Quick-win (`/quick`) --------------------------------------------

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

    /// Creates tasks `<prefix>0` .. `<prefix><count - 1>`, one after the other.
    pub async fn quick_tasks(&self, board_id: &str, count: usize, prefix: &str) {
        for i in 0..count {
            self.quick_task(board_id, &format!("{prefix}{i}")).await;
        }
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

    /// What a quick-win board looks like from the outside, byte for byte:
    /// the board, its history and the board list.
    pub async fn quick_snapshot(&self, board_id: &str) -> Vec<Vec<u8>> {
        vec![
            self.get_bytes(&format!("/quick/boards/{board_id}")).await,
            self.get_bytes(&format!("/quick/boards/{board_id}/events?limit=1000"))
                .await,
            self.get_bytes("/quick/boards").await,
        ]
    }

    // --- Accounts and `/api` ---------------------------------------------

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

    /// A fresh user (see [`TestServer::new_user`]) with a new board.
    pub async fn board_owner(&self, user_prefix: &str, board_name: &str) -> BoardOwner {
        let (token, user_id) = self.new_user(user_prefix).await;
        let board = self.api_board(&token, board_name).await;
        let board_id = board["id"].as_str().expect("a board id").to_owned();
        BoardOwner {
            token,
            user_id,
            board_id,
        }
    }

    /// `POST path {"title": key}` with `Idempotency-Key: key`: a task
    /// create a careful client retries with the same key.
    pub async fn post_keyed(&self, token: &str, path: &str, key: &str) -> reqwest::Response {
        self.send_auth(
            reqwest::Method::POST,
            path,
            token,
            &[("Idempotency-Key", key)],
            Some(serde_json::json!({ "title": key })),
        )
        .await
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

    /// Authenticated POST that must answer 201; returns the JSON body.
    pub async fn post_created(&self, token: &str, path: &str, body: Value) -> Value {
        let response = self.post_auth(token, path, body).await;
        let status = response.status();
        let body = response.text().await.expect("a body");
        assert_eq!(status, 201, "POST {path}: {body}");
        serde_json::from_str(&body).expect("a JSON body")
    }

    /// Creates an `/api` board as the token's user; asserts 201.
    pub async fn api_board(&self, token: &str, name: &str) -> Value {
        self.post_created(token, "/api/boards", json!({ "name": name }))
            .await
    }

    /// Creates a task on an `/api` board; asserts 201.
    pub async fn api_task(&self, token: &str, board_id: &str, title: &str) -> Value {
        let path = format!("/api/boards/{board_id}/tasks");
        self.post_created(token, &path, json!({ "title": title }))
            .await
    }

    /// Creates tasks `<prefix>0` .. `<prefix><count - 1>`, one after the other.
    pub async fn api_tasks(&self, token: &str, board_id: &str, count: usize, prefix: &str) {
        for i in 0..count {
            self.api_task(token, board_id, &format!("{prefix}{i}"))
                .await;
        }
    }

    /// Creates a board with tasks `<name>-0` .. `<name>-<tasks - 1>`; returns
    /// the board's id.
    pub async fn api_board_with_tasks(&self, token: &str, name: &str, tasks: usize) -> String {
        let board = self.api_board(token, name).await;
        let board_id = board["id"].as_str().expect("a board id").to_owned();
        self.api_tasks(token, &board_id, tasks, &format!("{name}-"))
            .await;
        board_id
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

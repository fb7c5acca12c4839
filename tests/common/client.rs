//! [`ApiClient`]: one user's `/api` writes through one server, as a handle
//! that is cheap to clone and `'static`, so spawned tasks can write at once.

use std::time::Duration;

use serde_json::{json, Value};

use super::checks::etag_version;

/// A request that takes longer than this counts as hung.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of its own whose every request fails after [`REQUEST_TIMEOUT`]
/// instead of hanging the test.
/// A plain client. The projector's reqwest brings rustls without a crypto
/// provider (it installs ring itself), and in a workspace build the tests'
/// reqwest shares that feature set, so a client needs ring installed first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub fn bounded_http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("a reqwest client")
}

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl ApiClient {
    /// A client of its own (own connection pool) on `base` (`http://host:port`).
    pub fn new(base: String, token: &str) -> ApiClient {
        ApiClient {
            http: http_client(),
            base,
            token: token.to_owned(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Creates a board; asserts 201 and returns its id.
    pub async fn board(&self, name: &str) -> String {
        let response = self.post("/api/boards", json!({ "name": name })).await;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, 201, "creating board {name}: {body}");
        let board: Value = serde_json::from_str(&body).expect("a JSON board");
        board["id"].as_str().expect("a board id").to_owned()
    }

    /// Creates a task: the status, the board version (ETag) on 201, and
    /// the body.
    pub async fn try_task(
        &self,
        board_id: &str,
        title: &str,
        description: &str,
    ) -> (u16, u64, String) {
        let response = self
            .post(
                &format!("/api/boards/{board_id}/tasks"),
                json!({ "title": title, "description": description }),
            )
            .await;
        let status = response.status().as_u16();
        let version = if status == 201 {
            etag_version(&response)
        } else {
            0
        };
        let body = response.text().await.unwrap_or_default();
        (status, version, body)
    }

    /// Creates a task; asserts 201 and returns the board version (ETag).
    pub async fn task(&self, board_id: &str, title: &str, description: &str) -> u64 {
        let (status, version, body) = self.try_task(board_id, title, description).await;
        assert_eq!(status, 201, "creating task {title}: {body}");
        version
    }

    /// As [`ApiClient::task`], but retries a 503 (as a client honouring
    /// `Retry-After` would, only faster), so that fan-out tests do not depend
    /// on write contention; see `writers_on_two_instances_are_never_refused_as_too_busy`.
    pub async fn task_retrying(&self, board_id: &str, title: &str) -> u64 {
        for _ in 0..50 {
            match self.try_task(board_id, title, "").await {
                (201, version, _) => return version,
                (503, _, _) => tokio::time::sleep(Duration::from_millis(20)).await,
                (status, _, body) => panic!("creating task {title}: {status} {body}"),
            }
        }
        panic!("creating task {title}: 503 fifty times in a row");
    }
}

//! Helpers for the live-delivery suites: a client that reads slowly, large
//! events, a server metric, and waiting for the projector's archive.

use super::env::TestEnv;
use super::server::TestServer;
use super::ws::WsClient;

/// A WebSocket client on a socket with a 4 KiB receive buffer, so that once
/// it stops reading the server's writes back up quickly.
pub async fn tiny_buffer_client(server: &TestServer, path: &str) -> WsClient {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.expect("connect");
    let (stream, _) = tokio_tungstenite::client_async(
        server.ws_url(path),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await
    .expect("WebSocket handshake");
    WsClient { stream }
}

/// Eight KiB of text, starting with `i`.
pub fn big_description(i: usize) -> String {
    let mut text = format!("{i}:");
    while text.len() < 8 * 1024 {
        text.push_str("lorem ipsum dolor sit amet ");
    }
    text.truncate(8 * 1024);
    text
}

/// An unlabelled counter or gauge from the server's `/metrics`; panics
/// when it is not listed.
pub async fn server_metric(server: &TestServer, name: &str) -> f64 {
    let text = server.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// Waits until the projector has archived `count` events of `board_id`.
pub async fn archived(env: &TestEnv, board_id: &str, count: u64) {
    super::projector::wait_archived(|sql| env.db().query(sql), board_id, count).await;
}

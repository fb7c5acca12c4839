//! Connections are bounded in time and number: idle and half-sent
//! connections are closed after their configured timeouts while other
//! clients are served, and sockets over the caps are answered at accept.
//! Timeouts are set short here; each check is that a connection is closed
//! within its timeout (plus scheduling slack), never how fast anything is.

mod common;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::*;

const HEADER_TIMEOUT: u64 = 2;
const IDLE_TIMEOUT: u64 = 4;
const BODY_TIMEOUT: u64 = 2;
/// What a closed connection may take beyond its timeout on a busy machine.
const SLACK: Duration = Duration::from_secs(4);

async fn spawn_timed(extra: &[(&str, &str)]) -> TestEnv {
    let mut builder = TestEnv::quick()
        .setting(
            "STREAMBOARD__SERVER__HEADER_READ_TIMEOUT_SECONDS",
            &HEADER_TIMEOUT.to_string(),
        )
        .setting(
            "STREAMBOARD__SERVER__IDLE_TIMEOUT_SECONDS",
            &IDLE_TIMEOUT.to_string(),
        )
        .setting(
            "STREAMBOARD__SERVER__BODY_READ_TIMEOUT_SECONDS",
            &BODY_TIMEOUT.to_string(),
        );
    for (key, value) in extra {
        builder = builder.setting(key, value);
    }
    builder.spawn().await
}

/// Reads until the server closes the connection; what it sent, and when
/// it closed (None: still open at `within`).
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, Option<Instant>) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (received, Some(Instant::now())),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => return (received, None),
        }
    }
}

#[tokio::test]
async fn slowloris_connections_are_closed_within_the_header_timeout_while_others_are_served() {
    let env = spawn_timed(&[("STREAMBOARD__SERVER__MAX_CONNECTIONS_PER_ADDRESS", "1000")]).await;
    let server = env.server();

    // 250 requests whose head never ends: one more header line, then nothing.
    let mut slow = Vec::with_capacity(250);
    for i in 0..250 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let head = format!("GET /quick/boards HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ");
        stream.write_all(head.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    let sent_at = Instant::now();

    // Meanwhile other clients are served.
    for _ in 0..20 {
        let response = server.get("/quick/boards").await;
        assert_eq!(response.status(), 200);
    }
    let board = server.quick_board("Still serving").await;
    assert!(board["id"].is_string());

    let within = Duration::from_secs(HEADER_TIMEOUT) + SLACK;
    let closes = futures_util::future::join_all(
        slow.iter_mut()
            .map(|stream| read_until_closed(stream, within)),
    )
    .await;
    for (i, (received, closed)) in closes.into_iter().enumerate() {
        let closed =
            closed.unwrap_or_else(|| panic!("slow connection {i} still open after {within:?}"));
        assert!(
            closed.duration_since(sent_at) <= within,
            "connection {i} closed after {:?}",
            closed.duration_since(sent_at)
        );
        assert!(received.is_empty(), "no answer to a head that never ended");
    }
    // And the server still answers afterwards.
    assert_eq!(server.get("/health").await.status(), 200);
}

#[tokio::test]
async fn silent_and_idle_keep_alive_connections_are_closed_within_the_idle_timeout() {
    let env = spawn_timed(&[]).await;
    let server = env.server();
    let within = Duration::from_secs(IDLE_TIMEOUT) + SLACK;

    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();

    let (_, silent_closed) = read_until_closed(&mut silent, within).await;
    let (answer, idle_closed) = read_until_closed(&mut idle, within).await;

    assert!(silent_closed.is_some(), "a silent socket is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !answer.contains("connection: close"),
        "kept alive: {answer}"
    );
    let idle_closed = idle_closed.expect("an idle keep-alive connection is closed");
    assert!(
        idle_closed.duration_since(started) >= Duration::from_secs(HEADER_TIMEOUT),
        "idle keep-alive gets the idle timeout, not the header timeout"
    );
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408_and_a_close() {
    let env = spawn_timed(&[]).await;
    let server = env.server();
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /quick/boards HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"name\":",
        )
        .await
        .unwrap();

    let within = Duration::from_secs(BODY_TIMEOUT) + SLACK;
    let (answer, closed) = read_until_closed(&mut stream, within).await;

    let answer = String::from_utf8_lossy(&answer);
    let (status, body) = raw_status_and_body(&answer);
    assert_eq!(status, 408, "{answer}");
    assert!(body.contains("\"request_timeout\""), "{answer}");
    assert!(closed.is_some(), "closed after the 408");
}

#[tokio::test]
async fn sockets_over_the_per_address_cap_get_429_and_over_the_total_503() {
    let env = spawn_timed(&[("STREAMBOARD__SERVER__MAX_CONNECTIONS_PER_ADDRESS", "5")]).await;
    let server = env.server();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Admission is in accept order: the five held sockets came first.
    let (status, body) = server_status(server.addr).await;
    assert_eq!(status, 429);
    assert!(body.contains("too_many_requests"), "{body}");
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        server_status(server.addr).await.0,
        200,
        "a freed place is reused"
    );

    let full = spawn_timed(&[
        ("STREAMBOARD__SERVER__MAX_CONNECTIONS", "3"),
        ("STREAMBOARD__SERVER__MAX_CONNECTIONS_PER_ADDRESS", "0"),
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(full.server().addr).await.unwrap());
    }
    let (status, body) = server_status(full.server().addr).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("service_unavailable"), "{body}");
}

/// The status and body of `GET /health` on a new connection.
async fn server_status(addr: std::net::SocketAddr) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The refusal is written without reading: the request may meet a
    // closed socket, which is fine.
    let _ = stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (status, body) = raw_status_and_body(&answer);
    (status, body.to_owned())
}

#[tokio::test]
async fn a_request_head_with_bare_lf_line_ends_is_refused_and_crlf_ones_served() {
    let env = spawn_timed(&[]).await;
    let server = env.server();

    for head in [
        &b"GET /health HTTP/1.1\nHost: x\n\n"[..],
        &b"GET /health HTTP/1.1\r\nHost: x\n\r\n"[..],
    ] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(head).await.unwrap();
        let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(!answer.contains("200 OK"), "{head:?} was served: {answer}");
        assert!(closed.is_some(), "{head:?}: the connection is closed");
    }

    // The same request with CRLF is served, and a body may hold bare LFs.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /quick/boards HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\
              Connection: close\r\n\r\n{\n\"name\": \"LF\"\n}\n",
        )
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(raw_status_and_body(&answer).0, 201, "{answer}");
}

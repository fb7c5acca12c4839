//! The boards and tasks a scenario creates before it measures, through
//! `/quick` or, with a token, through `/api`.

use std::net::SocketAddr;

use serde_json::json;
use uuid::Uuid;

use crate::client::Http;

/// A board and the tasks mutations go to.
#[derive(Clone)]
pub struct BoardFixture {
    pub id: Uuid,
    pub tasks: Vec<Uuid>,
}

/// Creates `boards` boards with `tasks` tasks each through `/quick`, over a
/// few connections.
pub async fn create_boards(
    addr: SocketAddr,
    boards: usize,
    tasks: usize,
    label: &str,
) -> anyhow::Result<Vec<BoardFixture>> {
    create_boards_at(addr, "/quick", None, boards, tasks, label).await
}

/// `create_boards` under `prefix` (`/quick` or `/api`), authenticated with
/// `token` if given. The fixtures come back in board order.
pub async fn create_boards_at(
    addr: SocketAddr,
    prefix: &'static str,
    token: Option<&str>,
    boards: usize,
    tasks: usize,
    label: &str,
) -> anyhow::Result<Vec<BoardFixture>> {
    let lanes = boards.clamp(1, 16);
    let mut handles = Vec::new();
    for lane in 0..lanes {
        let label = label.to_string();
        let token = token.map(str::to_owned);
        handles.push(tokio::spawn(async move {
            let mut http = Http::connect_as(addr, token.as_deref()).await?;
            let mut made = Vec::new();
            for b in (lane..boards).step_by(lanes) {
                let id = http
                    .create(
                        &format!("{prefix}/boards"),
                        &json!({"name": format!("{label} {b}")}),
                    )
                    .await?;
                let mut fixture = BoardFixture {
                    id,
                    tasks: Vec::with_capacity(tasks),
                };
                for t in 0..tasks {
                    let task = http
                        .create(
                            &format!("{prefix}/boards/{id}/tasks"),
                            &json!({"title": format!("task {t}")}),
                        )
                        .await?;
                    fixture.tasks.push(task);
                }
                made.push((b, fixture));
            }
            anyhow::Ok(made)
        }));
    }
    let mut all = Vec::with_capacity(boards);
    for handle in handles {
        all.extend(handle.await??);
    }
    all.sort_by_key(|(b, _)| *b);
    Ok(all.into_iter().map(|(_, f)| f).collect())
}

/// Registers a fresh `/api` user and returns its token.
pub async fn register_user(addr: SocketAddr) -> anyhow::Result<String> {
    let mut http = Http::connect(addr).await?;
    let username = format!("bench{}", &Uuid::new_v4().simple().to_string()[..12]);
    let session = http
        .json(
            "POST",
            "/api/auth/register",
            &json!({"username": username, "password": "bench-password-1234"}),
            201,
        )
        .await?;
    session["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no \"token\" in the register response: {session}"))
}

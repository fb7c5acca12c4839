//! [`Projector`]: one running `projector run` process, with the test
//! profile's short intervals so claims and lag samples happen within a test.

use std::time::Duration;

use tokio::process::{Child, Command};

use super::process;

/// Intervals short enough for tests; a test's own settings come after and win.
const QUICK_INTERVALS: [(&str, &str); 4] = [
    ("STREAMBOARD__PROJECTOR__METRICS_ADDR", "127.0.0.1:0"),
    ("STREAMBOARD__PROJECTOR__BLOCK_MS", "100"),
    ("STREAMBOARD__PROJECTOR__LEASE_MS", "1500"),
    ("STREAMBOARD__PROJECTOR__LAG_INTERVAL_MS", "300"),
];

/// The projector binary with the store settings, the quick intervals and
/// `extra`, ready for `run` or any other subcommand.
pub fn command(stores: &[(String, String)], extra: &[(&str, &str)]) -> Command {
    let mut settings = stores.to_vec();
    settings.extend(
        QUICK_INTERVALS
            .iter()
            .chain(extra)
            .map(|(key, value)| (key.to_string(), value.to_string())),
    );
    process::command(process::projector_bin(), &settings)
}

pub struct Projector {
    pub metrics: String,
    child: Child,
}

impl Projector {
    /// Starts `projector run` and waits until it says it is running.
    pub async fn start(command: Command) -> Projector {
        let mut metrics = String::new();
        let (child, metrics) =
            process::spawn_until_ready(command, "the projector", Duration::from_secs(60), |line| {
                if let Some(url) = line.strip_prefix("projector metrics on ") {
                    metrics = url.to_owned();
                }
                line.starts_with("projector running")
                    .then(|| metrics.clone())
            })
            .await;
        Projector { metrics, child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// SIGKILL: no chance to finish anything.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, and waits for a clean exit.
    pub async fn terminate(mut self) {
        let status = process::terminate(&mut self.child, Duration::from_secs(30)).await;
        assert!(status.success(), "projector exited with {status}");
    }

    /// A counter or gauge from `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = super::client::http_client()
            .get(&self.metrics)
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0.0)
    }
}

/// Waits until the projector has archived `count` events of `board_id`,
/// counting them with `query` (SQL in, psql's output out) for 15 s at most.
pub async fn wait_archived(query: impl Fn(&str) -> String, board_id: &str, count: u64) {
    let sql = format!("SELECT count(*) FROM events WHERE board_id = '{board_id}'");
    let mut seen = String::new();
    for _ in 0..300 {
        seen = query(&sql);
        if seen.trim() == count.to_string() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the projector archived {seen} of {count} events of {board_id}");
}

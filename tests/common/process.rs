//! The one way the suites start a binary of this workspace: the `test`
//! profile from `config/`, nothing inherited from the caller's
//! `STREAMBOARD*` variables, settings as `STREAMBOARD__...` variables, and
//! killed when its handle is dropped.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Settings handed to a binary, as `STREAMBOARD__...` variables.
pub type Settings = Vec<(String, String)>;

/// The `streamboard` binary cargo built for these tests.
pub fn streamboard_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_streamboard"))
}

/// The `projector` binary of this build: `STREAMBOARD_PROJECTOR_BIN`, or
/// next to the `streamboard` binary cargo built for these tests (it is a
/// workspace member, so `cargo build --workspace --bins` must have run).
pub fn projector_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("STREAMBOARD_PROJECTOR_BIN") {
        return PathBuf::from(path);
    }
    let path = streamboard_bin().with_file_name("projector");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before these tests",
        path.display()
    );
    path
}

/// `program` in the test profile with `settings`, run from the temporary
/// directory, stdin closed.
pub fn command(program: PathBuf, settings: &[(String, String)]) -> Command {
    let mut command = Command::new(program);
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
        .envs(settings.iter().map(|(key, value)| (key, value)))
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Starts `command` and reads its stdout until `ready` makes something of a
/// line; stdout is drained from then on so the child never blocks on a
/// full pipe. Panics when the child exits first or takes over `within`.
pub async fn spawn_until_ready<T>(
    mut command: Command,
    what: &str,
    within: Duration,
    mut ready: impl FnMut(&str) -> Option<T>,
) -> (Child, T) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let found = tokio::time::timeout(within, async {
        while let Some(line) = lines.next_line().await.expect("reading stdout") {
            if let Some(found) = ready(&line) {
                return found;
            }
        }
        panic!("{what} exited before it was ready");
    })
    .await
    .unwrap_or_else(|_| panic!("{what} was not ready within {within:?}"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, found)
}

/// Runs `command`, which must stop at start-up (within 30 s); its exit
/// status and stderr.
pub async fn refused_start(mut command: Command) -> (Option<i32>, String) {
    let output = bounded(
        Duration::from_secs(30),
        command.output(),
        "exit at start-up",
    )
    .await
    .expect("running the binary");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Sends SIGTERM to `child` and waits for it to exit.
pub async fn terminate(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let pid = child.id().expect("running");
    // `kill` from the command line avoids a libc dependency.
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    bounded(within, child.wait(), "exit")
        .await
        .expect("waiting for the child")
}

/// `future`, or a panic naming `what` after `within`.
pub async fn bounded<F: Future>(within: Duration, future: F, what: &str) -> F::Output {
    tokio::time::timeout(within, future)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {within:?}"))
}

//! The time writes are stamped with, and that analytics takes as now.
//!
//! The system clock, cut to microseconds (the precision the Redis stream
//! stores). Tests may set `testing.clock_file` (refused in `prod`): while
//! that file exists and holds an RFC 3339 time, that time is now, so a test
//! can write a board's history across days and weeks without waiting.
//! Installed once per process by [`install`]; the domain never reads it
//! (its time comes in `Context` and in events).

use std::path::PathBuf;
use std::sync::OnceLock;

use chrono::{DateTime, SubsecRound, Utc};

use crate::settings::TestingSettings;

static CLOCK_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Takes the test clock from `settings`, if one is set.
pub fn install(settings: &TestingSettings) {
    if !settings.clock_file.as_os_str().is_empty() {
        let _ = CLOCK_FILE.set(settings.clock_file.clone());
    }
}

/// Now, to the microsecond.
pub fn now() -> DateTime<Utc> {
    let fixed = CLOCK_FILE.get().and_then(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        DateTime::parse_from_rfc3339(text.trim()).ok()
    });
    fixed
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or_else(Utc::now)
        .trunc_subsecs(6)
}

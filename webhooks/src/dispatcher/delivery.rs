//! What one delivery is, without any I/O: its headers and signature, how
//! a receiver's answer counts, and when a failed event is tried again.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use streamboard_core::settings::WebhookSettings;

pub const EVENT: &str = "X-Streamboard-Event";
pub const EVENT_ID: &str = "X-Streamboard-Event-Id";
pub const DELIVERY: &str = "X-Streamboard-Delivery";
pub const SIGNATURE: &str = "X-Streamboard-Signature-256";

/// `sha256=<hex HMAC-SHA256 of body keyed by secret>`, as GitHub signs.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `<board_id>:<version>`: the same for every attempt at an event, so a
/// receiver can deduplicate by it.
pub fn event_id(board_id: uuid::Uuid, version: u64) -> String {
    format!("{board_id}:{version}")
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx: the event is delivered.
    Delivered(u16),
    /// Any other status (redirects are not followed).
    Rejected(u16),
    /// No answer: connection refused or reset, timeout, forbidden address.
    Failed(String),
}

impl Outcome {
    pub fn of_status(status: u16) -> Outcome {
        if (200..300).contains(&status) {
            Outcome::Delivered(status)
        } else {
            Outcome::Rejected(status)
        }
    }

    /// The `outcome` label of the deliveries counter.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered(_) => "delivered",
            Outcome::Rejected(_) => "rejected",
            Outcome::Failed(_) => "failed",
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Delivered(status) | Outcome::Rejected(status) => Some(*status),
            Outcome::Failed(_) => None,
        }
    }

    pub fn error(&self) -> Option<String> {
        match self {
            Outcome::Delivered(_) => None,
            Outcome::Rejected(status) => Some(format!("HTTP {status}")),
            Outcome::Failed(error) => Some(error.clone()),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterFailure {
    RetryIn(Duration),
    Disable,
}

/// Exponential backoff with jitter: the retry after the n-th failed
/// attempt waits `first * 2^(n-1)`, at most `max`, times a factor in
/// [0.75, 1.25); after `max_attempts` failures the webhook is disabled.
/// With the defaults (1 s, 4 h, 20 attempts) the retries come at about
/// 1, 2, 4 … s, then every 4 h, the last about 24.5 h after the first try.
#[derive(Debug, Clone, Copy)]
pub struct RetrySchedule {
    pub first: Duration,
    pub max: Duration,
    pub max_attempts: u32,
}

impl RetrySchedule {
    pub fn from_settings(settings: &WebhookSettings) -> RetrySchedule {
        RetrySchedule {
            first: Duration::from_millis(settings.retry_first_ms),
            max: Duration::from_millis(settings.retry_max_ms),
            max_attempts: settings.max_attempts,
        }
    }

    /// `failed` attempts have failed so far (at least 1); `jitter` is in
    /// [0, 1).
    pub fn after(&self, failed: u32, jitter: f64) -> AfterFailure {
        if failed >= self.max_attempts {
            return AfterFailure::Disable;
        }
        let doubling = 2f64.powi(failed.saturating_sub(1).min(62) as i32);
        let base = (self.first.as_secs_f64() * doubling).min(self.max.as_secs_f64());
        AfterFailure::RetryIn(Duration::from_secs_f64(base * (0.75 + jitter * 0.5)))
    }

    /// The time from the first attempt to the last, without jitter.
    pub fn span(&self) -> Duration {
        (1..self.max_attempts)
            .map(|failed| match self.after(failed, 0.5) {
                AfterFailure::RetryIn(delay) => delay,
                AfterFailure::Disable => Duration::ZERO,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> RetrySchedule {
        RetrySchedule {
            first: Duration::from_secs(1),
            max: Duration::from_secs(4 * 3600),
            max_attempts: 20,
        }
    }

    #[test]
    fn signatures_are_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(signature("other", b"body"), signature("Jefe", b"body"));
    }

    #[test]
    fn retries_start_within_seconds_double_and_span_about_a_day() {
        let schedule = defaults();
        assert_eq!(
            schedule.after(1, 0.5),
            AfterFailure::RetryIn(Duration::from_secs(1))
        );
        assert_eq!(
            schedule.after(2, 0.5),
            AfterFailure::RetryIn(Duration::from_secs(2))
        );
        assert_eq!(
            schedule.after(3, 0.5),
            AfterFailure::RetryIn(Duration::from_secs(4))
        );
        assert_eq!(
            schedule.after(19, 0.5),
            AfterFailure::RetryIn(Duration::from_secs(4 * 3600))
        );
        assert_eq!(schedule.after(20, 0.5), AfterFailure::Disable);
        let hours = schedule.span().as_secs_f64() / 3600.0;
        assert!((20.0..30.0).contains(&hours), "{hours} h");
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let schedule = defaults();
        for (jitter, expected) in [(0.0, 3.0), (0.999_999, 5.0)] {
            let AfterFailure::RetryIn(delay) = schedule.after(3, jitter) else {
                panic!("a retry");
            };
            assert!((delay.as_secs_f64() - expected).abs() < 0.001, "{delay:?}");
        }
    }

    #[test]
    fn only_2xx_delivers() {
        assert_eq!(Outcome::of_status(200).label(), "delivered");
        assert_eq!(Outcome::of_status(204).label(), "delivered");
        assert_eq!(Outcome::of_status(301).label(), "rejected");
        assert_eq!(Outcome::of_status(500).error().as_deref(), Some("HTTP 500"));
        assert_eq!(Outcome::Failed("timed out".into()).status(), None);
    }
}

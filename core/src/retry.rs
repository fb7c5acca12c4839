//! One retry policy for the in-process loops that wait for something to
//! come back: PostgreSQL for the migrations (server and projector), the
//! connection that hears of deleted accounts, a board's append after a
//! lost race. Exponential backoff with jitter, through `backon`, so that
//! instances started together do not retry in step. The webhook schedule
//! is not one of them: it is persisted with each webhook
//! (`webhooks::queue`), so it outlives the process that computed it.

use std::time::Duration;

use backon::ExponentialBuilder;

/// Waiting for a dependency: about `first` (up to twice that, jittered),
/// doubling up to `max`, for as long as it takes.
pub fn until_available(first: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
}

/// Between the attempts of a write that keeps losing its board's race to
/// other writers: a few hundred microseconds, growing, spread out.
pub fn after_lost_race() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_micros(150))
        .with_factor(1.5)
        .with_max_delay(Duration::from_millis(3))
        .with_jitter()
        .without_max_times()
}

#[cfg(test)]
mod tests {
    use backon::BackoffBuilder;

    use super::*;

    #[test]
    fn waits_grow_to_their_bound_and_never_end() {
        let (first, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<Duration> = until_available(first, max).build().take(12).collect();
        assert_eq!(
            waits.len(),
            12,
            "a dependency is waited for as long as it takes"
        );
        assert!(waits[0] >= first && waits[0] <= 2 * first, "{waits:?}");
        assert!(waits.iter().all(|wait| *wait <= 2 * max), "{waits:?}");
        assert!(waits[11] >= max, "{waits:?}");
        let races: Vec<Duration> = after_lost_race().build().take(16).collect();
        assert!(
            races.iter().all(|wait| *wait <= Duration::from_millis(6)),
            "{races:?}"
        );
    }
}

//! Monte Carlo forecasts from daily throughput (docs/ANALYTICS.md,
//! "Forecast"). Each trial draws days, with replacement, from the range's
//! daily throughput: how many tasks the next 7, 14 and 30 days finish, and
//! how many days the unfinished tasks take. Seeded, so the same board,
//! range and seed always give the same numbers.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use super::report::FlowOptions;

/// Horizons of "how many in the next N days".
pub const HORIZONS: [u32; 3] = [7, 14, 30];
/// A trial that has not finished the remaining work after this many days
/// stops there: the answer is "later than that".
pub const MAX_DAYS: u32 = 730;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Forecast {
    pub method: &'static str,
    pub trials: u32,
    pub seed: u64,
    /// The daily throughputs drawn from (the range's whole days, or all
    /// its days when none is whole).
    pub sample_days: usize,
    pub finished_within: Vec<Horizon>,
    pub remaining: Remaining,
}

/// Tasks finished within `days`: at least `at_least_50` in half the
/// trials, at least `at_least_85` in 85% of them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Horizon {
    pub days: u32,
    pub at_least_50: u64,
    pub at_least_85: u64,
}

/// When the tasks unfinished at `to` are done: within `days_50` days in
/// half the trials, within `days_85` in 85% of them; `null` when that is
/// later than `max_days` (or nothing was finished in the range).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Remaining {
    pub tasks: u64,
    pub days_50: Option<u32>,
    pub days_85: Option<u32>,
    pub date_50: Option<NaiveDate>,
    pub date_85: Option<NaiveDate>,
    pub max_days: u32,
}

pub fn forecast(
    sample: &[u64],
    remaining: u64,
    to: DateTime<Utc>,
    options: &FlowOptions,
) -> Forecast {
    let trials = options.trials.max(1) as usize;
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let draw = |rng: &mut fastrand::Rng| match sample.len() {
        0 => 0,
        n => sample[rng.usize(..n)],
    };
    let finished_within = HORIZONS
        .iter()
        .map(|&days| {
            let mut outcomes: Vec<u64> = (0..trials)
                .map(|_| (0..days).map(|_| draw(&mut rng)).sum())
                .collect();
            outcomes.sort_unstable();
            // At least x in p% of trials: the value p% of outcomes reach.
            let at_least = |p: usize| outcomes[(trials * (100 - p)) / 100];
            Horizon {
                days,
                at_least_50: at_least(50),
                at_least_85: at_least(85),
            }
        })
        .collect();

    let productive = sample.iter().any(|n| *n > 0);
    let mut needed: Vec<Option<u32>> = (0..trials)
        .map(|_| {
            if remaining == 0 {
                return Some(0);
            }
            if !productive {
                return None;
            }
            let mut done = 0;
            for day in 1..=MAX_DAYS {
                done += draw(&mut rng);
                if done >= remaining {
                    return Some(day);
                }
            }
            None
        })
        .collect();
    // `None` (later than MAX_DAYS) sorts last.
    needed.sort_unstable_by_key(|days| days.unwrap_or(u32::MAX));
    let within = |p: usize| needed[(trials * p).div_ceil(100).max(1) - 1];
    let date = |days: Option<u32>| days.map(|d| (to + Duration::days(i64::from(d))).date_naive());
    let (days_50, days_85) = (within(50), within(85));
    Forecast {
        method: "monte_carlo_daily_throughput",
        trials: trials as u32,
        seed: options.seed,
        sample_days: sample.len(),
        finished_within,
        remaining: Remaining {
            tasks: remaining,
            days_50,
            days_85,
            date_50: date(days_50),
            date_85: date(days_85),
            max_days: MAX_DAYS,
        },
    }
}

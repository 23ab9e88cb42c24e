//! How long the writer pauses between rounds (the flush interval while the
//! store answers, an exponential backoff while it fails), how long the
//! spool is left alone after a write failed, and how often a repeated
//! failure is logged.

use std::time::{Duration, Instant};

/// Least time between two error-log lines about the same repeated failure:
/// the first is logged at once, then one line sums up each such period.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(10);

/// Exponential backoff from 50 ms, doubling per failed round up to a cap;
/// reset by a round that succeeds.
#[derive(Clone, Copy, Debug)]
pub(super) struct Backoff {
    current: Duration,
    max: Duration,
}

impl Backoff {
    /// The first pause after a failure.
    const FIRST: Duration = Duration::from_millis(50);

    /// No backoff yet; pauses never exceed `max`.
    pub(super) fn new(max: Duration) -> Self {
        Self {
            current: Duration::ZERO,
            max,
        }
    }

    /// Whether the last round failed, so the next pause is a backoff.
    pub(super) fn is_backing_off(&self) -> bool {
        !self.current.is_zero()
    }

    /// The pause before the next round: the backoff, else `flush_interval`.
    pub(super) fn pause(&self, flush_interval: Duration) -> Duration {
        if self.is_backing_off() {
            self.current
        } else {
            flush_interval
        }
    }

    /// The round succeeded: no more backoff.
    pub(super) fn succeeded(&mut self) {
        self.current = Duration::ZERO;
    }

    /// The round failed: double the pause, within `[50 ms, max]` (just
    /// `max` if that is shorter).
    pub(super) fn failed(&mut self) {
        self.current = self
            .current
            .saturating_mul(2)
            .max(Self::FIRST)
            .min(self.max);
    }
}

/// Rate limit for an error that may repeat for every row: counts the
/// occurrences (and the rows they concern) and lets one report through per
/// [`LOG_EVERY`].
#[derive(Debug, Default)]
pub(super) struct Throttle {
    reported_at: Option<Instant>,
    events: u64,
    rows: u64,
}

impl Throttle {
    /// Notes one occurrence concerning `rows`; returns the occurrences and
    /// rows since the last report when a report is due.
    pub(super) fn note(&mut self, rows: u64) -> Option<(u64, u64)> {
        self.note_at(rows, Instant::now())
    }

    fn note_at(&mut self, rows: u64, now: Instant) -> Option<(u64, u64)> {
        self.events += 1;
        self.rows += rows;
        if self
            .reported_at
            .is_some_and(|at| now.duration_since(at) < LOG_EVERY)
        {
            return None;
        }
        self.reported_at = Some(now);
        Some((
            std::mem::take(&mut self.events),
            std::mem::take(&mut self.rows),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_failure_is_reported_once_per_period_with_its_sum() {
        let mut throttle = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(throttle.note_at(5, t0), Some((1, 5)), "the first at once");
        for i in 1..1000 {
            assert_eq!(throttle.note_at(2, t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(
            throttle.note_at(1, t0 + LOG_EVERY),
            Some((1000, 1999)),
            "then one line sums up the period"
        );
        assert_eq!(throttle.note_at(1, t0 + LOG_EVERY), None);
    }

    #[test]
    fn doubles_from_50_ms_to_the_cap_and_resets() {
        let flush = Duration::from_millis(200);
        let mut backoff = Backoff::new(Duration::from_millis(300));
        assert_eq!(backoff.pause(flush), flush);
        let pauses: Vec<u128> = (0..5)
            .map(|_| {
                backoff.failed();
                backoff.pause(flush).as_millis()
            })
            .collect();
        assert_eq!(pauses, [50, 100, 200, 300, 300]);
        backoff.succeeded();
        assert!(!backoff.is_backing_off());
        assert_eq!(backoff.pause(flush), flush);
        // A cap under the first step, or a huge one, does not panic.
        let mut tiny = Backoff::new(Duration::from_millis(10));
        tiny.failed();
        assert_eq!(tiny.pause(flush), Duration::from_millis(10));
        let mut huge = Backoff::new(Duration::MAX);
        for _ in 0..80 {
            huge.failed();
        }
        assert_eq!(huge.pause(flush), Duration::MAX);
    }
}

//! How long the writer pauses between rounds: the flush interval while the
//! store answers, an exponential backoff while it fails.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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

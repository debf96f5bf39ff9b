//! When producing to a topic fails, and what of that is said: the first failure, then one WARN
//! per interval while failures go on (however many records wait), and one INFO when a record
//! goes through again. IO-free: the caller passes the time.

use std::time::Duration;

use tokio::time::Instant;

/// What a producer says about its topic after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Nothing new: said already within the interval, or nothing to say.
    Quiet,
    /// Producing has failed for this long: due for a WARN.
    Failing {
        /// Since the first failure of this spell.
        for_: Duration,
    },
    /// A record went through after failures that lasted this long: due for an INFO.
    Recovered {
        /// Since the first failure of the spell that ended.
        after: Duration,
    },
}

/// One topic's spell of failures, if it has one.
#[derive(Debug)]
pub struct Trouble {
    /// How often a spell of failures is reported.
    interval: Duration,
    /// The first failure of the spell under way; `None` while producing works.
    since: Option<Instant>,
    /// When the spell was last reported.
    reported: Option<Instant>,
}

impl Trouble {
    /// No trouble yet; failures are reported at most once per `interval`.
    pub fn new(interval: Duration) -> Trouble {
        Trouble {
            interval,
            since: None,
            reported: None,
        }
    }

    /// An attempt failed at `now`.
    pub fn failed(&mut self, now: Instant) -> Report {
        let since = *self.since.get_or_insert(now);
        let due = self
            .reported
            .is_none_or(|at| now.duration_since(at) >= self.interval);
        if !due {
            return Report::Quiet;
        }
        self.reported = Some(now);
        Report::Failing {
            for_: now.duration_since(since),
        }
    }

    /// An attempt succeeded at `now`.
    pub fn succeeded(&mut self, now: Instant) -> Report {
        self.reported = None;
        match self.since.take() {
            Some(since) => Report::Recovered {
                after: now.duration_since(since),
            },
            None => Report::Quiet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_report_per_interval_however_many_records_fail() {
        let mut t = Trouble::new(Duration::from_secs(30));
        let start = Instant::now();
        assert_eq!(
            t.failed(start),
            Report::Failing {
                for_: Duration::ZERO
            }
        );
        // Many records failing within the interval: said once.
        for _ in 0..100 {
            tokio::time::advance(Duration::from_millis(100)).await;
            assert_eq!(t.failed(Instant::now()), Report::Quiet);
        }
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(
            t.failed(Instant::now()),
            Report::Failing {
                for_: Duration::from_secs(30)
            }
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            t.succeeded(Instant::now()),
            Report::Recovered {
                after: Duration::from_secs(35)
            }
        );
        assert_eq!(t.succeeded(Instant::now()), Report::Quiet);
        // A new spell is reported at once, counted from its own start.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            t.failed(Instant::now()),
            Report::Failing {
                for_: Duration::ZERO
            }
        );
    }
}

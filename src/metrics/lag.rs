//! The group's lag as the metrics process shows it, and the interface it reads it through.
//! Owned here, not by `kafka`, so that the metrics know nothing of Kafka: whoever starts the
//! metrics process hands it a [`LagSource`] (`serve` hands `kafka::LagReader`).

use std::fmt::Display;
use std::time::Duration;

/// One partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition of the request topic.
    pub partition: i32,
    /// The group's committed offset (the next record to consume); `None` before its first
    /// commit.
    pub committed: Option<i64>,
    /// The offset the next record written will get (the high watermark).
    pub log_end: i64,
    /// The first offset still in the log.
    pub log_start: i64,
}

impl PartitionLag {
    /// Records written and not yet committed: from the committed offset, or from the start of
    /// the log when the group has none yet (all of it waits for the group then).
    pub fn lag(&self) -> i64 {
        (self.log_end - self.committed.unwrap_or(self.log_start).max(self.log_start)).max(0)
    }
}

/// Where the metrics process reads the group's lag at scrape time.
pub trait LagSource {
    /// Why a read failed: logged, never shown as a metric.
    type Error: Display;

    /// The request topic, as the lag is labelled.
    fn topic(&self) -> &str;

    /// Every partition's position now, sorted by partition, within `budget`. The future need
    /// not be `Send`: the metrics process runs on one thread.
    fn read(
        &mut self,
        budget: Duration,
    ) -> impl Future<Output = Result<Vec<PartitionLag>, Self::Error>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_commit_or_from_the_log_start() {
        let at = |committed, log_start, log_end| PartitionLag {
            partition: 0,
            committed,
            log_end,
            log_start,
        };
        assert_eq!(at(Some(7), 0, 10).lag(), 3);
        assert_eq!(at(Some(10), 0, 10).lag(), 0);
        assert_eq!(at(None, 4, 10).lag(), 6);
        // A commit below the log start (retention deleted records): only what is left waits.
        assert_eq!(at(Some(2), 4, 10).lag(), 6);
    }
}

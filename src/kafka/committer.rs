//! Committing what is done: the partitions' watermarks (lowest offset whose response is not yet
//! in Kafka) go to the consumer group through the coordinator, whenever they moved.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{CoordinatorError, GroupCoordinator, Watermarks};

/// Commits the watermarks of one topic's partitions for the group.
#[derive(Debug)]
pub struct Committer {
    /// The group's coordinator, reached through its own connection.
    coordinator: GroupCoordinator,
    /// The request topic.
    topic: String,
    /// Shared with the fetch loops and the records' done tokens.
    watermarks: Arc<Mutex<Watermarks>>,
    /// What the group holds now, as far as this worker knows: only moved watermarks are sent.
    committed: HashMap<i32, i64>,
}

impl Committer {
    /// `committed`: the group's offsets as fetched at start (`None` where it has none).
    pub fn new(
        coordinator: GroupCoordinator,
        topic: impl Into<String>,
        watermarks: Arc<Mutex<Watermarks>>,
        committed: &HashMap<i32, Option<i64>>,
    ) -> Committer {
        Committer {
            coordinator,
            topic: topic.into(),
            watermarks,
            committed: committed
                .iter()
                .filter_map(|(p, o)| Some((*p, (*o)?)))
                .collect(),
        }
    }

    /// The group's committed offsets of `partitions` (`None` where it has none).
    pub async fn fetch(
        &mut self,
        partitions: &[i32],
    ) -> Result<HashMap<i32, Option<i64>>, CoordinatorError> {
        self.coordinator.fetch(&self.topic, partitions).await
    }

    /// Commits every watermark that moved since the last commit; returns what it committed. A
    /// failed commit is tried again by the next call.
    pub async fn commit_due(&mut self) -> Result<Vec<(i32, i64)>, CoordinatorError> {
        let due = self.due();
        if due.is_empty() {
            return Ok(due);
        }
        self.coordinator.commit(&self.topic, &due).await?;
        self.committed.extend(due.iter().copied());
        Ok(due)
    }

    fn due(&self) -> Vec<(i32, i64)> {
        let w = self.watermarks.lock().expect("watermark lock");
        let mut due: Vec<(i32, i64)> = w
            .partitions()
            .filter_map(|p| {
                let c = w.committable(p)?;
                (self.committed.get(&p) != Some(&c)).then_some((p, c))
            })
            .collect();
        due.sort_unstable();
        due
    }
}

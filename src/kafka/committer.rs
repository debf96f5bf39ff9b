//! Committing what is done: the partitions' watermarks (lowest offset whose response is not yet
//! in Kafka) go to the consumer group through the coordinator, whenever they moved.
//!
//! The committer runs as a task of its own with its own coordinator connection, so a slow or
//! unreachable coordinator never holds up fetching, executing, producing or a stop request
//! (design decision 13). It is also where an outage shows: it reports, once per interval and
//! not per retry, how long Kafka has been unreachable and what waits for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::coordinator::CoordinatorError;
use super::coordinator::Generation;
use super::coordinator::GroupCoordinator;
use super::watermark::Watermarks;

/// How often an ongoing outage is reported.
pub const OUTAGE_REPORT_INTERVAL: Duration = Duration::from_secs(30);

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
    /// Who commits: the member's current generation (a "simple consumer" without a group).
    generation: watch::Receiver<Generation>,
}

impl Committer {
    /// `committed`: the group's offsets as fetched at start (`None` where it has none).
    pub fn new(
        coordinator: GroupCoordinator,
        topic: impl Into<String>,
        watermarks: Arc<Mutex<Watermarks>>,
        committed: &HashMap<i32, Option<i64>>,
        generation: watch::Receiver<Generation>,
    ) -> Committer {
        Committer {
            coordinator,
            topic: topic.into(),
            watermarks,
            committed: committed
                .iter()
                .filter_map(|(p, o)| Some((*p, (*o)?)))
                .collect(),
            generation,
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
        let generation = self.generation.borrow().clone();
        let committed = self
            .coordinator
            .commit_as(&self.topic, &due, &generation)
            .await;
        crate::metrics::worker().commit(committed.is_ok());
        committed?;
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

    /// Runs the committer as a task: a commit every `interval` when something moved, a probe of
    /// the coordinator when nothing did for a while (so an outage shows even when idle), and
    /// the commands of its `CommitterTask` handle. Must be called inside a
    /// [`tokio::task::LocalSet`] (the worker runs in one).
    pub fn spawn(self, interval: Duration, waiting: Arc<AtomicUsize>) -> CommitterTask {
        let (tx, rx) = mpsc::channel(8);
        // A local task: the coordinator client's futures are not `Send` (its retry loop takes
        // an async closure), and a worker is one thread anyway.
        let task = tokio::task::spawn_local(run(self, interval, waiting, rx));
        CommitterTask {
            client: CommitterClient { tx },
            task,
        }
    }
}

/// What the committer task is asked to do besides its periodic commits.
pub(super) enum Command {
    /// Committed offsets of partitions (for partitions added to the topic).
    Fetch(
        Vec<i32>,
        oneshot::Sender<Result<HashMap<i32, Option<i64>>, CoordinatorError>>,
    ),
    /// Commit what is due now and answer (before a rebalance).
    Now(oneshot::Sender<Result<Vec<(i32, i64)>, CoordinatorError>>),
    /// Commit what is due once more, answer, and end.
    Last(oneshot::Sender<Result<Vec<(i32, i64)>, CoordinatorError>>),
}

/// The handle of a running committer.
#[derive(Debug)]
pub struct CommitterTask {
    /// Asks it for committed offsets.
    client: CommitterClient,
    /// The task, to abort it if it cannot finish in time.
    task: JoinHandle<()>,
}

/// Asks a running committer for committed offsets; cheap to clone into other tasks.
#[derive(Debug, Clone)]
pub struct CommitterClient {
    /// Commands to the task.
    tx: mpsc::Sender<Command>,
}

/// The committer task is gone (it ended or panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the committer is not running")]
pub struct CommitterGone;

impl CommitterTask {
    /// A task that answers [`Command`]s in the committer's place (the transaction task).
    pub(super) fn from_parts(client: CommitterClient, task: JoinHandle<()>) -> CommitterTask {
        CommitterTask { client, task }
    }

    /// A handle for other tasks that need committed offsets.
    pub fn client(&self) -> CommitterClient {
        self.client.clone()
    }

    /// The last commit, after the executions are done; gives up at `deadline` (a stop must
    /// end within its grace period, outage or not).
    pub async fn finish(
        self,
        deadline: Instant,
    ) -> Result<Result<Vec<(i32, i64)>, CoordinatorError>, CommitterGone> {
        let (reply, answer) = oneshot::channel();
        let tx = self.client.tx.clone();
        let last = async {
            tx.send(Command::Last(reply))
                .await
                .map_err(|_| CommitterGone)?;
            answer.await.map_err(|_| CommitterGone)
        };
        let outcome = tokio::time::timeout_at(deadline, last).await;
        self.task.abort();
        outcome.unwrap_or(Err(CommitterGone))
    }
}

impl CommitterClient {
    pub(super) fn from_sender(tx: mpsc::Sender<Command>) -> CommitterClient {
        CommitterClient { tx }
    }

    /// Commits what is due now (before the member gives its partitions up).
    pub async fn commit_now(
        &self,
    ) -> Result<Result<Vec<(i32, i64)>, CoordinatorError>, CommitterGone> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Now(reply))
            .await
            .map_err(|_| CommitterGone)?;
        answer.await.map_err(|_| CommitterGone)
    }

    /// The group's committed offsets of `partitions`, asked through the committer's connection.
    pub async fn fetch(
        &self,
        partitions: Vec<i32>,
    ) -> Result<Result<HashMap<i32, Option<i64>>, CoordinatorError>, CommitterGone> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Fetch(partitions, reply))
            .await
            .map_err(|_| CommitterGone)?;
        answer.await.map_err(|_| CommitterGone)
    }
}

/// How long the coordinator may go unasked while nothing is due before a probe asks it.
const PROBE_AFTER: Duration = Duration::from_secs(10);

async fn run(
    mut committer: Committer,
    interval: Duration,
    waiting: Arc<AtomicUsize>,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut health = Health::new(committer.coordinator.group().to_owned());
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Fetch(partitions, reply)) => {
                    let answer = committer.fetch(&partitions).await;
                    let in_group = committer.generation.borrow().id >= 0;
                    health.note(answer.as_ref().map(|_| ()), &waiting, in_group);
                    let _ = reply.send(answer);
                }
                Some(Command::Now(reply)) => {
                    let _ = reply.send(committer.commit_due().await);
                }
                Some(Command::Last(reply)) => {
                    let _ = reply.send(committer.commit_due().await);
                    return;
                }
                None => return,
            },
            _ = tick.tick() => {
                let outcome = if !committer.due().is_empty() {
                    committer.commit_due().await.map(|_| ())
                } else if health.last_contact.elapsed() >= PROBE_AFTER {
                    let owned: Vec<i32> = committer.committed.keys().copied().take(1).collect();
                    committer.fetch(&owned).await.map(|_| ())
                } else {
                    continue;
                };
                let in_group = committer.generation.borrow().id >= 0;
                health.note(outcome.as_ref().map(|_| ()), &waiting, in_group);
            }
        }
    }
}

/// What the committer knows of Kafka's reachability, for the outage report.
#[derive(Debug)]
struct Health {
    /// The consumer group, named in the report.
    group: String,
    /// The last time the coordinator answered.
    last_contact: Instant,
    /// Since when calls have been failing, if they are.
    failing_since: Option<Instant>,
    /// When the outage was last reported.
    reported_at: Option<Instant>,
}

impl Health {
    fn new(group: String) -> Health {
        Health {
            group,
            last_contact: Instant::now(),
            failing_since: None,
            reported_at: None,
        }
    }

    /// Records the outcome of a call to the coordinator; logs one WARN per interval while they
    /// fail, and one INFO when they succeed again.
    fn note(
        &mut self,
        outcome: Result<(), &CoordinatorError>,
        waiting: &AtomicUsize,
        in_group: bool,
    ) {
        let now = Instant::now();
        match outcome {
            Ok(()) => {
                self.last_contact = now;
                if let Some(since) = self.failing_since.take() {
                    crate::metrics::worker().set_kafka_unreachable(false);
                    tracing::info!(group = %self.group, "Kafka answers again after {:.0?}; commits go on", since.elapsed());
                }
                self.reported_at = None;
            }
            // Kafka answered, refusing: the group is rebalancing or this generation is over.
            // The member handles that; it is no outage.
            Err(e) if !e.is_transient() => {
                self.last_contact = now;
                if in_group {
                    tracing::debug!(group = %self.group, "a commit was refused (the member rejoins): {e}");
                } else {
                    tracing::warn!(group = %self.group, "a commit was refused: {e}");
                }
            }
            Err(e) => {
                // Unreachable since it last answered, not since this call gave up.
                crate::metrics::worker().set_kafka_unreachable(true);
                let since = *self.failing_since.get_or_insert(self.last_contact);
                let due = self
                    .reported_at
                    .is_none_or(|at| now.duration_since(at) >= OUTAGE_REPORT_INTERVAL);
                if due {
                    self.reported_at = Some(now);
                    tracing::warn!(
                        group = %self.group,
                        "Kafka unreachable for {:.0?}: offsets cannot be committed ({e}); {} response(s) wait to be produced; everything goes on when Kafka is back, nothing is lost",
                        now.duration_since(since),
                        waiting.load(Ordering::Relaxed),
                    );
                }
            }
        }
    }
}

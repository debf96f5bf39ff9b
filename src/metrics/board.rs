//! The layout of the shared cells ([`crate::supervisor::shared_cells`]): one control area the
//! supervisor writes, then one slot per worker index. A slot's counters only ever grow and
//! belong to the index, not the process: a replacement worker adds to its predecessor's, so the
//! service's sums never go backwards. A slot's gauges (state, in flight, partitions) are the
//! live worker's: the supervisor clears them when it reaps one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::supervisor::{ExitCause, SupervisorError};

/// Worker slots the board holds; TTIN stops there.
pub const SLOTS: usize = 128;
/// Cells per slot and of the control area (1 KiB each).
const SLOT_WORDS: usize = 128;

/// Upper bounds (seconds) of the duration histograms' buckets: a request takes from a
/// millisecond (a cached component) to minutes (a long workflow; hetida's runtime timeout).
pub const DURATION_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Upper bounds (bytes) of the runtime request size histogram's buckets: from a component's
/// few numbers to series near the 64 MiB the backend store allows.
pub const BYTE_BUCKETS: [f64; 9] = [
    1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];

/// `error.type` values a failure response can carry (`ProtocolError::error_type`), plus the
/// label for results the runtime itself reported as failed.
pub const ERROR_TYPES: [&str; 11] = [
    "UndecodableRequestError",
    "ValidationError",
    "TrafoExecutionNotFoundError",
    "DBNotFoundError",
    "TrafoExecutionInputValidationError",
    "StoreUnavailableError",
    "TrafoExecutionRuntimeConnectionError",
    "TrafoExecutionResultValidationError",
    "MessageSizeTooLargeError",
    "UnexpectedError",
    RUNTIME_FAILURE,
];
/// `error_type` of a response whose result the runtime reported as `failure` (the component or
/// workflow raised): one label for all of them, as their exception names are unbounded.
pub const RUNTIME_FAILURE: &str = "RuntimeExecutionFailure";

// Control area cells.
const TICK_MS: usize = 0;
const TARGET_WORKERS: usize = 1;
const STOPPING: usize = 2;
const RESTARTS: usize = 3; // ..3 + ExitCause::ALL.len()

// Slot cells: gauges of the live worker first (cleared on reap), counters after.
const PID: usize = 0;
const BEAT_MS: usize = 1;
const STATE: usize = 2;
const IN_FLIGHT: usize = 3;
const ASSIGNED: usize = 4;
const PARKED: usize = 5;
const KAFKA_UNREACHABLE: usize = 6;
/// Which topics the worker produces to are missing now, one bit per [`Produced`].
const TOPICS_MISSING: usize = 7;
const GAUGES: usize = 8;
const DEAD_LETTERS: usize = 8;
const PRODUCE_RETRIES: usize = 9;
const COMMITS: usize = 10;
const COMMIT_FAILURES: usize = 11;
const CACHE_HITS: usize = 12;
const CACHE_MISSES: usize = 13;
const REBALANCES: usize = 14;
/// `ok`, then one per [`ERROR_TYPES`].
const REQUESTS: usize = 15;
const REQUEST_DURATION: usize = REQUESTS + 1 + ERROR_TYPES.len();
const RUNTIME_DURATION: usize = REQUEST_DURATION + DURATION_BUCKETS.len() + 2;
const RUNTIME_BYTES: usize = RUNTIME_DURATION + DURATION_BUCKETS.len() + 2;
/// Answers of given-up partitions not produced: their next owner answers (issue 25).
const ANSWERS_DROPPED: usize = RUNTIME_BYTES + BYTE_BUCKETS.len() + 2;
/// Requests committed past without any answer: not even a failure response fit (issue 26).
const UNANSWERABLE: usize = ANSWERS_DROPPED + 1;
/// Dead letters given up on: refused, or their topic missing for longer than they may wait.
const DEAD_LETTERS_LOST: usize = UNANSWERABLE + 1;
/// Share groups (issue 28): records acquired, acknowledged by type (gap, accept, release,
/// reject), delivered more than once, and acknowledgements the broker refused (their locks had
/// run out, or their session was gone).
const SHARE_ACQUIRED: usize = DEAD_LETTERS_LOST + 1;
const SHARE_ACKS: usize = SHARE_ACQUIRED + 1;
const SHARE_REDELIVERED: usize = SHARE_ACKS + 4;
const SHARE_ACKS_REFUSED: usize = SHARE_REDELIVERED + 1;
const SLOT_END: usize = SHARE_ACKS_REFUSED + 1;
const _: () = assert!(SLOT_END <= SLOT_WORDS);

/// Where a worker is on its way to consuming: what `/readyz` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// No worker in the slot.
    Empty = 0,
    /// Forked; opening the store, the runtime client and Kafka (or waiting for Kafka).
    Booting = 1,
    /// Joining the group or rebalancing: owns no partitions until the assignment.
    Joining = 2,
    /// Owns its partitions (possibly none, when the group has more members than partitions)
    /// and consumes them.
    Consuming = 3,
    /// Stopping: finishing in-flight work.
    Stopping = 4,
}

impl WorkerState {
    fn from_cell(v: u64) -> WorkerState {
        match v {
            1 => WorkerState::Booting,
            2 => WorkerState::Joining,
            3 => WorkerState::Consuming,
            4 => WorkerState::Stopping,
            _ => WorkerState::Empty,
        }
    }

    /// As `/readyz` and the `workers` gauge name it.
    pub fn label(self) -> &'static str {
        match self {
            WorkerState::Empty => "empty",
            WorkerState::Booting => "booting",
            WorkerState::Joining => "joining",
            WorkerState::Consuming => "consuming",
            WorkerState::Stopping => "stopping",
        }
    }
}

/// A topic the workers produce to, as `/readyz` names it when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Produced {
    /// The response topic: while it is missing no request is answered.
    Responses = 1,
    /// The dead-letter topic: while it is missing dead letters wait (for a bounded time).
    DeadLetters = 2,
}

impl Produced {
    /// As `/readyz` names it.
    pub fn label(self) -> &'static str {
        match self {
            Produced::Responses => "response topic",
            Produced::DeadLetters => "dead-letter topic",
        }
    }
}

/// Milliseconds of the system-wide monotonic clock: comparable between processes, unlike an
/// `Instant`, and never set back.
pub fn monotonic_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// The whole board: control area and slots.
#[derive(Debug, Clone, Copy)]
pub struct Board {
    cells: &'static [AtomicU64],
}

impl Board {
    /// Cells a board needs.
    pub const WORDS: usize = SLOT_WORDS * (1 + SLOTS);

    /// Maps the board into memory every process forked afterwards shares. The supervisor calls
    /// this before its first fork.
    pub fn shared() -> Result<Board, SupervisorError> {
        Ok(Board {
            cells: crate::supervisor::shared_cells(Self::WORDS)?,
        })
    }

    /// A board of this process alone (a worker run without the supervisor: `exec`, tests).
    pub fn private() -> Board {
        let cells: Vec<AtomicU64> = (0..Self::WORDS).map(|_| AtomicU64::new(0)).collect();
        Board {
            cells: Vec::leak(cells),
        }
    }

    fn control(&self, cell: usize) -> &'static AtomicU64 {
        &self.cells[cell]
    }

    /// The slot of worker `index` (indexes beyond [`SLOTS`] share the last one).
    pub fn slot(&self, index: usize) -> SlotCells {
        let start = SLOT_WORDS * (1 + index.min(SLOTS - 1));
        SlotCells {
            cells: &self.cells[start..start + SLOT_WORDS],
        }
    }

    // The supervisor's side.

    /// A turn of the supervisor's loop.
    pub fn supervisor_turn(&self, workers: usize, stopping: bool) {
        self.control(TICK_MS)
            .store(monotonic_ms(), Ordering::Relaxed);
        self.control(TARGET_WORKERS)
            .store(workers as u64, Ordering::Relaxed);
        self.control(STOPPING)
            .store(stopping as u64, Ordering::Relaxed);
    }

    /// Worker `index` is about to be forked: it boots, and its silence counts from now. Set
    /// before the fork, as the child may report a later state at once.
    pub fn worker_forking(&self, index: usize) {
        let slot = self.slot(index);
        slot.cell(BEAT_MS).store(monotonic_ms(), Ordering::Relaxed);
        slot.cell(STATE)
            .store(WorkerState::Booting as u64, Ordering::Relaxed);
    }

    /// Worker `index` was forked as `pid`.
    pub fn worker_forked(&self, index: usize, pid: u32) {
        self.slot(index)
            .cell(PID)
            .store(u64::from(pid), Ordering::Relaxed);
    }

    /// Worker `index` was reaped: its gauges go (its counters stay), and an unasked end counts
    /// as a restart.
    pub fn worker_exited(&self, index: usize, cause: Option<ExitCause>) {
        let slot = self.slot(index);
        for cell in &slot.cells[..GAUGES] {
            cell.store(0, Ordering::Relaxed);
        }
        if let Some(cause) = cause {
            let i = ExitCause::ALL.iter().position(|c| *c == cause).unwrap_or(0);
            self.control(RESTARTS + i).fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Everything on the board now.
    pub fn read(&self) -> Reading {
        let mut reading = Reading {
            supervisor_tick_ms: self.control(TICK_MS).load(Ordering::Relaxed),
            target_workers: self.control(TARGET_WORKERS).load(Ordering::Relaxed) as usize,
            stopping: self.control(STOPPING).load(Ordering::Relaxed) != 0,
            restarts: [0; ExitCause::ALL.len()],
            workers: Vec::new(),
            totals: Totals::default(),
        };
        for (i, r) in reading.restarts.iter_mut().enumerate() {
            *r = self.control(RESTARTS + i).load(Ordering::Relaxed);
        }
        for index in 0..SLOTS {
            let slot = self.slot(index);
            reading.totals.add(&slot);
            let pid = slot.load(PID);
            if pid != 0 {
                reading.workers.push(WorkerReading {
                    index,
                    pid: pid as u32,
                    beat_ms: slot.load(BEAT_MS),
                    state: WorkerState::from_cell(slot.load(STATE)),
                    kafka_unreachable: slot.load(KAFKA_UNREACHABLE) != 0,
                    topics_missing: [Produced::Responses, Produced::DeadLetters]
                        .into_iter()
                        .filter(|t| slot.load(TOPICS_MISSING) & *t as u64 != 0)
                        .collect(),
                });
            }
        }
        reading
    }
}

/// One worker slot's cells: what a worker writes.
#[derive(Debug, Clone, Copy)]
pub struct SlotCells {
    cells: &'static [AtomicU64],
}

impl SlotCells {
    fn cell(&self, i: usize) -> &'static AtomicU64 {
        &self.cells[i]
    }

    fn load(&self, i: usize) -> u64 {
        self.cells[i].load(Ordering::Relaxed)
    }

    fn add(&self, i: usize, n: u64) {
        self.cells[i].fetch_add(n, Ordering::Relaxed);
    }

    /// The worker's event loop runs.
    pub fn beat(&self) {
        self.cell(BEAT_MS).store(monotonic_ms(), Ordering::Relaxed);
    }

    /// Where the worker is. A worker that is stopping stays so (a rebalance under way when the
    /// stop came does not make it joining again).
    pub fn set_state(&self, state: WorkerState) {
        let _ = self
            .cell(STATE)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                (now != WorkerState::Stopping as u64).then_some(state as u64)
            });
    }

    /// Whether the worker's calls to the group coordinator fail for want of Kafka (an outage),
    /// or it answers again.
    pub fn set_kafka_unreachable(&self, unreachable: bool) {
        self.cell(KAFKA_UNREACHABLE)
            .store(unreachable as u64, Ordering::Relaxed);
    }

    /// Whether producing to `topic` fails now because the topic does not exist (deleted), or
    /// it works again.
    pub fn set_topic_missing(&self, topic: Produced, missing: bool) {
        let bit = topic as u64;
        if missing {
            self.cell(TOPICS_MISSING).fetch_or(bit, Ordering::Relaxed);
        } else {
            self.cell(TOPICS_MISSING).fetch_and(!bit, Ordering::Relaxed);
        }
    }

    /// How many partitions the worker owns.
    pub fn set_assigned(&self, partitions: usize) {
        self.cell(ASSIGNED)
            .store(partitions as u64, Ordering::Relaxed);
    }

    /// One execution more (+1) or fewer (-1) in flight; the same for parked partitions.
    fn step(&self, i: usize, up: bool) {
        if up {
            self.add(i, 1);
        } else {
            // Never below zero: the supervisor may have cleared the cell in between (it does
            // so only for a dead worker, but a gauge must not wrap around).
            let _ = self.cells[i].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
        }
    }

    /// An execution started (`true`) or ended.
    pub fn in_flight(&self, started: bool) {
        self.step(IN_FLIGHT, started);
    }

    /// A partition parked at a batch it cannot read (`true`), or moved on.
    pub fn parked(&self, parked: bool) {
        self.step(PARKED, parked);
    }

    /// A response is in Kafka: `error_type` `None` for a result `ok`. An error type the board
    /// does not know counts as `UnexpectedError`.
    pub fn request_done(&self, error_type: Option<&str>, took: Duration) {
        let i = match error_type {
            None => 0,
            Some(t) => {
                1 + ERROR_TYPES
                    .iter()
                    .position(|known| *known == t)
                    .unwrap_or(ERROR_TYPES.len() - 2)
            }
        };
        self.add(REQUESTS + i, 1);
        self.observe(
            REQUEST_DURATION,
            &DURATION_BUCKETS,
            took.as_secs_f64(),
            took.as_nanos() as u64,
        );
    }

    /// A call to the runtime ended after `took`, having sent `bytes`.
    pub fn runtime_call(&self, took: Duration, bytes: usize) {
        self.observe(
            RUNTIME_DURATION,
            &DURATION_BUCKETS,
            took.as_secs_f64(),
            took.as_nanos() as u64,
        );
        self.observe(RUNTIME_BYTES, &BYTE_BUCKETS, bytes as f64, bytes as u64);
    }

    /// Histogram at `at`: per-bucket counts (not cumulative; the first bucket whose bound holds
    /// `value`, none for +Inf), then the sum in integer units, then the count.
    fn observe(&self, at: usize, bounds: &[f64], value: f64, units: u64) {
        // Bucket, sum, count: three adds, not one transaction; a reader may see the bucket
        // before the count (the exposition copes), and a worker killed in between leaves them
        // one apart for good.
        if let Some(b) = bounds.iter().position(|bound| value <= *bound) {
            self.add(at + b, 1);
        }
        self.add(at + bounds.len(), units);
        self.add(at + bounds.len() + 1, 1);
    }

    /// A record went to the dead-letter topic.
    pub fn dead_letter(&self) {
        self.add(DEAD_LETTERS, 1);
    }

    /// An answer was not produced because its partition was given up (past the deadline) or
    /// lost: the partition's next owner executes and answers the request.
    pub fn answer_dropped(&self) {
        self.add(ANSWERS_DROPPED, 1);
    }

    /// A request was committed past without an answer: neither its response nor any failure
    /// response could be produced.
    pub fn unanswerable(&self) {
        self.add(UNANSWERABLE, 1);
    }

    /// A dead letter was given up on (refused, or its topic missing too long).
    pub fn dead_letter_lost(&self) {
        self.add(DEAD_LETTERS_LOST, 1);
    }

    /// Share groups: a record was acquired.
    pub fn share_acquired(&self) {
        self.add(SHARE_ACQUIRED, 1);
    }

    /// Share groups: a record was acknowledged as `kind` (0 gap, 1 accept, 2 release, 3 reject).
    pub fn share_ack(&self, kind: usize) {
        self.add(SHARE_ACKS + kind.min(3), 1);
    }

    /// Share groups: a record came with a delivery count above 1.
    pub fn share_redelivered(&self) {
        self.add(SHARE_REDELIVERED, 1);
    }

    /// Share groups: the broker refused `n` acknowledgements (their locks had run out, or their
    /// session was gone): those records are delivered again.
    pub fn share_acks_refused(&self, n: u64) {
        self.add(SHARE_ACKS_REFUSED, n);
    }

    /// Producing a response failed and is tried again.
    pub fn produce_retry(&self) {
        self.add(PRODUCE_RETRIES, 1);
    }

    /// An offset commit succeeded (`true`) or failed.
    pub fn commit(&self, ok: bool) {
        self.add(if ok { COMMITS } else { COMMIT_FAILURES }, 1);
    }

    /// The revision cache had the prepared revision (`true`) or not.
    pub fn revision_cache(&self, hit: bool) {
        self.add(if hit { CACHE_HITS } else { CACHE_MISSES }, 1);
    }

    /// The worker received a new assignment from the group.
    pub fn rebalance(&self) {
        self.add(REBALANCES, 1);
    }
}

/// A histogram summed over the slots: per-bucket counts (not cumulative), sum, count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramTotals {
    /// Per bucket of its bounds, the observations that fell into it (not cumulative).
    pub buckets: Vec<u64>,
    /// The sum, in nanoseconds for durations, bytes for sizes.
    pub sum_units: u64,
    /// All observations, +Inf included.
    pub count: u64,
}

impl HistogramTotals {
    fn add(&mut self, slot: &SlotCells, at: usize, buckets: usize) {
        self.buckets.resize(buckets, 0);
        for (b, total) in self.buckets.iter_mut().enumerate() {
            *total += slot.load(at + b);
        }
        self.sum_units += slot.load(at + buckets);
        self.count += slot.load(at + buckets + 1);
    }
}

/// The counters and gauges of all slots, summed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Responses with result `ok`.
    pub ok: u64,
    /// Failure responses, per [`ERROR_TYPES`].
    pub failures: [u64; ERROR_TYPES.len()],
    /// Executions running now.
    pub in_flight: u64,
    /// Partitions the workers own now.
    pub assigned: u64,
    /// Partitions stopped at a batch they cannot read, waiting for a human.
    pub parked: u64,
    /// Records that are no request, copied to the dead-letter topic.
    pub dead_letters: u64,
    /// Answers not produced because their partition had been given up or lost.
    pub answers_dropped: u64,
    /// Requests committed past without any answer (not even a failure response fit).
    pub unanswerable: u64,
    /// Dead letters given up on.
    pub dead_letters_lost: u64,
    /// Share groups: records acquired.
    pub share_acquired: u64,
    /// Share groups: acknowledgements by type (gap, accept, release, reject).
    pub share_acks: [u64; 4],
    /// Share groups: deliveries of records delivered before.
    pub share_redelivered: u64,
    /// Share groups: acknowledgements the broker refused.
    pub share_acks_refused: u64,
    /// Produce attempts that failed and were tried again: Kafka trouble short of an outage.
    pub produce_retries: u64,
    /// Offset commits accepted (exactly-once: transactions committed).
    pub commits: u64,
    /// Offset commits that failed (exactly-once: transactions aborted).
    pub commit_failures: u64,
    /// Requests whose prepared revision came from a worker's cache.
    pub cache_hits: u64,
    /// Requests whose revision was loaded from the store.
    pub cache_misses: u64,
    /// Assignments the workers received from the group, the first included.
    pub rebalances: u64,
    /// Record fetched to response acknowledged.
    pub request_duration: HistogramTotals,
    /// The runtime call alone.
    pub runtime_duration: HistogramTotals,
    /// Runtime request bodies.
    pub runtime_bytes: HistogramTotals,
}

impl Totals {
    fn add(&mut self, slot: &SlotCells) {
        self.ok += slot.load(REQUESTS);
        for (i, f) in self.failures.iter_mut().enumerate() {
            *f += slot.load(REQUESTS + 1 + i);
        }
        self.in_flight += slot.load(IN_FLIGHT);
        self.assigned += slot.load(ASSIGNED);
        self.parked += slot.load(PARKED);
        self.dead_letters += slot.load(DEAD_LETTERS);
        self.answers_dropped += slot.load(ANSWERS_DROPPED);
        self.unanswerable += slot.load(UNANSWERABLE);
        self.dead_letters_lost += slot.load(DEAD_LETTERS_LOST);
        self.share_acquired += slot.load(SHARE_ACQUIRED);
        for (i, a) in self.share_acks.iter_mut().enumerate() {
            *a += slot.load(SHARE_ACKS + i);
        }
        self.share_redelivered += slot.load(SHARE_REDELIVERED);
        self.share_acks_refused += slot.load(SHARE_ACKS_REFUSED);
        self.produce_retries += slot.load(PRODUCE_RETRIES);
        self.commits += slot.load(COMMITS);
        self.commit_failures += slot.load(COMMIT_FAILURES);
        self.cache_hits += slot.load(CACHE_HITS);
        self.cache_misses += slot.load(CACHE_MISSES);
        self.rebalances += slot.load(REBALANCES);
        self.request_duration
            .add(slot, REQUEST_DURATION, DURATION_BUCKETS.len());
        self.runtime_duration
            .add(slot, RUNTIME_DURATION, DURATION_BUCKETS.len());
        self.runtime_bytes
            .add(slot, RUNTIME_BYTES, BYTE_BUCKETS.len());
    }
}

/// A live worker as the board shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerReading {
    /// The worker's slot number (worker i of N).
    pub index: usize,
    /// Its process id, which the health endpoints name a hung worker by.
    pub pid: u32,
    /// When it last beat ([`monotonic_ms`]).
    pub beat_ms: u64,
    /// Where it is: booting, joining the group, consuming, stopping.
    pub state: WorkerState,
    /// Its calls to the group coordinator fail: Kafka is unreachable from it.
    pub kafka_unreachable: bool,
    /// Topics it produces to that are missing now (deleted).
    pub topics_missing: Vec<Produced>,
}

/// The board at one moment.
#[derive(Debug, Clone)]
pub struct Reading {
    /// When the supervisor's loop last turned ([`monotonic_ms`]; 0 before its first turn).
    pub supervisor_tick_ms: u64,
    /// How many workers the supervisor means to run.
    pub target_workers: usize,
    /// The service is stopping.
    pub stopping: bool,
    /// Restarts per [`ExitCause::ALL`].
    pub restarts: [u64; ExitCause::ALL.len()],
    /// The slots with a live worker.
    pub workers: Vec<WorkerReading>,
    /// Every slot's counters and gauges, summed.
    pub totals: Totals,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_outlive_a_worker_and_gauges_do_not() {
        let board = Board::private();
        board.worker_forking(1);
        board.worker_forked(1, 4242);
        let slot = board.slot(1);
        slot.set_state(WorkerState::Consuming);
        slot.set_assigned(3);
        slot.in_flight(true);
        slot.request_done(None, Duration::from_millis(3));
        slot.request_done(
            Some("TrafoExecutionNotFoundError"),
            Duration::from_secs(400),
        );
        slot.request_done(Some("SomethingNew"), Duration::from_millis(1));
        let r = board.read();
        assert_eq!(r.workers.len(), 1);
        assert_eq!(r.workers[0].pid, 4242);
        assert_eq!(r.workers[0].state, WorkerState::Consuming);
        assert_eq!((r.totals.in_flight, r.totals.assigned), (1, 3));

        board.worker_exited(1, Some(ExitCause::Signal));
        let r = board.read();
        assert!(r.workers.is_empty());
        assert_eq!((r.totals.in_flight, r.totals.assigned), (0, 0));
        assert_eq!(r.totals.ok, 1);
        let failures =
            |t: &str| r.totals.failures[ERROR_TYPES.iter().position(|k| *k == t).unwrap()];
        assert_eq!(failures("TrafoExecutionNotFoundError"), 1);
        assert_eq!(failures("UnexpectedError"), 1);
        assert_eq!(r.restarts, [0, 1, 0, 0]);
        // 3 ms in the 5 ms bucket, 1 ms in the first, 400 s above every bound.
        let h = &r.totals.request_duration;
        assert_eq!(h.count, 3);
        assert_eq!(h.buckets.iter().sum::<u64>(), 2);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[2], 1);
        assert_eq!(h.sum_units, 400_004_000_000);
    }

    #[test]
    fn a_stopping_worker_stays_stopping() {
        let board = Board::private();
        board.worker_forking(0);
        board.worker_forked(0, 1);
        let slot = board.slot(0);
        slot.set_state(WorkerState::Consuming);
        slot.set_state(WorkerState::Stopping);
        slot.set_state(WorkerState::Joining);
        assert_eq!(board.read().workers[0].state, WorkerState::Stopping);
        // Its replacement boots afresh.
        board.worker_exited(0, None);
        board.worker_forking(0);
        board.worker_forked(0, 2);
        slot.set_state(WorkerState::Consuming);
        assert_eq!(board.read().workers[0].state, WorkerState::Consuming);
    }

    #[test]
    fn a_gauge_never_wraps_below_zero() {
        let board = Board::private();
        let slot = board.slot(0);
        slot.parked(false);
        assert_eq!(board.read().totals.parked, 0);
    }

    /// Every error type a failure response can carry has its own label. The match has no
    /// wildcard, so a new variant fails to compile here until it is listed.
    #[test]
    fn every_protocol_error_type_is_known() {
        use crate::protocol::{Missing, ProtocolError as E};
        let s = String::new;
        let id = uuid::Uuid::nil();
        let all = [
            E::NotARequest { reason: s() },
            E::InvalidRequest {
                job_id: None,
                reason: s(),
            },
            E::Missing(Missing::Revision { id }),
            E::Missing(Missing::ReleasedOfGroup { group: id }),
            E::Missing(Missing::Nested {
                root: id,
                missing: id,
            }),
            E::WiringMismatch {
                revision: id,
                reason: s(),
            },
            E::InvalidRevision {
                revision: id,
                reason: s(),
            },
            E::StoreUnavailable { reason: s() },
            E::RuntimeUnreachable { reason: s() },
            E::RuntimeAnswerNotJson {
                status: 0,
                reason: s(),
                body_start: s(),
            },
            E::RuntimeResultInvalid {
                status: 0,
                reason: s(),
                body_start: s(),
            },
            E::RuntimeAnswerTooLarge { reason: s() },
            E::ResponseTooLarge { reason: s() },
            E::Internal { reason: s() },
        ];
        for e in &all {
            match e {
                E::NotARequest { .. }
                | E::InvalidRequest { .. }
                | E::Missing(_)
                | E::WiringMismatch { .. }
                | E::InvalidRevision { .. }
                | E::StoreUnavailable { .. }
                | E::RuntimeUnreachable { .. }
                | E::RuntimeAnswerNotJson { .. }
                | E::RuntimeResultInvalid { .. }
                | E::RuntimeAnswerTooLarge { .. }
                | E::ResponseTooLarge { .. }
                | E::Internal { .. } => {}
            }
            assert!(ERROR_TYPES.contains(&e.error_type()), "{}", e.error_type());
        }
        let distinct: std::collections::HashSet<_> = all.iter().map(|e| e.error_type()).collect();
        assert_eq!(
            distinct.len() + 1,
            ERROR_TYPES.len(),
            "a label no error carries"
        );
    }
}

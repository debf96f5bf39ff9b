//! What the service counts and how operators read it: Prometheus metrics and the liveness and
//! readiness probes of the whole prefork service.
//!
//! * [`board`]: the shared memory layout: the supervisor's control area and one slot of
//!   counters, histograms and gauges per worker index. Mapped before the first fork, so every
//!   worker writes into the same pages and counts survive the worker that made them.
//! * [`exposition`]: one reading of the board (and the group's lag) as OpenMetrics text,
//!   encoded by the prometheus-client crate.
//! * [`lag`]: the group's lag per partition, and [`LagSource`], through which the metrics
//!   process reads it without knowing Kafka (whoever starts the process hands one in).
//! * [`endpoint`]: the metrics process (the supervisor's sidecar): `/metrics`, `/livez`,
//!   `/readyz` over HTTP, and the lag read at scrape time.
//!
//! A worker records through [`worker`], the slot its process fills.

pub mod board;
pub mod endpoint;
pub mod exposition;
pub mod lag;

use std::sync::OnceLock;

pub use board::{Board, SlotCells, WorkerState};
pub use lag::{LagSource, PartitionLag};

/// The slot this process records into.
static SLOT: OnceLock<SlotCells> = OnceLock::new();

/// Makes this process record into `board`'s slot `index`: a worker calls it first thing after
/// the fork. Without it (`exec`, tests), records go to a board of the process' own.
pub fn record_as_worker(board: Board, index: usize) {
    if SLOT.set(board.slot(index)).is_err() {
        // Something recorded before this (in the supervisor, before the fork): the worker's
        // counts would go to a board no one reads. A bug, said loudly.
        tracing::error!(
            worker = index,
            "metrics: this process recorded before it knew its slot; its counts are not shown"
        );
    }
}

/// The slot this process records into.
pub fn worker() -> SlotCells {
    *SLOT.get_or_init(|| Board::private().slot(0))
}

//! Whether a record is executed, by the crashes of the workers that executed it before
//! ([`crate::poison`]): a request that ended two workers is refused; one that was in flight
//! when a worker died runs alone, so that a second crash is its own and not a neighbour's.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::kafka::RequestRecord;
use crate::poison::{Executing, RecordAt, Verdict};

/// Lets records of this worker execute side by side, or one alone.
#[derive(Debug, Default)]
pub struct Admission {
    /// Shared by executions side by side, taken whole by one that must run alone. tokio's lock
    /// is fair: once one waits to run alone, later records wait behind it.
    alone: RwLock<()>,
}

/// What becomes of one record.
pub enum Admitted<'a> {
    /// Execute it; the guard publishes it as executing (and keeps it alone, if it must be)
    /// until dropped.
    Run {
        /// Held until the execution ends.
        _running: Running<'a>,
    },
    /// Do not execute it; answer with this reason.
    Refused(String),
}

/// What an admitted execution holds while it runs.
pub struct Running<'a> {
    /// Published in the crash table: a crash now counts against the record.
    _executing: Option<Executing>,
    /// Beside others, or alone.
    _turn: Turn<'a>,
}

/// Held for its drop: the lock's share or the whole of it.
enum Turn<'a> {
    Beside { _shared: RwLockReadGuard<'a, ()> },
    Alone { _whole: RwLockWriteGuard<'a, ()> },
}

impl Admission {
    /// Decides for `record`; waits while it must run alone and others run (or the other way
    /// round).
    pub async fn admit(&self, record: &RequestRecord) -> Admitted<'_> {
        let at = RecordAt {
            partition: record.partition,
            offset: record.offset,
            fingerprint: record.value.as_ref().map_or(0, Vec::len) as u32,
        };
        if let Some(d) = record.deliveries.filter(|d| d.is_last()) {
            tracing::error!(
                partition = at.partition,
                offset = at.offset,
                deliveries = d.count,
                "not executed: the share group delivered this request {} times without an answer (its delivery limit); answering with a failure",
                d.count
            );
            return Admitted::Refused(format!(
                "the request was delivered {} times without an answer (the share group's delivery limit is {}): its executions ended their workers or outlasted the acquisition lock, so it is not executed again",
                d.count, d.limit
            ));
        }
        let (table, slot) = crate::poison::worker();
        let turn = match table.verdict(at) {
            Verdict::Refuse { crashes, cause } => {
                tracing::error!(
                    partition = at.partition,
                    offset = at.offset,
                    crashes,
                    "not executed: this request ended {crashes} workers (last: {cause}); answering with a failure"
                );
                return Admitted::Refused(Verdict::refusal(crashes, cause));
            }
            Verdict::ExecuteAlone { cause } => {
                tracing::warn!(
                    partition = at.partition,
                    offset = at.offset,
                    "a worker died executing this request ({cause}); executing it alone"
                );
                Turn::Alone {
                    _whole: self.alone.write().await,
                }
            }
            Verdict::Execute => Turn::Beside {
                _shared: self.alone.read().await,
            },
        };
        Admitted::Run {
            _running: Running {
                _executing: table.executing(slot, at),
                _turn: turn,
            },
        }
    }
}

//! Poison requests: a request whose execution kills its worker (an abort, a stack overflow, the
//! OOM killer) would otherwise kill every replacement too, as each one fetches it again from the
//! partition's committed offset, and the requests behind it would wait for good.
//!
//! The [`CrashTable`] lives in memory the supervisor maps before its first fork, so every
//! worker and the supervisor see the same cells. It has two parts:
//!
//! * **executing**: one row of `window` entries per worker slot, where the worker publishes the
//!   (partition, offset) of every request while it executes it. Only that worker writes its row;
//!   the supervisor reads it once the worker is dead (nothing writes it then).
//! * **crashes**: a ring of [`CRASH_RECORDS`] records of (partition, offset, crashes, cause),
//!   written by the supervisor alone: when it reaps a worker that died abnormally it adds one
//!   crash to every request of the dead worker's row. Full, the ring overwrites its oldest
//!   record. Workers read it before they execute a record; the request topic is one topic and
//!   partitions move between workers after a crash, so the ring is shared by all of them.
//!
//! What a worker does with a record ([`Verdict`]): none crashed → execute as usual; crashed
//! once → execute it *alone* (nothing else in flight on that worker), so that a second crash
//! is its own and not a neighbour's; crashed twice → do not execute it, answer with a failure
//! naming the cause. So an innocent request that happened to be in flight beside a poison one
//! is executed again (alone, and answered), and only the poison one is refused.
//!
//! The ring is never cleaned by commits: a record stays until newer crashes push it out. An
//! offset once committed past is not delivered again unless the group's offsets are reset,
//! when the same request at the same offset is the same poison. Each entry also carries the
//! request value's length, so that a different record at a recycled offset (a topic deleted
//! and created again) is not mistaken for it.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::supervisor::{EXIT_BOOT_FAILURE, EXIT_FATAL, Ended, ExitCause, SupervisorError};

/// Crash records the ring holds; the oldest goes when a new one does not fit. A worker crash
/// adds at most its in-flight window, and a crashed request is delivered again within seconds
/// of the crash, so a poison request's record is still there when it matters.
pub const CRASH_RECORDS: usize = 1024;
/// The most executing entries per worker: a larger `--max-in-flight` runs the executions
/// beyond it untracked, and keeps the table small (a worker's row is 16 bytes per entry).
pub const MAX_WINDOW: usize = 1024;
/// Crashes after which a request is refused instead of executed.
pub const CRASHES_REFUSED: u32 = 2;

/// Cells per crash record: key, offset, crashes and cause.
const RECORD_WORDS: usize = 3;
/// Cells per executing entry: key, offset.
const ENTRY_WORDS: usize = 2;
/// Header: the ring's next write position.
const HEADER_WORDS: usize = 1;

/// Where a request is, and what tells it from another at the same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAt {
    /// Partition of the request topic.
    pub partition: i32,
    /// Offset in that partition.
    pub offset: i64,
    /// The request value's length (its low 31 bits count): a different record at a recycled
    /// offset is not the one that crashed.
    pub fingerprint: u32,
}

impl RecordAt {
    /// The cell that identifies an entry: never 0 (0 is an empty entry), as its top bit is
    /// set; the fingerprint keeps 31 bits.
    fn key(self) -> u64 {
        (1 << 63)
            | (u64::from(self.fingerprint & 0x7fff_ffff) << 32)
            | u64::from(self.partition as u32)
    }

    fn from_key(key: u64, offset: u64) -> RecordAt {
        RecordAt {
            partition: (key & 0xffff_ffff) as u32 as i32,
            offset: offset as i64,
            fingerprint: ((key >> 32) & 0x7fff_ffff) as u32,
        }
    }
}

/// How a worker died, as far as its requests are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// A signal killed it (SIGABRT from a failed allocation or a stack overflow, SIGSEGV,
    /// SIGKILL from the OOM killer or an operator).
    Signal(i32),
    /// It stopped beating and the supervisor killed it (a request that freezes its thread).
    Hung,
    /// It exited by itself with this code after a panic outside the executions' tasks.
    Exit(i32),
}

impl Crash {
    fn encode(self) -> u64 {
        match self {
            Crash::Signal(n) => (1 << 32) | u64::from(n as u32),
            Crash::Hung => 2 << 32,
            Crash::Exit(code) => (3 << 32) | u64::from(code as u32),
        }
    }

    fn decode(cell: u64) -> Crash {
        let n = (cell & 0xffff_ffff) as u32 as i32;
        match cell >> 32 {
            2 => Crash::Hung,
            3 => Crash::Exit(n),
            _ => Crash::Signal(n),
        }
    }
}

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Crash::Signal(n) => match nix::sys::signal::Signal::try_from(*n) {
                Ok(sig) => write!(f, "killed by {}", sig.as_str()),
                Err(_) => write!(f, "killed by signal {n}"),
            },
            Crash::Hung => f.write_str("it stopped responding and was killed after --timeout"),
            Crash::Exit(code) => write!(f, "it exited with code {code}"),
        }
    }
}

impl Crash {
    /// Whether a worker's end, as the supervisor saw it, blames the requests it was executing,
    /// and as what. Blamed: a signal (an abort, a segfault, the OOM killer's or an operator's
    /// SIGKILL), being killed as hung (a request can freeze the worker's one thread), and an
    /// exit code of its own other than the service's (101: a panic outside the executions'
    /// tasks). Not blamed: a stop the supervisor asked for (a graceful stop, a reload, a
    /// rescale, and the SIGKILL at the end of their grace period), a clean exit, the worker's
    /// reported errors (1: Kafka; [`EXIT_FATAL`]: refused by the group) and boot failures, which
    /// no request caused.
    pub fn of(cause: Option<ExitCause>, ended: Ended) -> Option<Crash> {
        match (cause?, ended) {
            (ExitCause::Hung, _) => Some(Crash::Hung),
            (ExitCause::BootFailure, _) => None,
            (_, Ended::Signal(sig)) => Some(Crash::Signal(sig as i32)),
            (_, Ended::Code(0 | 1 | EXIT_BOOT_FAILURE | EXIT_FATAL)) => None,
            (_, Ended::Code(code)) => Some(Crash::Exit(code)),
        }
    }
}

/// What a worker does with a record, by the crashes of workers that executed it before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No worker died executing it.
    Execute,
    /// A worker died while executing it (perhaps because of a neighbour): execute it with
    /// nothing else in flight, so that another crash is its own.
    ExecuteAlone {
        /// How the last worker died.
        cause: Crash,
    },
    /// It ended [`CRASHES_REFUSED`] workers: answer with a failure, do not execute it.
    Refuse {
        /// How many workers died executing it.
        crashes: u32,
        /// How the last one died.
        cause: Crash,
    },
}

impl Verdict {
    /// The failure response's reason for a refused request.
    pub fn refusal(crashes: u32, cause: Crash) -> String {
        let times = match crashes {
            2 => "twice".to_owned(),
            n => format!("{n} times"),
        };
        format!("this request ended its worker {times} (last: {cause}); it is not executed again")
    }
}

/// The table in its cells: executing rows for `slots` workers of `window` entries each, then the
/// crash ring. A copyable handle; the cells outlive every user.
#[derive(Debug, Clone, Copy)]
pub struct CrashTable {
    cells: &'static [AtomicU64],
    slots: usize,
    window: usize,
}

impl CrashTable {
    /// Cells a table for `slots` workers of `window` executing entries each needs.
    pub fn words(slots: usize, window: usize) -> usize {
        HEADER_WORDS + slots * window * ENTRY_WORDS + CRASH_RECORDS * RECORD_WORDS
    }

    /// Maps the table into memory every process forked afterwards shares (the supervisor
    /// calls this before its first fork).
    pub fn shared(slots: usize, window: usize) -> Result<CrashTable, SupervisorError> {
        let cells = crate::supervisor::shared_cells(Self::words(slots, window))?;
        Ok(CrashTable {
            cells,
            slots,
            window,
        })
    }

    /// A table of this process alone (a worker without the supervisor: `exec`, tests), where
    /// no worker ever dies.
    pub fn private(slots: usize, window: usize) -> CrashTable {
        let cells: Vec<AtomicU64> = (0..Self::words(slots, window))
            .map(|_| AtomicU64::new(0))
            .collect();
        CrashTable {
            cells: Vec::leak(cells),
            slots,
            window,
        }
    }

    fn row(&self, slot: usize) -> &'static [AtomicU64] {
        let slot = slot.min(self.slots.saturating_sub(1));
        let start = HEADER_WORDS + slot * self.window * ENTRY_WORDS;
        &self.cells[start..start + self.window * ENTRY_WORDS]
    }

    fn ring(&self) -> &'static [AtomicU64] {
        &self.cells[HEADER_WORDS + self.slots * self.window * ENTRY_WORDS..]
    }

    // The worker's side.

    /// Publishes that worker `slot` executes the request at `at`, until the returned guard is
    /// dropped. `None` when the worker's row is full (more in flight than the window the table
    /// was mapped with, after a reload raised `--max-in-flight`): that execution cannot be
    /// blamed for a crash.
    pub fn executing(&self, slot: usize, at: RecordAt) -> Option<Executing> {
        let row = self.row(slot);
        row.chunks(ENTRY_WORDS).find_map(|entry| {
            if entry[0].load(Ordering::Relaxed) != 0 {
                return None;
            }
            // Offset first, key last: the supervisor reads the row only when the worker is
            // dead, and a worker dying between the two stores leaves the entry empty.
            entry[1].store(at.offset as u64, Ordering::Relaxed);
            entry[0].store(at.key(), Ordering::Release);
            Some(Executing { key: &entry[0] })
        })
    }

    /// What to do with the request at `at`, by the crashes recorded for it.
    pub fn verdict(&self, at: RecordAt) -> Verdict {
        let key = at.key();
        for record in self.ring().chunks(RECORD_WORDS) {
            if record[0].load(Ordering::Acquire) != key
                || record[1].load(Ordering::Relaxed) != at.offset as u64
            {
                continue;
            }
            let state = record[2].load(Ordering::Relaxed);
            // The supervisor may have reused the record meanwhile: believe what was read only
            // when the key is still the same.
            if record[0].load(Ordering::Acquire) != key {
                continue;
            }
            let crashes = (state >> 48) as u32;
            let cause = Crash::decode(state & 0xffff_ffff_ffff);
            return match crashes {
                0 => Verdict::Execute,
                n if n >= CRASHES_REFUSED => Verdict::Refuse { crashes: n, cause },
                _ => Verdict::ExecuteAlone { cause },
            };
        }
        Verdict::Execute
    }

    // The supervisor's side: it alone writes the ring.

    /// Worker `slot` died as `crash`: each request it was executing gets one crash more.
    /// Returns those requests with their crash counts now. Its row is cleared for the next
    /// worker of the slot.
    pub fn worker_died(&self, slot: usize, crash: Crash) -> Vec<(RecordAt, u32)> {
        let mut blamed = Vec::new();
        for entry in self.row(slot).chunks(ENTRY_WORDS) {
            let key = entry[0].swap(0, Ordering::Acquire);
            if key == 0 {
                continue;
            }
            let at = RecordAt::from_key(key, entry[1].load(Ordering::Relaxed));
            blamed.push((at, self.add_crash(at, crash)));
        }
        blamed
    }

    /// Worker `slot` stopped without a crash (asked to, or exited cleanly): what it was
    /// executing is not blamed; its row is cleared for the next worker of the slot.
    pub fn worker_gone(&self, slot: usize) {
        for entry in self.row(slot).chunks(ENTRY_WORDS) {
            entry[0].store(0, Ordering::Relaxed);
        }
    }

    /// One crash more for `at`; its crash count now.
    fn add_crash(&self, at: RecordAt, crash: Crash) -> u32 {
        let key = at.key();
        let ring = self.ring();
        let existing = ring.chunks(RECORD_WORDS).find(|r| {
            r[0].load(Ordering::Relaxed) == key && r[1].load(Ordering::Relaxed) == at.offset as u64
        });
        let (record, before) = match existing {
            Some(r) => (r, (r[2].load(Ordering::Relaxed) >> 48) as u32),
            None => {
                let next = self.cells[0].fetch_add(1, Ordering::Relaxed) as usize % CRASH_RECORDS;
                let r = &ring[next * RECORD_WORDS..(next + 1) * RECORD_WORDS];
                // Empty first: a worker reading meanwhile sees no record rather than a mix of
                // the old one and the new.
                r[0].store(0, Ordering::Release);
                r[1].store(at.offset as u64, Ordering::Relaxed);
                (r, 0)
            }
        };
        let crashes = before.saturating_add(1).min(u32::from(u16::MAX));
        record[2].store(
            (u64::from(crashes) << 48) | crash.encode(),
            Ordering::Relaxed,
        );
        record[0].store(key, Ordering::Release);
        crashes
    }
}

/// A request published as executing; dropped when its execution ends, however it ends.
#[derive(Debug)]
pub struct Executing {
    key: &'static AtomicU64,
}

impl Drop for Executing {
    fn drop(&mut self) {
        self.key.store(0, Ordering::Release);
    }
}

/// The table and slot this process publishes into.
static WORKER: OnceLock<(CrashTable, usize)> = OnceLock::new();

/// Makes this process publish into `table` as worker `slot`: a worker calls it first thing
/// after the fork. Without it (`exec`, tests), a table of the process' own is used, where no
/// request ever crashed.
pub fn record_as_worker(table: CrashTable, slot: usize) {
    let _ = WORKER.set((table, slot));
}

/// The table this process publishes into, and its slot there.
pub fn worker() -> (CrashTable, usize) {
    *WORKER.get_or_init(|| (CrashTable::private(1, 1), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, offset: i64) -> RecordAt {
        RecordAt {
            partition,
            offset,
            fingerprint: 100,
        }
    }

    const ABORT: Crash = Crash::Signal(6);

    #[test]
    fn a_request_that_kills_two_workers_is_refused() {
        let table = CrashTable::private(2, 4);
        let poison = at(3, 41);
        assert_eq!(table.verdict(poison), Verdict::Execute);

        let _executing = table.executing(0, poison).unwrap();
        std::mem::forget(_executing); // the worker dies with it in flight
        assert_eq!(table.worker_died(0, ABORT), vec![(poison, 1)]);
        assert_eq!(
            table.verdict(poison),
            Verdict::ExecuteAlone { cause: ABORT }
        );

        // Its partition moved to worker 1, which dies with it too.
        std::mem::forget(table.executing(1, poison).unwrap());
        assert_eq!(table.worker_died(1, Crash::Signal(9)), vec![(poison, 2)]);
        let verdict = table.verdict(poison);
        assert_eq!(
            verdict,
            Verdict::Refuse {
                crashes: 2,
                cause: Crash::Signal(9)
            }
        );
        assert_eq!(
            Verdict::refusal(2, Crash::Signal(6)),
            "this request ended its worker twice (last: killed by SIGABRT); it is not executed again"
        );
        // Elsewhere nothing changed.
        assert_eq!(table.verdict(at(3, 42)), Verdict::Execute);
        assert_eq!(table.verdict(at(2, 41)), Verdict::Execute);
    }

    #[test]
    fn only_what_was_in_flight_is_blamed() {
        let table = CrashTable::private(1, 3);
        let done = table.executing(0, at(0, 1)).unwrap();
        let _a = table.executing(0, at(0, 2)).unwrap();
        let _b = table.executing(0, at(1, 7)).unwrap();
        drop(done);
        let mut blamed = table.worker_died(0, ABORT);
        blamed.sort_by_key(|(a, _)| (a.partition, a.offset));
        assert_eq!(blamed, vec![(at(0, 2), 1), (at(1, 7), 1)]);
        assert_eq!(table.verdict(at(0, 1)), Verdict::Execute);
        // The row is clear for the next worker of the slot.
        assert!(table.worker_died(0, ABORT).is_empty());
    }

    #[test]
    fn a_clean_stop_blames_nothing() {
        let table = CrashTable::private(1, 2);
        std::mem::forget(table.executing(0, at(0, 5)).unwrap());
        table.worker_gone(0);
        assert!(table.worker_died(0, ABORT).is_empty());
        assert_eq!(table.verdict(at(0, 5)), Verdict::Execute);
    }

    #[test]
    fn a_full_row_publishes_nothing_more() {
        let table = CrashTable::private(1, 1);
        let first = table.executing(0, at(0, 1));
        assert!(first.is_some());
        assert!(table.executing(0, at(0, 2)).is_none());
        drop(first);
        assert!(table.executing(0, at(0, 2)).is_some());
    }

    #[test]
    fn another_record_at_the_same_offset_is_not_the_poison() {
        let table = CrashTable::private(1, 1);
        for _ in 0..2 {
            std::mem::forget(table.executing(0, at(0, 9)).unwrap());
            table.worker_died(0, Crash::Hung);
        }
        assert!(matches!(table.verdict(at(0, 9)), Verdict::Refuse { .. }));
        let recreated = RecordAt {
            fingerprint: 7,
            ..at(0, 9)
        };
        assert_eq!(table.verdict(recreated), Verdict::Execute);
    }

    #[test]
    fn the_oldest_record_goes_when_the_ring_is_full() {
        let table = CrashTable::private(1, 1);
        for offset in 0..CRASH_RECORDS as i64 + 1 {
            std::mem::forget(table.executing(0, at(0, offset)).unwrap());
            table.worker_died(0, ABORT);
        }
        assert_eq!(table.verdict(at(0, 0)), Verdict::Execute, "evicted");
        assert_eq!(
            table.verdict(at(0, 1)),
            Verdict::ExecuteAlone { cause: ABORT }
        );
        assert_eq!(
            table.verdict(at(0, CRASH_RECORDS as i64)),
            Verdict::ExecuteAlone { cause: ABORT }
        );
    }

    #[test]
    fn what_a_worker_end_blames() {
        use nix::sys::signal::Signal;
        let of = Crash::of;
        assert_eq!(
            of(Some(ExitCause::Signal), Ended::Signal(Signal::SIGABRT)),
            Some(Crash::Signal(6))
        );
        assert_eq!(
            of(Some(ExitCause::Hung), Ended::Signal(Signal::SIGKILL)),
            Some(Crash::Hung)
        );
        assert_eq!(
            of(Some(ExitCause::Exit), Ended::Code(101)),
            Some(Crash::Exit(101))
        );
        for code in [0, 1, EXIT_FATAL] {
            assert_eq!(of(Some(ExitCause::Exit), Ended::Code(code)), None);
        }
        assert_eq!(
            of(Some(ExitCause::BootFailure), Ended::Code(EXIT_BOOT_FAILURE)),
            None
        );
        // Asked to stop, even when killed at the end of the grace period.
        assert_eq!(of(None, Ended::Signal(Signal::SIGKILL)), None);
    }

    #[test]
    fn keys_and_causes_round_trip() {
        for a in [at(0, 0), at(i32::MAX, i64::MAX), at(-1, 5)] {
            assert_eq!(RecordAt::from_key(a.key(), a.offset as u64), a);
            assert_ne!(a.key(), 0);
        }
        for c in [
            Crash::Signal(6),
            Crash::Hung,
            Crash::Exit(101),
            Crash::Exit(-3),
        ] {
            assert_eq!(Crash::decode(c.encode()), c);
        }
        assert_eq!(Crash::Signal(9).to_string(), "killed by SIGKILL");
    }
}

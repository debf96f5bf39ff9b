//! The supervisor: forks N worker processes, watches them and keeps them alive, the way
//! gunicorn's arbiter does. It knows nothing of hetida or Kafka: a [`WorkerFactory`] says what a
//! worker does.
//!
//! The supervisor process never has a thread, an async runtime or anything async: `fork` in a
//! multi-threaded process leaves the child with locks held by threads that no longer exist.
//! Signals reach it through signal-hook's self-pipe, read with `poll`. Each worker resets the
//! inherited signal handlers and builds its own runtime after the fork.
//!
//! | signal | effect |
//! |---|---|
//! | TERM, INT | graceful stop: workers finish in-flight work within the grace period, then KILL |
//! | QUIT | immediate stop |
//! | HUP | reload (the factory's data), then replace the workers one by one, each replacement beating before the next slot's turn |
//! | TTIN / TTOU | one worker more / fewer; all stop, then the new set starts (partition ownership changes) |
//! | CHLD | reap; a crashed worker is restarted with backoff |
//!
//! A reload or rescale takes many turns of the main loop (`Transition`); the loop keeps
//! handling signals and hung workers meanwhile, so a TERM during a rolling replace stops the
//! service within the grace period as at any other time.
//!
//! A worker proves it is alive by writing to its heartbeat pipe; one silent for longer than the
//! timeout gets SIGABRT, then SIGKILL, and is replaced. A worker exiting with
//! [`EXIT_BOOT_FAILURE`] repeatedly makes the supervisor stop everything and fail.
//!
//! Besides the workers the factory may have a sidecar (the metrics endpoint): forked like a
//! worker, restarted when it ends, stopped after the workers. What the supervisor does is told
//! to the factory ([`Event`]) without a thread or a message: the metrics keep it in memory mapped
//! before the first fork ([`shared_cells`]), which every child shares.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, kill, sigaction, sigprocmask,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use crate::backoff::Backoff;

mod error;
mod shared;
pub use error::{EXIT_BOOT_FAILURE, EXIT_FATAL, SupervisorError};
pub use shared::shared_cells;

/// Boot failures in a row of one slot after which the supervisor gives up.
const BOOT_FAILURE_LIMIT: u32 = 3;
/// The signals the supervisor acts on (the table above). A worker gets their default actions
/// back, except TERM and INT, which it handles itself.
const SIGNALS: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGCHLD,
];

/// What the worker processes are.
pub trait WorkerFactory {
    /// Runs in the supervisor on HUP: re-read configuration and data. On error the old state
    /// stays and the workers are not replaced.
    fn reload(&mut self) -> Result<(), String>;
    /// Runs in the forked child; its return value is the child's exit code. SIGTERM (and
    /// SIGINT) asks it to stop gracefully: it must handle them itself (tokio::signal or
    /// signal-hook), as nothing else stops it but SIGKILL after the grace period.
    fn run_worker(&self, slot: WorkerSlot) -> i32;
    /// Whether workers can come and go one at a time (TTIN forks one more, TTOU retires the
    /// last with SIGUSR2), because something outside decides what each does (a consumer
    /// group). When not, TTIN/TTOU stop every worker before the new set starts, as a change of
    /// their count changes what every one of them does.
    fn scales_in_place(&self) -> bool {
        false
    }
    /// The most workers TTIN may raise the count to (the shared memory holds this many slots).
    fn max_workers(&self) -> usize {
        usize::MAX
    }
    /// Told what the supervisor does, in the supervisor process: must return at once and must
    /// not start a thread or anything async (the supervisor forks afterwards).
    fn observe(&self, _event: Event) {}
    /// Whether the service has a sidecar process besides its workers (the metrics endpoint):
    /// forked first, restarted with backoff when it exits, stopped after the workers.
    fn has_sidecar(&self) -> bool {
        false
    }
    /// Runs in the forked sidecar; its return value is the exit code. SIGTERM ends it (its
    /// default action, restored after the fork); SIGINT is ignored (a terminal's Ctrl-C reaches
    /// the supervisor, which stops it after the workers).
    fn run_sidecar(&self) -> i32 {
        0
    }
}

/// What the supervisor tells [`WorkerFactory::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A turn of the main loop (at least every 500 ms): proof that the supervisor runs, with
    /// how many workers it means to run and whether it is stopping the service.
    Turn {
        /// Slots `0..workers` should each have a working worker.
        workers: usize,
        /// A stop (TERM, INT, QUIT) is under way.
        stopping: bool,
    },
    /// The worker of slot `index` is about to be forked: anything the child may overwrite at
    /// once (its state) is set now, before the child exists.
    Forking {
        /// Its slot.
        index: usize,
    },
    /// The worker of slot `index` was forked as `pid`.
    Forked {
        /// Its slot.
        index: usize,
        /// Its process id.
        pid: u32,
    },
    /// The worker of slot `index` was reaped. `cause` is `None` when the supervisor had asked
    /// it to stop; otherwise its slot gets a new worker.
    Exited {
        /// Its slot.
        index: usize,
        /// Why it ended, when it was not asked to.
        cause: Option<ExitCause>,
        /// How it ended: its exit code or the signal that killed it.
        ended: Ended,
    },
}

/// How a process ended, as `waitpid` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code.
    Code(i32),
    /// This signal killed it.
    Signal(Signal),
}

/// Why a worker ended without being asked to: what its restart is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// It exited by itself (a crash or an error it returned).
    Exit,
    /// A signal killed it (out of memory, an operator's kill -9).
    Signal,
    /// It stopped beating and the supervisor killed it.
    Hung,
    /// It failed to boot ([`EXIT_BOOT_FAILURE`]).
    BootFailure,
}

impl ExitCause {
    /// Every cause, in a fixed order (the metrics' label values).
    pub const ALL: [ExitCause; 4] = [
        ExitCause::Exit,
        ExitCause::Signal,
        ExitCause::Hung,
        ExitCause::BootFailure,
    ];

    /// The cause as a metric label value.
    pub fn label(self) -> &'static str {
        match self {
            ExitCause::Exit => "exit",
            ExitCause::Signal => "signal",
            ExitCause::Hung => "hung",
            ExitCause::BootFailure => "boot_failure",
        }
    }
}

/// The sidecar process, while the service has one.
#[derive(Debug)]
struct Sidecar {
    /// Its pid while it runs.
    pid: Option<Pid>,
    /// Its next start, after an exit (with backoff).
    restart_at: Option<Instant>,
    /// When the running one was forked: one that ran a while resets the backoff.
    started: Instant,
    /// The supervisor asked it to stop (a reload): its exit is no crash.
    replacing: bool,
    /// Paces its restarts.
    backoff: Backoff,
}

/// How the supervisor runs its workers; `serve` fills it from the configuration.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// How many worker processes to keep running (N). TTIN and TTOU change it at run time,
    /// never below 1.
    pub workers: usize,
    /// Silence after which a worker counts as hung; zero turns the check off.
    pub timeout: Duration,
    /// How long workers get to finish in-flight work on a graceful stop.
    pub graceful_timeout: Duration,
    /// Where to write the supervisor's pid, so an operator can signal it (`kill -HUP`); removed
    /// again when the supervisor returns.
    pub pid_file: Option<PathBuf>,
}

fn os(context: &'static str) -> impl FnOnce(nix::Error) -> SupervisorError {
    move |e| SupervisorError::Os {
        context,
        source: std::io::Error::from(e),
    }
}

/// Who a worker is, handed to it after the fork.
#[derive(Debug)]
pub struct WorkerSlot {
    /// Which of the `count` slots this worker fills, `0..count`. A restarted or replaced worker
    /// gets the index of the one it replaces, so with `count` it decides the worker's share of
    /// the work.
    pub index: usize,
    /// How many slots the supervisor runs (N). It changes only with TTIN/TTOU, which stop every
    /// worker first, so all workers alive at once agree on it.
    pub count: usize,
    /// Starts at 1 and goes up with every successful reload (HUP) and every rescale
    /// (TTIN/TTOU): which configuration the worker was forked with, for its log lines.
    pub generation: u64,
    /// The worker's end of its heartbeat pipe; see [`WorkerSlot::heartbeat`].
    heartbeat: Heartbeat,
}

impl WorkerSlot {
    /// A handle to prove liveness with; clones of it write to the same pipe.
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat.clone()
    }
}

/// The worker's end of its heartbeat pipe: shared, so every clone beats for the same worker, and
/// non-blocking, so a full pipe loses a beat rather than stalling the worker.
#[derive(Debug, Clone)]
pub struct Heartbeat(Arc<UnixStream>);

impl Heartbeat {
    /// Tells the supervisor this worker's event loop is alive. Never blocks.
    pub fn notify(&self) {
        let _ = (&*self.0).write(&[1]);
    }
}

/// A worker process the supervisor forked and has not reaped yet.
#[derive(Debug)]
struct Worker {
    /// The slot it fills; its replacement gets the same one.
    index: usize,
    /// The generation it was forked in; logged when it stops.
    generation: u64,
    /// When it was forked: one that ran longer than 30 s resets its slot's restart backoff.
    started: Instant,
    /// The supervisor's end of its heartbeat pipe, polled with the signal pipe.
    heartbeat: UnixStream,
    /// When a beat last arrived (the fork, before the first): the hung-worker check measures
    /// silence from here.
    last_beat: Instant,
    /// When SIGABRT was sent for silence; SIGKILL follows.
    aborted: Option<Instant>,
    /// A beat has arrived: the worker is up (a rolling replace waits for this before it stops
    /// the next slot's worker).
    beaten: bool,
    /// The supervisor asked it to stop (a reload or rescale): its exit is no crash.
    retiring: bool,
}

/// A change of the worker set that takes several turns of the main loop. The loop keeps
/// handling signals, heartbeats and hung workers meanwhile: a TERM during a rolling replace
/// stops the service within the grace period, as at any other time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    /// Nothing under way.
    Steady,
    /// HUP: slot by slot, the old worker stops, its replacement starts and beats, then the
    /// next slot's turn. `deadline` ends the current slot's wait (SIGKILL for an old worker,
    /// moving on for a replacement that does not beat).
    Rolling {
        /// The slot being replaced.
        slot: usize,
        /// Until when the current step may take.
        deadline: Instant,
    },
    /// TTIN/TTOU: every worker stops (ownership is p mod N == i, so a new N changes every
    /// worker's partitions), then the new set starts. No worker is forked meanwhile.
    Rescaling {
        /// The number of workers to run once all have stopped.
        target: usize,
        /// After it, workers still alive get SIGKILL.
        deadline: Instant,
    },
}

/// What became of a slot's past workers: when to fork the next one, and when to give up. It
/// outlives the workers and is forgotten on a rescale.
#[derive(Debug, Clone)]
struct SlotHistory {
    /// Exits with [`EXIT_BOOT_FAILURE`] in a row; any other exit resets it. At
    /// [`BOOT_FAILURE_LIMIT`] the supervisor stops.
    boot_failures: u32,
    /// The restart delay: each exit since the slot last had a worker that ran longer than 30 s
    /// doubles it (100 ms, at most 5 s, with jitter).
    backoff: Backoff,
    /// The slot's next worker is forked no earlier than this; `None` while it has lost none.
    restart_at: Option<Instant>,
}

impl Default for SlotHistory {
    fn default() -> SlotHistory {
        SlotHistory {
            boot_failures: 0,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            restart_at: None,
        }
    }
}

/// The supervisor's state. It lives in the supervisor process; a freshly forked child drops the
/// parts that are the supervisor's before it becomes a worker.
struct Supervisor<F: WorkerFactory> {
    /// As configured; TTIN/TTOU change `workers`.
    options: SupervisorOptions,
    /// What a worker is: reloaded on HUP, run in each child.
    factory: F,
    /// The workers forked and not reaped yet, by pid.
    workers: HashMap<Pid, Worker>,
    /// Restart bookkeeping, by slot index.
    history: HashMap<usize, SlotHistory>,
    /// The generation workers forked now get; bumped by each successful reload and rescale.
    generation: u64,
    /// A reload or rescale under way.
    transition: Transition,
    /// Read end of the self-pipe signal-hook writes to on every signal, polled with the
    /// heartbeat pipes so that a signal ends the wait at once.
    wake: UnixStream,
    /// One flag per signal of [`SIGNALS`]: set by its handler, taken (and cleared) by the main
    /// loop. The pipe only wakes the loop; these say which signals came.
    flags: Vec<(Signal, Arc<AtomicBool>)>,
    /// The supervisor's signal actions, removed again in each child.
    actions: Vec<signal_hook::SigId>,
    /// Write end of the self-pipe (signal-hook writes to clones of it), kept so that a child
    /// can close it: it is the supervisor's, not the worker's.
    wake_writer: UnixStream,
    /// The sidecar process, when the factory has one.
    sidecar: Option<Sidecar>,
}

/// Refuses to go on in a process with more than one thread: `fork` copies only the calling
/// thread, so a lock another thread holds (the allocator's, a logger's) stays locked in the
/// child for good. The module's rule "no thread in the supervisor" is checked, not trusted.
/// Where `/proc` cannot be read, there is nothing to check with.
fn ensure_single_threaded() -> Result<(), SupervisorError> {
    match std::fs::read_dir("/proc/self/task") {
        Ok(tasks) => match tasks.count() {
            0 | 1 => Ok(()),
            threads => Err(SupervisorError::Threaded { threads }),
        },
        Err(_) => Ok(()),
    }
}

/// Runs the supervisor until a stop signal; returns when every worker has exited.
pub fn run<F: WorkerFactory>(
    options: SupervisorOptions,
    factory: F,
) -> Result<(), SupervisorError> {
    ensure_single_threaded()?;
    let (wake, wake_writer) = UnixStream::pair().map_err(|source| SupervisorError::Os {
        context: "creating the signal pipe",
        source,
    })?;
    wake.set_nonblocking(true).ok();
    wake_writer.set_nonblocking(true).ok();
    let mut flags = Vec::new();
    let mut actions = Vec::new();
    for sig in SIGNALS {
        let flag = Arc::new(AtomicBool::new(false));
        let io = |source| SupervisorError::Os {
            context: "registering signal handlers",
            source,
        };
        actions.push(signal_hook::flag::register(sig as i32, flag.clone()).map_err(io)?);
        actions.push(
            signal_hook::low_level::pipe::register(
                sig as i32,
                wake_writer.try_clone().map_err(io)?,
            )
            .map_err(io)?,
        );
        flags.push((sig, flag));
    }
    if let Some(path) = &options.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
            SupervisorError::Os {
                context: "writing the pid file",
                source,
            }
        })?;
    }
    let sidecar = factory.has_sidecar().then(|| Sidecar {
        pid: None,
        restart_at: None,
        started: Instant::now(),
        replacing: false,
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
    });
    let mut s = Supervisor {
        options,
        factory,
        sidecar,
        workers: HashMap::new(),
        history: HashMap::new(),
        generation: 1,
        transition: Transition::Steady,
        wake,
        flags,
        actions,
        wake_writer,
    };
    tracing::info!(
        pid = std::process::id(),
        workers = s.options.workers,
        "supervisor started"
    );
    let result = s.main_loop();
    if let Some(path) = &s.options.pid_file {
        let _ = std::fs::remove_file(path);
    }
    result
}

impl<F: WorkerFactory> Supervisor<F> {
    /// Whether `sig` arrived since the last look; clears its flag.
    fn take(&self, sig: Signal) -> bool {
        self.flags
            .iter()
            .find(|(s, _)| *s == sig)
            .is_some_and(|(_, f)| f.swap(false, Ordering::SeqCst))
    }

    fn main_loop(&mut self) -> Result<(), SupervisorError> {
        loop {
            self.factory.observe(Event::Turn {
                workers: match self.transition {
                    Transition::Rescaling { target, .. } => target,
                    _ => self.options.workers,
                },
                stopping: false,
            });
            self.reap()?;
            if self.take(Signal::SIGTERM) || self.take(Signal::SIGINT) {
                tracing::info!("graceful stop requested");
                self.stop_all(true);
                return Ok(());
            }
            if self.take(Signal::SIGQUIT) {
                tracing::info!("immediate stop requested");
                self.stop_all(false);
                return Ok(());
            }
            if self.take(Signal::SIGHUP) {
                self.reload();
            }
            let mut delta: isize = 0;
            while self.take(Signal::SIGTTIN) {
                delta += 1;
            }
            while self.take(Signal::SIGTTOU) {
                delta -= 1;
            }
            if delta != 0 {
                self.rescale(delta);
            }
            self.advance_transition();
            self.murder_hung();
            self.spawn_sidecar()?;
            if !matches!(self.transition, Transition::Rescaling { .. }) {
                self.spawn_missing()?;
            }
            let turn = if self.transition == Transition::Steady {
                Duration::from_millis(500)
            } else {
                Duration::from_millis(100)
            };
            // Wake for a crashed worker's restart when its delay ends, not a turn later: its
            // partitions wait for it.
            let restart = self
                .next_restart()
                .filter(|_| !matches!(self.transition, Transition::Rescaling { .. }));
            let turn = restart.map_or(turn, |at| {
                turn.min(at.saturating_duration_since(Instant::now()))
            });
            self.wait_for_events(turn);
        }
    }

    /// Sleeps until a signal or heartbeat arrives (or `max`), reading heartbeats.
    fn wait_for_events(&mut self, max: Duration) {
        let timeout = PollTimeout::try_from(max.as_millis() as i32).unwrap_or(PollTimeout::NONE);
        let mut fds = vec![PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
        let pids: Vec<Pid> = self.workers.keys().copied().collect();
        for pid in &pids {
            fds.push(PollFd::new(
                self.workers[pid].heartbeat.as_fd(),
                PollFlags::POLLIN,
            ));
        }
        // EINTR (a signal arrived) is a wake-up like any other.
        let _ = poll(&mut fds, timeout);
        let readable: Vec<bool> = fds
            .iter()
            .map(|f| {
                f.revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP))
            })
            .collect();
        drop(fds);
        let mut buf = [0u8; 256];
        if readable[0] {
            while matches!(std::io::Read::read(&mut &self.wake, &mut buf), Ok(n) if n > 0) {}
        }
        let now = Instant::now();
        for (pid, ready) in pids.iter().zip(&readable[1..]) {
            if !ready {
                continue;
            }
            if let Some(w) = self.workers.get_mut(pid)
                && matches!(std::io::Read::read(&mut &w.heartbeat, &mut buf), Ok(n) if n > 0)
            {
                w.last_beat = now;
                w.beaten = true;
            }
        }
    }

    /// Reaps exited children; schedules restarts; fails on repeated boot failures.
    fn reap(&mut self) -> Result<(), SupervisorError> {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return Ok(()),
                Ok(s) => s,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(os("reaping workers")(e)),
            };
            let (pid, code, signal) = match status {
                WaitStatus::Exited(pid, code) => (pid, Some(code), None),
                WaitStatus::Signaled(pid, sig, _) => (pid, None, Some(sig)),
                _ => continue,
            };
            if self.sidecar_exited(pid, code, signal) {
                continue;
            }
            let Some(w) = self.workers.remove(&pid) else {
                continue;
            };
            let ran = w.started.elapsed();
            let h = self.history.entry(w.index).or_default();
            let ended = match signal {
                Some(sig) => Ended::Signal(sig),
                None => Ended::Code(code.unwrap_or_default()),
            };
            if w.retiring {
                tracing::info!(worker = w.index, %pid, generation = w.generation, "worker stopped");
                h.restart_at = None;
                self.factory.observe(Event::Exited {
                    index: w.index,
                    cause: None,
                    ended,
                });
                continue;
            }
            let cause = match (code, signal) {
                _ if w.aborted.is_some() => ExitCause::Hung,
                (Some(EXIT_BOOT_FAILURE), _) => ExitCause::BootFailure,
                (Some(_), _) => ExitCause::Exit,
                _ => ExitCause::Signal,
            };
            self.factory.observe(Event::Exited {
                index: w.index,
                cause: Some(cause),
                ended,
            });
            match (code, signal) {
                (Some(0), _) => tracing::info!(worker = w.index, %pid, "worker exited"),
                (Some(EXIT_BOOT_FAILURE), _) => {
                    h.boot_failures += 1;
                    tracing::error!(worker = w.index, %pid, failures = h.boot_failures, "worker failed to boot");
                    if h.boot_failures >= BOOT_FAILURE_LIMIT {
                        let (index, failures) = (w.index, h.boot_failures);
                        self.stop_all(true);
                        return Err(SupervisorError::BootFailure { index, failures });
                    }
                }
                (Some(EXIT_FATAL), _) => {
                    let index = w.index;
                    self.stop_all(true);
                    return Err(SupervisorError::Fatal { index });
                }
                (Some(code), _) => tracing::error!(worker = w.index, %pid, code, "worker crashed"),
                (None, Some(sig)) => {
                    let hint = if sig == Signal::SIGKILL {
                        " (perhaps out of memory?)"
                    } else {
                        ""
                    };
                    tracing::error!(worker = w.index, %pid, signal = %sig, "worker killed by signal{hint}");
                }
                (None, None) => {}
            }
            if code != Some(EXIT_BOOT_FAILURE) {
                h.boot_failures = 0;
            }
            // Back off a crash-looping slot; a worker that ran a while starts over.
            if ran > Duration::from_secs(30) {
                h.backoff.reset();
            }
            h.restart_at = Some(Instant::now() + h.backoff.next_pause());
        }
    }

    /// When the earliest restart of an empty slot is due.
    fn next_restart(&self) -> Option<Instant> {
        let live = self.live_indexes();
        self.history
            .iter()
            .filter(|(index, _)| !live.contains(index) && **index < self.options.workers)
            .filter_map(|(_, h)| h.restart_at)
            .min()
    }

    fn live_indexes(&self) -> Vec<usize> {
        self.workers.values().map(|w| w.index).collect()
    }

    /// Forks a worker for every slot that has none and whose restart delay is over.
    fn spawn_missing(&mut self) -> Result<(), SupervisorError> {
        let live = self.live_indexes();
        for index in 0..self.options.workers {
            if live.contains(&index) {
                continue;
            }
            let due = self
                .history
                .get(&index)
                .and_then(|h| h.restart_at)
                .is_none_or(|t| Instant::now() >= t);
            if due {
                self.spawn(index)?;
            }
        }
        Ok(())
    }

    /// Forks the worker of slot `index`, with a new heartbeat pipe.
    fn spawn(&mut self, index: usize) -> Result<(), SupervisorError> {
        let (parent_end, child_end) = UnixStream::pair().map_err(|source| SupervisorError::Os {
            context: "creating a heartbeat pipe",
            source,
        })?;
        parent_end.set_nonblocking(true).ok();
        child_end.set_nonblocking(true).ok();
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        ensure_single_threaded()?;
        self.factory.observe(Event::Forking { index });
        let supervisor = nix::unistd::getpid();
        // SAFETY: the supervisor process has exactly one thread (it never starts one and has no
        // async runtime; `ensure_single_threaded` just checked), so the child starts with a
        // consistent copy of all memory and no lock held by another thread; allocating and
        // running ordinary code in the child is sound.
        match unsafe { fork() }.map_err(os("forking a worker"))? {
            ForkResult::Child => {
                drop(parent_end);
                let code = self.become_worker(index, child_end, supervisor);
                std::process::exit(code);
            }
            ForkResult::Parent { child } => {
                drop(child_end);
                tracing::info!(worker = index, pid = %child, generation = self.generation, "worker started");
                self.factory.observe(Event::Forked {
                    index,
                    pid: child.as_raw() as u32,
                });
                let now = Instant::now();
                self.workers.insert(
                    child,
                    Worker {
                        index,
                        generation: self.generation,
                        started: now,
                        heartbeat: parent_end,
                        last_beat: now,
                        aborted: None,
                        beaten: false,
                        retiring: false,
                    },
                );
                Ok(())
            }
        }
    }

    /// In the child: drop what belongs to the supervisor, then run the worker body.
    fn become_worker(&mut self, index: usize, heartbeat: UnixStream, supervisor: Pid) -> i32 {
        if !self.leave_supervisor(supervisor) {
            return 0;
        }
        let slot = WorkerSlot {
            index,
            count: self.options.workers,
            generation: self.generation,
            heartbeat: Heartbeat(Arc::new(heartbeat)),
        };
        self.factory.run_worker(slot)
    }

    /// In a freshly forked child: drop what belongs to the supervisor, restore default signal
    /// handling and follow the supervisor's death. False when the supervisor (`supervisor`, its
    /// pid read before the fork) is already gone: the child should exit at once.
    fn leave_supervisor(&mut self, supervisor: Pid) -> bool {
        // The siblings' heartbeat pipes and the signal pipe are the supervisor's.
        self.workers.clear();
        let _ = nix::unistd::close(self.wake.as_raw_fd());
        let _ = nix::unistd::close(self.wake_writer.as_raw_fd());
        // signal-hook's registry survives the fork and believes its handlers are installed, so
        // a later registration in the child (tokio's, for TERM and INT) does not install them
        // again. Hence: remove the supervisor's actions but keep the registry's handler for TERM
        // and INT, which the worker body must handle; every other signal gets its default.
        for id in self.actions.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        for sig in SIGNALS
            .into_iter()
            .filter(|s| !matches!(s, Signal::SIGTERM | Signal::SIGINT))
        {
            // SAFETY: installing SIG_DFL is always sound; no handler code is involved.
            let _ = unsafe {
                sigaction(
                    sig,
                    &SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty()),
                )
            };
        }
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        // A worker whose supervisor dies stops gracefully instead of running on as an orphan.
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
        nix::unistd::getppid() == supervisor
    }

    /// Forks the sidecar when the service has one, none runs and its restart delay is over.
    fn spawn_sidecar(&mut self) -> Result<(), SupervisorError> {
        let Some(sidecar) = &self.sidecar else {
            return Ok(());
        };
        if sidecar.pid.is_some() || sidecar.restart_at.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        ensure_single_threaded()?;
        let supervisor = nix::unistd::getpid();
        // SAFETY: as for the workers' fork in `spawn`: this process has exactly one thread.
        match unsafe { fork() }.map_err(os("forking the sidecar"))? {
            ForkResult::Child => {
                if !self.leave_supervisor(supervisor) {
                    std::process::exit(0);
                }
                // leave_supervisor keeps signal-hook's handler for TERM (a worker's tokio relies
                // on it); the sidecar wants TERM's default action instead, from its first
                // instant, so a stop or the supervisor's death (pdeathsig) always ends it.
                // SAFETY: installing SIG_DFL is always sound; no handler code is involved.
                let _ = unsafe {
                    sigaction(
                        Signal::SIGTERM,
                        &SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty()),
                    )
                };
                std::process::exit(self.factory.run_sidecar());
            }
            ForkResult::Parent { child } => {
                tracing::info!(pid = %child, "metrics process started");
                if let Some(sidecar) = &mut self.sidecar {
                    sidecar.pid = Some(child);
                    sidecar.restart_at = None;
                    sidecar.started = Instant::now();
                }
                Ok(())
            }
        }
    }

    /// Whether the reaped `pid` was the sidecar; schedules its restart.
    fn sidecar_exited(&mut self, pid: Pid, code: Option<i32>, signal: Option<Signal>) -> bool {
        let Some(sidecar) = &mut self.sidecar else {
            return false;
        };
        if sidecar.pid != Some(pid) {
            return false;
        }
        sidecar.pid = None;
        if std::mem::take(&mut sidecar.replacing) {
            tracing::info!(%pid, "metrics process stopped; starting its replacement");
            sidecar.restart_at = None;
            return true;
        }
        if sidecar.started.elapsed() > Duration::from_secs(30) {
            sidecar.backoff.reset();
        }
        let pause = sidecar.backoff.next_pause();
        sidecar.restart_at = Some(Instant::now() + pause);
        tracing::error!(%pid, ?code, ?signal, "the metrics process ended; restarting it in {pause:?}");
        true
    }

    /// Stops the sidecar (after the workers, so that it reports on them to the end).
    fn stop_sidecar(&mut self) {
        let Some(pid) = self.sidecar.as_mut().and_then(|s| s.pid.take()) else {
            return;
        };
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::Error::EINTR) => {}
                _ => return,
            }
            if Instant::now() >= deadline {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The hung-worker check: SIGABRT to a worker silent for longer than the timeout, SIGKILL
    /// when it is still there a second later; `reap` then schedules its replacement.
    fn murder_hung(&mut self) {
        if self.options.timeout.is_zero() {
            return;
        }
        let now = Instant::now();
        for (pid, w) in &mut self.workers {
            if now.duration_since(w.last_beat) <= self.options.timeout {
                continue;
            }
            match w.aborted {
                None => {
                    tracing::error!(worker = w.index, %pid, "WORKER TIMEOUT: silent for {:?}, sending SIGABRT", now.duration_since(w.last_beat));
                    let _ = kill(*pid, Signal::SIGABRT);
                    w.aborted = Some(now);
                }
                Some(t) if now.duration_since(t) > Duration::from_secs(1) => {
                    tracing::error!(worker = w.index, %pid, "worker still alive after SIGABRT, sending SIGKILL");
                    let _ = kill(*pid, Signal::SIGKILL);
                }
                Some(_) => {}
            }
        }
    }

    /// Signals every worker and waits until all have exited (KILL after the grace period).
    fn stop_all(&mut self, graceful: bool) {
        let sig = if graceful {
            Signal::SIGTERM
        } else {
            Signal::SIGKILL
        };
        for pid in self.workers.keys() {
            let _ = kill(*pid, sig);
        }
        let deadline = Instant::now() + self.options.graceful_timeout + Duration::from_secs(1);
        while !self.workers.is_empty() {
            self.factory.observe(Event::Turn {
                workers: self.options.workers,
                stopping: true,
            });
            // QUIT during a graceful stop: stop now.
            if graceful && self.take(Signal::SIGQUIT) {
                tracing::info!("immediate stop requested");
                self.kill_late("an immediate stop was requested", |_| true);
            }
            if Instant::now() >= deadline {
                for (pid, w) in &self.workers {
                    tracing::warn!(worker = w.index, %pid, "worker did not stop within the grace period, sending SIGKILL");
                    let _ = kill(*pid, Signal::SIGKILL);
                }
            }
            self.reap_quietly();
            self.wait_for_events(Duration::from_millis(100));
        }
        self.stop_sidecar();
    }

    /// Reaps during a stop, without restart bookkeeping.
    fn reap_quietly(&mut self) {
        while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            let (pid, ended) = match status {
                WaitStatus::Exited(pid, code) => (pid, Ended::Code(code)),
                WaitStatus::Signaled(pid, sig, _) => (pid, Ended::Signal(sig)),
                _ => break,
            };
            if self.sidecar.as_ref().is_some_and(|s| s.pid == Some(pid)) {
                // It is stopped after the workers; ended early, it stays down.
                if let Some(s) = &mut self.sidecar {
                    s.pid = None;
                }
            } else if let Some(w) = self.workers.remove(&pid) {
                tracing::info!(worker = w.index, %pid, generation = w.generation, "worker stopped");
                self.factory.observe(Event::Exited {
                    index: w.index,
                    cause: None,
                    ended,
                });
            }
        }
    }

    /// HUP: re-reads configuration and data, then starts replacing the workers slot by slot
    /// (a rolling replace already under way starts over with the new generation). On a reload
    /// error the running workers stay.
    fn reload(&mut self) {
        if let Err(e) = self.factory.reload() {
            tracing::error!("reload failed, keeping the running workers: {e}");
            return;
        }
        self.generation += 1;
        tracing::info!(
            generation = self.generation,
            "reloaded; replacing workers one by one"
        );
        // The metrics process too, so that it reads the group's lag as now configured.
        if let Some(sidecar) = &mut self.sidecar
            && let Some(pid) = sidecar.pid
        {
            sidecar.replacing = true;
            let _ = kill(pid, Signal::SIGTERM);
        }
        if !matches!(self.transition, Transition::Rescaling { .. }) {
            self.retire_slot(0);
        }
    }

    /// Asks slot `slot`'s current workers to stop, as the next step of a rolling replace.
    fn retire_slot(&mut self, slot: usize) {
        for (pid, w) in &mut self.workers {
            if w.index == slot && w.generation < self.generation {
                w.retiring = true;
                let _ = kill(*pid, Signal::SIGTERM);
            }
        }
        self.transition = Transition::Rolling {
            slot,
            deadline: Instant::now() + self.options.graceful_timeout + Duration::from_secs(1),
        };
    }

    /// TTIN/TTOU: ownership is p mod N == i, so a new N changes every worker's partitions:
    /// every worker stops, and the new set starts once all have exited.
    fn rescale(&mut self, delta: isize) {
        let current = match self.transition {
            Transition::Rescaling { target, .. } => target,
            _ => self.options.workers,
        };
        let max = self.factory.max_workers();
        let target = ((current as isize + delta).max(1) as usize).min(max);
        if target == max && delta > 0 {
            tracing::warn!(max, "not more workers than {max}");
        }
        if target == current {
            return;
        }
        tracing::info!(
            from = current,
            to = target,
            "changing the number of workers"
        );
        if self.factory.scales_in_place() && self.transition == Transition::Steady {
            // One at a time: new slots are forked by spawn_missing; the last slots' workers
            // are retired and leave, the others keep running.
            for (pid, w) in &mut self.workers {
                if w.index >= target {
                    w.retiring = true;
                    let _ = kill(*pid, Signal::SIGUSR2);
                }
            }
            self.options.workers = target;
            return;
        }
        for (pid, w) in &mut self.workers {
            w.retiring = true;
            let _ = kill(*pid, Signal::SIGTERM);
        }
        self.transition = Transition::Rescaling {
            target,
            deadline: Instant::now() + self.options.graceful_timeout + Duration::from_secs(1),
        };
    }

    /// One step of the reload or rescale under way, without waiting: the main loop comes back
    /// every 100 ms while one is.
    fn advance_transition(&mut self) {
        let now = Instant::now();
        match self.transition {
            Transition::Steady => {}
            Transition::Rescaling { target, deadline } => {
                if self.workers.is_empty() {
                    self.options.workers = target;
                    self.generation += 1;
                    self.history.clear();
                    self.transition = Transition::Steady;
                } else if now >= deadline {
                    self.kill_late("it did not stop within the grace period", |_| true);
                }
            }
            Transition::Rolling { slot, deadline } => {
                let old_alive = self
                    .workers
                    .values()
                    .any(|w| w.index == slot && w.generation < self.generation);
                if old_alive {
                    if now >= deadline {
                        self.kill_late("it did not stop within the grace period", |w| {
                            w.index == slot
                        });
                    }
                    return;
                }
                // The replacement is forked by spawn_missing; the next slot waits until it beats,
                // so that at most one slot is without a working worker at a time.
                let replaced = self
                    .workers
                    .values()
                    .any(|w| w.index == slot && w.generation == self.generation && w.beaten);
                if replaced || now >= deadline {
                    if slot + 1 < self.options.workers {
                        self.retire_slot(slot + 1);
                    } else {
                        self.transition = Transition::Steady;
                    }
                }
            }
        }
    }

    /// SIGKILL to the workers `which` selects, saying `why`.
    fn kill_late(&self, why: &str, which: impl Fn(&Worker) -> bool) {
        for (pid, w) in self.workers.iter().filter(|(_, w)| which(w)) {
            tracing::warn!(worker = w.index, %pid, "sending SIGKILL: {why}");
            let _ = kill(*pid, Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NeverForked;

    impl WorkerFactory for NeverForked {
        fn reload(&mut self) -> Result<(), String> {
            Ok(())
        }
        fn run_worker(&self, _slot: WorkerSlot) -> i32 {
            unreachable!("a worker was forked from a multi-threaded process")
        }
    }

    /// The test harness runs each test on a thread of its own, so this process has at least
    /// two: the supervisor must refuse before it registers a signal handler or forks.
    #[test]
    fn refuses_to_fork_from_a_process_with_threads() {
        let pid_file = std::env::temp_dir().join(format!("hd-sup-{}.pid", std::process::id()));
        let options = SupervisorOptions {
            workers: 1,
            timeout: Duration::from_secs(1),
            graceful_timeout: Duration::from_secs(1),
            pid_file: Some(pid_file.clone()),
        };
        let err = run(options, NeverForked).unwrap_err();
        assert!(
            matches!(err, SupervisorError::Threaded { threads } if threads >= 2),
            "{err}"
        );
        assert!(!pid_file.exists(), "it went on to write the pid file");
    }
}

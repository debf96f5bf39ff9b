//! `serve`: the supervisor and its workers, configured like hetida's backend.

use std::cell::RefCell;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use hd_kafka_exec::config::{Config, Env, Flags, Partitioning};
use hd_kafka_exec::kafka::LagReader;
use hd_kafka_exec::metrics::{self, Board, endpoint};
use hd_kafka_exec::poison::{Crash, CrashTable};
use hd_kafka_exec::store::{DirIndex, HttpOptions, StoreSource};
use hd_kafka_exec::supervisor::{Event, SupervisorOptions, WorkerFactory, WorkerSlot};
use hd_kafka_exec::worker::{Slot, WorkerSpec};

use super::host_slot::HostSlot;

/// What `serve` forks: hetida workers over the configured store.
#[derive(Debug)]
struct Service {
    /// The command line as given: a reload (HUP) reads the environment and the store again
    /// under the same flags.
    flags: Flags,
    /// The validated configuration; a worker gets a copy of the one current when it is forked.
    config: Config,
    /// Where workers get revisions. A directory is indexed here, before the fork, so that the
    /// workers inherit the index instead of each reading the directory.
    store: StoreSource,
    /// The metrics every process writes and the metrics process reads; mapped before the
    /// first fork.
    board: Board,
    /// What each worker executes and which requests ended workers: mapped before the first
    /// fork, written by the workers (what they execute) and the supervisor (crashes).
    crashes: CrashTable,
    /// The metrics endpoint's socket, bound before the first fork (a port in use fails the
    /// start); the metrics process serves it, and a worker closes its copy at once (so that a
    /// worker draining after the supervisor died does not keep the port). `None`: no endpoint.
    metrics: RefCell<Option<std::net::TcpListener>>,
    /// This service's slot among the `serve`s of its group on this host; applied again to the
    /// configuration a reload reads.
    slot: HostSlot,
}

/// Reads the configuration and opens the revision store: at start, and again on every HUP.
fn load_service(flags: &Flags) -> anyhow::Result<(Config, StoreSource)> {
    let config = Config::load(flags, &Env::from_process())?;
    // Before the store opens: reading it can warn (a `.py` component whose test wiring hetida
    // would drop too). A no-op on reload, when logging is already up.
    hd_kafka_exec::logging::init(config.log_format);
    let spec = &config.store.spec;
    let store = if let Some(path) = spec.strip_prefix("dir:") {
        StoreSource::Dir(Arc::new(
            DirIndex::open(std::path::Path::new(path))
                .with_context(|| format!("opening the revision store {path}"))?,
        ))
    } else if spec.starts_with("http://") || spec.starts_with("https://") {
        let mut options = HttpOptions::new(spec.clone());
        options.bearer_token = config.store.bearer_token.clone();
        options.tls = config.store.tls.clone();
        options.validate()?;
        StoreSource::Http(options)
    } else {
        bail!(
            "--store `{spec}`: expected dir:PATH, an http:// or https:// URL of the hetida backend API, or `backend`"
        );
    };
    Ok((config, store))
}

/// The store as log lines name it.
fn describe(store: &StoreSource) -> String {
    match store {
        StoreSource::Dir(index) => format!("{} revision(s)", index.len()),
        StoreSource::Http(o) => format!("the hetida backend at {}", o.base_url),
    }
}

impl Service {
    /// After worker `index` ended: a crash counts against each request it was executing (in
    /// the supervisor, told by [`Event::Exited`]); a stop blames none.
    fn blame(&self, index: usize, crash: Option<Crash>) {
        let Some(crash) = crash else {
            self.crashes.worker_gone(index);
            return;
        };
        for (at, crashes) in self.crashes.worker_died(index, crash) {
            let then = if crashes >= hd_kafka_exec::poison::CRASHES_REFUSED {
                "it is answered with a failure, not executed again"
            } else {
                "it is executed again alone"
            };
            tracing::warn!(
                worker = index,
                partition = at.partition,
                offset = at.offset,
                crashes,
                "the worker died ({crash}) while executing this request; {then}"
            );
        }
    }
}

impl WorkerFactory for Service {
    fn reload(&mut self) -> Result<(), String> {
        let (mut config, store) = load_service(&self.flags).map_err(|e| format!("{e:#}"))?;
        self.slot.apply(&mut config, false);
        tracing::info!(store = %describe(&store), "configuration and revision store reloaded");
        self.config = config;
        self.store = store;
        Ok(())
    }

    fn scales_in_place(&self) -> bool {
        self.config.kafka.partitioning == Partitioning::Group
    }

    fn max_workers(&self) -> usize {
        metrics::board::SLOTS
    }

    fn observe(&self, event: Event) {
        match event {
            Event::Turn { workers, stopping } => self.board.supervisor_turn(workers, stopping),
            Event::Forking { index } => self.board.worker_forking(index),
            Event::Forked { index, pid } => self.board.worker_forked(index, pid),
            Event::Exited {
                index,
                cause,
                ended,
            } => {
                self.blame(index, Crash::of(cause, ended));
                self.board.worker_exited(index, cause);
            }
        }
    }

    fn has_sidecar(&self) -> bool {
        self.metrics.borrow().is_some()
    }

    fn run_sidecar(&self) -> i32 {
        hd_kafka_exec::logging::set_metrics_process();
        // `ps` and `top` (and the tests) tell it from the workers by this name.
        let _ = nix::sys::prctl::set_name(endpoint::PROCESS_NAME);
        let Some(listener) = self.metrics.take() else {
            return 1;
        };
        let settings = endpoint::EndpointSettings {
            hung_after: endpoint::hung_after(self.config.supervisor.timeout),
        };
        // The consumer group's lag on the request topic. Made here, after the fork, so its
        // connections are this process' own; the metrics know nothing of Kafka.
        let lag = LagReader::new(&self.config.kafka)
            .inspect_err(|e| tracing::warn!("metrics: no consumer lag: {e}"))
            .ok();
        endpoint::run(listener, self.board, settings, lag)
    }

    fn run_worker(&self, slot: WorkerSlot) -> i32 {
        hd_kafka_exec::logging::set_worker(slot.index);
        drop(self.metrics.take());
        metrics::record_as_worker(self.board, slot.index);
        hd_kafka_exec::poison::record_as_worker(self.crashes, slot.index);
        let spec = WorkerSpec {
            config: self.config.clone(),
            store: self.store.clone(),
            slot: Slot {
                index: slot.index,
                count: slot.count,
                generation: slot.generation,
            },
            graceful_timeout: self.config.supervisor.graceful_timeout,
        };
        let heartbeat = slot.heartbeat();
        hd_kafka_exec::worker::run(&spec, move || heartbeat.notify())
    }
}

/// Runs the supervisor until it is stopped; an error when the service cannot start (bad
/// configuration, an unreadable store) or a worker keeps failing to boot.
pub(super) fn serve(flags: Flags) -> anyhow::Result<ExitCode> {
    let (mut config, store) = load_service(&flags)?;
    let slot = HostSlot::claim(&config);
    slot.apply(&mut config, true);
    for notice in &config.notices {
        tracing::warn!("{notice}");
    }
    tracing::info!(store = %describe(&store), spec = %config.store.spec, "revision store opened");
    // The one summary of how Kafka is reached; `KafkaSecurity`'s Display never shows a password.
    let k = &config.kafka;
    tracing::info!(
        consumer = %format_args!("{} over {}", k.consumer_bootstrap.join(","), k.consumer_security),
        producer = %format_args!("{} over {}", k.producer_bootstrap.join(","), k.producer_security),
        "Kafka connections"
    );
    if config.supervisor.workers > metrics::board::SLOTS {
        bail!(
            "--workers {}: at most {} workers per service",
            config.supervisor.workers,
            metrics::board::SLOTS
        );
    }
    let board = Board::shared()?;
    // The in-flight window is the one configured at start; a reload that raises
    // --max-in-flight runs the executions beyond it untracked (see `CrashTable::executing`).
    let window = config
        .execution
        .max_in_flight
        .min(hd_kafka_exec::poison::MAX_WINDOW);
    let crashes = CrashTable::shared(metrics::board::SLOTS, window)?;
    let metrics = metrics_listener(&config.supervisor)?;
    let options = SupervisorOptions {
        workers: config.supervisor.workers,
        timeout: config.supervisor.timeout,
        graceful_timeout: config.supervisor.graceful_timeout,
        pid_file: config.supervisor.pid_file.clone(),
    };
    hd_kafka_exec::supervisor::run(
        options,
        Service {
            flags,
            config,
            store,
            board,
            crashes,
            metrics: RefCell::new(metrics),
            slot,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The metrics endpoint's socket. The endpoint is optional for a Kafka consumer: the default
/// address taken (another service on the host) costs a WARN, not the service; an address the
/// operator chose and cannot have stops `serve`, since something counts on finding it there.
fn metrics_listener(
    settings: &hd_kafka_exec::config::SupervisorSettings,
) -> anyhow::Result<Option<std::net::TcpListener>> {
    let Some(addr) = settings.metrics_addr else {
        return Ok(None);
    };
    match std::net::TcpListener::bind(addr) {
        Ok(listener) => {
            tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics, probes at /livez and /readyz");
            Ok(Some(listener))
        }
        Err(e) if !settings.metrics_addr_chosen && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(
                "the default metrics port {} is taken (another service on this host?): running \
                 without /metrics, /livez and /readyz; give this one its own with \
                 --metrics-addr :PORT (or HD_METRICS_ADDR), or turn it off with an empty value",
                addr.port()
            );
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("--metrics-addr {addr}: cannot listen there")),
    }
}

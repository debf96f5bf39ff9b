//! Thin command line edge: parses arguments and hands over to the library.
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hd_kafka_exec::config::{Config, Env, Flags};
use hd_kafka_exec::protocol::response::Failure;
use hd_kafka_exec::protocol::{PreparedRevision, Timings, failure_response, parse_request};
use hd_kafka_exec::store::{DirIndex, HttpOptions, StoreSource};
use hd_kafka_exec::supervisor::{SupervisorOptions, WorkerFactory, WorkerSlot};
use hd_kafka_exec::worker::{Slot, WorkerSpec};
use std::sync::Arc;
use std::time::Duration;

/// dlmalloc (pure Rust) instead of the C library's malloc, on every target, so the binary tests
/// run is the one the musl image ships. musl's own malloc cost a worker 2.5 times the CPU per
/// request of the glibc build — with one thread, so not contention, its plain speed — and
/// dlmalloc brings the musl build to the glibc figures (BENCHMARKS.md, "Threads and the
/// allocator"). Its single global lock is uncontended: a worker is one thread, and the supervisor
/// never starts a thread, so no other thread can hold the lock when it forks.
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[derive(Debug, Parser)]
#[command(
    name = "hd-kafka-exec",
    version,
    about = "Executes hetida designer transformations on request from Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: a supervisor and its worker processes (configured like hetida's backend).
    Serve {
        #[command(flatten)]
        flags: Flags,
    },
    /// Produce one request (stdin) to the request topic and print its response when it arrives.
    Exec {
        #[command(flatten)]
        flags: Flags,
        /// Key of the request record (the console producer's `key:` part).
        #[arg(long)]
        key: Option<String>,
        /// Seconds to wait for the response.
        #[arg(long, default_value_t = 60.0)]
        wait: f64,
    },
    /// Print the runtime request the service would POST for the request on stdin (or the failure response).
    Prepare {
        /// Where revisions come from: `dir:PATH`.
        #[arg(long, default_value = "dir:transformations")]
        store: String,
    },
    /// List the revisions of a store directory, or every problem with it.
    Check {
        #[arg(long, default_value = "dir:transformations")]
        store: String,
    },
}

fn dir_of(store: &str) -> anyhow::Result<PathBuf> {
    match store.strip_prefix("dir:") {
        Some(path) => Ok(PathBuf::from(path)),
        None => bail!("--store `{store}`: this command reads a directory store (`dir:PATH`)"),
    }
}

fn prepare(store: &str) -> anyhow::Result<ExitCode> {
    let index = DirIndex::open(&dir_of(store)?)?;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading the request from stdin")?;
    let outcome = parse_request(Some(&input)).and_then(|request| {
        let id = index.resolve(request.target)?;
        let prepared = PreparedRevision::new(&index.tree(id)?)?;
        prepared.runtime_request(&request).map(|r| r.body.to_vec())
    });
    let mut stdout = std::io::stdout().lock();
    match outcome {
        Ok(body) => {
            stdout.write_all(&body)?;
            stdout.write_all(b"\n")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            let response = failure_response(&Failure {
                error: &error,
                job_id: None,
                output_types: &[],
                timings: &Timings::default(),
                process_id: None,
                extra: None,
            });
            stdout.write_all(&response)?;
            stdout.write_all(b"\n")?;
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn check(store: &str) -> anyhow::Result<ExitCode> {
    // Warnings while reading (on stderr) are part of what `check` is for.
    hd_kafka_exec::logging::init(hd_kafka_exec::config::LogFormat::Text);
    let dir = dir_of(store)?;
    match DirIndex::open(&dir) {
        Ok(index) => {
            for (path, r) in index.iter() {
                println!(
                    "{}  {:9}  {:8}  {} ({})  {}",
                    r.id,
                    format!("{:?}", r.kind).to_uppercase(),
                    format!("{:?}", r.state).to_uppercase(),
                    r.name,
                    r.version_tag,
                    path.display()
                );
            }
            println!(
                "{} revision(s) in {}, no problems",
                index.len(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for p in &problems.0 {
                println!("{p}");
            }
            eprintln!("{} problem(s) in {}", problems.0.len(), dir.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What `serve` forks: hetida workers over the configured store.
#[derive(Debug)]
struct Service {
    flags: Flags,
    config: Config,
    store: StoreSource,
}

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
        StoreSource::Http(options)
    } else {
        bail!(
            "--store `{spec}`: expected dir:PATH, an http:// URL of the hetida backend API, or `backend`"
        );
    };
    Ok((config, store))
}

fn describe(store: &StoreSource) -> String {
    match store {
        StoreSource::Dir(index) => format!("{} revision(s)", index.len()),
        StoreSource::Http(o) => format!("the hetida backend at {}", o.base_url),
    }
}

impl WorkerFactory for Service {
    fn reload(&mut self) -> Result<(), String> {
        let (config, store) = load_service(&self.flags).map_err(|e| format!("{e:#}"))?;
        tracing::info!(store = %describe(&store), "configuration and revision store reloaded");
        self.config = config;
        self.store = store;
        Ok(())
    }

    fn run_worker(&self, slot: WorkerSlot) -> i32 {
        hd_kafka_exec::logging::set_worker(slot.index);
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

fn serve(flags: Flags) -> anyhow::Result<ExitCode> {
    let (config, store) = load_service(&flags)?;
    for notice in &config.notices {
        tracing::warn!("{notice}");
    }
    tracing::info!(store = %describe(&store), spec = %config.store.spec, "revision store opened");
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
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn exec(flags: Flags, key: Option<String>, wait: f64) -> anyhow::Result<ExitCode> {
    let config = Config::load(&flags, &Env::from_process())?;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading the request from stdin")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let wait = Duration::try_from_secs_f64(wait).context("--wait")?;
    let response = rt.block_on(hd_kafka_exec::worker::exec::exec_one(
        &config, key, input, wait,
    ))?;
    std::io::stdout().write_all(&response.value)?;
    std::io::stdout().write_all(b"\n")?;
    Ok(if response.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { flags } => serve(flags),
        Command::Exec { flags, key, wait } => exec(flags, key, wait),
        Command::Prepare { store } => prepare(&store),
        Command::Check { store } => check(&store),
    }
}

//! End-to-end relay through real Kafka: `hd-kafka-exec serve` as a real process, the runtime
//! double (the project's stand-in for hetida's runtime service) answering instantly or with a
//! fixed delay, and the seed's Volatility request.
//!
//! `cargo bench --bench relay` measures throughput, latency, CPU time per request and memory;
//! two instances sharing one consumer group; the pause while a new member joins the group under
//! load; how fast a killed static member's replacement consumes again; and latency with one
//! request in flight at a time. It uses the broker named by
//! `HD_BENCH_KAFKA_BOOTSTRAP` (or `HD_TEST_KAFKA_BOOTSTRAP`), or starts its own with
//! `scripts/kafka`. Run without `--bench` (as `cargo test --all-targets` does) it makes one small
//! pass of each kind to prove the harness works.
//!
//! - `HD_BENCH_BIN=path` measures another build of the service (the musl one, or an older commit;
//!   a binary without `--partitioning` predates the consumer group and runs with its defaults).
//! - `HD_BENCH_ONLY=text` runs only the scenarios whose name contains `text`, in any case;
//!   `a|b` those that contain `a` or `b`.
//! - `HD_BENCH_PARTITIONING=group|index` passes `--partitioning`; scenarios that need the
//!   consumer group (two instances, a member joining) are left out under `index`.
//! - `HD_BENCH_GROUP_PROTOCOL=consumer|classic` adds `"group_protocol": "<value>"` to the
//!   consumer options of every `serve` the bench starts (`consumer`: KIP-848, the broker assigns
//!   and moves only what must move). Unset, the option is left out: the service's default
//!   (`classic`), and a binary from before the option (which refuses options it does not know)
//!   still starts. The rebalance scenarios then spread the newcomer's start over the broker's
//!   heartbeat interval (5 s, `group.consumer.heartbeat.interval.ms`) instead of the service's
//!   (3 s).
//! - `HD_BENCH_RUNS=n` repeats the rebalance and one-at-a-time scenarios `n` times (default 5).
//! - `HD_BENCH_METRICS=off` runs the service without its metrics endpoint (`HD_METRICS_ADDR=`);
//!   by default each instance serves it on a port of its own, as in production. CPU per request
//!   counts every process of the service, the metrics process included.
//! - `HD_BENCH_SCRAPE=1s` (or `500ms`, `15s`) scrapes each service's `/metrics` at that interval
//!   through the measured span, as Prometheus does (a kept-alive connection while the service
//!   keeps it, Prometheus' `Accept` header); the port comes from the service's "metrics at
//!   /metrics" log line. The throughput scenarios then print the CPU by process (workers,
//!   supervisor, metrics process) and the scrapes. Without an endpoint (`HD_BENCH_METRICS=off`,
//!   an older binary) nothing is scraped.
//! - `HD_BENCH_EXACTLY_ONCE=1` starts every `serve` with `--exactly-once` (issue 19: each
//!   worker a transactional producer, responses and offsets committed in one transaction per
//!   batch). The response topic then holds transaction markers, which rskafka 0.6 cannot read,
//!   so the harness reads responses as a `read_committed` consumer of its own (Fetch through
//!   the library's `kafka::wire::BrokerConnection`, decoded with `kafka-protocol`): markers are
//!   passed, records of aborted transactions are left out and counted, each response counted
//!   once. The service's transaction and coordinator retries are logged (debug) and counted
//!   from its log; responses beyond one per request too.
//! - `HD_BENCH_READER=rskafka|committed` picks that reader explicitly (`committed` for an
//!   at-least-once run read the same way; `rskafka`, the default without exactly-once, fails on
//!   markers).
//! - `HD_BENCH_JOB_LOG=on` keeps the services' one INFO line per finished job (the default
//!   for operators; the bench logs at `warn` otherwise), to measure what it costs.
//! - `HD_BENCH_LOGS=dir` keeps the services' logs there (one file per group and instance)
//!   instead of in a temporary directory.
//! - `HD_BENCH_BACKLOG=n` adds the backlog scenario: `n` small requests produced first, then
//!   `serve --workers 2` works through them for 60 s while every worker's RSS is sampled.
//!
//! The SASL_SSL set (`HD_BENCH_ONLY=sasl` runs only it) measures what TLS and SASL cost: on one
//! secured broker (`scripts/kafka start --security`), each of its scenarios runs with the service
//! connecting over SASL_SSL (SCRAM-SHA-512) and over the same broker's PLAINTEXT listener, the two
//! in turn, run after run, so that the difference between them is TLS + SASL alone. The harness
//! creates the topics, produces the requests and reads the responses over PLAINTEXT in both: it
//! is not what is measured. Without a plain broker given, the plain scenarios run on that
//! broker's PLAINTEXT listener too (one broker start).
//! - `HD_BENCH_SECURE_KAFKA_DIR=dir` uses a running `scripts/kafka start --dir dir --security
//!   certdir` cluster (its `listeners`, CA and first user) instead of starting one.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

#[path = "relay/share.rs"]
mod share;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use support::runtime_double::RuntimeDouble;
use tokio::sync::mpsc;

/// Partitions of the request and response topics.
const PARTITIONS: i32 = 8;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The secured broker's listeners, and what the service needs to reach SASL_SSL.
#[derive(Debug, Clone)]
struct Secured {
    /// host:port of the PLAINTEXT listener: the harness's, and the baseline's.
    plaintext: String,
    /// host:port of the SASL_SSL listener.
    sasl_ssl: String,
    /// The CA that signed the broker's certificate (`HD_KAFKA_SSL_CAFILE`).
    ca: PathBuf,
    /// The SCRAM user: (name, password).
    user: (String, String),
    /// The broker's process: it encrypts too, on the same cores.
    broker_pid: Option<u32>,
}

impl Secured {
    /// What a running `scripts/kafka start --dir dir --security certdir` cluster wrote into
    /// `dir`: `listeners` (NAME=host:port), `security/certdir` and `security/users` (the first
    /// user is the one the console tools use, and ours).
    fn read(dir: &Path) -> Secured {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (a `scripts/kafka start --security` cluster?)",
                    dir.join(name).display()
                )
            })
        };
        let listeners: HashMap<String, String> = read("listeners")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(name, address)| (name.to_owned(), address.to_owned()))
            .collect();
        let listener = |name: &str| {
            listeners
                .get(name)
                .unwrap_or_else(|| panic!("{}: no {name} listener", dir.display()))
                .clone()
        };
        let users = read("security/users");
        let (name, password) = users
            .lines()
            .next()
            .and_then(|u| u.split_once(':'))
            .expect("security/users: NAME:PASSWORD lines");
        Secured {
            plaintext: listener("PLAINTEXT"),
            sasl_ssl: listener("SASL_SSL"),
            ca: PathBuf::from(read("security/certdir").trim()).join("ca.pem"),
            user: (name.to_owned(), password.to_owned()),
            broker_pid: std::fs::read_to_string(dir.join("node1/pid"))
                .ok()
                .and_then(|p| p.trim().parse().ok()),
        }
    }
}

/// `scripts/kafka start --dir dir [--security certdir]`, after stopping what a killed run may have
/// left running there.
fn start_kafka(dir: &Path, certdir: Option<&Path>) {
    let _ = Command::new(repo().join("scripts/kafka"))
        .args(["stop", "--dir"])
        .arg(dir)
        .status();
    let mut command = Command::new(repo().join("scripts/kafka"));
    command.args(["start", "--dir"]).arg(dir);
    if let Some(certdir) = certdir {
        command.arg("--security").arg(certdir);
    }
    let ok = command.status().unwrap();
    assert!(ok.success(), "scripts/kafka start failed");
}

/// The brokers the selected scenarios need: given ones, or our own, stopped on drop.
struct Brokers {
    /// Where the plain scenarios run; `None` when none of them is selected.
    plain: Option<String>,
    /// The SASL_SSL set's broker; `None` when the set is not selected.
    secured: Option<Secured>,
    /// Clusters started here.
    own: Vec<PathBuf>,
}

impl Brokers {
    fn get(plain_needed: bool, secured_needed: bool) -> Brokers {
        let mut own = Vec::new();
        let secured = secured_needed.then(|| {
            if let Some(dir) = std::env::var_os("HD_BENCH_SECURE_KAFKA_DIR") {
                return Secured::read(Path::new(&dir));
            }
            // Fresh certificates each time, beside the cluster: `scripts/kafka stop` removes the
            // cluster's directory, and the broker reads the CA from here while it runs.
            let certs = repo().join("target/bench-kafka-secure-pki");
            support::pki::Pki::generate(&certs);
            let dir = repo().join("target/bench-kafka-secure");
            start_kafka(&dir, Some(&certs));
            own.push(dir.clone());
            Secured::read(&dir)
        });
        let given = std::env::var("HD_BENCH_KAFKA_BOOTSTRAP")
            .or_else(|_| std::env::var("HD_TEST_KAFKA_BOOTSTRAP"))
            .ok();
        let plain = plain_needed.then(|| {
            // The secured broker's PLAINTEXT listener is a plain broker's (no authorizer, the
            // same settings otherwise): one broker start instead of two.
            given
                .or_else(|| secured.as_ref().map(|s| s.plaintext.clone()))
                .unwrap_or_else(|| {
                    let dir = repo().join("target/bench-kafka");
                    start_kafka(&dir, None);
                    own.push(dir.clone());
                    std::fs::read_to_string(dir.join("bootstrap"))
                        .unwrap()
                        .trim()
                        .to_owned()
                })
        });
        Brokers {
            plain,
            secured,
            own,
        }
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        for dir in &self.own {
            let _ = Command::new(repo().join("scripts/kafka"))
                .args(["stop", "--dir"])
                .arg(dir)
                .status();
        }
    }
}

/// How one scenario's service and harness reach the broker.
#[derive(Debug, Clone)]
struct Link {
    /// The harness's bootstrap (PLAINTEXT): it creates the topics, produces the requests and
    /// reads the responses here.
    harness: String,
    /// The service's `bootstrap_servers`.
    service: String,
    /// Security options for both aiokafka option objects, each with a leading `, `.
    options: String,
    /// `HD_KAFKA_SSL_*` variables for the service.
    env: Vec<(&'static str, String)>,
    /// The broker's process, when it runs on this machine and we know it: its CPU time is
    /// measured too.
    broker_pid: Option<u32>,
}

impl Link {
    fn plaintext(bootstrap: &str) -> Link {
        Link {
            harness: bootstrap.to_owned(),
            service: bootstrap.to_owned(),
            options: String::new(),
            env: Vec::new(),
            broker_pid: None,
        }
    }

    /// The service over SASL_SSL with SCRAM-SHA-512; the harness over PLAINTEXT.
    fn sasl_ssl(secured: &Secured) -> Link {
        let (user, password) = &secured.user;
        Link {
            harness: secured.plaintext.clone(),
            service: secured.sasl_ssl.clone(),
            options: format!(
                r#", "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "{user}", "sasl_plain_password": "{password}""#
            ),
            env: vec![("HD_KAFKA_SSL_CAFILE", secured.ca.display().to_string())],
            broker_pid: secured.broker_pid,
        }
    }

    /// The baseline: the service over the secured broker's PLAINTEXT listener.
    fn secured_plaintext(secured: &Secured) -> Link {
        Link {
            broker_pid: secured.broker_pid,
            ..Link::plaintext(&secured.plaintext)
        }
    }

    /// The broker's CPU time so far.
    fn broker_cpu(&self) -> Option<Duration> {
        self.broker_pid.and_then(proc_stat_cpu)
    }
}

fn proc_stat_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// A process' CPU time to the nanosecond: the first field of `/proc/<pid>/task/*/schedstat`,
/// summed over its live threads. For the small processes (supervisor, metrics process), whose
/// CPU time over a run is a few clock ticks of `/proc/<pid>/stat`.
fn schedstat_cpu(pid: u32) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let ns: u64 = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Some(Duration::from_nanos(ns))
}

/// A number field of `/proc/<pid>/status` (`VmRSS:` in KiB, `Threads:`).
fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

fn threads(pid: u32) -> Option<u64> {
    status_field(pid, "Threads:")
}

/// `HD_BENCH_GROUP_PROTOCOL`: the `group_protocol` consumer option to pass; `None` when unset
/// (the option is left out).
fn group_protocol() -> Option<&'static str> {
    match std::env::var("HD_BENCH_GROUP_PROTOCOL").as_deref() {
        Err(_) | Ok("") => None,
        Ok("consumer") => Some("consumer"),
        Ok("classic") => Some("classic"),
        Ok(other) => panic!("HD_BENCH_GROUP_PROTOCOL={other}: consumer or classic"),
    }
}

/// How often the member that must give partitions up hears of a newcomer: the broker's
/// `group.consumer.heartbeat.interval.ms` (5 s by default) with the consumer protocol, the
/// service's `heartbeat_interval_ms` (3 s) with the classic one.
fn heartbeat_interval() -> Duration {
    match group_protocol() {
        Some("consumer") => Duration::from_secs(5),
        _ => Duration::from_secs(3),
    }
}

/// The binary to measure: `HD_BENCH_BIN` (for instance the musl build, to compare allocators),
/// else the one Cargo built with this bench (optimised under `cargo bench`).
fn service_binary() -> PathBuf {
    std::env::var_os("HD_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hd-kafka-exec")))
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The worker processes of the service `pid`: its children but the metrics process.
fn workers(pid: u32) -> Vec<u32> {
    children(pid)
        .into_iter()
        .filter(|w| !support::service::is_metrics_process(*w as i32))
        .collect()
}

/// `HD_METRICS_ADDR` of the measured service: a port of its own (the default, as in
/// production: the endpoint on), or empty with `HD_BENCH_METRICS=off` (no metrics process).
fn metrics_addr() -> &'static str {
    match std::env::var("HD_BENCH_METRICS").as_deref() {
        Ok("off") => "",
        _ => "127.0.0.1:0",
    }
}

/// `HD_BENCH_EXACTLY_ONCE=1`: every `serve` runs with `--exactly-once`.
fn exactly_once() -> bool {
    match std::env::var("HD_BENCH_EXACTLY_ONCE").as_deref() {
        Err(_) | Ok("" | "0" | "false") => false,
        Ok("1" | "true") => true,
        Ok(other) => panic!("HD_BENCH_EXACTLY_ONCE={other}: 1 or 0"),
    }
}

/// `HD_BENCH_READER`: whether the harness reads responses as a `read_committed` consumer of its
/// own ([`watch_committed`]) instead of with rskafka; by default it does under exactly-once
/// (rskafka fails on transaction markers), and not otherwise.
fn committed_reader() -> bool {
    match std::env::var("HD_BENCH_READER").as_deref() {
        Err(_) | Ok("") => exactly_once(),
        Ok("committed") => true,
        Ok("rskafka") => false,
        Ok(other) => panic!("HD_BENCH_READER={other}: rskafka or committed"),
    }
}

/// How the measured binary hands partitions to workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partitioning {
    /// Every worker a member of the consumer group (`--partitioning group`, the default).
    Group,
    /// The fixed split by worker index (`--partitioning index`).
    Index,
    /// A binary from before the consumer group: it knows no `--partitioning` and splits by index.
    Legacy,
}

/// What every scenario shares: the plain broker, the binary and how it partitions.
struct Bench {
    /// The plain scenarios' broker; `None` when none of them is selected.
    plain: Option<Link>,
    partitioning: Partitioning,
    /// `--partitioning` as given in `HD_BENCH_PARTITIONING`; nothing when it is not set.
    partitioning_flag: Option<String>,
    /// Where the services' logs go (the group scenarios read members' assignments from them):
    /// `HD_BENCH_LOGS`, kept, or a temporary directory.
    logs: PathBuf,
    _temporary_logs: Option<tempfile::TempDir>,
}

impl Bench {
    fn new(plain: Option<&str>) -> Bench {
        let help = Command::new(service_binary())
            .args(["serve", "--help"])
            .output()
            .expect("running serve --help");
        let knows_groups = String::from_utf8_lossy(&help.stdout).contains("--partitioning");
        let flag = std::env::var("HD_BENCH_PARTITIONING")
            .ok()
            .filter(|f| !f.is_empty());
        let partitioning = match (knows_groups, flag.as_deref()) {
            (false, None) => Partitioning::Legacy,
            (false, Some(f)) => panic!(
                "HD_BENCH_PARTITIONING={f}, but {} knows no --partitioning",
                service_binary().display()
            ),
            (true, None | Some("group")) => Partitioning::Group,
            (true, Some("index")) => Partitioning::Index,
            (true, Some(f)) => panic!("HD_BENCH_PARTITIONING={f}: group or index"),
        };
        let (logs, temporary_logs) = match std::env::var_os("HD_BENCH_LOGS") {
            Some(dir) => {
                std::fs::create_dir_all(&dir).unwrap();
                (PathBuf::from(dir), None)
            }
            None => {
                let t = tempfile::tempdir().unwrap();
                (t.path().to_owned(), Some(t))
            }
        };
        Bench {
            plain: plain.map(Link::plaintext),
            partitioning,
            partitioning_flag: flag,
            logs,
            _temporary_logs: temporary_logs,
        }
    }

    fn group_mode(&self) -> bool {
        self.partitioning == Partitioning::Group
    }

    /// The plain scenarios' link; [`Brokers::get`] gives them a broker when one is selected.
    fn plain(&self) -> &Link {
        self.plain
            .as_ref()
            .expect("a plain scenario runs with a plain broker")
    }
}

/// One `serve`'s shape.
#[derive(Debug, Clone, Copy)]
struct Shape<'a> {
    workers: usize,
    in_flight: usize,
    /// `group_instance_id`, the prefix of the workers' static instance ids: instances on one
    /// group need distinct ones. `None` leaves the option out (the host name, or an older binary
    /// that knows no such option).
    instance: Option<&'a str>,
}

struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(
        bench: &Bench,
        link: &Link,
        topics: &(String, String),
        group: &str,
        engine_url: &str,
        shape: Shape<'_>,
    ) -> Service {
        let bootstrap = &link.service;
        let security = &link.options;
        let instance = shape
            .instance
            .map(|p| format!(r#", "group_instance_id": "{p}""#))
            .unwrap_or_default();
        let protocol = group_protocol()
            .map(|p| format!(r#", "group_protocol": "{p}""#))
            .unwrap_or_default();
        let log = bench
            .logs
            .join(format!("{group}-{}.log", shape.instance.unwrap_or("serve")));
        let mut command = Command::new(service_binary());
        command
            .args(["serve", "--workers", &shape.workers.to_string()])
            .args(["--max-in-flight", &shape.in_flight.to_string()])
            .args(["--dead-letter-topic", ""])
            .arg("--store")
            .arg(format!(
                "dir:{}",
                repo().join("../shared/vectors/transformations").display()
            ));
        if let Some(flag) = &bench.partitioning_flag {
            command.args(["--partitioning", flag]);
        }
        // Under exactly-once the transactions' retries and aborts are logged too (debug lines
        // only when a call is retried or a transaction fails): [`ServiceLog`] counts them.
        let mut log_filter =
            "warn,hd_kafka_exec::kafka::member=info,hd_kafka_exec::supervisor=info,\
             hd_kafka_exec::cli::serve=info"
                .to_owned();
        // The one INFO line per finished job that operators get by default (issue 27): what
        // it costs is this switch's difference.
        if std::env::var("HD_BENCH_JOB_LOG").is_ok_and(|v| v == "on") {
            log_filter.push_str(",hd_kafka_exec::jobs=info");
        }
        if exactly_once() {
            command.arg("--exactly-once");
            log_filter.push_str(
                ",hd_kafka_exec::kafka::transaction=debug,hd_kafka_exec::kafka::coordinator=debug",
            );
        }
        let child = command
            .env(
                "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
                format!(
                    r#"{{"bootstrap_servers": "{bootstrap}", "group_id": "{group}", "auto_offset_reset": "earliest"{instance}{protocol}{security}}}"#
                ),
            )
            .env(
                "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS",
                format!(r#"{{"bootstrap_servers": "{bootstrap}"{security}}}"#),
            )
            .envs(link.env.iter().map(|(k, v)| (*k, v)))
            .env("HETIDA_DESIGNER_KAFKA_CONSUMER_TOPIC", &topics.0)
            .env("HETIDA_DESIGNER_KAFKA_RESPONSE_TOPIC", &topics.1)
            .env("HETIDA_DESIGNER_RUNTIME_ENGINE_URL", engine_url)
            .env("HD_METRICS_ADDR", metrics_addr())
            // Warnings, each member's assignment ("worker consuming"), the supervisor's
            // "worker started" and where the metrics endpoint listens: the bench waits for the
            // group to settle before it measures, times a replaced worker from its start, and
            // scrapes the endpoint.
            .env("RUST_LOG", log_filter)
            .env_remove("HD_WORKERS")
            .env_remove("HD_EXACTLY_ONCE")
            .env_remove("WEB_CONCURRENCY")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting serve");
        Service { child, log }
    }

    fn pids(&self) -> Vec<u32> {
        let mut p = vec![self.child.id()];
        p.extend(children(self.child.id()));
        p
    }

    /// The largest `measure` over the worker processes.
    fn worker_max(&self, measure: fn(u32) -> Option<u64>) -> u64 {
        workers(self.child.id())
            .into_iter()
            .filter_map(measure)
            .max()
            .unwrap_or(0)
    }

    fn cpu(&self) -> Duration {
        self.pids().into_iter().filter_map(proc_stat_cpu).sum()
    }

    /// The CPU time of the workers alone.
    fn workers_cpu(&self) -> Duration {
        workers(self.child.id())
            .into_iter()
            .filter_map(proc_stat_cpu)
            .sum()
    }

    /// The metrics process, when it runs.
    fn metrics_pid(&self) -> Option<u32> {
        children(self.child.id())
            .into_iter()
            .find(|p| support::service::is_metrics_process(*p as i32))
    }

    /// Where the metrics endpoint listens: the supervisor's "metrics at /metrics" line (written
    /// before it forks, so there once a worker consumes); `None` without an endpoint.
    fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        std::fs::read_to_string(&self.log)
            .ok()?
            .lines()
            .find(|l| l.contains("metrics at /metrics"))?
            .split("addr=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// A member's "worker consuming" log line (what it holds: [`holdings`]).
#[derive(Debug)]
struct Consuming {
    at: DateTime<Utc>,
    /// The worker process.
    pid: u32,
    /// The classic protocol's generation, or the consumer protocol's member epoch.
    generation: i64,
}

/// The value after ` name=` in a text log line, up to the next space.
fn log_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &line[start..];
    Some(rest.split(' ').next().unwrap_or(rest))
}

/// The list after ` partitions=` in a log line: `[0, 1]` (a list) or `{0, 1}` (a set).
fn log_partitions(line: &str) -> Option<Vec<i32>> {
    let start = line.find(" partitions=")? + " partitions=".len();
    let close = match line[start..].chars().next()? {
        '[' => ']',
        '{' => '}',
        _ => return None,
    };
    let end = start + line[start..].find(close)?;
    Some(
        line[start + 1..end]
            .split(", ")
            .filter_map(|p| p.trim().parse().ok())
            .collect(),
    )
}

fn consuming_lines(log: &Path) -> Vec<Consuming> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("worker consuming"))
        .filter_map(|l| {
            let at = l.split(' ').next()?.parse().ok()?;
            let pid = log_field(l, "pid")?.parse().ok()?;
            let generation = log_field(l, "generation")
                .or_else(|| log_field(l, "epoch"))?
                .parse()
                .ok()?;
            Some(Consuming {
                at,
                pid,
                generation,
            })
        })
        .collect()
}

/// What a member's log line says about the partitions it holds.
#[derive(Debug)]
enum Holding {
    /// "worker consuming": it holds these, all of them (either protocol).
    Holds(Vec<i32>),
    /// The consumer protocol's "giving up partitions": these go (after their executions).
    GivesUp(Vec<i32>),
    /// Every partition goes: a classic rebalance, a lost generation, a fenced member.
    GivesUpAll,
}

/// Every change of a member's holding in `services`' logs, in order of time: (when, worker
/// process, what).
fn holdings(services: &[&Service]) -> Vec<(DateTime<Utc>, u32, Holding)> {
    let mut all = Vec::new();
    for service in services {
        let text = std::fs::read_to_string(&service.log).unwrap_or_default();
        for l in text.lines() {
            let holding = if l.contains("worker consuming") {
                log_partitions(l).map(Holding::Holds)
            } else if l.contains("giving up partitions") {
                log_partitions(l).map(Holding::GivesUp)
            } else if l.contains("giving up the partitions")
                || l.contains("no longer knows this member")
                || l.contains("fenced this member")
            {
                Some(Holding::GivesUpAll)
            } else {
                None
            };
            let parsed = holding.and_then(|h| {
                let at: DateTime<Utc> = l.split(' ').next()?.parse().ok()?;
                let pid: u32 = log_field(l, "pid")?.parse().ok()?;
                Some((at, pid, h))
            });
            all.extend(parsed);
        }
    }
    all.sort_by_key(|(at, _, _)| *at);
    all
}

/// Partition -> the worker process that holds it, after `events`.
type Owners = BTreeMap<i32, u32>;

/// Worker process -> the partitions it holds.
type Held = BTreeMap<u32, BTreeSet<i32>>;

/// Replays `events` in order; `stop` sees the holdings after each and ends the replay when it
/// says so. Returns the holdings then, and when.
fn replay(
    events: &[(DateTime<Utc>, u32, Holding)],
    mut stop: impl FnMut(DateTime<Utc>, &Held) -> bool,
) -> Option<(DateTime<Utc>, Held)> {
    let mut held: Held = BTreeMap::new();
    for (at, pid, holding) in events {
        let mine = held.entry(*pid).or_default();
        match holding {
            Holding::Holds(ps) => *mine = ps.iter().copied().collect(),
            Holding::GivesUp(ps) => ps.iter().for_each(|p| {
                mine.remove(p);
            }),
            Holding::GivesUpAll => mine.clear(),
        }
        if stop(*at, &held) {
            return Some((*at, held));
        }
    }
    None
}

fn owners_of(held: &Held) -> Owners {
    held.iter()
        .flat_map(|(pid, ps)| ps.iter().map(move |p| (*p, *pid)))
        .collect()
}

/// Whether `members` workers hold every partition between them, each partition one of them.
fn complete(held: &Held, members: usize) -> bool {
    let holders = held.values().filter(|ps| !ps.is_empty()).count();
    let total: usize = held.values().map(BTreeSet::len).sum();
    holders == members && total == PARTITIONS as usize && owners_of(held).len() == total
}

/// When `members` workers first consume every partition between them, one owner each (the
/// logs' "worker consuming" lines, and what the members said they give up in between), and
/// who holds what then. With the classic protocol that is the time the last member of the new
/// generation said it consumes; with the consumer protocol, the time the last partition reached
/// its new owner.
fn settled_owners(services: &[&Service], members: usize) -> Option<(DateTime<Utc>, Owners)> {
    replay(&holdings(services), |_, held| complete(held, members))
        .map(|(at, held)| (at, owners_of(&held)))
}

fn settled(services: &[&Service], members: usize) -> Option<DateTime<Utc>> {
    settled_owners(services, members).map(|(at, _)| at)
}

/// Who held which partition at `when`, by the logs.
fn owners_at(services: &[&Service], when: DateTime<Utc>) -> Owners {
    let events: Vec<_> = holdings(services)
        .into_iter()
        .filter(|(at, _, _)| *at <= when)
        .collect();
    let mut held: Held = BTreeMap::new();
    replay(&events, |_, h| {
        held = h.clone();
        false
    });
    owners_of(&held)
}

/// Waits until [`settled`]; `None` after `timeout`.
async fn wait_settled(
    services: &[&Service],
    members: usize,
    timeout: Duration,
) -> Option<DateTime<Utc>> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(at) = settled(services, members) {
            return Some(at);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// `later - earlier` of two wall-clock times, zero if negative.
fn wall_gap(earlier: DateTime<Utc>, later: DateTime<Utc>) -> Duration {
    (later - earlier).to_std().unwrap_or_default()
}

async fn create_topics(client: &Client, prefix: &str) -> (String, String) {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let topics = (format!("{prefix}-req-{n}"), format!("{prefix}-resp-{n}"));
    let controller = client.controller_client().unwrap();
    controller
        .create_topic(&topics.0, PARTITIONS, 1, 10_000)
        .await
        .unwrap();
    controller
        .create_topic(&topics.1, PARTITIONS, 1, 10_000)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    topics
}

fn volatility_request(job: uuid::Uuid) -> Vec<u8> {
    let text = std::fs::read_to_string(
        repo().join("../shared/vectors/cases/volatility_by_id/request.json"),
    )
    .unwrap();
    text.replace("00000000-0000-0000-0000-000000000002", &job.to_string())
        .into_bytes()
}

/// Reads responses from every partition; sends (job id, arrival) for each.
async fn watch_responses(
    client: Arc<Client>,
    topic: String,
    tx: mpsc::UnboundedSender<(String, Instant)>,
) {
    for p in 0..PARTITIONS {
        let pc = client
            .partition_client(topic.clone(), p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut offset = pc.get_offset(OffsetAt::Earliest).await.unwrap();
            // Until the scenario is over: a watcher left behind would keep fetching every
            // 100 ms through the scenarios after it.
            while !tx.is_closed() {
                let Ok((records, _)) = pc.fetch_records(offset, 1..50_000_000, 100).await else {
                    continue;
                };
                let now = Instant::now();
                for r in records {
                    if r.offset < offset {
                        continue;
                    }
                    offset = r.offset + 1;
                    if let Some(job) = r.record.headers.get("hd-job-id") {
                        let _ = tx.send((String::from_utf8_lossy(job).into_owned(), now));
                    }
                }
            }
        });
    }
}

/// Reads responses from every partition as a `read_committed` consumer: one Fetch for all
/// partitions at a time over the library's own broker connection (rskafka 0.6 fails on
/// transaction markers and does not leave out aborted transactions); sends (job id, arrival)
/// for each response of a committed transaction or of no transaction. `aborted` counts the
/// records it left out because their transaction aborted. The bench's broker is one node, the
/// leader of every partition.
async fn watch_committed(
    bootstrap: String,
    topic: String,
    tx: mpsc::UnboundedSender<(String, Instant)>,
    aborted: Arc<std::sync::atomic::AtomicUsize>,
) {
    use hd_kafka_exec::kafka::security::BrokerAuth;
    use hd_kafka_exec::kafka::wire::BrokerConnection;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{ApiKey, FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let open = || async {
        let conn = BrokerConnection::open(&bootstrap, "relay-bench", &BrokerAuth::plaintext())
            .await
            .unwrap();
        // Up to v12: topics by name (v13 on names them by id).
        let version = conn.version(ApiKey::Fetch, "Fetch", 4..=12).unwrap();
        (conn, version)
    };
    let (mut conn, mut version) = open().await;
    let mut offsets = [0i64; PARTITIONS as usize];
    while !tx.is_closed() {
        let partitions = offsets
            .iter()
            .enumerate()
            .map(|(p, offset)| {
                FetchPartition::default()
                    .with_partition(p as i32)
                    .with_fetch_offset(*offset)
                    .with_partition_max_bytes(8 << 20)
            })
            .collect();
        let request = FetchRequest::default()
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(32 << 20)
            .with_isolation_level(1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(partitions),
            ]);
        let response = match conn.call(&request, version).await {
            Ok(r) => r,
            Err(_) if tx.is_closed() => return,
            Err(e) => {
                eprintln!("committed reader: {e}; connecting again");
                tokio::time::sleep(Duration::from_millis(100)).await;
                (conn, version) = open().await;
                continue;
            }
        };
        let now = Instant::now();
        for data in response.responses.into_iter().flat_map(|t| t.partitions) {
            // A partition not ready yet (just created) is asked again.
            if data.error_code != 0 {
                continue;
            }
            let offset = &mut offsets[data.partition_index as usize];
            let read = committed_records(data, offset);
            aborted.fetch_add(read.aborted, std::sync::atomic::Ordering::Relaxed);
            for job in read.jobs {
                let _ = tx.send((job, now));
            }
        }
    }
}

/// What one partition's answer to a `read_committed` Fetch holds.
#[derive(Debug, Default)]
struct CommittedRead {
    /// The `hd-job-id` of each record to deliver, in order.
    jobs: Vec<String>,
    /// Records left out: their transaction aborted.
    aborted: usize,
}

/// The records of `data` at and after `*offset` that a `read_committed` consumer delivers, as
/// Kafka's Java consumer picks them: the broker answers up to the last stable offset and lists
/// the aborted transactions in that range (producer id, first offset); a transactional batch of
/// a producer whose aborted transaction began at or before the batch is left out, up to that
/// producer's abort marker. Control batches (markers) are passed. Moves `*offset` past the last
/// whole batch.
fn committed_records(
    data: kafka_protocol::messages::fetch_response::PartitionData,
    offset: &mut i64,
) -> CommittedRead {
    use kafka_protocol::records::RecordBatchDecoder;

    let mut read = CommittedRead::default();
    let mut aborted_txns: Vec<(i64, i64)> = data
        .aborted_transactions
        .unwrap_or_default()
        .iter()
        .map(|a| (a.first_offset, a.producer_id.0))
        .collect();
    aborted_txns.sort_unstable();
    let mut aborted_txns = aborted_txns.into_iter().peekable();
    let mut aborting: BTreeSet<i64> = BTreeSet::new();
    let mut buf = data.records.unwrap_or_default();
    let from = *offset;
    let be_i64 = |b: &[u8]| i64::from_be_bytes(b.try_into().unwrap());
    let be_i32 = |b: &[u8]| i32::from_be_bytes(b.try_into().unwrap());
    // v2 batch header: baseOffset 0..8, batchLength 8..12, attributes 21..23, lastOffsetDelta
    // 23..27, producerId 43..51; the batch is 12 + batchLength bytes. A fetch may end in a
    // partial batch: it is read again from its start.
    while buf.len() >= 61 {
        let length = 12 + be_i32(&buf[8..12]) as usize;
        if buf.len() < length {
            break;
        }
        let mut batch = buf.split_to(length);
        let base = be_i64(&batch[0..8]);
        let last = base + i64::from(be_i32(&batch[23..27]));
        let attributes = u16::from_be_bytes([batch[21], batch[22]]);
        let transactional = attributes & 0x10 != 0;
        let control = attributes & 0x20 != 0;
        let producer = be_i64(&batch[43..51]);
        *offset = (*offset).max(last + 1);
        if last < from {
            continue;
        }
        if producer >= 0 {
            while let Some(&(first, pid)) = aborted_txns.peek() {
                if first > last {
                    break;
                }
                aborting.insert(pid);
                aborted_txns.next();
            }
        }
        let records = RecordBatchDecoder::decode(&mut batch).unwrap().records;
        if control {
            // A control record's key: version (i16), type (i16: 0 abort, 1 commit).
            let abort = records
                .first()
                .and_then(|r| r.key.as_ref())
                .is_some_and(|k| k.len() >= 4 && k[2..4] == [0, 0]);
            if abort {
                aborting.remove(&producer);
            }
            continue;
        }
        if transactional && aborting.contains(&producer) {
            read.aborted += records.len();
            continue;
        }
        for r in records.into_iter().filter(|r| r.offset >= from) {
            let job = r.headers.iter().find(|(k, _)| k.as_str() == "hd-job-id");
            if let Some((_, Some(job))) = job {
                read.jobs.push(String::from_utf8_lossy(job).into_owned());
            }
        }
    }
    read
}

/// The topics, clients and response watcher of one scenario.
struct Stage {
    link: Link,
    topics: (String, String),
    group: String,
    partitions: Vec<Arc<PartitionClient>>,
    responses: mpsc::UnboundedReceiver<(String, Instant)>,
    /// Records of aborted transactions the committed reader left out ([`watch_committed`]).
    aborted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Stage {
    async fn new(link: &Link, prefix: &str) -> Stage {
        let client = Arc::new(
            ClientBuilder::new(vec![link.harness.clone()])
                .build()
                .await
                .unwrap(),
        );
        let topics = create_topics(&client, prefix).await;
        let group = format!("{}-group", topics.0);
        let (tx, responses) = mpsc::unbounded_channel();
        let aborted = Arc::default();
        if committed_reader() {
            tokio::spawn(watch_committed(
                link.harness.clone(),
                topics.1.clone(),
                tx,
                Arc::clone(&aborted),
            ));
        } else {
            watch_responses(client.clone(), topics.1.clone(), tx).await;
        }
        let mut partitions = Vec::new();
        for p in 0..PARTITIONS {
            partitions.push(Arc::new(
                client
                    .partition_client(topics.0.clone(), p, UnknownTopicHandling::Retry)
                    .await
                    .unwrap(),
            ));
        }
        Stage {
            link: link.clone(),
            topics,
            group,
            partitions,
            responses,
            aborted,
        }
    }

    fn serve(&self, bench: &Bench, double: &RuntimeDouble, shape: Shape<'_>) -> Service {
        Service::start(
            bench,
            &self.link,
            &self.topics,
            &self.group,
            &double.engine_url(),
            shape,
        )
    }

    async fn produce(&self, partition: usize, jobs: &[uuid::Uuid]) {
        self.partitions[partition]
            .produce(
                jobs.iter().map(|j| record(*j)).collect(),
                Compression::NoCompression,
            )
            .await
            .unwrap();
    }

    /// The arrival of `job`'s response (others that come first are dropped); `None` after
    /// `timeout`.
    async fn response_of(&mut self, job: uuid::Uuid, timeout: Duration) -> Option<Instant> {
        let job = job.to_string();
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline.into(), self.responses.recv()).await {
                Ok(Some((j, at))) if j == job => return Some(at),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    /// Produces a request to partition 0 and starts `services` (one `serve` per shape); returns
    /// them, the time from start to the first response, and in group mode the time until all
    /// their workers consume in one generation.
    async fn start(
        &mut self,
        bench: &Bench,
        double: &RuntimeDouble,
        shapes: &[Shape<'_>],
    ) -> (Vec<Service>, Option<Duration>, Option<Duration>) {
        let warm = uuid::Uuid::new_v4();
        self.produce(0, &[warm]).await;
        let started = Instant::now();
        let started_wall = Utc::now();
        let services: Vec<Service> = shapes
            .iter()
            .map(|s| self.serve(bench, double, *s))
            .collect();
        let first = self
            .response_of(warm, Duration::from_secs(60))
            .await
            .map(|at| at - started);
        let settled = if bench.group_mode() {
            let members = shapes.iter().map(|s| s.workers).sum();
            let refs: Vec<&Service> = services.iter().collect();
            let at = wait_settled(&refs, members, Duration::from_secs(60)).await;
            assert!(at.is_some(), "the group did not settle within 60 s");
            at.map(|at| wall_gap(started_wall, at))
        } else {
            None
        };
        (services, first, settled)
    }
}

/// `HD_BENCH_SCRAPE`: how often each service's `/metrics` is scraped while a throughput
/// scenario is measured (`1s`, `500ms`, `15s`); `None` when unset.
fn scrape_interval() -> Option<Duration> {
    let v = std::env::var("HD_BENCH_SCRAPE")
        .ok()
        .filter(|v| !v.is_empty())?;
    let (n, unit) = match v.strip_suffix("ms") {
        Some(n) => (n, 1e-3),
        None => (v.strip_suffix('s').unwrap_or(&v), 1.0),
    };
    let n: f64 = n
        .parse()
        .unwrap_or_else(|_| panic!("HD_BENCH_SCRAPE={v}: an interval such as 1s or 500ms"));
    assert!(n > 0.0, "HD_BENCH_SCRAPE={v}: more than zero");
    Some(Duration::from_secs_f64(n * unit))
}

/// What the scrapers of one run saw.
#[derive(Debug, Default, Clone, Copy)]
struct Scrapes {
    /// Answered with 200.
    ok: usize,
    /// Failed or answered otherwise.
    failed: usize,
    /// Bytes of the last body.
    bytes: usize,
    /// Summed time from sending a scrape to its whole body.
    took: Duration,
}

/// The `Accept` header Prometheus 2.x sends by default (OpenMetrics preferred).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
     application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// GETs `http://addr/metrics` every `every`, as Prometheus does, until `stop` turns true: over
/// one kept-alive connection while the service keeps it open, a new one when it has closed it.
async fn scraper(
    addr: std::net::SocketAddr,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Scrapes {
    use http_body_util::BodyExt;
    type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>;
    async fn connect(addr: std::net::SocketAddr) -> Option<Sender> {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(conn);
        Some(sender)
    }
    let mut scrapes = Scrapes::default();
    let mut sender: Option<Sender> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return scrapes,
            _ = tick.tick() => {}
        }
        let began = Instant::now();
        // A connection the service closed (it may answer one request per connection) is
        // replaced; a request that fails on a reused connection is sent once more on a new one.
        let mut body = None;
        for retry in [false, true] {
            let reused = sender.as_ref().is_some_and(|s| !s.is_closed());
            if retry || !reused {
                sender = connect(addr).await;
            }
            let Some(s) = sender.as_mut() else {
                break;
            };
            let request = hyper::Request::get("/metrics")
                .header(hyper::header::HOST, addr.to_string())
                .header(hyper::header::ACCEPT, PROMETHEUS_ACCEPT)
                .body(http_body_util::Empty::new())
                .unwrap();
            let answer = match s.ready().await {
                Ok(()) => s.send_request(request).await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(r) if r.status() == hyper::StatusCode::OK => {
                    body = r.into_body().collect().await.ok().map(|b| b.to_bytes());
                    break;
                }
                Ok(_) => break,
                Err(_) if reused && !retry => continue,
                Err(_) => break,
            }
        }
        match body {
            Some(b) => {
                scrapes.ok += 1;
                scrapes.bytes = b.len();
                scrapes.took += began.elapsed();
            }
            None => {
                scrapes.failed += 1;
                sender = None;
            }
        }
    }
}

struct Outcome {
    name: String,
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    cpu: Duration,
    /// Of `cpu`, the workers'; the supervisor's and the metrics process' to the nanosecond
    /// ([`schedstat_cpu`]; the throughput scenarios only).
    workers_cpu: Duration,
    supervisor_cpu: Duration,
    metrics_cpu: Option<Duration>,
    /// The largest metrics process' RSS, sampled under load.
    metrics_rss_kib: u64,
    /// With `HD_BENCH_SCRAPE`: the scrapes during the measured span.
    scrapes: Option<Scrapes>,
    /// The broker's CPU time over the same span, when it is known (the SASL_SSL set).
    broker_cpu: Option<Duration>,
    worker_rss_kib: u64,
    /// Most threads seen in one worker process (musl's malloc suffers from many).
    worker_threads: u64,
    supervisor_rss_kib: u64,
    first_response: Option<Duration>,
    /// Group mode: from start until every worker consumes in one generation.
    settled: Option<Duration>,
    /// Responses beyond one per request (under exactly-once, also those that arrive within 1 s
    /// after the last first response).
    repeats: usize,
    /// Records of aborted transactions the committed reader left out.
    aborted_records: usize,
    /// Exactly-once: transactions committed over the measured span (the services' commit
    /// counters, read from `/metrics` before and after it); `None` without an endpoint.
    transactions: Option<u64>,
    /// What the services' logs say about transactions and trouble, over the whole run.
    log: LogCounts,
}

/// Lines of the services' logs that tell of retries and failures (under exactly-once the
/// transaction and coordinator modules log at debug: a line per retried call or failed
/// transaction).
#[derive(Debug, Default, Clone, Copy)]
struct LogCounts {
    /// Transactions aborted ("transaction aborted", one line each).
    aborted: usize,
    /// Coordinator calls retried ("coordinator call failed, retrying").
    coordinator_retries: usize,
    /// Of those, for CONCURRENT_TRANSACTIONS (the previous transaction's markers still being
    /// written).
    concurrent: usize,
    /// Transactional produce calls retried.
    produce_retries: usize,
    /// WARN and ERROR lines, those above included.
    warnings: usize,
}

impl LogCounts {
    fn of(services: &[Service]) -> LogCounts {
        let mut c = LogCounts::default();
        for s in services {
            let text = std::fs::read_to_string(&s.log).unwrap_or_default();
            for l in text.lines() {
                c.aborted += usize::from(l.contains("transaction aborted"));
                let retry = l.contains("coordinator call failed, retrying");
                c.coordinator_retries += usize::from(retry);
                c.concurrent += usize::from(retry && l.contains("ConcurrentTransactions"));
                c.produce_retries += usize::from(l.contains("produce retried"));
                c.warnings += usize::from(l.contains(" WARN ") || l.contains(" ERROR "));
            }
        }
        c
    }
}

/// The sum of a counter's series in a service's `/metrics` (`hd_kafka_exec_commits_total`);
/// `None` without an answer.
async fn metric_sum(addr: std::net::SocketAddr, name: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.ok()?;
    let sum = body
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    Some(sum as u64)
}

/// Exactly-once: the transactions the services committed so far, by their commit counters.
async fn transactions_committed(services: &[Service]) -> Option<u64> {
    let mut total = 0;
    for addr in services.iter().filter_map(Service::metrics_addr) {
        total += metric_sum(addr, "hd_kafka_exec_commits_total").await?;
    }
    Some(total)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A throughput and latency scenario.
#[derive(Debug, Clone, Copy)]
struct Relay {
    name: &'static str,
    /// `serve` processes on one group, each with its own instance-id prefix.
    instances: usize,
    workers: usize,
    in_flight: usize,
    requests: usize,
    /// Offered requests per second; all at once when `None`.
    rate: Option<u32>,
    runtime_delay_ms: u64,
}

const INSTANCE_PREFIXES: [&str; 2] = ["bench-a", "bench-b"];

/// Starts serve, offers `n` requests (all at once, or at `rate` per second), waits for every
/// response.
async fn relay(bench: &Bench, link: &Link, double: &RuntimeDouble, plan: Relay) -> Outcome {
    let Relay {
        name,
        instances,
        workers,
        in_flight,
        requests: n,
        rate,
        ..
    } = plan;
    let mut stage = Stage::new(link, "relay").await;
    let shapes: Vec<Shape<'_>> = (0..instances)
        .map(|i| Shape {
            workers,
            in_flight,
            instance: (instances > 1).then_some(INSTANCE_PREFIXES[i]),
        })
        .collect();
    let jobs: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::new_v4()).collect();
    let (services, first, settled) = stage.start(bench, double, &shapes).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let supervisor_rss_kib = services
        .iter()
        .filter_map(|s| rss_kib(s.child.id()))
        .max()
        .unwrap_or(0);
    let cpu = || services.iter().map(Service::cpu).sum::<Duration>();
    let workers_cpu = || services.iter().map(Service::workers_cpu).sum::<Duration>();
    let metrics_pids: Vec<u32> = services.iter().filter_map(Service::metrics_pid).collect();
    let metrics_cpu = || {
        (!metrics_pids.is_empty()).then(|| {
            metrics_pids
                .iter()
                .filter_map(|p| schedstat_cpu(*p))
                .sum::<Duration>()
        })
    };
    let supervisors_cpu = || {
        services
            .iter()
            .filter_map(|s| schedstat_cpu(s.child.id()))
            .sum::<Duration>()
    };
    let metrics_rss = || {
        metrics_pids
            .iter()
            .filter_map(|p| rss_kib(*p))
            .max()
            .unwrap_or(0)
    };
    let worker_max = |measure| services.iter().map(|s| s.worker_max(measure)).max();
    // Scrapers, as Prometheus: from before the measured span to its end.
    let (stop_scraping, scraping) = tokio::sync::watch::channel(false);
    let scrapers: Vec<_> = scrape_interval()
        .map(|every| {
            services
                .iter()
                .filter_map(Service::metrics_addr)
                .map(|addr| tokio::spawn(scraper(addr, every, scraping.clone())))
                .collect()
        })
        .unwrap_or_default();
    let transactions_before = if exactly_once() {
        transactions_committed(&services).await
    } else {
        None
    };
    let cpu_before = cpu();
    let workers_before = workers_cpu();
    let metrics_before = metrics_cpu();
    let supervisors_before = supervisors_cpu();
    let broker_before = link.broker_cpu();

    let mut sent: HashMap<String, Instant> = HashMap::with_capacity(n);
    let begin = Instant::now();
    match rate {
        None => {
            // At most 500 per produce call, and every partition gets its share even of a small
            // batch (in chunks of 500, 200 requests would all land on partition 0: one worker).
            let chunk = n.div_ceil(PARTITIONS as usize).clamp(1, 500);
            for (i, chunk) in jobs.chunks(chunk).enumerate() {
                let now = Instant::now();
                for j in chunk {
                    sent.insert(j.to_string(), now);
                }
                stage.produce(i % PARTITIONS as usize, chunk).await;
            }
        }
        Some(rate) => {
            let gap = Duration::from_secs_f64(1.0 / f64::from(rate));
            for (i, j) in jobs.iter().enumerate() {
                let due = begin + gap * i as u32;
                tokio::time::sleep_until(due.into()).await;
                sent.insert(j.to_string(), Instant::now());
                stage.produce(i % PARTITIONS as usize, &[*j]).await;
            }
        }
    }
    let mut latencies = Vec::with_capacity(n);
    let mut worker_rss_kib = 0;
    let mut worker_threads = 0;
    let mut metrics_rss_kib = 0;
    let mut last = begin;
    let mut answered: BTreeSet<String> = BTreeSet::new();
    let mut repeats = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while latencies.len() < n && Instant::now() < deadline {
        let Ok(Some((job, at))) =
            tokio::time::timeout(Duration::from_secs(1), stage.responses.recv()).await
        else {
            continue;
        };
        if let Some(t0) = sent.remove(&job) {
            answered.insert(job);
            latencies.push(at.saturating_duration_since(t0));
            last = at;
            if latencies.len() % 1000 == 0 {
                worker_rss_kib = worker_rss_kib.max(worker_max(rss_kib).unwrap_or(0));
                worker_threads = worker_threads.max(worker_max(threads).unwrap_or(0));
                metrics_rss_kib = metrics_rss_kib.max(metrics_rss());
            }
        } else if answered.contains(&job) {
            repeats += 1;
        }
    }
    worker_rss_kib = worker_rss_kib.max(worker_max(rss_kib).unwrap_or(0));
    worker_threads = worker_threads.max(worker_max(threads).unwrap_or(0));
    metrics_rss_kib = metrics_rss_kib.max(metrics_rss());
    let cpu = cpu().saturating_sub(cpu_before);
    let workers_cpu = workers_cpu().saturating_sub(workers_before);
    let supervisor_cpu = supervisors_cpu().saturating_sub(supervisors_before);
    let metrics_cpu = metrics_cpu()
        .zip(metrics_before)
        .map(|(after, before)| after.saturating_sub(before));
    let _ = stop_scraping.send(true);
    let mut scrapes = None;
    for s in scrapers {
        let s = s.await.unwrap();
        let all: &mut Scrapes = scrapes.get_or_insert_default();
        all.ok += s.ok;
        all.failed += s.failed;
        all.bytes = all.bytes.max(s.bytes);
        all.took += s.took;
    }
    let broker_cpu = link
        .broker_cpu()
        .zip(broker_before)
        .map(|(after, before)| after.saturating_sub(before));
    let transactions = match transactions_before {
        Some(before) => transactions_committed(&services)
            .await
            .map(|after| after.saturating_sub(before)),
        None => None,
    };
    if exactly_once() {
        // Exactly one response per request: a repeat would come soon after the first.
        let until = Instant::now() + Duration::from_secs(1);
        while let Ok(Some((job, _))) =
            tokio::time::timeout_at(until.into(), stage.responses.recv()).await
        {
            repeats += usize::from(answered.contains(&job));
        }
    }
    let aborted_records = stage.aborted.load(std::sync::atomic::Ordering::Relaxed);
    let log = LogCounts::of(&services);
    assert_eq!(latencies.len(), n, "{name}: every request answered");
    latencies.sort();
    Outcome {
        name: name.to_owned(),
        requests: n,
        elapsed: last - begin,
        latencies,
        cpu,
        workers_cpu,
        supervisor_cpu,
        metrics_cpu,
        metrics_rss_kib,
        scrapes,
        broker_cpu,
        worker_rss_kib,
        worker_threads,
        supervisor_rss_kib,
        first_response: first,
        settled,
        repeats,
        aborted_records,
        transactions,
        log,
    }
}

/// How the new member of [`rebalance_pause`] arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Newcomer {
    /// A second `serve` with its own instance-id prefix.
    Instance,
    /// TTIN to the running `serve`: one worker more.
    Ttin,
}

/// A response later than this after its request was queued behind the pause (at the offered
/// rates here, a request is answered in 2–5 ms).
const LATE: Duration = Duration::from_millis(100);

/// What one new member costs a steadily loaded group, from the moment it starts (t0).
#[derive(Debug, Clone, Copy)]
struct Pause {
    /// From t0 until every worker, the new one too, consumes in the new generation (the log's
    /// "worker consuming" lines).
    settled: Duration,
    /// From t0 until every partition has answered a request after that: each consumes again,
    /// under its new owner.
    every_partition: Duration,
    /// The longest time without any response, over all partitions, after t0.
    largest_gap: Duration,
    /// The longest time between two responses of one partition before t0 (the steady load's
    /// own spread, to read the next figure against).
    partition_gap_before: Duration,
    /// The longest time between two responses of one partition after t0.
    partition_gap_after: Duration,
    /// How many partitions moved to the newcomer (their owner before t0, by the logs, is not
    /// their owner once the group has settled).
    moved: usize,
    /// [`Pause::partition_gap_after`] over the partitions that stayed with their owner.
    gap_staying: Duration,
    /// From t0 until the old owner said it gives partitions up: it heard of the newcomer at its
    /// heartbeat.
    gives_up: Option<Duration>,
    /// [`Pause::partition_gap_after`] over the partitions that moved.
    gap_moved: Duration,
    /// From t0 until the first response the newcomer wrote: the first on a partition that moved
    /// after the newcomer said it consumes it (until then its old owner answers).
    newcomer_first_response: Option<Duration>,
    /// From t0 until the last response later than [`LATE`]: after it, every request is answered
    /// at the offered rate without queueing. Zero when none was that late.
    offered_rate: Duration,
    /// The slowest request of the run.
    max_latency: Duration,
    /// Responses beyond one per request (at-least-once repeats).
    repeats: usize,
    /// Requests without a response within 120 s of the load's end.
    lost: usize,
}

/// Requests sent by [`steady_load`]: job id → (partition, when it was produced).
type Sent = HashMap<String, (usize, Instant)>;

/// Produces `n` requests at `rate` per second from `begin`, round-robin over the partitions.
fn steady_load(
    stage: &Stage,
    rate: u32,
    n: usize,
    begin: Instant,
) -> tokio::task::JoinHandle<Sent> {
    let partitions = stage.partitions.clone();
    tokio::spawn(async move {
        let gap = Duration::from_secs_f64(1.0 / f64::from(rate));
        let mut sent = HashMap::with_capacity(n);
        for i in 0..n {
            tokio::time::sleep_until((begin + gap * i as u32).into()).await;
            let job = uuid::Uuid::new_v4();
            let p = i % PARTITIONS as usize;
            sent.insert(job.to_string(), (p, Instant::now()));
            partitions[p]
                .produce(vec![record(job)], Compression::NoCompression)
                .await
                .unwrap();
        }
        sent
    })
}

/// Every response to `sent`, repeats included, in order of arrival; asserts each request got one.
async fn arrivals_of(stage: &mut Stage, sent: &Sent) -> Vec<(String, Instant)> {
    let (arrivals, lost) = arrivals_or_lost(stage, sent).await;
    assert_eq!(lost, 0, "every request answered");
    arrivals
}

/// Every response to `sent`, repeats included, in order of arrival, and how many requests got
/// none within 120 s.
async fn arrivals_or_lost(stage: &mut Stage, sent: &Sent) -> (Vec<(String, Instant)>, usize) {
    let n = sent.len();
    let mut arrivals: Vec<(String, Instant)> = Vec::with_capacity(n);
    let mut answered = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered.len() < n && Instant::now() < deadline {
        if let Ok(Some((job, at))) =
            tokio::time::timeout(Duration::from_secs(1), stage.responses.recv()).await
            && sent.contains_key(&job)
        {
            answered.insert(job.clone());
            arrivals.push((job, at));
        }
    }
    arrivals.sort_by_key(|(_, at)| *at);
    (arrivals, n - answered.len())
}

/// The longest time between two responses on one partition, counting gaps that end in `when`.
fn partition_gap(
    arrivals: &[(String, Instant)],
    sent: &Sent,
    when: impl Fn(Instant) -> bool,
) -> Duration {
    partitions_gap(arrivals, sent, 0..PARTITIONS as usize, when)
}

/// [`partition_gap`] over `partitions` only.
fn partitions_gap(
    arrivals: &[(String, Instant)],
    sent: &Sent,
    partitions: impl IntoIterator<Item = usize>,
    when: impl Fn(Instant) -> bool,
) -> Duration {
    let mut largest = Duration::ZERO;
    for p in partitions {
        let times: Vec<Instant> = arrivals
            .iter()
            .filter(|(job, _)| sent[job].0 == p)
            .map(|(_, at)| *at)
            .collect();
        for w in times.windows(2) {
            if when(w[1]) {
                largest = largest.max(w[1] - w[0]);
            }
        }
    }
    largest
}

/// The slowest request's time from produce to its first response.
fn max_latency(arrivals: &[(String, Instant)], sent: &Sent) -> Duration {
    let mut seen = BTreeSet::new();
    arrivals
        .iter()
        .filter(|(job, _)| seen.insert(job))
        .map(|(job, at)| at.saturating_duration_since(sent[job].1))
        .max()
        .unwrap_or_default()
}

/// One instance (`--workers 1`) under a steady load at `rate`; after `before`, a new member
/// starts; the load goes on for `after`.
async fn rebalance_pause(
    bench: &Bench,
    double: &RuntimeDouble,
    newcomer: Newcomer,
    rate: u32,
    before: Duration,
    after: Duration,
) -> Pause {
    let mut stage = Stage::new(bench.plain(), "pause").await;
    let first = Shape {
        workers: 1,
        in_flight: 16,
        instance: Some(INSTANCE_PREFIXES[0]),
    };
    let (mut services, _, _) = stage.start(bench, double, &[first]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let n = (f64::from(rate) * (before + after).as_secs_f64()) as usize;
    let begin = Instant::now();
    let load = steady_load(&stage, rate, n, begin);
    tokio::time::sleep_until((begin + before).into()).await;
    let t0 = Instant::now();
    let t0_wall = Utc::now();
    match newcomer {
        Newcomer::Instance => {
            let second = Shape {
                instance: Some(INSTANCE_PREFIXES[1]),
                ..first
            };
            let s = stage.serve(bench, double, second);
            services.push(s);
        }
        Newcomer::Ttin => services[0].signal(nix::sys::signal::Signal::SIGTTIN),
    }
    let sent = load.await.unwrap();
    let (arrivals, lost) = arrivals_or_lost(&mut stage, &sent).await;
    let refs: Vec<&Service> = services.iter().collect();
    let settled_at = wait_settled(&refs, 2, Duration::from_secs(10))
        .await
        .expect("the new member consumes");
    let settled = wall_gap(t0_wall, settled_at);
    let before_owners = owners_at(&refs, t0_wall);
    let (_, after_owners) = settled_owners(&refs, 2).expect("settled above");
    let (moved, staying): (Vec<usize>, Vec<usize>) = (0..PARTITIONS as usize)
        .partition(|p| before_owners.get(&(*p as i32)) != after_owners.get(&(*p as i32)));
    // The newcomer: the process that held nothing at t0. Its responses are those on the
    // partitions that moved, once it said it consumes them.
    let newcomer_consuming = holdings(&refs)
        .into_iter()
        .filter(|(at, pid, h)| {
            *at > t0_wall
                && !before_owners.values().any(|p| p == pid)
                && matches!(h, Holding::Holds(ps) if !ps.is_empty())
        })
        .map(|(at, _, _)| t0 + wall_gap(t0_wall, at))
        .next();
    let gives_up = holdings(&refs)
        .into_iter()
        .find(|(at, pid, h)| {
            *at > t0_wall
                && before_owners.values().any(|p| p == pid)
                && matches!(h, Holding::GivesUp(_) | Holding::GivesUpAll)
        })
        .map(|(at, _, _)| wall_gap(t0_wall, at));
    let newcomer_first_response = newcomer_consuming.and_then(|from| {
        arrivals
            .iter()
            .find(|(job, at)| *at >= from && moved.contains(&sent[job].0))
            .map(|(_, at)| *at - t0)
    });

    // Gaps between consecutive arrivals: (gap, when it ended).
    let largest_gap = arrivals
        .windows(2)
        .filter(|w| w[1].1 > t0)
        .map(|w| w[1].1 - w[0].1)
        .max()
        .unwrap_or_default();
    // The first second warms up; from then to t0 is the steady load.
    let steady = begin + Duration::from_secs(1);
    let mut every_partition = Duration::ZERO;
    for p in 0..PARTITIONS as usize {
        let resumed = arrivals
            .iter()
            .find(|(job, at)| sent[job].0 == p && *at > t0 + settled)
            .map_or(Duration::MAX, |(_, at)| *at - t0);
        every_partition = every_partition.max(resumed);
    }
    let mut offered_rate = Duration::ZERO;
    let mut seen = BTreeSet::new();
    for (job, at) in &arrivals {
        if seen.insert(job) && at.saturating_duration_since(sent[job].1) > LATE && *at > t0 {
            offered_rate = offered_rate.max(*at - t0);
        }
    }
    Pause {
        settled,
        every_partition,
        largest_gap,
        partition_gap_before: partition_gap(&arrivals, &sent, |end| end > steady && end <= t0),
        partition_gap_after: partition_gap(&arrivals, &sent, |end| end > t0),
        moved: moved.len(),
        gap_staying: partitions_gap(&arrivals, &sent, staying, |end| end > t0),
        gives_up,
        gap_moved: partitions_gap(&arrivals, &sent, moved.iter().copied(), |end| end > t0),
        newcomer_first_response,
        offered_rate,
        max_latency: max_latency(&arrivals, &sent),
        repeats: arrivals.len() + lost - n,
        lost,
    }
}

/// What a static member's crash costs: one instance of two static workers under a steady load;
/// at t0 one worker is killed with SIGKILL, and the supervisor starts its replacement, which
/// rejoins as the same instance id.
#[derive(Debug, Clone, Copy)]
struct Replacement {
    /// From the replacement's start (the supervisor's "worker started") until it consumes.
    started_to_consuming: Duration,
    /// From the kill until the replacement consumes.
    kill_to_consuming: Duration,
    /// Whether the group rebalanced: the replacement consumes in a newer generation.
    rebalanced: bool,
    /// The longest time between two responses of one partition before t0.
    partition_gap_before: Duration,
    /// The same after t0: the killed worker's partitions wait for the replacement.
    partition_gap_after: Duration,
    /// The slowest request of the run.
    max_latency: Duration,
    /// Responses beyond one per request: what the killed worker had answered but not committed.
    repeats: usize,
}

/// The supervisor's "worker started" time of the first worker not in `old`, and that worker's
/// first "worker consuming" line.
fn replacement_lines(log: &Path, old: &[u32]) -> Option<(DateTime<Utc>, Consuming)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let (pid, started) = text
        .lines()
        .filter_map(|l| {
            let i = l.find("worker started")?;
            let pid: u32 = log_field(&l[i..], "pid")?.parse().ok()?;
            let at: DateTime<Utc> = l.split(' ').next()?.parse().ok()?;
            Some((pid, at))
        })
        .find(|(pid, _)| !old.contains(pid))?;
    let consuming = consuming_lines(log).into_iter().find(|c| c.pid == pid)?;
    Some((started, consuming))
}

/// `serve --workers 2` with static members under a steady load at `rate`; after `before`, one
/// worker is killed; the load goes on for `after`.
async fn static_replacement(
    bench: &Bench,
    double: &RuntimeDouble,
    rate: u32,
    before: Duration,
    after: Duration,
) -> Replacement {
    let mut stage = Stage::new(bench.plain(), "static").await;
    let shape = Shape {
        workers: 2,
        in_flight: 16,
        instance: Some(INSTANCE_PREFIXES[0]),
    };
    let (services, _, _) = stage.start(bench, double, &[shape]).await;
    let service = &services[0];
    let generation = consuming_lines(&service.log)
        .iter()
        .map(|c| c.generation)
        .max()
        .expect("the workers consume");
    let n = (f64::from(rate) * (before + after).as_secs_f64()) as usize;
    let begin = Instant::now();
    let load = steady_load(&stage, rate, n, begin);
    tokio::time::sleep_until((begin + before).into()).await;
    let workers = workers(service.child.id());
    assert_eq!(workers.len(), 2, "two workers before the kill");
    let t0 = Instant::now();
    let t0_wall = Utc::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(workers[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (started, consuming) = loop {
        if let Some(found) = replacement_lines(&service.log, &workers) {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no replacement consumed within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let sent = load.await.unwrap();
    let arrivals = arrivals_of(&mut stage, &sent).await;
    let steady = begin + Duration::from_secs(1);
    Replacement {
        started_to_consuming: wall_gap(started, consuming.at),
        kill_to_consuming: wall_gap(t0_wall, consuming.at),
        rebalanced: consuming.generation != generation,
        partition_gap_before: partition_gap(&arrivals, &sent, |end| end > steady && end <= t0),
        partition_gap_after: partition_gap(&arrivals, &sent, |end| end > t0),
        max_latency: max_latency(&arrivals, &sent),
        repeats: arrivals.len() - n,
    }
}

/// One request at a time: produce, wait for its response, the next; each latency (sorted), and
/// the service's CPU time and memory over the `n` requests.
async fn one_at_a_time(
    bench: &Bench,
    link: &Link,
    double: &RuntimeDouble,
    name: &str,
    workers: usize,
    n: usize,
) -> Outcome {
    let mut stage = Stage::new(link, "single").await;
    let shape = Shape {
        workers,
        in_flight: 16,
        instance: None,
    };
    let (services, first, settled) = stage.start(bench, double, &[shape]).await;
    let service = &services[0];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let supervisor_rss_kib = rss_kib(service.child.id()).unwrap_or(0);
    let cpu_before = service.cpu();
    let workers_before = service.workers_cpu();
    let broker_before = link.broker_cpu();
    let begin = Instant::now();
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let job = uuid::Uuid::new_v4();
        let sent = Instant::now();
        stage.produce(i % PARTITIONS as usize, &[job]).await;
        let at = stage
            .response_of(job, Duration::from_secs(30))
            .await
            .expect("a response");
        latencies.push(at - sent);
    }
    let elapsed = begin.elapsed();
    let cpu = service.cpu().saturating_sub(cpu_before);
    let workers_cpu = service.workers_cpu().saturating_sub(workers_before);
    let broker_cpu = link
        .broker_cpu()
        .zip(broker_before)
        .map(|(after, before)| after.saturating_sub(before));
    latencies.sort();
    Outcome {
        name: name.to_owned(),
        requests: n,
        elapsed,
        latencies,
        cpu,
        workers_cpu,
        supervisor_cpu: Duration::ZERO,
        metrics_cpu: None,
        metrics_rss_kib: 0,
        scrapes: None,
        broker_cpu,
        worker_rss_kib: service.worker_max(rss_kib),
        worker_threads: service.worker_max(threads),
        supervisor_rss_kib,
        first_response: first,
        settled,
        repeats: 0,
        aborted_records: stage.aborted.load(std::sync::atomic::Ordering::Relaxed),
        transactions: None,
        log: LogCounts::of(&services),
    }
}

/// Working through a backlog: what the service held while it did.
struct Backlog {
    requests: usize,
    produced_in: Duration,
    seconds: u64,
    answered: usize,
    /// From start to the last response counted.
    answering: Duration,
    worker_rss_max_kib: u64,
    worker_rss_end_kib: u64,
    supervisor_rss_kib: u64,
    /// (seconds since start, largest worker RSS in KiB, responses so far), every tenth second.
    samples: Vec<(u64, u64, usize)>,
}

/// Produces `n` small requests (the tests' Add request), then starts `serve --workers 2` and
/// samples every worker's RSS each second for `seconds`.
async fn backlog(bench: &Bench, double: &RuntimeDouble, n: usize, seconds: u64) -> Backlog {
    let mut stage = Stage::new(bench.plain(), "backlog").await;
    let produced = Instant::now();
    let per_partition = n.div_ceil(PARTITIONS as usize);
    let mut tasks = Vec::new();
    for (p, pc) in stage.partitions.iter().enumerate() {
        let pc = pc.clone();
        let count = per_partition.min(n.saturating_sub(p * per_partition));
        tasks.push(tokio::spawn(async move {
            let mut left = count;
            while left > 0 {
                let batch = left.min(1_000);
                let records = (0..batch)
                    .map(|_| {
                        let job = uuid::Uuid::new_v4();
                        Record {
                            key: Some(job.to_string().into_bytes()),
                            value: Some(support::service::add_request(job)),
                            headers: BTreeMap::new(),
                            timestamp: Utc::now(),
                        }
                    })
                    .collect();
                pc.produce(records, Compression::NoCompression)
                    .await
                    .unwrap();
                left -= batch;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let produced_in = produced.elapsed();
    let mut in_topic = 0;
    for pc in &stage.partitions {
        in_topic += pc.get_offset(OffsetAt::Latest).await.unwrap();
    }
    assert_eq!(
        in_topic, n as i64,
        "the whole backlog is in the request topic"
    );

    let service = stage.serve(
        bench,
        double,
        Shape {
            workers: 2,
            in_flight: 16,
            instance: None,
        },
    );
    let started = Instant::now();
    let mut answered = 0;
    let mut answering = Duration::ZERO;
    let mut worker_rss_max_kib = 0;
    let mut worker_rss_end_kib = 0;
    let mut supervisor_rss_kib = 0;
    let mut samples = Vec::new();
    for second in 1..=seconds {
        tokio::time::sleep_until((started + Duration::from_secs(second)).into()).await;
        while let Ok((_, at)) = stage.responses.try_recv() {
            answered += 1;
            answering = at - started;
        }
        worker_rss_end_kib = service.worker_max(rss_kib);
        worker_rss_max_kib = worker_rss_max_kib.max(worker_rss_end_kib);
        supervisor_rss_kib = supervisor_rss_kib.max(rss_kib(service.child.id()).unwrap_or(0));
        if second % 10 == 0 {
            samples.push((second, worker_rss_end_kib, answered));
        }
    }
    Backlog {
        requests: n,
        produced_in,
        seconds,
        answered,
        answering,
        worker_rss_max_kib,
        worker_rss_end_kib,
        supervisor_rss_kib,
        samples,
    }
}

fn record(job: uuid::Uuid) -> Record {
    Record {
        key: Some(job.to_string().into_bytes()),
        value: Some(volatility_request(job)),
        headers: BTreeMap::new(),
        timestamp: Utc::now(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// `min / median / max` of `values`, in ms.
fn spread(mut values: Vec<Duration>) -> String {
    values.sort();
    match values.as_slice() {
        [] => "-".into(),
        [one] => ms(*one),
        v => format!(
            "{} / {} / {}",
            ms(v[0]),
            ms(v[v.len() / 2]),
            ms(v[v.len() - 1])
        ),
    }
}

/// Whether `HD_BENCH_ONLY` selects the scenario `name`: it, or one of its `|`-separated parts,
/// is part of the name, in any case (`sasl` selects the SASL_SSL set).
fn selected(name: &str) -> bool {
    let only = std::env::var("HD_BENCH_ONLY").unwrap_or_default();
    let name = name.to_lowercase();
    only.to_lowercase().split('|').any(|o| name.contains(o))
}

/// The throughput and latency scenarios: (name, instances, workers, max in flight, requests,
/// offered rate, runtime delay in ms).
#[rustfmt::skip]
fn relay_plan(full: bool) -> Vec<Relay> {
    type Row = (&'static str, usize, usize, usize, usize, Option<u32>, u64);
    let rows: &[Row] = if full {
        &[
            ("saturation, --workers 1 --max-in-flight 1", 1, 1, 1, 5_000, None, 0),
            ("saturation, --workers 1 --max-in-flight 16", 1, 1, 16, 20_000, None, 0),
            ("saturation, --workers 2 --max-in-flight 1", 1, 2, 1, 5_000, None, 0),
            ("saturation, --workers 2 --max-in-flight 16", 1, 2, 16, 20_000, None, 0),
            ("saturation, two instances on one group, --workers 1 --max-in-flight 1 each", 2, 1, 1, 5_000, None, 0),
            ("saturation, two instances on one group, --workers 1 --max-in-flight 16 each", 2, 1, 16, 20_000, None, 0),
            ("saturation, two instances on one group, --workers 2 --max-in-flight 16 each", 2, 2, 16, 20_000, None, 0),
            ("500/s offered, --workers 2 --max-in-flight 16", 1, 2, 16, 5_000, Some(500), 0),
            ("runtime +50 ms, --workers 2 --max-in-flight 1", 1, 2, 1, 200, None, 50),
            ("runtime +50 ms, --workers 2 --max-in-flight 16", 1, 2, 16, 2_000, None, 50),
        ]
    } else {
        &[
            ("smoke, --workers 1 --max-in-flight 16", 1, 1, 16, 200, None, 0),
            ("smoke, two instances on one group, --workers 1 --max-in-flight 16 each", 2, 1, 16, 200, None, 0),
        ]
    };
    rows.iter()
        .map(|&(name, instances, workers, in_flight, requests, rate, runtime_delay_ms)| Relay {
            name, instances, workers, in_flight, requests, rate, runtime_delay_ms,
        })
        .collect()
}

/// The rebalance scenarios: (name, newcomer, offered rate, seconds of load before it starts
/// and after).
#[rustfmt::skip]
fn pause_plan(full: bool) -> Vec<(&'static str, Newcomer, u32, u64, u64)> {
    if full {
        vec![
            ("rebalance pause, a second instance joins, 300/s offered", Newcomer::Instance, 300, 3, 12),
            ("rebalance pause, TTIN adds a worker, 300/s offered", Newcomer::Ttin, 300, 3, 12),
        ]
    } else {
        vec![("smoke, rebalance pause, a second instance joins", Newcomer::Instance, 100, 1, 6)]
    }
}

/// The static replacement scenario: (name, offered rate, seconds of load before the kill and
/// after).
fn replacement_plan(full: bool) -> (&'static str, u32, u64, u64) {
    if full {
        (
            "static replacement, kill -9 of one of two workers, 300/s offered",
            300,
            3,
            7,
        )
    } else {
        ("smoke, static replacement", 100, 1, 3)
    }
}

/// The one-at-a-time scenarios: (name, workers); the smoke pass runs the first only.
fn single_plan(full: bool) -> Vec<(&'static str, usize)> {
    let all = [
        ("one at a time, --workers 1", 1),
        ("one at a time, --workers 2", 2),
    ];
    all.into_iter().filter(|&(_, w)| full || w == 1).collect()
}

fn backlog_name(n: usize) -> String {
    format!("backlog of {n}, --workers 2 --max-in-flight 16")
}

/// Whether `HD_BENCH_ONLY` selects any scenario that runs on the plain broker.
fn plain_selected(full: bool, backlog_of: Option<usize>) -> bool {
    relay_plan(full).iter().any(|r| selected(r.name))
        || pause_plan(full).iter().any(|p| selected(p.0))
        || selected(replacement_plan(full).0)
        || single_plan(full).iter().any(|s| selected(s.0))
        || backlog_of.is_some_and(|n| selected(&backlog_name(n)))
        || selected(share::THROUGHPUT)
        || selected(share::SLOW)
}

/// What a scenario of the SASL_SSL set offers.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// As the throughput and latency scenarios.
    Relay(Relay),
    /// As "one at a time": `requests` in turn, to `serve --workers n`.
    OneAtATime { workers: usize, requests: usize },
}

/// The SASL_SSL set: (name, load). Its names differ from the plain ones' in more than the prefix,
/// so that a filter for a plain scenario (`saturation, --workers 2 --max-in-flight 16`) does not
/// start the secured broker too.
#[rustfmt::skip]
fn security_plan(full: bool) -> Vec<(&'static str, Load)> {
    let relay = |name, in_flight, requests, rate| Load::Relay(Relay {
        name, instances: 1, workers: 2, in_flight, requests, rate, runtime_delay_ms: 0,
    });
    if full {
        vec![
            (SATURATION, relay(SATURATION, 16, 20_000, None)),
            (OFFERED, relay(OFFERED, 16, 5_000, Some(500))),
            (SINGLE, Load::OneAtATime { workers: 1, requests: 1_000 }),
        ]
    } else {
        // One small pass with one worker: the debug build's SCRAM (PBKDF2 in unoptimised
        // SHA-512) takes a noticeable part of a second per connection, and each worker opens
        // several. The one-at-a-time path is the plain pass's.
        vec![(SMOKE, Load::Relay(Relay {
            name: SMOKE, instances: 1, workers: 1, in_flight: 16, requests: 16, rate: None,
            runtime_delay_ms: 0,
        }))]
    }
}

const SATURATION: &str = "SASL_SSL against PLAINTEXT: saturation (--workers 2 --max-in-flight 16)";
const OFFERED: &str = "SASL_SSL against PLAINTEXT: 500/s offered (--workers 2 --max-in-flight 16)";
const SINGLE: &str = "SASL_SSL against PLAINTEXT: one at a time (--workers 1)";
const SMOKE: &str = "SASL_SSL against PLAINTEXT: smoke (--workers 1 --max-in-flight 16)";

fn secured_selected(full: bool) -> bool {
    security_plan(full).iter().any(|(name, _)| selected(name))
}

/// One scenario of the SASL_SSL set: run `i` of each list is a pair, run back to back.
struct Paired {
    name: &'static str,
    plaintext: Vec<Outcome>,
    sasl_ssl: Vec<Outcome>,
}

/// Everything measured, for the tables.
#[derive(Default)]
struct Report {
    /// Scenarios that need the consumer group, left out without it.
    skipped: Vec<&'static str>,
    outcomes: Vec<Outcome>,
    pauses: Vec<(&'static str, Vec<Pause>)>,
    replacements: Vec<(&'static str, Vec<Replacement>)>,
    /// Each run's latencies, sorted.
    singles: Vec<(&'static str, Vec<Vec<Duration>>)>,
    backlogs: Vec<(String, Backlog)>,
    paired: Vec<Paired>,
}

async fn measure(
    bench: &Bench,
    secured: Option<&Secured>,
    full: bool,
    runs: usize,
    backlog_of: Option<usize>,
) -> Report {
    let double = RuntimeDouble::start().await;
    // Full runs measure the service; the smoke pass keeps the double's strict checks.
    double.set_strict(!full);
    let mut report = Report::default();
    for r in relay_plan(full).into_iter().filter(|r| selected(r.name)) {
        if r.instances > 1 && !bench.group_mode() {
            report.skipped.push(r.name);
            continue;
        }
        double.set_latency(Duration::from_millis(r.runtime_delay_ms));
        report
            .outcomes
            .push(relay(bench, bench.plain(), &double, r).await);
    }
    double.set_latency(Duration::ZERO);

    for (name, newcomer, rate, before, after) in pause_plan(full) {
        if !selected(name) {
            continue;
        }
        if !bench.group_mode() {
            report.skipped.push(name);
            continue;
        }
        let mut each = Vec::new();
        for run in 0..runs {
            // The old member hears of the newcomer at its next heartbeat (every 3 s, or the
            // broker's 5 s with the consumer protocol): each run starts the newcomer at another
            // point of that interval.
            let phase = heartbeat_interval() * run as u32 / runs as u32;
            let before = Duration::from_secs(before) + phase;
            let after = Duration::from_secs(after);
            let pause = rebalance_pause(bench, &double, newcomer, rate, before, after).await;
            println!("{name}: {pause:?}");
            // The smoke pass proves the harness: nothing may be lost there. A full run reports
            // losses instead.
            assert!(full || pause.lost == 0, "{} requests lost", pause.lost);
            each.push(pause);
        }
        report.pauses.push((name, each));
    }

    let (name, rate, before, after) = replacement_plan(full);
    if selected(name) {
        if bench.group_mode() {
            let mut each = Vec::new();
            for _ in 0..runs {
                let (before, after) = (Duration::from_secs(before), Duration::from_secs(after));
                let r = static_replacement(bench, &double, rate, before, after).await;
                println!("{name}: {r:?}");
                each.push(r);
            }
            report.replacements.push((name, each));
        } else {
            report.skipped.push(name);
        }
    }

    let single_requests = if full { 1_000 } else { 20 };
    for (name, workers) in single_plan(full) {
        if !selected(name) {
            continue;
        }
        let mut each = Vec::new();
        for _ in 0..runs {
            let link = bench.plain();
            let o = one_at_a_time(bench, link, &double, name, workers, single_requests).await;
            each.push(o.latencies);
        }
        report.singles.push((name, each));
    }

    if let Some(n) = backlog_of {
        let name = backlog_name(n);
        if selected(&name) {
            let b = backlog(bench, &double, n, 60).await;
            report.backlogs.push((name, b));
        }
    }

    if let Some(secured) = secured {
        report.paired = measure_paired(bench, secured, &double, full, runs).await;
    }
    assert!(double.violations().is_empty(), "{:?}", double.violations());
    report
}

/// The SASL_SSL set: every selected scenario `runs` times over each protocol. A run of a
/// scenario is a pair, the two back to back on the same broker, so that what else the machine
/// does at the time weighs on both; the order alternates from run to run, so that neither always
/// comes first (onto a broker the other has just warmed, with more topics behind it).
async fn measure_paired(
    bench: &Bench,
    secured: &Secured,
    double: &RuntimeDouble,
    full: bool,
    runs: usize,
) -> Vec<Paired> {
    let plaintext = Link::secured_plaintext(secured);
    let sasl_ssl = Link::sasl_ssl(secured);
    let plan: Vec<(&'static str, Load)> = security_plan(full)
        .into_iter()
        .filter(|(name, _)| selected(name))
        .collect();
    let mut paired: Vec<Paired> = plan
        .iter()
        .map(|&(name, _)| Paired {
            name,
            plaintext: Vec::new(),
            sasl_ssl: Vec::new(),
        })
        .collect();
    for run in 0..runs {
        for (&(name, load), results) in plan.iter().zip(&mut paired) {
            let mut order = [("PLAINTEXT", &plaintext), ("SASL_SSL", &sasl_ssl)];
            if run % 2 == 1 {
                order.reverse();
            }
            for (protocol, link) in order {
                let o = match load {
                    Load::Relay(r) => relay(bench, link, double, r).await,
                    Load::OneAtATime { workers, requests } => {
                        one_at_a_time(bench, link, double, name, workers, requests).await
                    }
                };
                // Each run's figures, for pooling runs of several invocations.
                println!(
                    "run {} {protocol} | {name} | {:.0} requests/s | p50 {} ms | p90 {} ms | \
                     p99 {} ms | {:.0} CPU µs/request | broker {:.0} CPU µs/request | worker RSS {:.1} MiB | \
                     supervisor RSS {:.1} MiB | first response {} ms",
                    run + 1,
                    o.requests as f64 / o.elapsed.as_secs_f64(),
                    ms(percentile(&o.latencies, 0.50)),
                    ms(percentile(&o.latencies, 0.90)),
                    ms(percentile(&o.latencies, 0.99)),
                    cpu_per_request(&o),
                    o.broker_cpu
                        .map_or(f64::NAN, |c| c.as_secs_f64() * 1e6 / o.requests as f64),
                    o.worker_rss_kib as f64 / 1024.0,
                    o.supervisor_rss_kib as f64 / 1024.0,
                    o.first_response.map_or_else(|| "-".into(), ms),
                );
                if protocol == "PLAINTEXT" {
                    results.plaintext.push(o);
                } else {
                    results.sasl_ssl.push(o);
                }
            }
        }
    }
    paired
}

fn cpu_per_request(o: &Outcome) -> f64 {
    o.cpu.as_secs_f64() * 1e6 / o.requests as f64
}

/// A Markdown table's header and alignment rows; the first column left-aligned.
fn header(columns: &[&str]) {
    println!("| {} |", columns.join(" | "));
    println!("|---|{}", "---:|".repeat(columns.len() - 1));
}

/// `min / median / max` of `values`, each written by `show`; NaN stands for "not measured".
fn spread_of(mut values: Vec<f64>, show: impl Fn(f64) -> String) -> String {
    values.retain(|v| !v.is_nan());
    values.sort_by(f64::total_cmp);
    match values.as_slice() {
        [] => "-".into(),
        [one] => show(*one),
        v => format!(
            "{} / {} / {}",
            show(v[0]),
            show(v[v.len() / 2]),
            show(v[v.len() - 1])
        ),
    }
}

/// The SASL_SSL set's table: each protocol's figures, and each run's difference.
fn print_paired(secured: &Secured, paired: &[Paired]) {
    println!();
    println!(
        "SASL_SSL against PLAINTEXT on one broker: the service connects to {} (SASL_SSL, \
         SCRAM-SHA-512, as {}) or to {} (PLAINTEXT); the harness creates the topics, produces the \
         requests and reads the responses over PLAINTEXT in both. min / median / max over runs; \
         \"SASL_SSL − PLAINTEXT\": the difference within each run's pair.",
        secured.sasl_ssl, secured.user.0, secured.plaintext
    );
    println!();
    type Figure = (&'static str, fn(&Outcome) -> f64, usize);
    let figures: [Figure; 9] = [
        (
            "requests/s",
            |o| o.requests as f64 / o.elapsed.as_secs_f64(),
            0,
        ),
        (
            "p50 ms",
            |o| percentile(&o.latencies, 0.50).as_secs_f64() * 1e3,
            2,
        ),
        (
            "p90 ms",
            |o| percentile(&o.latencies, 0.90).as_secs_f64() * 1e3,
            2,
        ),
        (
            "p99 ms",
            |o| percentile(&o.latencies, 0.99).as_secs_f64() * 1e3,
            2,
        ),
        ("service CPU µs/request", cpu_per_request, 0),
        (
            "broker CPU µs/request",
            |o| {
                o.broker_cpu
                    .map_or(f64::NAN, |c| c.as_secs_f64() * 1e6 / o.requests as f64)
            },
            0,
        ),
        ("worker RSS MiB", |o| o.worker_rss_kib as f64 / 1024.0, 1),
        (
            "supervisor RSS MiB",
            |o| o.supervisor_rss_kib as f64 / 1024.0,
            1,
        ),
        (
            "first response ms",
            |o| o.first_response.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
            1,
        ),
    ];
    let mut columns = vec!["scenario", "service connects over", "runs × requests"];
    columns.extend(figures.iter().map(|f| f.0));
    header(&columns);
    for p in paired {
        let requests = p.plaintext.first().map_or(0, |o| o.requests);
        let rows: [(&str, Vec<Vec<f64>>, bool); 3] = [
            (
                "PLAINTEXT",
                figures
                    .iter()
                    .map(|f| p.plaintext.iter().map(f.1).collect())
                    .collect(),
                false,
            ),
            (
                "SASL_SSL",
                figures
                    .iter()
                    .map(|f| p.sasl_ssl.iter().map(f.1).collect())
                    .collect(),
                false,
            ),
            (
                "SASL_SSL − PLAINTEXT",
                figures
                    .iter()
                    .map(|f| {
                        p.sasl_ssl
                            .iter()
                            .zip(&p.plaintext)
                            .map(|(s, t)| (f.1)(s) - (f.1)(t))
                            .collect()
                    })
                    .collect(),
                true,
            ),
        ];
        for (protocol, values, signed) in rows {
            let cells: Vec<String> = values
                .into_iter()
                .zip(&figures)
                .map(|(v, f)| {
                    let decimals = f.2;
                    if signed {
                        spread_of(v, |x| format!("{x:+.decimals$}"))
                    } else {
                        spread_of(v, |x| format!("{x:.decimals$}"))
                    }
                })
                .collect();
            println!(
                "| {} | {protocol} | {} × {requests} | {} |",
                p.name,
                p.sasl_ssl.len().min(p.plaintext.len()),
                cells.join(" | ")
            );
        }
    }
}

fn print_report(bench: &Bench, report: &Report) {
    println!();
    println!("binary: {}", service_binary().display());
    let partitioning = match bench.partitioning {
        Partitioning::Group => "group (every worker a consumer-group member)",
        Partitioning::Index => "index (--partitioning index)",
        Partitioning::Legacy => "index (a binary without --partitioning)",
    };
    println!("partitioning: {partitioning}");
    println!(
        "group protocol: {}",
        group_protocol().unwrap_or("not given (the service's default, classic)")
    );
    println!(
        "exactly-once: {}; responses read {}",
        if exactly_once() {
            "on (--exactly-once)"
        } else {
            "off"
        },
        if committed_reader() {
            "read_committed by the harness's own Fetch (markers passed, aborted transactions left out)"
        } else {
            "with rskafka"
        }
    );
    for name in &report.skipped {
        println!("left out (needs the consumer group): {name}");
    }
    if !report.outcomes.is_empty() {
        println!();
        header(&[
            "scenario",
            "requests",
            "requests/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "service CPU µs/request",
            "worker RSS MiB",
            "worker threads",
            "supervisor RSS MiB",
            "first response ms",
            "all workers consuming ms",
        ]);
    }
    let or_dash = |d: Option<Duration>| d.map(ms).unwrap_or_else(|| "-".into());
    for o in &report.outcomes {
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {:.0} | {:.1} | {} | {:.1} | {} | {} |",
            o.name,
            o.requests,
            o.requests as f64 / o.elapsed.as_secs_f64(),
            ms(percentile(&o.latencies, 0.50)),
            ms(percentile(&o.latencies, 0.95)),
            ms(percentile(&o.latencies, 0.99)),
            o.cpu.as_secs_f64() * 1e6 / o.requests as f64,
            o.worker_rss_kib as f64 / 1024.0,
            o.worker_threads,
            o.supervisor_rss_kib as f64 / 1024.0,
            or_dash(o.first_response),
            or_dash(o.settled),
        );
    }
    if !report.outcomes.is_empty() {
        println!();
        println!(
            "service CPU by process over the measured span (supervisor and metrics process from \
             schedstat, to the ns); scrapes during it"
        );
        println!();
        header(&[
            "scenario",
            "service CPU µs/request",
            "workers µs/request",
            "supervisor CPU ms",
            "metrics process CPU ms",
            "metrics process RSS MiB",
            "scrapes ok / failed",
            "scrape ms, mean",
            "scrape body bytes",
        ]);
    }
    for o in &report.outcomes {
        let per_request = |d: Duration| d.as_secs_f64() * 1e6 / o.requests as f64;
        let (scrapes, scrape_ms, bytes) = match o.scrapes {
            Some(s) => (
                format!("{} / {}", s.ok, s.failed),
                if s.ok == 0 {
                    "-".into()
                } else {
                    format!("{:.2}", s.took.as_secs_f64() * 1e3 / s.ok as f64)
                },
                s.bytes.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
        println!(
            "| {} | {:.1} | {:.1} | {} | {} | {} | {scrapes} | {scrape_ms} | {bytes} |",
            o.name,
            per_request(o.cpu),
            per_request(o.workers_cpu),
            ms(o.supervisor_cpu),
            o.metrics_cpu.map_or_else(|| "-".into(), ms),
            if o.metrics_cpu.is_some() {
                format!("{:.1}", o.metrics_rss_kib as f64 / 1024.0)
            } else {
                "-".into()
            },
        );
    }
    if (exactly_once() || committed_reader()) && !report.outcomes.is_empty() {
        println!();
        println!(
            "delivery and the services' logs (transactions: committed over the measured span, by \
             the commit counters in /metrics; log lines over the whole run)"
        );
        println!();
        header(&[
            "scenario",
            "repeated responses",
            "aborted records left out",
            "transactions",
            "requests per transaction",
            "transactions aborted",
            "coordinator retries",
            "of them CONCURRENT_TRANSACTIONS",
            "produce retries",
            "WARN/ERROR lines",
        ]);
    }
    for o in report
        .outcomes
        .iter()
        .filter(|_| exactly_once() || committed_reader())
    {
        let (transactions, per) = match o.transactions {
            Some(t) if t > 0 => (
                t.to_string(),
                format!("{:.1}", o.requests as f64 / t as f64),
            ),
            _ => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {} | {transactions} | {per} | {} | {} | {} | {} | {} |",
            o.name,
            o.repeats,
            o.aborted_records,
            o.log.aborted,
            o.log.coordinator_retries,
            o.log.concurrent,
            o.log.produce_retries,
            o.log.warnings,
        );
    }
    if !report.pauses.is_empty() {
        println!();
        println!("min / median / max over runs; t0: the new member starts");
        println!();
        header(&[
            "scenario",
            "runs",
            "all workers consuming ms",
            "every partition answering again ms",
            "largest gap between responses ms",
            "largest gap on one partition, before t0 ms",
            "the same after t0 ms",
            "the same, staying partitions ms",
            "the same, moved partitions ms",
            "partitions moved",
            "old owner gives up ms",
            "newcomer's first response ms",
            "offered rate again ms",
            "max latency ms",
            "repeated responses",
            "lost requests",
        ]);
    }
    for (name, each) in &report.pauses {
        let of = |f: fn(&Pause) -> Duration| spread(each.iter().map(f).collect());
        let mut moved: Vec<usize> = each.iter().map(|p| p.moved).collect();
        moved.sort_unstable();
        moved.dedup();
        let moved: Vec<String> = moved.iter().map(usize::to_string).collect();
        let firsts: Vec<Duration> = each
            .iter()
            .filter_map(|p| p.newcomer_first_response)
            .collect();
        let first_responses = if firsts.len() == each.len() {
            spread(firsts)
        } else {
            format!(
                "{} (in {} of {} runs)",
                spread(firsts.clone()),
                firsts.len(),
                each.len()
            )
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            each.len(),
            of(|p| p.settled),
            of(|p| p.every_partition),
            of(|p| p.largest_gap),
            of(|p| p.partition_gap_before),
            of(|p| p.partition_gap_after),
            of(|p| p.gap_staying),
            of(|p| p.gap_moved),
            moved.join(", "),
            spread(each.iter().filter_map(|p| p.gives_up).collect()),
            first_responses,
            of(|p| p.offered_rate),
            of(|p| p.max_latency),
            each.iter().map(|p| p.repeats).sum::<usize>(),
            each.iter().map(|p| p.lost).sum::<usize>(),
        );
    }
    if !report.replacements.is_empty() {
        println!();
        println!("min / median / max over runs; t0: one worker is killed");
        println!();
        header(&[
            "scenario",
            "runs",
            "replacement started → consuming ms",
            "kill → replacement consuming ms",
            "runs that rebalanced",
            "largest gap on one partition, before t0 ms",
            "the same after t0 ms",
            "max latency ms",
            "repeated responses",
        ]);
    }
    for (name, each) in &report.replacements {
        let of = |f: fn(&Replacement) -> Duration| spread(each.iter().map(f).collect());
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
            each.len(),
            of(|r| r.started_to_consuming),
            of(|r| r.kill_to_consuming),
            each.iter().filter(|r| r.rebalanced).count(),
            of(|r| r.partition_gap_before),
            of(|r| r.partition_gap_after),
            of(|r| r.max_latency),
            each.iter().map(|r| r.repeats).sum::<usize>(),
        );
    }
    if !report.singles.is_empty() {
        println!();
        println!("min / median / max over runs");
        println!();
        header(&["scenario", "runs × requests", "p50 ms", "p90 ms", "p99 ms"]);
    }
    for (name, each) in &report.singles {
        let of = |p| spread(each.iter().map(|l| percentile(l, p)).collect());
        println!(
            "| {name} | {} × {} | {} | {} | {} |",
            each.len(),
            each.first().map_or(0, Vec::len),
            of(0.50),
            of(0.90),
            of(0.99),
        );
    }
    let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
    for (name, b) in &report.backlogs {
        println!();
        header(&[
            "scenario",
            "produced in s",
            &format!("answered in {} s", b.seconds),
            "requests/s, start to last response",
            "max worker RSS MiB",
            "worker RSS at the end MiB",
            "supervisor RSS MiB",
        ]);
        println!(
            "| {name} | {:.1} | {} of {} | {:.0} | {} | {} | {} |",
            b.produced_in.as_secs_f64(),
            b.answered,
            b.requests,
            b.answered as f64 / b.answering.as_secs_f64(),
            mib(b.worker_rss_max_kib),
            mib(b.worker_rss_end_kib),
            mib(b.supervisor_rss_kib),
        );
        println!();
        header(&["second", "largest worker RSS MiB", "answered so far"]);
        for (second, rss, answered) in &b.samples {
            println!("| {second} | {} | {answered} |", mib(*rss));
        }
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runs: usize = std::env::var("HD_BENCH_RUNS")
        .ok()
        .map(|r| r.parse().expect("HD_BENCH_RUNS: a number"))
        .unwrap_or(if full { 5 } else { 1 });
    let backlog_of: Option<usize> = std::env::var("HD_BENCH_BACKLOG")
        .ok()
        .filter(|b| !b.is_empty())
        .map(|b| b.parse().expect("HD_BENCH_BACKLOG: a number of requests"));
    let mut secured_needed = secured_selected(full);
    // The binary Cargo built with this bench has the bench's features; without `tls` it would
    // refuse SASL_SSL. Another binary (`HD_BENCH_BIN`) is taken to have what it is asked for.
    if secured_needed && !cfg!(feature = "tls") && std::env::var_os("HD_BENCH_BIN").is_none() {
        println!("left out (built without the `tls` feature): the SASL_SSL set");
        secured_needed = false;
    }
    let brokers = Brokers::get(plain_selected(full, backlog_of), secured_needed);
    let bench = Bench::new(brokers.plain.as_deref());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(measure(
        &bench,
        brokers.secured.as_ref(),
        full,
        runs,
        backlog_of,
    ));
    print_report(&bench, &report);
    if let Some(secured) = &brokers.secured {
        print_paired(secured, &report.paired);
    }
    // Issue 28: a share group against a consumer group on one partition.
    if let Some(plain) = brokers.plain.as_deref() {
        let rows = rt.block_on(share::run(plain, full, selected));
        share::print(&rows);
    }
    drop(brokers);
}

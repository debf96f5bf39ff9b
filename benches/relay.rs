//! End-to-end relay through real Kafka: `hd-kafka-exec serve` as a real process, the runtime
//! double (the project's stand-in for hetida's runtime service) answering instantly or with a
//! fixed delay, and the seed's Volatility request.
//!
//! `cargo bench --bench relay` measures throughput, latency, CPU time per request and memory.
//! It uses the broker named by `HD_BENCH_KAFKA_BOOTSTRAP` (or `HD_TEST_KAFKA_BOOTSTRAP`), or
//! starts its own with `scripts/kafka`. Run without `--bench` (as `cargo test --all-targets`
//! does) it makes one small pass to prove the harness works.
//!
//! `HD_BENCH_BIN=path` measures another build of the service (the musl one, say);
//! `HD_BENCH_ONLY=text` runs only the scenarios whose name contains `text`.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

#[path = "../tests/support/runtime_double.rs"]
#[allow(dead_code)]
mod runtime_double;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use runtime_double::RuntimeDouble;
use tokio::sync::mpsc;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Our own broker, when none was given; stopped on drop.
struct Broker {
    dir: Option<PathBuf>,
    bootstrap: String,
}

impl Broker {
    fn get() -> Broker {
        if let Ok(b) = std::env::var("HD_BENCH_KAFKA_BOOTSTRAP")
            .or_else(|_| std::env::var("HD_TEST_KAFKA_BOOTSTRAP"))
        {
            return Broker {
                dir: None,
                bootstrap: b,
            };
        }
        let dir = repo().join("target/bench-kafka");
        let _ = Command::new(repo().join("scripts/kafka"))
            .args(["stop", "--dir"])
            .arg(&dir)
            .status();
        let ok = Command::new(repo().join("scripts/kafka"))
            .args(["start", "--dir"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "scripts/kafka start failed");
        let bootstrap = std::fs::read_to_string(dir.join("bootstrap"))
            .unwrap()
            .trim()
            .to_owned();
        Broker {
            dir: Some(dir),
            bootstrap,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = Command::new(repo().join("scripts/kafka"))
                .args(["stop", "--dir"])
                .arg(dir)
                .status();
        }
    }
}

fn proc_stat_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
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

struct Service {
    child: Child,
}

impl Service {
    fn start(
        bootstrap: &str,
        topics: &(String, String),
        group: &str,
        engine_url: &str,
        workers: usize,
        in_flight: usize,
    ) -> Service {
        let child = Command::new(service_binary())
            .args(["serve", "--workers", &workers.to_string(), "--max-in-flight", &in_flight.to_string(), "--dead-letter-topic", ""])
            .arg("--store")
            .arg(format!("dir:{}", repo().join("../shared/vectors/transformations").display()))
            .env(
                "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
                format!(r#"{{"bootstrap_servers": "{bootstrap}", "group_id": "{group}", "auto_offset_reset": "earliest"}}"#),
            )
            .env("HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS", format!(r#"{{"bootstrap_servers": "{bootstrap}"}}"#))
            .env("HETIDA_DESIGNER_KAFKA_CONSUMER_TOPIC", &topics.0)
            .env("HETIDA_DESIGNER_KAFKA_RESPONSE_TOPIC", &topics.1)
            .env("HETIDA_DESIGNER_RUNTIME_ENGINE_URL", engine_url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting serve");
        Service { child }
    }

    fn pids(&self) -> Vec<u32> {
        let mut p = vec![self.child.id()];
        p.extend(children(self.child.id()));
        p
    }

    /// The largest `measure` over the worker processes.
    fn worker_max(&self, measure: fn(u32) -> Option<u64>) -> u64 {
        children(self.child.id())
            .into_iter()
            .filter_map(measure)
            .max()
            .unwrap_or(0)
    }

    fn cpu(&self) -> Duration {
        self.pids().into_iter().filter_map(proc_stat_cpu).sum()
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

async fn create_topics(client: &Client, prefix: &str) -> (String, String) {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let topics = (format!("{prefix}-req-{n}"), format!("{prefix}-resp-{n}"));
    let controller = client.controller_client().unwrap();
    controller
        .create_topic(&topics.0, 8, 1, 10_000)
        .await
        .unwrap();
    controller
        .create_topic(&topics.1, 8, 1, 10_000)
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
    for p in 0..8 {
        let pc = client
            .partition_client(topic.clone(), p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut offset = pc.get_offset(OffsetAt::Earliest).await.unwrap();
            loop {
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

struct Outcome {
    name: String,
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    cpu: Duration,
    worker_rss_kib: u64,
    /// Most threads seen in one worker process (musl's malloc suffers from many).
    worker_threads: u64,
    supervisor_rss_kib: u64,
    first_response: Option<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One scenario: start serve, offer `n` requests (all at once, or at `rate` per second), wait
/// for every response.
async fn scenario(
    bootstrap: &str,
    double: &RuntimeDouble,
    name: &str,
    workers: usize,
    in_flight: usize,
    n: usize,
    rate: Option<u32>,
) -> Outcome {
    let client = Arc::new(
        ClientBuilder::new(vec![bootstrap.to_owned()])
            .build()
            .await
            .unwrap(),
    );
    let topics = create_topics(&client, "relay").await;
    let group = format!("{}-group", topics.0);
    let jobs: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::new_v4()).collect();
    let (tx, mut rx) = mpsc::unbounded_channel();
    watch_responses(client.clone(), topics.1.clone(), tx).await;

    // A first request before the service starts: time from start to first response.
    let pc0 = client
        .partition_client(topics.0.clone(), 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let warm = uuid::Uuid::new_v4();
    pc0.produce(vec![record(warm)], Compression::NoCompression)
        .await
        .unwrap();
    let started = Instant::now();
    let service = Service::start(
        bootstrap,
        &topics,
        &group,
        &double.engine_url(),
        workers,
        in_flight,
    );
    let first = loop {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some((job, at))) if job == warm.to_string() => break Some(at - started),
            Ok(Some(_)) => continue,
            _ => break None,
        }
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let supervisor_rss_kib = rss_kib(service.child.id()).unwrap_or(0);
    let cpu_before = service.cpu();

    let mut sent: HashMap<String, Instant> = HashMap::with_capacity(n);
    let partitions: Vec<_> = {
        let mut v = Vec::new();
        for p in 0..8 {
            v.push(
                client
                    .partition_client(topics.0.clone(), p, UnknownTopicHandling::Retry)
                    .await
                    .unwrap(),
            );
        }
        v
    };
    let begin = Instant::now();
    match rate {
        None => {
            // At most 500 per produce call, and every partition gets its share even of a small
            // batch (in chunks of 500, 200 requests would all land on partition 0: one worker).
            let chunk = n.div_ceil(8).clamp(1, 500);
            for (i, chunk) in jobs.chunks(chunk).enumerate() {
                let now = Instant::now();
                for j in chunk {
                    sent.insert(j.to_string(), now);
                }
                partitions[i % 8]
                    .produce(
                        chunk.iter().map(|j| record(*j)).collect(),
                        Compression::NoCompression,
                    )
                    .await
                    .unwrap();
            }
        }
        Some(rate) => {
            let gap = Duration::from_secs_f64(1.0 / f64::from(rate));
            for (i, j) in jobs.iter().enumerate() {
                let due = begin + gap * i as u32;
                tokio::time::sleep_until(due.into()).await;
                sent.insert(j.to_string(), Instant::now());
                partitions[i % 8]
                    .produce(vec![record(*j)], Compression::NoCompression)
                    .await
                    .unwrap();
            }
        }
    }
    let mut latencies = Vec::with_capacity(n);
    let mut worker_rss_kib = 0;
    let mut worker_threads = 0;
    let mut last = begin;
    let deadline = Instant::now() + Duration::from_secs(300);
    while latencies.len() < n && Instant::now() < deadline {
        if let Ok(Some((job, at))) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await
            && let Some(t0) = sent.remove(&job)
        {
            latencies.push(at.saturating_duration_since(t0));
            last = at;
            if latencies.len() % 1000 == 0 {
                worker_rss_kib = worker_rss_kib.max(service.worker_max(rss_kib));
                worker_threads = worker_threads.max(service.worker_max(threads));
            }
        }
    }
    worker_rss_kib = worker_rss_kib.max(service.worker_max(rss_kib));
    worker_threads = worker_threads.max(service.worker_max(threads));
    let cpu = service.cpu().saturating_sub(cpu_before);
    assert_eq!(latencies.len(), n, "{name}: every request answered");
    latencies.sort();
    Outcome {
        name: name.to_owned(),
        requests: n,
        elapsed: last - begin,
        latencies,
        cpu,
        worker_rss_kib,
        worker_threads,
        supervisor_rss_kib,
        first_response: first,
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

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let batch = if full { 20_000 } else { 200 };
    let broker = Broker::get();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let double = RuntimeDouble::start().await;
        // Full runs measure the service; the smoke pass keeps the double's strict checks.
        double.set_strict(!full);
        let mut outcomes = Vec::new();
        // (scenario, workers, max in flight, requests, offered rate, runtime delay in ms)
        type Plan = Vec<(&'static str, usize, usize, usize, Option<u32>, u64)>;
        let plan: Plan = if full {
            vec![
                ("saturation, --workers 1 --max-in-flight 1", 1, 1, batch / 4, None, 0),
                ("saturation, --workers 1 --max-in-flight 16", 1, 16, batch, None, 0),
                ("saturation, --workers 2 --max-in-flight 1", 2, 1, batch / 4, None, 0),
                ("saturation, --workers 2 --max-in-flight 16", 2, 16, batch, None, 0),
                ("500/s offered, --workers 2 --max-in-flight 16", 2, 16, 5_000, Some(500), 0),
                ("runtime +50 ms, --workers 2 --max-in-flight 1", 2, 1, 200, None, 50),
                ("runtime +50 ms, --workers 2 --max-in-flight 16", 2, 16, 2_000, None, 50),
            ]
        } else {
            vec![("smoke, --workers 1 --max-in-flight 16", 1, 16, batch, None, 0)]
        };
        // `HD_BENCH_ONLY=saturation` runs the scenarios whose name contains it.
        let only = std::env::var("HD_BENCH_ONLY").unwrap_or_default();
        for (name, workers, in_flight, n, rate, delay_ms) in plan {
            if !name.contains(&only) {
                continue;
            }
            double.set_latency(Duration::from_millis(delay_ms));
            outcomes.push(scenario(&broker.bootstrap, &double, name, workers, in_flight, n, rate).await);
        }
        assert!(double.violations().is_empty(), "{:?}", double.violations());
        println!();
        println!("binary: {}", service_binary().display());
        println!();
        println!("| scenario | requests | requests/s | p50 ms | p95 ms | p99 ms | service CPU µs/request | worker RSS MiB | worker threads | supervisor RSS MiB | first response ms |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for o in &outcomes {
            let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
            println!(
                "| {} | {} | {:.0} | {} | {} | {} | {:.0} | {:.1} | {} | {:.1} | {} |",
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
                o.first_response.map(ms).unwrap_or_else(|| "-".into()),
            );
        }
    });
    drop(broker);
}

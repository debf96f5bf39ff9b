//! `hd-kafka-exec serve` as a real process against the test broker and the runtime double, and
//! helpers to feed it requests and collect its responses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rskafka::client::Client;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::record::{Record, RecordAndOffset};

use super::kafka::{create_topic_replicated, kafka_bootstrap, unique_topic};
use super::wait::{Shown, eventually, within};

pub fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors")
}

/// The topics and group of one test's service.
#[derive(Debug, Clone)]
pub struct Topics {
    pub requests: String,
    pub responses: String,
    pub dead_letters: String,
    pub group: String,
}

impl Topics {
    /// Fresh names, nothing created: for a test that creates the topics its own way.
    pub fn named(prefix: &str) -> Topics {
        Topics {
            requests: unique_topic(&format!("{prefix}-req")),
            responses: unique_topic(&format!("{prefix}-resp")),
            dead_letters: unique_topic(&format!("{prefix}-dlq")),
            group: unique_topic(&format!("{prefix}-group")),
        }
    }

    pub async fn create(client: &Client, prefix: &str, partitions: i32) -> Topics {
        Self::create_replicated(client, prefix, partitions, 1).await
    }

    /// Like [`create`](Self::create) with `replicas` copies of every partition.
    pub async fn create_replicated(
        client: &Client,
        prefix: &str,
        partitions: i32,
        replicas: i16,
    ) -> Topics {
        let t = Topics::named(prefix);
        create_topic_replicated(client, &t.requests, partitions, replicas).await;
        create_topic_replicated(client, &t.responses, partitions, replicas).await;
        create_topic_replicated(client, &t.dead_letters, 1, replicas).await;
        t
    }
}

/// A running `serve`; killed (with its workers) when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServiceProcess {
    /// Starts `serve` configured through hetida's variables, plus `args`.
    pub fn start(topics: &Topics, engine_url: &str, args: &[&str]) -> ServiceProcess {
        Self::start_with(topics, engine_url, args, &[])
    }

    /// Like [`start`](Self::start) with extra environment variables.
    pub fn start_with(
        topics: &Topics,
        engine_url: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ServiceProcess {
        Self::start_on(&kafka_bootstrap().join(","), topics, engine_url, args, env)
    }

    /// Like [`start_with`](Self::start_with) against the cluster at `bootstrap`.
    pub fn start_on(
        bootstrap: &str,
        topics: &Topics,
        engine_url: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ServiceProcess {
        let command = Command::new(env!("CARGO_BIN_EXE_hd-kafka-exec"));
        Self::spawn(command, bootstrap, topics, engine_url, args, env, false)
    }

    /// Like [`start`](Self::start), but with the metrics endpoint where an operator's service
    /// has it when nothing is configured: the default address, not a port of its own.
    pub fn start_with_default_metrics(
        topics: &Topics,
        engine_url: &str,
        args: &[&str],
    ) -> ServiceProcess {
        let command = Command::new(env!("CARGO_BIN_EXE_hd-kafka-exec"));
        let bootstrap = kafka_bootstrap().join(",");
        Self::spawn(command, &bootstrap, topics, engine_url, args, &[], true)
    }

    /// Like [`start`](Self::start) with every process of the service limited to `kib` KiB of
    /// address space (`ulimit -v`, as an operator limits a service's memory).
    pub fn start_limited(
        topics: &Topics,
        engine_url: &str,
        args: &[&str],
        kib: u64,
    ) -> ServiceProcess {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(r#"ulimit -v {kib} && exec "$0" "$@""#))
            .arg(env!("CARGO_BIN_EXE_hd-kafka-exec"));
        let bootstrap = kafka_bootstrap().join(",");
        Self::spawn(command, &bootstrap, topics, engine_url, args, &[], false)
    }

    /// `serve` by `command` (the binary, or what execs it); `default_metrics`: the metrics
    /// endpoint at the default address, as an operator's service has it, not a port of its own.
    fn spawn(
        mut command: Command,
        bootstrap: &str,
        topics: &Topics,
        engine_url: &str,
        args: &[&str],
        env: &[(&str, &str)],
        default_metrics: bool,
    ) -> ServiceProcess {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let default_store = format!("dir:{}", vectors().join("transformations").display());
        let store: &[&str] = if args.contains(&"--store") {
            &[]
        } else {
            &["--store", &default_store]
        };
        command
            .arg("serve")
            .args(store)
            .args(["--dead-letter-topic", &topics.dead_letters])
            .args(args)
            .env(
                "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
                format!(
                    r#"{{"bootstrap_servers": "{bootstrap}", "group_id": "{}", "auto_offset_reset": "earliest"}}"#,
                    topics.group
                ),
            )
            .env(
                "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS",
                format!(r#"{{"bootstrap_servers": "{bootstrap}"}}"#),
            )
            .env("HETIDA_DESIGNER_KAFKA_CONSUMER_TOPIC", &topics.requests)
            .env("HETIDA_DESIGNER_KAFKA_RESPONSE_TOPIC", &topics.responses)
            .env("HETIDA_DESIGNER_RUNTIME_ENGINE_URL", engine_url)
            .env("RUST_LOG", "info,rskafka::client::producer::broadcast=error")
            // Every test's service has its metrics process, each on a port of its own.
            .env("HD_METRICS_ADDR", "127.0.0.1:0")
            .env_remove("HD_WORKERS")
            .env_remove("WEB_CONCURRENCY")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if default_metrics {
            command.env_remove("HD_METRICS_ADDR");
        }
        let child = command.spawn().unwrap();
        ServiceProcess {
            child,
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Current worker processes (the supervisor's children but its metrics process).
    pub fn workers(&self) -> Vec<i32> {
        self.children()
            .into_iter()
            .filter(|pid| !is_metrics_process(*pid))
            .collect()
    }

    /// Every child of the supervisor: workers and the metrics process.
    pub fn children(&self) -> Vec<i32> {
        let path = format!("/proc/{0}/task/{0}/children", self.pid());
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// The metrics process, once it runs.
    pub fn metrics_process(&self) -> Option<i32> {
        self.children()
            .into_iter()
            .find(|pid| is_metrics_process(*pid))
    }

    /// Where the metrics endpoint listens (from the supervisor's log line; waits for it).
    #[track_caller]
    pub fn metrics_addr(&self, timeout: Duration) -> std::net::SocketAddr {
        eventually(timeout, "the metrics address logged", || {
            let log = self.log_text();
            log.lines()
                .find(|l| l.contains("metrics at /metrics"))
                .and_then(|l| l.split("addr=").nth(1))
                .and_then(|a| a.split_whitespace().next())
                .and_then(|a| a.parse().ok())
                .ok_or(Shown(log))
        })
    }

    /// Waits until `n` workers run and each has logged that it consumes.
    #[track_caller]
    pub fn wait_workers(&self, n: usize, timeout: Duration) {
        eventually(
            timeout,
            format!("{n} workers started and consuming"),
            || {
                let log = self.log_text();
                let consuming = log.matches("worker consuming").count();
                if self.workers().len() == n && consuming >= n {
                    Ok(())
                } else {
                    Err(Shown(log))
                }
            },
        );
    }

    /// Whether the worker `pid` has logged that it consumes (every line names its process).
    pub fn consumes(&self, pid: i32) -> bool {
        let process = format!(" pid={pid} ");
        self.log_text()
            .lines()
            .any(|l| l.contains("worker consuming") && l.contains(&process))
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// How `serve` exited, or `None` if it still runs after `timeout` (the caller's failure to
    /// report, with what it expected).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        within(timeout, || self.child.try_wait().unwrap().ok_or(())).ok()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // A failed test shows what the service logged: its log is gone with the directory.
        if std::thread::panicking() {
            let log = self.log_text();
            let tail = &log[log.len().saturating_sub(60_000)..];
            let tail = tail
                .get(tail.find('\n').map_or(0, |i| i + 1)..)
                .unwrap_or(tail);
            eprintln!(
                "--- the service's log (its last 60 kB) ---\n{tail}--- end of the service's log ---"
            );
        }
        for w in self.children() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(w),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A record to produce: key and value (a `None` value is a tombstone).
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Produces request values with keys to `topic`, spread over partitions by key.
pub async fn produce_requests(client: &Arc<Client>, topic: &str, requests: &[KeyValue]) {
    let partitions = client
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == topic)
        .unwrap()
        .partitions
        .len() as i32;
    let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    for (i, (key, value)) in requests.iter().enumerate() {
        let p = match key {
            Some(k) => hd_kafka_exec::kafka::producer::partition_for_key(k, partitions),
            None => i as i32 % partitions,
        };
        by_partition.entry(p).or_default().push(Record {
            key: key.clone(),
            value: value.clone(),
            headers: BTreeMap::new(),
            timestamp: Utc::now(),
        });
    }
    for (p, records) in by_partition {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        for chunk in records.chunks(200) {
            pc.produce(chunk.to_vec(), Compression::NoCompression)
                .await
                .unwrap();
        }
    }
}

/// Reads every record of `topic` until at least `expected` arrived or `timeout` passed.
pub async fn read_all(
    client: &Arc<Client>,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<(i32, RecordAndOffset)> {
    let partitions = client
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == topic)
        .unwrap()
        .partitions
        .len() as i32;
    let mut clients = Vec::new();
    for p in 0..partitions {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let start = pc.get_offset(OffsetAt::Earliest).await.unwrap();
        clients.push((p, pc, start));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        for (p, pc, next) in clients.iter_mut() {
            let (records, _) = pc.fetch_records(*next, 1..50_000_000, 50).await.unwrap();
            for r in records {
                if r.offset >= *next {
                    *next = r.offset + 1;
                    out.push((*p, r));
                }
            }
        }
        if out.len() >= expected || tokio::time::Instant::now() >= deadline {
            return out;
        }
    }
}

/// `n` fresh job ids and their Add requests, each keyed by its job id.
pub fn keyed_requests(n: usize) -> (Vec<uuid::Uuid>, Vec<KeyValue>) {
    let jobs: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::new_v4()).collect();
    let records = jobs
        .iter()
        .map(|j| (Some(j.to_string().into_bytes()), Some(add_request(*j))))
        .collect();
    (jobs, records)
}

/// A small valid request (the Add component) with its own job id.
pub fn add_request(job: uuid::Uuid) -> Vec<u8> {
    format!(
        r#"{{"id": "2abf72f6-68c9-7398-7175-165d31b3ced7", "wiring": {{"input_wirings": [{{"workflow_input_name": "a", "adapter_id": "direct_provisioning", "filters": {{"value": "1"}}}}, {{"workflow_input_name": "b", "adapter_id": "direct_provisioning", "filters": {{"value": "2.5"}}}}], "output_wirings": []}}, "job_id": "{job}"}}"#
    )
    .into_bytes()
}

/// Job id of a response value. Responses may hold lone surrogates (as Python's json writes
/// them), which serde_json refuses: then the top-level `job_id` is found in the text (it comes
/// after the outputs, so its last occurrence).
pub fn job_of(value: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(value) {
        return v["job_id"].as_str().unwrap().to_owned();
    }
    let text = String::from_utf8_lossy(value);
    let at = text
        .rfind(r#""job_id": ""#)
        .expect("a response names its job id")
        + 11;
    text[at..at + 36].to_owned()
}

/// Reads `topic` until a response for every job of `jobs` arrived (repeats included) or
/// `timeout` passed; returns every record read.
pub async fn read_jobs(
    client: &Arc<Client>,
    topic: &str,
    jobs: &[uuid::Uuid],
    timeout: Duration,
) -> Vec<(i32, RecordAndOffset)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let wanted: std::collections::HashSet<String> = jobs.iter().map(|j| j.to_string()).collect();
    let mut expected = jobs.len();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let all = read_all(client, topic, expected, left).await;
        let seen: std::collections::HashSet<String> = all
            .iter()
            .map(|(_, r)| job_of(r.record.value.as_ref().unwrap()))
            .collect();
        if wanted.is_subset(&seen) || tokio::time::Instant::now() >= deadline {
            return all;
        }
        expected = all.len() + 1;
    }
}

/// Whether `pid` is a metrics process (it names itself so; workers keep the binary's name).
pub fn is_metrics_process(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "hd-metrics")
}

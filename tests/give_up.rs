//! Giving partitions up while their executions run long (issue 25). `serve --workers 1` has six
//! requests at the runtime, one per partition, when TTIN adds a second worker: a second member
//! joins the group and the old worker gives partitions up. Their executions do not finish by the
//! deadline the rebalance timeout sets, so the partitions' next owner executes those requests
//! again. Each request must still be answered exactly once, and by that re-execution: the old
//! worker must not answer a record it no longer owns when its execution finally ends.
//!
//! The order is arranged, not hoped for. The runtime double holds every execution until the test
//! releases it (tests/support/runtime_double.rs), and an answer names which call of its job it
//! was. The re-execution arrives while the first execution is still held; the test then releases
//! the first execution and waits until the old worker is done with it (it has its runtime answer,
//! and the service's in-flight gauge counts only the calls still held at the double), and only
//! then releases the re-execution. Four variants: the classic protocol (eager: the old worker
//! gives up every partition, and executes again those it gets back) and KIP-848's (only the new
//! member's share is revoked), each at-least-once and exactly-once.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rskafka::client::Client;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use support::committed::{FourReads, wait_committed};
use support::group::{MemberRow, wait_for_split};
use support::kafka::{client, kafka_bootstrap, kafka_dir};
use support::prometheus::http_get;
use support::runtime_double::{RuntimeDouble, call_of_response};
use support::service::{KeyValue, ServiceProcess, Topics, add_request, job_of, keyed_requests};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);
const PARTITIONS: i32 = 6;

/// The group protocol the workers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Eager rebalances: every member gives up every partition, then each gets its share.
    Classic,
    /// KIP-848 (`group_protocol` `consumer`): only the partitions that move are revoked.
    Consumer,
}

impl Protocol {
    /// hetida's consumer options for `topics`, with a rebalance timeout short enough for the
    /// give-up deadline to pass soon: classic 8 s - 2 s = 6 s (heartbeats every 0.5 s, so the
    /// old worker hears of the rebalance early and joins again in time), KIP-848 20 s - 15 s =
    /// 5 s.
    fn options(self, topics: &Topics) -> String {
        let protocol = match self {
            Protocol::Classic => r#""rebalance_timeout_ms": 8000, "heartbeat_interval_ms": 500"#,
            Protocol::Consumer => r#""rebalance_timeout_ms": 20000, "group_protocol": "consumer""#,
        };
        format!(
            r#"{{"bootstrap_servers": "{}", "group_id": "{}", "auto_offset_reset": "earliest", {protocol}}}"#,
            kafka_bootstrap().join(","),
            topics.group,
        )
    }

    /// What the old worker logs when the deadline passes with executions in flight.
    fn give_up_warning(self) -> &'static str {
        // One give-up for both protocols, one warning.
        "executions of the given-up partitions did not finish in time: their answers are dropped"
    }
}

/// Polls `done` every 50 ms until it holds; panics after `timeout` with `what` and `log`.
fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A job id for each partition, whose key (the job id) lands there.
fn one_job_per_partition() -> BTreeMap<i32, Uuid> {
    let mut jobs = BTreeMap::new();
    while jobs.len() < PARTITIONS as usize {
        let job = Uuid::new_v4();
        let p = hd_kafka_exec::kafka::producer::partition_for_key(
            job.to_string().as_bytes(),
            PARTITIONS,
        );
        jobs.entry(p).or_insert(job);
    }
    jobs
}

/// The service's `executions_in_flight` gauge: executions begun and not yet answered or
/// dropped, over all workers.
fn in_flight(metrics: &str) -> Option<u64> {
    sample(metrics, "hd_kafka_exec_executions_in_flight")
}

/// One unlabelled sample of the service's `/metrics`.
fn sample(metrics: &str, name: &str) -> Option<u64> {
    let scrape = http_get(metrics, "/metrics").ok()?.text();
    let prefix = format!("{name} ");
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// Every record of `topic` up to each partition's end now.
async fn read_to_end(client: &Arc<Client>, topic: &str) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    for p in 0..PARTITIONS {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let end = pc.get_offset(OffsetAt::Latest).await.unwrap();
        let mut next = pc.get_offset(OffsetAt::Earliest).await.unwrap();
        while next < end {
            let (records, _) = pc.fetch_records(next, 1..50_000_000, 500).await.unwrap();
            let from = next;
            for r in records.into_iter().filter(|r| r.offset >= from) {
                next = r.offset + 1;
                values.push(r.record.value.unwrap_or_default());
            }
        }
    }
    values
}

/// The responses per job: the call number each names (`None`: not a held call's answer).
fn answers_by_job(values: &[Vec<u8>]) -> BTreeMap<String, Vec<Option<u64>>> {
    let mut by_job: BTreeMap<String, Vec<Option<u64>>> = BTreeMap::new();
    for v in values {
        by_job
            .entry(job_of(v))
            .or_default()
            .push(call_of_response(v));
    }
    by_job
}

/// One variant's service and what it works on.
struct Scene {
    protocol: Protocol,
    exactly_once: bool,
    double: RuntimeDouble,
    client: Arc<Client>,
    topics: Topics,
    service: ServiceProcess,
    /// Where the metrics endpoint listens.
    metrics: String,
    /// The six held requests: partition -> job.
    jobs: BTreeMap<i32, Uuid>,
}

impl Scene {
    /// `serve --workers 1` on six fresh partitions and a fresh group, consuming.
    async fn start(protocol: Protocol, exactly_once: bool, prefix: &str) -> Scene {
        let double = RuntimeDouble::start().await;
        let client = client().await;
        let topics = Topics::create(&client, prefix, PARTITIONS).await;
        let mut args = vec!["--workers", "1"];
        if exactly_once {
            args.push("--exactly-once");
        }
        let service = ServiceProcess::start_with(
            &topics,
            &double.engine_url(),
            &args,
            &[(
                "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
                &protocol.options(&topics),
            )],
        );
        service.wait_workers(1, WAIT);
        wait_for_split(&topics, 1, PARTITIONS);
        let metrics = service.metrics_addr(WAIT).to_string();
        Scene {
            protocol,
            exactly_once,
            double,
            client,
            topics,
            service,
            metrics,
            jobs: BTreeMap::new(),
        }
    }

    fn log(&self) -> String {
        self.service.log_text()
    }

    /// Job ids as strings, of the six held requests.
    fn job_ids(&self) -> Vec<String> {
        self.jobs.values().map(Uuid::to_string).collect()
    }

    /// Six requests, one per partition, whose executions the double holds; returns once all
    /// six first calls are held.
    async fn hold_six(&mut self) {
        self.jobs = one_job_per_partition();
        self.double.hold(true);
        let records: Vec<KeyValue> = self
            .jobs
            .values()
            .map(|j| (Some(j.to_string().into_bytes()), Some(add_request(*j))))
            .collect();
        support::service::produce_requests(&self.client, &self.topics.requests, &records).await;
        let mut want: Vec<(String, u64)> = self.job_ids().into_iter().map(|j| (j, 1)).collect();
        want.sort();
        wait_until(
            "the six first calls held",
            WAIT,
            || self.double.held() == want,
            || self.log(),
        );
    }

    /// TTIN: a second worker joins; returns the new member's partitions, once the group is
    /// split between the two.
    fn add_a_member(&self) -> Vec<i32> {
        let before: Vec<MemberRow> = wait_for_split(&self.topics, 1, PARTITIONS);
        self.service.signal(Signal::SIGTTIN);
        let after = wait_for_split(&self.topics, 2, PARTITIONS);
        let new = after
            .iter()
            .find(|r| r.consumer_id != before[0].consumer_id)
            .unwrap_or_else(|| panic!("no new member: {before:?} -> {after:?}"));
        assert!(
            !new.partitions.is_empty(),
            "the premise: partitions moved to the new member: {after:?}"
        );
        new.partitions.clone()
    }

    /// Waits until every job of `partitions` is executed a second time while its first call
    /// is still held, and asserts the premise: no job ran more than twice, and the old worker
    /// logged that the deadline passed with executions in flight.
    fn wait_reexecuted(&self, partitions: &[i32]) -> Vec<String> {
        let jobs: Vec<String> = partitions
            .iter()
            .map(|p| self.jobs[p].to_string())
            .collect();
        wait_until(
            &format!("second calls of the jobs of partitions {partitions:?}"),
            WAIT,
            || {
                let counts: Vec<u64> = self
                    .job_ids()
                    .iter()
                    .map(|j| self.double.calls_for_job(j))
                    .collect();
                assert!(
                    counts.iter().all(|n| *n <= 2),
                    "a job ran more than twice (a second rebalance?): {counts:?}; log:\n{}",
                    self.log()
                );
                jobs.iter().all(|j| self.double.held_calls(j) == [1, 2])
            },
            || format!("held: {:?}\n{}", self.double.held(), self.log()),
        );
        let log = self.log();
        assert!(
            log.contains(self.protocol.give_up_warning()),
            "the premise: the give-up deadline passed with executions in flight; log:\n{log}"
        );
        jobs
    }

    /// Waits until the service's executions in flight are exactly the calls the double holds:
    /// every other execution has been answered or dropped.
    fn wait_in_flight_only_held(&self) {
        let last = std::cell::Cell::new(None);
        wait_until(
            "executions in flight = calls held",
            WAIT,
            || {
                last.set(in_flight(&self.metrics));
                last.get() == Some(self.double.held().len() as u64)
            },
            || {
                format!(
                    "in flight {:?}, held {:?}\n{}",
                    last.get(),
                    self.double.held(),
                    self.log()
                )
            },
        );
    }
}

/// The scenario for one variant; returns a summary line.
async fn gives_up(protocol: Protocol, exactly_once: bool, prefix: &str) -> String {
    let started = Instant::now();
    let mut scene = Scene::start(protocol, exactly_once, prefix).await;
    scene.hold_six().await;
    let moved = scene.add_a_member();
    // Classic: the old worker gave every partition up, and starts again those it got back.
    let reexecuted_partitions: Vec<i32> = match protocol {
        Protocol::Classic => (0..PARTITIONS).collect(),
        Protocol::Consumer => moved.clone(),
    };
    let reexecuted = scene.wait_reexecuted(&reexecuted_partitions);

    // The first executions end now, long after their partitions were given up.
    for job in &reexecuted {
        assert!(scene.double.release(job, 1), "{job}'s first call was held");
    }
    wait_until(
        "the released first calls answered by the double",
        WAIT,
        || reexecuted.iter().all(|j| scene.double.answered(j, 1)),
        || scene.log(),
    );
    scene.wait_in_flight_only_held();
    assert_eq!(
        sample(&scene.metrics, "hd_kafka_exec_answers_dropped_total"),
        Some(reexecuted.len() as u64),
        "each given-up first call's answer counted as dropped"
    );

    // Then everything else, and requests in steady state after the rebalance.
    scene.double.hold(false);
    scene.double.release_all();
    let (steady, records) = keyed_requests(12);
    support::service::produce_requests(&scene.client, &scene.topics.requests, &records).await;
    let all: Vec<Uuid> = scene.jobs.values().copied().chain(steady.clone()).collect();
    let values = read_answers(&scene, &all).await;
    let summary = assert_answers(&scene, &reexecuted, &steady, &values);
    format!(
        "{protocol:?}, exactly-once {exactly_once}: moved {moved:?}, re-executed {} jobs; {summary}; {:.1} s",
        reexecuted.len(),
        started.elapsed().as_secs_f64()
    )
}

/// Waits until every job of `all` has a response and nothing is in flight any more, then reads
/// the response topic: every record (at-least-once), or what `read_committed` readers see
/// (exactly-once; all four readers checked: one committed response per job).
async fn read_answers(scene: &Scene, all: &[Uuid]) -> Vec<Vec<u8>> {
    let log = || scene.log();
    if scene.exactly_once {
        let (bootstrap, topic, jobs) = (
            kafka_bootstrap().join(","),
            scene.topics.responses.clone(),
            all.to_vec(),
        );
        tokio::task::spawn_blocking(move || wait_committed(&bootstrap, &topic, &jobs, WAIT))
            .await
            .unwrap();
    } else {
        support::service::read_jobs(&scene.client, &scene.topics.responses, all, WAIT).await;
    }
    wait_until(
        "nothing held or in flight",
        WAIT,
        || scene.double.held().is_empty() && in_flight(&scene.metrics) == Some(0),
        log,
    );
    if !scene.exactly_once {
        return read_to_end(&scene.client, &scene.topics.responses).await;
    }
    let (bootstrap, topic, n) = (
        kafka_bootstrap().join(","),
        scene.topics.responses.clone(),
        all.len(),
    );
    let reads =
        tokio::task::spawn_blocking(move || FourReads::read(&kafka_dir(), &bootstrap, &topic, n))
            .await
            .unwrap();
    println!("{}", reads.summary());
    let repeated = answers_by_job(&reads.aiokafka_committed.values);
    reads.assert_exactly_once_committed(
        all,
        &format!(
            "{}; answers by job (call numbers): {repeated:?}; log:\n{}",
            reads.summary(),
            log()
        ),
    );
    reads.aiokafka_committed.values.clone()
}

/// Asserts one response per job; a re-executed job's from its second call, a job executed
/// once from its only call, a steady-state job from a call that was not held. Returns a
/// summary.
fn assert_answers(
    scene: &Scene,
    reexecuted: &[String],
    steady: &[Uuid],
    values: &[Vec<u8>],
) -> String {
    let by_job = answers_by_job(values);
    let context = || {
        format!(
            "answers by job (call numbers): {by_job:?}\nlog:\n{}",
            scene.log()
        )
    };
    let repeated: Vec<(&String, &Vec<Option<u64>>)> =
        by_job.iter().filter(|(_, calls)| calls.len() > 1).collect();
    assert!(
        repeated.is_empty(),
        "{} of {} jobs answered more than once: {repeated:?}; {}",
        repeated.len(),
        by_job.len(),
        context()
    );
    for job in scene.job_ids() {
        let want = if reexecuted.contains(&job) { 2 } else { 1 };
        assert_eq!(
            scene.double.calls_for_job(&job),
            want,
            "runtime calls of {job}; {}",
            context()
        );
        assert_eq!(
            by_job.get(&job),
            Some(&vec![Some(want)]),
            "{job} must be answered once, by call {want} (the {}); {}",
            if want == 2 {
                "re-execution, not the given-up first call"
            } else {
                "only call"
            },
            context()
        );
    }
    for job in steady.iter().map(Uuid::to_string) {
        assert_eq!(
            scene.double.calls_for_job(&job),
            1,
            "steady-state job {job} ran once"
        );
        assert_eq!(
            by_job.get(&job),
            Some(&vec![None]),
            "steady-state job {job}; {}",
            context()
        );
    }
    let strangers: BTreeSet<&String> = by_job
        .keys()
        .filter(|j| !scene.job_ids().contains(j) && !steady.iter().any(|s| s.to_string() == **j))
        .collect();
    assert!(
        strangers.is_empty(),
        "responses of unknown jobs: {strangers:?}"
    );
    format!("{} responses, none repeated", values.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn classic_at_least_once_answers_a_given_up_request_once_by_its_next_owner() {
    println!(
        "{}",
        gives_up(Protocol::Classic, false, "giveup-classic").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn classic_exactly_once_answers_a_given_up_request_once_by_its_next_owner() {
    println!(
        "{}",
        gives_up(Protocol::Classic, true, "giveup-classic-eos").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_protocol_at_least_once_answers_a_revoked_request_once_by_its_next_owner() {
    println!(
        "{}",
        gives_up(Protocol::Consumer, false, "giveup-kip848").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_protocol_exactly_once_answers_a_revoked_request_once_by_its_next_owner() {
    println!(
        "{}",
        gives_up(Protocol::Consumer, true, "giveup-kip848-eos").await
    );
}

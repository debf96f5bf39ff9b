//! Share groups (KIP-932, `"group_protocol": "share"`, Kafka 4.2+): every worker a member of a
//! share group, the members consuming one partition together, each request acknowledged on
//! its own once answered. The runtime is the project's runtime double, which holds executions
//! until released where a test needs requests in flight. Each test asserts what the group looks
//! like in Kafka's own tool (`kafka-share-groups`) before it relies on it.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use nix::sys::signal::Signal;
use support::kafka::{client, kafka_bootstrap, kafka_dir, scripts_kafka};
use support::prometheus::http_get;
use support::runtime_double::RuntimeDouble;
use support::service::{
    ServiceProcess, Topics, is_metrics_process, job_of, keyed_requests, produce_requests, read_jobs,
};
use support::wait::{Shown, eventually, executions};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

/// hetida's consumer options for a share group of its own that starts at the log's beginning.
fn share_options(topics: &Topics) -> String {
    format!(
        r#"{{"bootstrap_servers": "{}", "group_id": "{}", "group_protocol": "share", "auto_offset_reset": "earliest"}}"#,
        kafka_bootstrap().join(","),
        topics.group
    )
}

fn start(topics: &Topics, double: &RuntimeDouble, args: &[&str]) -> ServiceProcess {
    ServiceProcess::start_with(
        topics,
        &double.engine_url(),
        args,
        &[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            &share_options(topics),
        )],
    )
}

/// The members Kafka's `kafka-share-groups --describe --members` lists for `group`, with the
/// partitions each is assigned.
fn share_members(group: &str) -> Vec<String> {
    scripts_kafka("share-members", &kafka_dir(), &[group])
        .lines()
        .filter(|l| l.starts_with(group))
        .map(str::to_owned)
        .collect()
}

/// Waits until Kafka lists `n` members of `group`, each assigned a partition of `topic` (Kafka's
/// assignor spreads the partitions; with fewer partitions than members, members share them).
fn wait_for_share_members(group: &str, topic: &str, n: usize) -> Vec<String> {
    eventually(WAIT, format!("{n} share members of {group}"), || {
        let rows = share_members(group);
        if rows.len() == n && rows.iter().all(|r| r.contains(topic)) {
            Ok(rows)
        } else {
            Err(rows)
        }
    })
}

/// Responses per job id in the response topic.
async fn answers(topics: &Topics, jobs: &[Uuid]) -> HashMap<String, usize> {
    let client = client().await;
    let mut counts = HashMap::new();
    for (_, r) in read_jobs(&client, &topics.responses, jobs, WAIT).await {
        *counts
            .entry(job_of(r.record.value.as_ref().unwrap()))
            .or_insert(0) += 1;
    }
    counts
}

/// One request partition, four workers with two executions each at most: all eight requests
/// are executing at once (held by the runtime double), which no single member of a consumer
/// group could do with one partition; released, each is answered exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn four_workers_execute_the_requests_of_one_partition_at_once() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "share-four", 1).await;
    let service = start(
        &topics,
        &double,
        &["--workers", "4", "--max-in-flight", "2"],
    );
    let rows = wait_for_share_members(&topics.group, &topics.requests, 4);
    println!("share members:\n{}", rows.join("\n"));

    double.hold(true);
    let (jobs, records) = keyed_requests(8);
    produce_requests(&client, &topics.requests, &records).await;
    // Eight held at once: more than the two any one worker may execute.
    executions(&double, 8, WAIT).await;
    let log = service.log_text();
    let executing: HashSet<&str> = log
        .lines()
        .filter(|l| l.contains("worker consuming") && l.contains("protocol=\"share\""))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("pid=")))
        .collect();
    assert_eq!(
        executing.len(),
        4,
        "four workers consume the one partition: {executing:?}"
    );
    double.stop_holding();

    let counts = answers(&topics, &jobs).await;
    for job in &jobs {
        let job = job.to_string();
        assert_eq!(
            counts.get(&job),
            Some(&1),
            "job {job} answered once: {counts:?}"
        );
        assert_eq!(double.calls_for_job(&job), 1, "job {job} executed once");
    }
    assert_eq!(counts.len(), 8);

    // Kafka's side of it, in the service's metrics: eight acquired and accepted, one each.
    let addr = service.metrics_addr(WAIT).to_string();
    let value = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("hd_kafka_exec_{name} ")))
            .map_or(-1.0, |v| v.trim().parse().unwrap())
    };
    eventually(WAIT, "the share counters", || {
        let text = http_get(&addr, "/metrics")
            .map(|r| r.text())
            .unwrap_or_default();
        let (acquired, accepted) = (
            value(&text, "share_records_acquired_total"),
            value(&text, "share_records_accepted_total"),
        );
        if acquired >= 8.0 && accepted == 8.0 {
            Ok(())
        } else {
            Err(Shown(format!("acquired {acquired}, accepted {accepted}")))
        }
    });
}

/// A slow request and fifty fast ones behind it in the same partition, all produced before the
/// group existed: the fast ones are answered while the slow one runs (held), and the slow one
/// is answered once when it ends.
#[tokio::test(flavor = "multi_thread")]
async fn fast_requests_behind_a_slow_one_are_answered_while_it_runs() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "share-slow", 1).await;
    let (jobs, records) = keyed_requests(51);
    let slow = jobs[0].to_string();
    double.hold_jobs([slow.as_str()]);
    // Produced before the group exists: `"auto_offset_reset": "earliest"` becomes the group's
    // share.auto.offset.reset before the first member joins (Kafka's default is the log end).
    produce_requests(&client, &topics.requests, &records).await;
    let _service = start(&topics, &double, &["--workers", "2"]);
    wait_for_share_members(&topics.group, &topics.requests, 2);
    let fast = &jobs[1..];
    let counts = answers(&topics, fast).await;
    assert!(
        fast.iter().all(|j| counts.get(&j.to_string()) == Some(&1)),
        "every fast request answered once: {counts:?}"
    );
    assert_eq!(
        double.calls_for_job(&slow),
        1,
        "the premise: the slow one is running"
    );
    assert!(
        !counts.contains_key(&slow),
        "the slow one is not answered yet"
    );

    double.stop_holding();
    let counts = answers(&topics, &jobs).await;
    assert_eq!(counts.get(&slow), Some(&1), "the slow one answered once");
    assert_eq!(double.calls_for_job(&slow), 1, "and executed once");
}

/// kill -9 of a worker holding acquired requests (executing, held): its connection drops, the
/// broker releases what it held, and those requests are delivered again and answered: none lost.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_a_worker_holding_requests_loses_none() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "share-kill", 1).await;
    let service = start(
        &topics,
        &double,
        &["--workers", "2", "--max-in-flight", "4"],
    );
    wait_for_share_members(&topics.group, &topics.requests, 2);

    double.hold(true);
    let (jobs, records) = keyed_requests(8);
    produce_requests(&client, &topics.requests, &records).await;
    executions(&double, 8, WAIT).await;
    let victim = service
        .workers()
        .into_iter()
        .find(|p| !is_metrics_process(*p))
        .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    double.stop_holding();

    let counts = answers(&topics, &jobs).await;
    for job in &jobs {
        assert!(
            counts.contains_key(&job.to_string()),
            "job {job} answered: {counts:?}"
        );
    }
    let twice = jobs
        .iter()
        .filter(|j| double.calls_for_job(&j.to_string()) > 1)
        .count();
    assert!(
        twice > 0,
        "the premise: the killed worker held requests (some of the 8 held), which ran again elsewhere"
    );
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    println!("{twice} requests ran twice after the kill; answered twice: {repeated:?}");
    eventually(WAIT, "a worker in the killed one's place", || {
        let workers = service.workers();
        if workers.contains(&victim) {
            Err(Shown(format!("{workers:?}")))
        } else {
            Ok(())
        }
    });
}

/// Two instances of two workers each in one share group, 2,000 requests over two partitions and
/// no fault: every request answered exactly once (repeats come only from kills and expired
/// locks, and there are none).
#[tokio::test(flavor = "multi_thread")]
async fn two_instances_answer_two_thousand_requests_each_once() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "share-two", 2).await;
    let _a = start(&topics, &double, &["--workers", "2"]);
    let _b = start(&topics, &double, &["--workers", "2"]);
    wait_for_share_members(&topics.group, &topics.requests, 4);
    let (jobs, records) = keyed_requests(2000);
    produce_requests(&client, &topics.requests, &records).await;
    let counts = answers(&topics, &jobs).await;
    let missing = jobs
        .iter()
        .filter(|j| !counts.contains_key(&j.to_string()))
        .count();
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(missing, 0, "none lost");
    assert!(
        repeated.is_empty(),
        "no repeats without a fault: {repeated:?}"
    );
}

/// An execution longer than Kafka's default acquisition lock (30 s): the worker set the group's
/// lock to cover its longest execution before joining, so the request is not handed to another
/// member while it runs, and it is executed and answered once.
#[tokio::test(flavor = "multi_thread")]
async fn an_execution_longer_than_the_default_lock_runs_once() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "share-long", 1).await;
    let service = start(&topics, &double, &["--workers", "2"]);
    wait_for_share_members(&topics.group, &topics.requests, 2);
    let log = service.log_text();
    let lock_ms: u64 = log
        .lines()
        .find(|l| l.contains("share group configured"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("lock_ms="))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the lock in force is logged; log:\n{log}"));
    assert!(
        lock_ms > 30_000,
        "the premise: a lock longer than Kafka's default ({lock_ms} ms)"
    );

    let (jobs, records) = keyed_requests(1);
    let job = jobs[0].to_string();
    double.hold_jobs([job.as_str()]);
    produce_requests(&client, &topics.requests, &records).await;
    executions(&double, 1, WAIT).await;
    let started = std::time::Instant::now();
    // Held past the default lock: without the group's own lock the other member would get it.
    eventually(
        WAIT,
        "the execution outlasting Kafka's default lock",
        || {
            if started.elapsed() > Duration::from_secs(35) {
                Ok(())
            } else {
                Err(started.elapsed())
            }
        },
    );
    assert_eq!(
        double.calls_for_job(&job),
        1,
        "not delivered again while it ran"
    );
    double.stop_holding();
    let counts = answers(&topics, &jobs).await;
    assert_eq!(counts.get(&job), Some(&1), "answered once");
    assert_eq!(double.calls_for_job(&job), 1, "executed once");
}

/// A broker that cannot serve share groups (Kafka before 4.2): `serve` stops at start with an
/// error line that names the need and the fix (one per worker at most: the first to meet it may
/// stop the others before they do), and does not restart it.
/// scripts/test-compat runs it on 2.8.1 and 3.9.2; the suite's broker serves share groups.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a broker without share groups: scripts/test-compat runs it on 2.8.1 and 3.9.2"]
async fn a_broker_without_share_groups_stops_serve_with_the_reason() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "share-old", 1).await;
    let mut service = start(&topics, &double, &["--workers", "2"]);
    let status = service
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("serve still runs; log:\n{}", service.log_text()));
    assert!(!status.success(), "{status:?}");
    let log = service.log_text();
    let reasons = log
        .matches("\"group_protocol\": \"share\" needs Kafka 4.2+")
        .count();
    assert!((1..=2).contains(&reasons), "{reasons} lines; log:\n{log}");
    assert!(log.contains("restarting cannot fix"), "log:\n{log}");
}

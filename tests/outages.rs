//! Kafka outages of any length are waited out (design decision 13): no worker is killed as hung
//! or fails its boot because Kafka is unreachable, every request is answered once Kafka is
//! back, and a stop request during an outage still ends the service within its grace period.
//! Each test runs a cluster of its own (the shared one must stay up) and the runtime double.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::kafka::OwnCluster;
use support::runtime_double::RuntimeDouble;
use support::service::{
    ServiceProcess, Topics, job_of, keyed_requests, produce_requests, read_jobs,
};
use support::wait::{Shown, eventually, executions};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(180);

/// Whether the first node of the cluster accepts connections.
fn up(cluster: &OwnCluster) -> bool {
    std::net::TcpStream::connect(cluster.node_address(1)).is_ok()
}

/// Waits until the first node is down.
#[track_caller]
fn wait_until_down(cluster: &OwnCluster) {
    eventually(WAIT, "the first node down", || {
        if up(cluster) {
            Err("it accepts connections")
        } else {
            Ok(())
        }
    });
}

/// Waits until the first node is up again, asserting meanwhile that the service still has the
/// same `workers` (none killed as hung, failed or restarted while Kafka is away).
#[track_caller]
fn assert_same_workers_until_up(cluster: &OwnCluster, service: &ServiceProcess, workers: &[i32]) {
    eventually(WAIT, "the first node up again", || {
        assert_eq!(
            service.workers(),
            workers,
            "a worker was replaced while Kafka was down; log:\n{}",
            service.log_text()
        );
        if up(cluster) {
            Ok(())
        } else {
            Err("it refuses connections")
        }
    });
}

/// Responses per job among `records`.
fn answers_per_job(records: &[(i32, rskafka::record::RecordAndOffset)]) -> HashMap<String, usize> {
    let mut per_job = HashMap::new();
    for (_, r) in records {
        *per_job
            .entry(job_of(r.record.value.as_ref().unwrap()))
            .or_default() += 1;
    }
    per_job
}

/// The broker is down for four times `--timeout` while requests are in flight: the service
/// stays up with the same workers, and once Kafka is back every request (those in flight and
/// those produced after) is answered exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn an_outage_of_four_timeouts_under_load_is_waited_out_and_loses_nothing() {
    let cluster = std::sync::Arc::new(OwnCluster::start(1));
    let double = RuntimeDouble::start().await;
    // 2 workers x 16 in flight at 500 ms: 64 a second, so 250 requests take about 4 s.
    double.set_latency(Duration::from_millis(500));
    let client = cluster.client().await;
    let topics = Topics::create(&client, "outage-long", 4).await;
    let service = ServiceProcess::start_on(
        &cluster.bootstrap,
        &topics,
        &double.engine_url(),
        &["--workers", "2", "--timeout", "10"],
        &[],
    );
    service.wait_workers(2, WAIT);
    let workers = service.workers();

    let (first, first_wave) = keyed_requests(250);
    produce_requests(&client, &topics.requests, &first_wave).await;
    executions(&double, 40, WAIT).await;
    let outage = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.restart(Duration::from_secs(40))
    });
    wait_until_down(&cluster);
    let down_at = Instant::now();
    assert!(
        double.calls() < first.len() as u64,
        "every request executed before the outage: the test proves nothing"
    );
    // Through the outage: the same workers all along (none killed as hung, none restarted).
    assert_same_workers_until_up(&cluster, &service, &workers);
    assert!(
        down_at.elapsed() >= Duration::from_secs(30),
        "the outage was shorter than three timeouts"
    );
    outage.await.unwrap();

    let client = cluster.client().await;
    let (second, second_wave) = keyed_requests(250);
    produce_requests(&client, &topics.requests, &second_wave).await;
    let all: Vec<Uuid> = first.iter().chain(&second).copied().collect();
    let responses = read_jobs(&client, &topics.responses, &all, WAIT).await;
    for job in &all {
        assert_eq!(
            double.calls_for_job(&job.to_string()),
            1,
            "job {job} executed once"
        );
    }
    // Every request executed once and answered. A response can stand in Kafka twice when the
    // broker stopped after writing it but before acknowledging it: the producer sends it again
    // (rskafka's producer is not idempotent). Such a repeat is the same record, byte for byte;
    // a second execution would differ (its timings and ids).
    for job in &all {
        let values: Vec<&[u8]> = responses
            .iter()
            .map(|(_, r)| r.record.value.as_deref().unwrap())
            .filter(|v| job_of(v) == job.to_string())
            .collect();
        assert!(
            !values.is_empty(),
            "job {job} not answered; log:\n{}",
            service.log_text()
        );
        assert!(
            values.windows(2).all(|w| w[0] == w[1]),
            "job {job} answered differently {} times",
            values.len()
        );
    }
    assert_eq!(service.workers(), workers, "the same workers throughout");
    let log = service.log_text();
    assert!(
        log.contains("Kafka unreachable for"),
        "the outage was not reported; log:\n{log}"
    );
}

/// TERM while Kafka is down and executions wait to produce their responses: the service stops
/// within `--graceful-timeout`, and a new one answers every request once Kafka is back.
#[tokio::test(flavor = "multi_thread")]
async fn term_during_an_outage_stops_within_the_grace_period() {
    let cluster = std::sync::Arc::new(OwnCluster::start(1));
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(1500));
    let client = cluster.client().await;
    let topics = Topics::create(&client, "outage-term", 2).await;
    let mut service = ServiceProcess::start_on(
        &cluster.bootstrap,
        &topics,
        &double.engine_url(),
        &["--workers", "2", "--graceful-timeout", "8"],
        &[],
    );
    service.wait_workers(2, WAIT);
    let (jobs, records) = keyed_requests(100);
    produce_requests(&client, &topics.requests, &records).await;
    executions(&double, 16, WAIT).await;
    let outage = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.restart(Duration::from_secs(25))
    });
    wait_until_down(&cluster);
    assert!(
        double.calls() < jobs.len() as u64,
        "nothing left in flight: the test proves nothing"
    );
    let stop = Instant::now();
    service.signal(Signal::SIGTERM);
    let status = service
        .wait_exit(Duration::from_secs(20))
        .expect("serve did not stop during the outage");
    let took = stop.elapsed();
    assert!(
        !up(&cluster),
        "Kafka came back before the stop ended: the test proves nothing"
    );
    assert!(status.success(), "log:\n{}", service.log_text());
    assert!(
        took < Duration::from_secs(10),
        "stopping took {took:?}, the grace period is 8 s"
    );
    outage.await.unwrap();

    let client = cluster.client().await;
    let second = ServiceProcess::start_on(
        &cluster.bootstrap,
        &topics,
        &double.engine_url(),
        &["--workers", "2"],
        &[],
    );
    second.wait_workers(2, WAIT);
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let per_job = answers_per_job(&responses);
    let lost = jobs
        .iter()
        .filter(|j| !per_job.contains_key(&j.to_string()))
        .count();
    assert_eq!(lost, 0, "log:\n{}", second.log_text());
}

/// Kafka is down when `serve` starts: the workers wait (with a WARN naming what they wait for),
/// are not killed or failed, and serve once Kafka is up.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_started_while_kafka_is_down_waits_and_then_serves() {
    let cluster = std::sync::Arc::new(OwnCluster::start(1));
    let double = RuntimeDouble::start().await;
    let client = cluster.client().await;
    let topics = Topics::create(&client, "outage-boot", 2).await;
    let outage = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.restart(Duration::from_secs(40))
    });
    wait_until_down(&cluster);
    let service = ServiceProcess::start_on(
        &cluster.bootstrap,
        &topics,
        &double.engine_url(),
        &["--workers", "2", "--timeout", "5"],
        &[],
    );
    let workers = eventually(WAIT, "two workers started", || {
        let workers = service.workers();
        if workers.len() == 2 {
            Ok(workers)
        } else {
            Err(Shown(service.log_text()))
        }
    });
    assert_same_workers_until_up(&cluster, &service, &workers);
    outage.await.unwrap();
    let log = service.log_text();
    assert!(
        log.contains("waiting for Kafka to connect"),
        "no word of what it waits for; log:\n{log}"
    );
    assert!(!log.contains("failed to boot"), "log:\n{log}");

    service.wait_workers(2, WAIT);
    let client = cluster.client().await;
    let (jobs, records) = keyed_requests(50);
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let per_job = answers_per_job(&responses);
    assert!(
        jobs.iter().all(|j| per_job.contains_key(&j.to_string())),
        "log:\n{}",
        service.log_text()
    );
    assert_eq!(service.workers(), workers);
}

//! Faults injected into a real worker through the `test-hooks` feature (never in a release
//! build): a thread that hangs, an execution that panics. `scripts/test` runs this file with
//! `--features test-hooks`; without the feature cargo does not build it.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::time::Duration;

use hd_kafka_exec::kafka::GroupCoordinator;
use serde_json::Value;
use support::kafka::{client, kafka_bootstrap};
use support::runtime_double::RuntimeDouble;
use support::service::{ServiceProcess, Topics, add_request, produce_requests, read_jobs};
use support::wait::{Shown, eventually, eventually_async};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

/// A worker whose thread is stuck stops beating; the supervisor kills it after `--timeout` and
/// starts another in its place.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_worker_is_killed_after_the_timeout_and_replaced() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "suphang", 2).await;
    let service = ServiceProcess::start_with(
        &topics,
        &double.engine_url(),
        // By index: each worker says it consumes before its thread hangs (in a group the hung
        // worker would never join, and never say so).
        &[
            "--workers",
            "2",
            "--timeout",
            "3",
            "--partitioning",
            "index",
        ],
        &[("HD_KAFKA_EXEC_TEST_HANG_WORKER", "0")],
    );
    service.wait_workers(2, WAIT);
    let first = service.workers();
    eventually(WAIT, "the hung worker replaced", || {
        let now = service.workers();
        let gone = first.iter().filter(|p| !now.contains(p)).count();
        if gone == 1 && now.len() == 2 {
            Ok(())
        } else {
            Err(Shown(format!(
                "{first:?} -> {now:?}; log:\n{}",
                service.log_text()
            )))
        }
    });
}

/// The last line of defence: an execution that panics (which no outside input may cause) is
/// answered with a failure response naming the job, its offset commits, the requests around it
/// are answered as usual, and no worker is restarted.
#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_execution_is_answered_and_its_offset_commits() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "panic", 1).await;
    let (before, panics, after) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let service = ServiceProcess::start_with(
        &topics,
        &double.engine_url(),
        &["--workers", "1"],
        &[("HD_KAFKA_EXEC_TEST_PANIC_JOB", &panics.to_string())],
    );
    service.wait_workers(1, WAIT);
    let workers = service.workers();
    let requests: Vec<_> = [before, panics, after]
        .iter()
        .map(|j| (None, Some(add_request(*j))))
        .collect();
    produce_requests(&client, &topics.requests, &requests).await;
    let responses = read_jobs(&client, &topics.responses, &[before, panics, after], WAIT).await;
    let by_job = |job: Uuid| -> Value {
        responses
            .iter()
            .map(|(_, r)| {
                serde_json::from_slice::<Value>(r.record.value.as_ref().unwrap()).unwrap()
            })
            .find(|v| v["job_id"] == job.to_string())
            .unwrap_or_else(|| panic!("no response for {job}; log:\n{}", service.log_text()))
    };
    assert_eq!(by_job(before)["result"], "ok");
    assert_eq!(by_job(after)["result"], "ok");
    let failed = by_job(panics);
    assert_eq!(failed["result"], "failure", "{failed}");
    assert_eq!(failed["error"]["type"], "UnexpectedError", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("test hook"), "{message}");
    assert_eq!(
        failed["error"]["extra_information"]["offset"], 1,
        "{failed}"
    );

    let coordinator = tokio::sync::Mutex::new(GroupCoordinator::new(
        kafka_bootstrap(),
        &topics.group,
        "test",
    ));
    eventually_async(WAIT, "offset 3 committed, past the panic", || async {
        let committed = coordinator.lock().await.fetch(&topics.requests, &[0]).await;
        match committed.unwrap().get(&0).copied().flatten() {
            Some(3) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    assert_eq!(service.workers(), workers, "no worker was restarted");
}

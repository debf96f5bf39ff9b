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

/// A poison request: its execution aborts its worker (as a failed allocation or a stack
/// overflow would), every time. The supervisor sees which request the dead worker was
/// executing; after the second crash the request is answered with a failure naming the cause
/// instead of being executed a third time, the requests around it (those in flight beside it
/// included) are answered `ok`, the partition is committed past it and one worker runs again.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_kills_its_worker_twice_is_answered_with_a_failure() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "poison", 1).await;
    let poison = Uuid::new_v4();
    let before = Uuid::new_v4();
    let behind: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
    let service = ServiceProcess::start_with(
        &topics,
        &double.engine_url(),
        &["--workers", "1"],
        &[("HD_KAFKA_EXEC_TEST_ABORT_JOB", &poison.to_string())],
    );
    service.wait_workers(1, WAIT);
    let mut jobs = vec![before, poison];
    jobs.extend(&behind);
    let requests: Vec<_> = jobs.iter().map(|j| (None, Some(add_request(*j)))).collect();
    produce_requests(&client, &topics.requests, &requests).await;

    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let log = service.log_text();
    let by_job = |job: Uuid| -> Value {
        responses
            .iter()
            .map(|(_, r)| {
                serde_json::from_slice::<Value>(r.record.value.as_ref().unwrap()).unwrap()
            })
            .find(|v| v["job_id"] == job.to_string())
            .unwrap_or_else(|| panic!("no response for {job}; log:\n{log}"))
    };
    // The premise: the request really ended two workers, by SIGABRT, and no third.
    let aborts = log
        .lines()
        .filter(|l| l.contains("worker killed by signal") && l.contains("SIGABRT"))
        .count();
    assert_eq!(aborts, 2, "log:\n{log}");
    assert!(
        log.contains("test hook: execution of job"),
        "the hook ran; log:\n{log}"
    );

    let failed = by_job(poison);
    assert_eq!(failed["result"], "failure", "{failed}");
    assert_eq!(failed["error"]["type"], "UnexpectedError", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("this request ended its worker twice")
            && message.contains("killed by SIGABRT")
            && message.contains("not executed again"),
        "{message}"
    );
    assert_eq!(
        failed["error"]["extra_information"]["offset"], 1,
        "{failed}"
    );
    for job in std::iter::once(before).chain(behind.iter().copied()) {
        assert_eq!(by_job(job)["result"], "ok", "{job}");
    }

    let coordinator = tokio::sync::Mutex::new(GroupCoordinator::new(
        kafka_bootstrap(),
        &topics.group,
        "test",
    ));
    let end = jobs.len() as i64;
    eventually_async(WAIT, "every offset committed, past the poison", || async {
        let committed = coordinator.lock().await.fetch(&topics.requests, &[0]).await;
        match committed.unwrap().get(&0).copied().flatten() {
            Some(o) if o == end => Ok(()),
            other => Err(other),
        }
    })
    .await;
    eventually(WAIT, "one worker again", || {
        let workers = service.workers();
        if workers.len() == 1 && service.consumes(workers[0]) {
            Ok(())
        } else {
            Err(workers)
        }
    });
    // Not executed a third time: still two aborts, and the refusal was logged by the worker.
    let log = service.log_text();
    assert_eq!(
        log.matches("test hook: execution of job").count(),
        2,
        "log:\n{log}"
    );
    assert!(
        log.contains("not executed: this request ended 2 workers"),
        "log:\n{log}"
    );
    // Between the crashes it ran alone, and the supervisor said what it blamed.
    assert!(log.contains("executing it alone"), "log:\n{log}");
    assert!(
        log.contains("while executing this request; it is answered with a failure"),
        "log:\n{log}"
    );
}

/// The same poison request in a share group (`"group_protocol": "share"`): each crash drops
/// the worker's connection, so Kafka delivers the request again (to the other worker or the
/// replacement); it is answered with a failure instead of being executed again, and the
/// requests around it are answered `ok` (those a crash took unacknowledged, perhaps twice:
/// at-least-once).
#[tokio::test(flavor = "multi_thread")]
async fn a_poison_request_in_a_share_group_is_answered_with_a_failure() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "share-poison", 1).await;
    let poison = Uuid::new_v4();
    let others: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
    let options = format!(
        r#"{{"bootstrap_servers": "{}", "group_id": "{}", "group_protocol": "share", "auto_offset_reset": "earliest"}}"#,
        kafka_bootstrap().join(","),
        topics.group
    );
    let service = ServiceProcess::start_with(
        &topics,
        &double.engine_url(),
        &["--workers", "2"],
        &[
            ("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", &options),
            ("HD_KAFKA_EXEC_TEST_ABORT_JOB", &poison.to_string()),
        ],
    );
    service.wait_workers(2, WAIT);
    let mut jobs = vec![poison];
    jobs.extend(&others);
    let requests: Vec<_> = jobs.iter().map(|j| (None, Some(add_request(*j)))).collect();
    produce_requests(&client, &topics.requests, &requests).await;

    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let log = service.log_text();
    let values: Vec<Value> = responses
        .iter()
        .map(|(_, r)| serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap())
        .collect();
    let of = |job: Uuid| -> Vec<&Value> {
        values
            .iter()
            .filter(|v| v["job_id"] == job.to_string())
            .collect()
    };
    // The premise: the request really ended workers.
    let aborts = log.matches("test hook: execution of job").count();
    assert!(aborts >= 2, "it ended workers ({aborts}); log:\n{log}");
    let failed = of(poison);
    assert_eq!(failed.len(), 1, "the poison answered once: {failed:?}");
    assert_eq!(failed[0]["result"], "failure", "{}", failed[0]);
    let message = failed[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("not executed again"), "{message}");
    for job in &others {
        let answered = of(*job);
        assert!(!answered.is_empty(), "{job} answered");
        assert!(
            answered.iter().all(|v| v["result"] == "ok"),
            "{job}: {answered:?}"
        );
    }
}

/// The 9.9 MB request of 3.3 M empty objects, which a worker once read into a 528 MB tree, to
/// a worker under a 400 MB address-space limit (`ulimit -v`): it is answered (with a failure
/// over its memory budget), the requests behind it are answered, and no worker is restarted.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_over_its_memory_budget_is_answered_without_a_restart() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::named("budget");
    support::kafka::scripts_kafka(
        "topic",
        &support::kafka::kafka_dir(),
        &[&topics.requests, "1", "max.message.bytes=20000000"],
    );
    support::kafka::create_topic(&client, &topics.responses, 1).await;
    support::kafka::create_topic(&client, &topics.dead_letters, 1).await;
    let service = ServiceProcess::start_limited(
        &topics,
        &double.engine_url(),
        &["--workers", "1"],
        400 << 10,
    );
    service.wait_workers(1, WAIT);
    let workers = service.workers();
    let peak = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", workers[0])).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM")).unwrap();
        line.split_whitespace().nth(1).unwrap().to_owned()
    };
    let booted = peak();

    let (huge, after) = (Uuid::new_v4(), Uuid::new_v4());
    let objects = vec!["{}"; 3_300_000].join(",");
    let request = format!(
        r#"{{"id": "2abf72f6-68c9-7398-7175-165d31b3ced7", "job_id": "{huge}", "wiring": {{"input_wirings": [{{"workflow_input_name": "a", "adapter_id": "direct_provisioning", "filters": {{"value": [{objects}]}}}}, {{"workflow_input_name": "b", "adapter_id": "direct_provisioning", "filters": {{"value": "2.5"}}}}]}}}}"#
    );
    assert!(request.len() > 9_900_000, "{}", request.len());
    produce_requests(
        &client,
        &topics.requests,
        &[
            (None, Some(request.into_bytes())),
            (None, Some(add_request(after))),
        ],
    )
    .await;

    let responses = read_jobs(&client, &topics.responses, &[huge, after], WAIT).await;
    let log = service.log_text();
    let by_job = |job: Uuid| -> Value {
        responses
            .iter()
            .map(|(_, r)| {
                serde_json::from_slice::<Value>(r.record.value.as_ref().unwrap()).unwrap()
            })
            .find(|v| v["job_id"] == job.to_string())
            .unwrap_or_else(|| panic!("no response for {job}; log:\n{log}"))
    };
    let refused = by_job(huge);
    assert_eq!(refused["result"], "failure", "{refused}");
    assert_eq!(refused["error"]["type"], "ValidationError", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("JSON values") && message.contains("more than a request may take"),
        "{message}"
    );
    assert_eq!(by_job(after)["result"], "ok");
    assert_eq!(
        service.workers(),
        workers,
        "no worker was restarted; log:\n{log}"
    );
    assert!(
        !log.contains("worker killed by signal") && !log.contains("worker crashed"),
        "log:\n{log}"
    );
    // For BENCHMARKS.md (run with --nocapture); the limit above is what the test holds to.
    println!(
        "worker peak RSS (VmHWM): {booted} kB booted, {} kB after the 9.9 MB request",
        peak()
    );
}

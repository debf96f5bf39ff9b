//! Every request is answered or provably can't be, and its partition moves on (issue 26): a
//! request whose key is too large for any response, a response topic that takes nothing at
//! all, and response and dead-letter topics deleted and created again while the service runs.
//! Each against the real broker, a real `serve` and the runtime double; each ends with the
//! group's committed offsets at the partitions' ends (lag 0).
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::Client;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use serde_json::Value;
use support::committed::{Isolation, console_read};
use support::kafka::{client, create_topic, kafka_bootstrap, kafka_dir, scripts_kafka};
use support::prometheus::http_get;
use support::runtime_double::RuntimeDouble;
use support::service::{
    KeyValue, ServiceProcess, Topics, add_request, job_of, keyed_requests, produce_requests,
    read_all, read_jobs,
};
use support::wait::{Shown, eventually, eventually_async};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

/// The group's committed offset of every partition of the request topic reaches the partition's
/// end: nothing left behind, nothing to run again after a restart.
async fn assert_lag_zero(
    client: &Arc<Client>,
    topics: &Topics,
    partitions: i32,
    log: impl Fn() -> String,
) {
    let ends = {
        let mut ends = HashMap::new();
        for p in 0..partitions {
            let pc = client
                .partition_client(&topics.requests, p, UnknownTopicHandling::Retry)
                .await
                .unwrap();
            ends.insert(p, Some(pc.get_offset(OffsetAt::Latest).await.unwrap()));
        }
        ends
    };
    let coordinator = tokio::sync::Mutex::new(hd_kafka_exec::kafka::GroupCoordinator::new(
        kafka_bootstrap(),
        &topics.group,
        "test",
    ));
    let all: Vec<i32> = (0..partitions).collect();
    eventually_async(
        WAIT,
        format!("committed offsets at the ends {ends:?}"),
        || async {
            let committed = coordinator
                .lock()
                .await
                .fetch(&topics.requests, &all)
                .await
                .unwrap();
            if committed == ends {
                Ok(())
            } else {
                Err(Shown(format!("committed {committed:?}; log:\n{}", log())))
            }
        },
    )
    .await;
}

/// The value of `name` in a `/metrics` scrape of the service.
fn metric(service: &ServiceProcess, name: &str) -> Option<f64> {
    let addr = service.metrics_addr(WAIT).to_string();
    let text = http_get(&addr, "/metrics").ok()?.text();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `/readyz`: its status and reason.
fn readyz(service: &ServiceProcess) -> (u16, String) {
    let addr = service.metrics_addr(WAIT).to_string();
    match http_get(&addr, "/readyz") {
        Ok(r) => (r.status, r.text()),
        Err(e) => (0, e.to_string()),
    }
}

/// The responses among `records` to `job`, as JSON with their keys.
fn responses_to(
    records: &[(i32, rskafka::record::RecordAndOffset)],
    job: Uuid,
) -> Vec<(Option<Vec<u8>>, Value)> {
    records
        .iter()
        .filter(|(_, r)| job_of(r.record.value.as_ref().unwrap()) == job.to_string())
        .map(|(_, r)| {
            (
                r.record.key.clone(),
                serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// A request keyed with 1.1 MB between 20 good requests on each side, in one partition: its
/// response, and its failure response, would carry the key and cannot fit the response topic
/// (1 MiB). It is answered with a failure response without the key, every request behind it
/// is answered, and the partition is committed to its end.
async fn a_request_with_a_huge_key_is_answered_without_it(exactly_once: bool) {
    let client = client().await;
    let prefix = if exactly_once {
        "huge-key-eos"
    } else {
        "huge-key"
    };
    let topics = Topics::named(prefix);
    // The request topic takes the request (Kafka's default would refuse it); the response
    // topic keeps Kafka's default limit.
    scripts_kafka(
        "topic",
        &kafka_dir(),
        &[&topics.requests, "1", "max.message.bytes=3000000"],
    );
    create_topic(&client, &topics.responses, 1).await;
    create_topic(&client, &topics.dead_letters, 1).await;
    let double = RuntimeDouble::start().await;
    let mut args = vec!["--workers", "1"];
    if exactly_once {
        args.push("--exactly-once");
    }
    let service = ServiceProcess::start(&topics, &double.engine_url(), &args);
    service.wait_workers(1, WAIT);

    let (before, mut records) = keyed_requests(20);
    let odd = Uuid::new_v4();
    let huge_key = vec![b'k'; 1_100_000];
    records.push((Some(huge_key), Some(add_request(odd))));
    let (after, behind) = keyed_requests(20);
    records.extend(behind);
    produce_requests(&client, &topics.requests, &records).await;

    let all: Vec<Uuid> = before.iter().chain([&odd]).chain(&after).copied().collect();
    let odd_responses = if exactly_once {
        // rskafka cannot read transaction markers: Kafka's own consumer, read_committed.
        assert_lag_zero(&client, &topics, 1, || service.log_text()).await;
        let seen = console_read(
            &kafka_dir(),
            &topics.responses,
            Isolation::ReadCommitted,
            all.len(),
        );
        seen.assert_exactly_once(&all, &service.log_text());
        seen.values
            .iter()
            .filter(|v| job_of(v) == odd.to_string())
            .map(|v| (None, serde_json::from_slice(v).unwrap()))
            .collect()
    } else {
        let responses = read_jobs(&client, &topics.responses, &all, WAIT).await;
        for job in &all {
            assert!(
                !responses_to(&responses, *job).is_empty(),
                "job {job} not answered; log:\n{}",
                service.log_text()
            );
        }
        responses_to(&responses, odd)
    };
    assert_eq!(
        double.calls_for_job(&odd.to_string()),
        1,
        "the odd request was executed"
    );
    assert!(!odd_responses.is_empty());
    for (key, response) in odd_responses {
        assert_eq!(key, None, "the failure response carries no key");
        assert_eq!(response["result"], "failure", "{response}");
        assert_eq!(
            response["error"]["type"], "MessageSizeTooLargeError",
            "{response}"
        );
        assert_eq!(
            response["error"]["extra_information"]["offset"], 20,
            "{response}"
        );
    }
    assert_lag_zero(&client, &topics, 1, || service.log_text()).await;
    assert_eq!(
        metric(&service, "hd_kafka_exec_requests_unanswerable_total"),
        Some(0.0)
    );
    assert!(
        service.workers().len() == 1 && !service.log_text().contains("panicked"),
        "log:\n{}",
        service.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_with_a_huge_key_is_answered_without_it_and_its_partition_moves_on() {
    a_request_with_a_huge_key_is_answered_without_it(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_exactly_once_a_request_with_a_huge_key_is_answered_without_it() {
    a_request_with_a_huge_key_is_answered_without_it(true).await;
}

/// A response topic whose `max.message.bytes` takes no response at all: no request can be
/// answered. Each is copied to the dead-letter topic (with the reason), committed past, logged
/// at ERROR with its partition and offset, and counted; the partition reaches its end.
async fn requests_nothing_can_answer_are_dead_lettered_and_committed_past(exactly_once: bool) {
    let client = client().await;
    let prefix = if exactly_once {
        "unanswerable-eos"
    } else {
        "unanswerable"
    };
    let topics = Topics::named(prefix);
    create_topic(&client, &topics.requests, 1).await;
    scripts_kafka(
        "topic",
        &kafka_dir(),
        &[&topics.responses, "1", "max.message.bytes=120"],
    );
    create_topic(&client, &topics.dead_letters, 1).await;
    let double = RuntimeDouble::start().await;
    let mut args = vec!["--workers", "1"];
    if exactly_once {
        args.push("--exactly-once");
    }
    let service = ServiceProcess::start(&topics, &double.engine_url(), &args);
    service.wait_workers(1, WAIT);
    let (jobs, records) = keyed_requests(5);
    produce_requests(&client, &topics.requests, &records).await;

    let mut copied: Vec<String> = if exactly_once {
        // rskafka cannot read transaction markers: Kafka's own consumer, read_committed.
        assert_lag_zero(&client, &topics, 1, || service.log_text()).await;
        let seen = console_read(
            &kafka_dir(),
            &topics.dead_letters,
            Isolation::ReadCommitted,
            jobs.len(),
        );
        seen.values.iter().map(|v| job_of(v)).collect()
    } else {
        let dead = read_all(&client, &topics.dead_letters, jobs.len(), WAIT).await;
        for (_, r) in &dead {
            let reason =
                String::from_utf8_lossy(&r.record.headers["hd-dead-letter-reason"]).into_owned();
            assert!(reason.contains("response"), "{reason}");
        }
        dead.iter()
            .map(|(_, r)| job_of(r.record.value.as_ref().unwrap()))
            .collect()
    };
    copied.sort();
    let mut expected: Vec<String> = jobs.iter().map(Uuid::to_string).collect();
    expected.sort();
    assert_eq!(copied, expected, "log:\n{}", service.log_text());
    assert_lag_zero(&client, &topics, 1, || service.log_text()).await;
    let log = service.log_text();
    for offset in 0..jobs.len() {
        assert!(
            log.lines().any(|l| l.contains("ERROR")
                && l.contains("cannot be answered")
                && l.contains(&format!("offset={offset}"))
                && l.contains("partition=0")),
            "no ERROR for offset {offset}; log:\n{log}"
        );
    }
    eventually(WAIT, "the unanswerable requests counted", || {
        match metric(&service, "hd_kafka_exec_requests_unanswerable_total") {
            Some(n) if n == jobs.len() as f64 => Ok(()),
            other => Err(other),
        }
    });
    let responses = console_read(
        &kafka_dir(),
        &topics.responses,
        Isolation::ReadUncommitted,
        0,
    );
    assert!(
        responses.records == 0,
        "the premise: nothing fits the response topic"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_nothing_can_answer_are_dead_lettered_committed_past_and_counted() {
    requests_nothing_can_answer_are_dead_lettered_and_committed_past(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_exactly_once_requests_nothing_can_answer_are_committed_past() {
    requests_nothing_can_answer_are_dead_lettered_and_committed_past(true).await;
}

async fn delete_topic(client: &Client, topic: &str) {
    let controller = client.controller_client().unwrap();
    controller.delete_topic(topic, 10_000).await.unwrap();
    eventually_async(WAIT, format!("topic {topic} gone"), || async {
        let topics = client.list_topics().await.unwrap();
        if topics.iter().any(|t| t.name == topic) {
            Err("still listed")
        } else {
            Ok(())
        }
    })
    .await;
}

/// Creates `topic` again once Kafka has finished deleting it.
async fn recreate_topic(client: &Client, topic: &str, partitions: i32) {
    let controller = client.controller_client().unwrap();
    eventually_async(WAIT, format!("topic {topic} created again"), || async {
        controller
            .create_topic(topic, partitions, 1, 10_000)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    eventually_async(WAIT, format!("topic {topic} listed"), || async {
        let topics = client.list_topics().await.unwrap();
        if topics.iter().any(|t| t.name == topic) {
            Ok(())
        } else {
            Err(())
        }
    })
    .await;
}

/// Whether `topic` is listed by the brokers now.
async fn exists(client: &Client, topic: &str) -> bool {
    client
        .list_topics()
        .await
        .unwrap()
        .iter()
        .any(|t| t.name == topic)
}

/// Every record of `topic` now, as (key, JSON-ish value): rskafka's read, or with exactly-once
/// Kafka's own consumer, `read_committed` (rskafka cannot read transaction markers; the console
/// consumer shows no keys).
async fn records_now(
    client: &Arc<Client>,
    topic: &str,
    exactly_once: bool,
) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    if exactly_once {
        let seen = tokio::task::block_in_place(|| {
            console_read(&kafka_dir(), topic, Isolation::ReadCommitted, 0)
        });
        return seen.values.into_iter().map(|v| (None, v)).collect();
    }
    read_all(client, topic, usize::MAX, Duration::ZERO)
        .await
        .into_iter()
        .map(|(_, r)| (r.record.key, r.record.value.unwrap()))
        .collect()
}

/// Waits until `topic` holds a response to each of `jobs`; returns every record read then.
async fn wait_answered(
    client: &Arc<Client>,
    topic: &str,
    jobs: &[Uuid],
    exactly_once: bool,
    service: &ServiceProcess,
) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    eventually_async(
        WAIT,
        format!("responses to {} jobs", jobs.len()),
        || async {
            let records = records_now(client, topic, exactly_once).await;
            let seen: std::collections::HashSet<String> =
                records.iter().map(|(_, v)| job_of(v)).collect();
            let missing = jobs
                .iter()
                .filter(|j| !seen.contains(&j.to_string()))
                .count();
            if missing == 0 {
                Ok(records)
            } else {
                Err(Shown(format!(
                    "{missing} missing; log:\n{}",
                    service.log_text()
                )))
            }
        },
    )
    .await
}

/// Waits until the log has a WARN line saying `topic` does not exist.
#[track_caller]
fn wait_warned_missing(service: &ServiceProcess, topic: &str) {
    let warned = format!("{topic} does not exist");
    eventually(WAIT, format!("a WARN naming {topic}"), || {
        let log = service.log_text();
        if log
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&warned))
        {
            Ok(())
        } else {
            Err(Shown(log))
        }
    });
}

/// Waits until `/readyz` is 503 and asserts that `topic` is still gone then (the premise) and
/// that the reason says `why`.
async fn assert_unready_while_gone(
    client: &Client,
    service: &ServiceProcess,
    topic: &str,
    why: &str,
) {
    let reason = eventually(WAIT, "/readyz 503", || match readyz(service) {
        (503, reason) => Ok(reason),
        other => Err(other),
    });
    assert!(
        !exists(client, topic).await,
        "the premise: {topic} was gone while /readyz said 503 {reason}"
    );
    assert!(reason.contains(why), "{reason}");
}

#[track_caller]
fn wait_ready(service: &ServiceProcess) {
    eventually(WAIT, "/readyz 200", || match readyz(service) {
        (200, _) => Ok(()),
        other => Err(other),
    });
}

/// The response topic is deleted while requests keep coming: the service WARNs naming it,
/// `/readyz` is 503 while it is gone, and once it is created again every request sent
/// meanwhile is answered and the group is committed to the end.
async fn a_deleted_response_topic_is_reported_and_recreating_it_loses_nothing(exactly_once: bool) {
    let client = client().await;
    let prefix = if exactly_once {
        "vanished-resp-eos"
    } else {
        "vanished-resp"
    };
    let topics = Topics::create(&client, prefix, 2).await;
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(20));
    let mut args = vec!["--workers", "2"];
    if exactly_once {
        args.push("--exactly-once");
    }
    let service = ServiceProcess::start(&topics, &double.engine_url(), &args);
    service.wait_workers(2, WAIT);
    let (first, records) = keyed_requests(40);
    produce_requests(&client, &topics.requests, &records).await;
    wait_answered(&client, &topics.responses, &first, exactly_once, &service).await;
    wait_ready(&service);

    delete_topic(&client, &topics.responses).await;
    let (meanwhile, records) = keyed_requests(60);
    produce_requests(&client, &topics.requests, &records).await;
    wait_warned_missing(&service, &topics.responses);
    assert_unready_while_gone(
        &client,
        &service,
        &topics.responses,
        "response topic is missing",
    )
    .await;
    let retries = if exactly_once {
        "hd_kafka_exec_commit_failures_total"
    } else {
        "hd_kafka_exec_produce_retries_total"
    };
    assert!(metric(&service, retries).unwrap() > 0.0, "retries counted");

    recreate_topic(&client, &topics.responses, 2).await;
    let (last, records) = keyed_requests(20);
    produce_requests(&client, &topics.requests, &records).await;
    let all: Vec<Uuid> = meanwhile.iter().chain(&last).copied().collect();
    wait_answered(&client, &topics.responses, &all, exactly_once, &service).await;
    assert_lag_zero(&client, &topics, 2, || service.log_text()).await;
    wait_ready(&service);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_response_topic_is_reported_and_recreating_it_loses_nothing_at_least_once() {
    a_deleted_response_topic_is_reported_and_recreating_it_loses_nothing(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_response_topic_is_reported_and_recreating_it_loses_nothing_exactly_once() {
    a_deleted_response_topic_is_reported_and_recreating_it_loses_nothing(true).await;
}

/// The dead-letter topic is deleted while records that are no request keep coming between
/// good requests: every record is answered at once (a dead letter never holds its response
/// back), the service WARNs naming the topic and `/readyz` is 503 while dead letters wait for
/// it; created again (within the time a dead letter waits), it receives every dead letter, and
/// the group is committed to the end.
async fn a_deleted_dead_letter_topic_holds_back_no_response(exactly_once: bool) {
    let client = client().await;
    let prefix = if exactly_once {
        "vanished-dlq-eos"
    } else {
        "vanished-dlq"
    };
    let topics = Topics::create(&client, prefix, 2).await;
    let double = RuntimeDouble::start().await;
    let mut args = vec!["--workers", "1"];
    if exactly_once {
        args.push("--exactly-once");
    }
    let service = ServiceProcess::start(&topics, &double.engine_url(), &args);
    service.wait_workers(1, WAIT);
    delete_topic(&client, &topics.dead_letters).await;
    let deleted = std::time::Instant::now();

    let (good, mut records) = keyed_requests(30);
    let bad: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    for (i, job) in bad.iter().enumerate() {
        // Not JSON: no request at all, so it is dead-lettered. Its job id is for the test to
        // find its dead letter (the failure response gets a fresh one).
        let value: KeyValue = (
            Some(job.to_string().into_bytes()),
            Some(format!(r#"{{"job_id": "{job}", not json"#).into_bytes()),
        );
        records.insert(i * 6, value);
    }
    produce_requests(&client, &topics.requests, &records).await;
    eventually_async(WAIT, "every record answered", || async {
        let responses = records_now(&client, &topics.responses, exactly_once).await;
        let answered_good = good
            .iter()
            .filter(|j| responses.iter().any(|(_, v)| job_of(v) == j.to_string()))
            .count();
        let failures = responses
            .iter()
            .filter(|(_, v)| {
                let v: Value = serde_json::from_slice(v).unwrap();
                v["error"]["type"] == "UndecodableRequestError"
            })
            .count();
        if answered_good == good.len() && failures == bad.len() {
            Ok(())
        } else {
            Err(Shown(format!(
                "{answered_good} good, {failures} failures; log:\n{}",
                service.log_text()
            )))
        }
    })
    .await;
    assert!(
        !exists(&client, &topics.dead_letters).await,
        "the premise: every record was answered while the dead-letter topic was gone"
    );
    wait_warned_missing(&service, &topics.dead_letters);
    assert_unready_while_gone(
        &client,
        &service,
        &topics.dead_letters,
        "dead-letter topic is missing",
    )
    .await;

    recreate_topic(&client, &topics.dead_letters, 1).await;
    assert!(
        deleted.elapsed() < hd_kafka_exec::kafka::DEAD_LETTER_WAIT,
        "the premise: recreated before the dead letters gave up"
    );
    let dead = wait_answered(&client, &topics.dead_letters, &bad, exactly_once, &service).await;
    assert_eq!(dead.len(), bad.len(), "one dead letter each");
    assert_lag_zero(&client, &topics, 2, || service.log_text()).await;
    wait_ready(&service);
    assert_eq!(
        metric(&service, "hd_kafka_exec_dead_letters_lost_total"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_dead_letter_topic_holds_back_no_response_and_recreating_it_loses_nothing() {
    a_deleted_dead_letter_topic_holds_back_no_response(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_exactly_once_a_deleted_dead_letter_topic_holds_back_no_response() {
    a_deleted_dead_letter_topic_holds_back_no_response(true).await;
}

/// The dead-letter topic is deleted and not created again: the records that are no request are
/// answered at once, each dead letter is given up on after the time it may wait (an ERROR
/// naming its partition and offset, counted as lost), the group is committed to the end, and
/// `/readyz` is ready again once no dead letter waits.
#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_to_a_topic_that_stays_deleted_are_given_up_after_their_wait() {
    let client = client().await;
    let topics = Topics::create(&client, "gone-dlq", 1).await;
    let double = RuntimeDouble::start().await;
    let service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "1"]);
    service.wait_workers(1, WAIT);
    delete_topic(&client, &topics.dead_letters).await;

    let (good, mut records) = keyed_requests(10);
    records.insert(3, (None, Some(b"not json at all".to_vec())));
    records.insert(7, (None, None));
    produce_requests(&client, &topics.requests, &records).await;
    let answered = std::time::Instant::now();
    let responses = read_all(&client, &topics.responses, records.len(), WAIT).await;
    assert_eq!(
        responses.len(),
        records.len(),
        "every record answered at once"
    );
    for job in &good {
        assert_eq!(responses_to(&responses, *job).len(), 1, "job {job}");
    }
    assert_unready_while_gone(
        &client,
        &service,
        &topics.dead_letters,
        "dead-letter topic is missing",
    )
    .await;
    assert_lag_zero(&client, &topics, 1, || service.log_text()).await;
    assert!(
        answered.elapsed() >= hd_kafka_exec::kafka::DEAD_LETTER_WAIT - Duration::from_secs(5),
        "the offsets waited for the dead letters"
    );
    let log = service.log_text();
    for offset in [3, 7] {
        assert!(
            log.lines().any(|l| l.contains("ERROR")
                && l.contains("dead letter of the request record is lost")
                && l.contains(&format!("offset={offset}"))),
            "no ERROR for the dead letter at offset {offset}; log:\n{log}"
        );
    }
    assert_eq!(
        metric(&service, "hd_kafka_exec_dead_letters_lost_total"),
        Some(2.0)
    );
    wait_ready(&service);
    assert!(
        !exists(&client, &topics.dead_letters).await,
        "the premise: the topic stayed deleted"
    );
}

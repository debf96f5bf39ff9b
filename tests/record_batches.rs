//! Record batches that Kafka accepts and rskafka's reader refused — a header with a null value,
//! a header key that is not UTF-8, a timestamp outside the calendar, records of transactions —
//! through `hd-kafka-exec serve` and the real broker, with the runtime double standing in for
//! hetida's runtime. Each odd record sits between good requests; every test asserts its premise
//! with kcat (an independent reader) and ends with the group's lag at 0.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use hd_kafka_exec::kafka::record_batch::{self, Codec, Header, Record, RecordBatch};
use hd_kafka_exec::kafka::wire::BrokerConnection;
use hd_kafka_exec::kafka::{BrokerAuth, GroupCoordinator};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use support::kafka::{client, kafka_bootstrap, kafka_dir, kcat, python_with_aiokafka};
use support::runtime_double::RuntimeDouble;
use support::service::{ServiceProcess, Topics, add_request, job_of, read_jobs};
use support::wait::eventually_async;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

/// A timestamp the broker accepts and no calendar holds (about 285 million years BC).
const BEFORE_THE_CALENDAR: i64 = -9_000_000_000_000_000_000;

/// Writes `batch` as it is to `topic`/`partition` with a Produce request of this test's own
/// (the broker assigns the offsets): what rskafka's producer cannot write.
async fn produce_raw(topic: &str, partition: i32, batch: &RecordBatch) {
    let bytes = record_batch::encode(batch).unwrap();
    let broker = &kafka_bootstrap()[0];
    let mut conn = BrokerConnection::open(broker, "record-batches-test", &BrokerAuth::plaintext())
        .await
        .unwrap();
    let version = conn.version(ApiKey::Produce, "Produce", 3..=9).unwrap();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(Bytes::from(bytes))),
                ]),
        ]);
    let response = conn.call(&request, version).await.unwrap();
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(
        answer.error_code, 0,
        "the broker refused the batch: {answer:?}"
    );
}

/// A batch as a plain (non-transactional) producer writes it; offsets from 0, as Kafka wants
/// them before it assigns its own.
fn plain_batch(codec: Codec, records: Vec<(i64, Option<Vec<u8>>, Vec<Header>)>) -> RecordBatch {
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (timestamp, value, headers))| Record {
            offset: i as i64,
            timestamp,
            key: Some(b"odd".to_vec()),
            value,
            headers,
        })
        .collect();
    RecordBatch::plain(0, codec, records)
}

fn header(key: &[u8], value: Option<&[u8]>) -> Header {
    Header {
        key: key.to_vec(),
        value: value.map(<[u8]>::to_vec),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// kcat's producer: `values` with `headers` as `-H` arguments (`name` alone is a null value).
fn kcat_produce(topic: &str, headers: &[&str], values: &[Vec<u8>]) {
    let mut cmd = kcat();
    cmd.args([
        "-P",
        "-b",
        &kafka_bootstrap().join(","),
        "-t",
        topic,
        "-p",
        "0",
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for v in values {
            stdin.write_all(v).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
    }
    assert!(child.wait().unwrap().success(), "kcat -P failed");
}

/// Every record of `topic` as kcat reads it, one line each: `offset|timestamp|headers|value`.
fn kcat_read(topic: &str, extra: &[&str]) -> Vec<String> {
    let out = kcat()
        .args(["-C", "-b", &kafka_bootstrap().join(","), "-t", topic])
        .args(["-o", "beginning", "-e", "-q", "-f", "%o|%T|%h|%s\\n"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "kcat -C failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Waits until the group committed the end of every partition of the request topic: lag 0.
async fn wait_for_lag_zero(topics: &Topics, partitions: i32, service: &ServiceProcess) {
    let client = client().await;
    let mut ends = Vec::new();
    for p in 0..partitions {
        let pc = client
            .partition_client(&topics.requests, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        ends.push(pc.get_offset(OffsetAt::Latest).await.unwrap());
    }
    let coordinator = tokio::sync::Mutex::new(GroupCoordinator::new(
        kafka_bootstrap(),
        topics.group.clone(),
        "record-batches-test",
    ));
    let ids: Vec<i32> = (0..partitions).collect();
    eventually_async(
        WAIT,
        "committed offsets at the log ends (lag 0)",
        || async {
            let committed = coordinator
                .lock()
                .await
                .fetch(&topics.requests, &ids)
                .await
                .unwrap();
            let at: Vec<Option<i64>> = ids.iter().map(|p| committed[p]).collect();
            let want: Vec<Option<i64>> = ends.iter().copied().map(Some).collect();
            if at == want {
                Ok(())
            } else {
                Err(format!(
                    "committed {at:?}, ends {want:?}; log:\n{}",
                    service.log_text()
                ))
            }
        },
    )
    .await;
}

/// Odd but valid records between good requests, plain and inside one gzip batch: each is a
/// request like any other and is answered; so is every good request around them; the
/// partition's lag ends at 0.
#[tokio::test(flavor = "multi_thread")]
async fn odd_records_between_good_requests_are_all_answered() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "odd", 1).await;
    let service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "1"]);
    service.wait_workers(1, WAIT);

    let jobs: Vec<Uuid> = (0..9).map(|_| Uuid::new_v4()).collect();
    let request = |i: usize| Some(add_request(jobs[i]));
    let not_utf8 = [0xff, 0xfe, b'k'];
    kcat_produce(&topics.requests, &[], &[add_request(jobs[0])]);
    // A header without `=`: kcat writes it with a null value.
    kcat_produce(&topics.requests, &["name", "a=1"], &[add_request(jobs[1])]);
    let odd_key = vec![header(&not_utf8, Some(b"v")), header(b"a", Some(b"1"))];
    produce_raw(
        &topics.requests,
        0,
        &plain_batch(Codec::None, vec![(now_ms(), request(2), odd_key.clone())]),
    )
    .await;
    produce_raw(
        &topics.requests,
        0,
        &plain_batch(Codec::None, vec![(BEFORE_THE_CALENDAR, request(3), vec![])]),
    )
    .await;
    // All of it inside one gzip batch, with good requests around.
    let null_value = vec![header(b"name", None), header(b"a", Some(b"2"))];
    produce_raw(
        &topics.requests,
        0,
        &plain_batch(
            Codec::Gzip,
            vec![
                (BEFORE_THE_CALENDAR, request(4), vec![]),
                (now_ms(), request(5), null_value),
                (now_ms(), request(6), odd_key),
                (BEFORE_THE_CALENDAR, request(7), vec![]),
            ],
        ),
    )
    .await;
    kcat_produce(&topics.requests, &[], &[add_request(jobs[8])]);

    // Premise: the records are in the topic as written, as an independent reader sees them.
    let lines = kcat_read(&topics.requests, &[]);
    assert_eq!(lines.len(), 9, "{lines:#?}");
    let before = BEFORE_THE_CALENDAR.to_string();
    for (i, line) in lines.iter().enumerate() {
        assert!(line.contains(&jobs[i].to_string()), "{i}: {line}");
        let timestamp = line.split('|').nth(1).unwrap();
        assert_eq!(timestamp == before, [3, 4, 7].contains(&i), "{i}: {line}");
    }
    assert!(lines[1].contains("name"), "{}", lines[1]);
    assert!(lines[5].contains("name"), "{}", lines[5]);
    assert!(lines[2].contains("\u{fffd}"), "{}", lines[2]);

    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let answered: HashSet<String> = responses
        .iter()
        .map(|(_, r)| job_of(r.record.value.as_ref().unwrap()))
        .collect();
    let expected: HashSet<String> = jobs.iter().map(Uuid::to_string).collect();
    assert_eq!(answered, expected, "log:\n{}", service.log_text());
    for (_, r) in &responses {
        let v: serde_json::Value =
            serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap();
        assert_eq!(v["result"], "ok", "{v}");
    }
    for job in &jobs {
        assert_eq!(double.calls_for_job(&job.to_string()), 1, "{job}");
    }
    wait_for_lag_zero(&topics, 1, &service).await;
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

/// Writes `committed` in one committed and `aborted` in one aborted transaction of aiokafka's
/// transactional producer, to partition 0 of `topic`.
async fn produce_transactions(topic: &str, committed: &[Vec<u8>], aborted: &[Vec<u8>]) {
    let script = r#"
import asyncio, sys
from aiokafka import AIOKafkaProducer
async def main(bootstrap, topic, committed, aborted):
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=topic + "-tx")
    await p.start()
    try:
        await p.begin_transaction()
        for v in aborted.split("\n"):
            await p.send_and_wait(topic, v.encode(), partition=0)
        await p.abort_transaction()
        async with p.transaction():
            for v in committed.split("\n"):
                await p.send_and_wait(topic, v.encode(), partition=0)
    finally:
        await p.stop()
asyncio.run(main(*sys.argv[1:5]))
"#;
    let join = |values: &[Vec<u8>]| {
        values
            .iter()
            .map(|v| String::from_utf8(v.clone()).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python_with_aiokafka().get_program())
            .args(["-c", script, &kafka_bootstrap().join(","), topic])
            .args([join(committed), join(aborted)])
            .output(),
    )
    .await
    .expect("aiokafka producer timed out")
    .unwrap();
    assert!(
        out.status.success(),
        "aiokafka transactional producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Requests in an aborted and a committed transaction, then a plain one; with `isolation`
/// (None: the option left out) the service executes `expect_aborted` or not.
async fn transactions_under(isolation: Option<&str>, expect_aborted: bool) {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "txn", 1).await;
    let level = isolation
        .map(|l| format!(r#", "isolation_level": "{l}""#))
        .unwrap_or_default();
    let consumer_options = format!(
        r#"{{"bootstrap_servers": "{}", "group_id": "{}", "auto_offset_reset": "earliest"{level}}}"#,
        kafka_bootstrap().join(","),
        topics.group
    );
    let service = ServiceProcess::start_with(
        &topics,
        &double.engine_url(),
        &["--workers", "1"],
        &[("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", &consumer_options)],
    );
    service.wait_workers(1, WAIT);

    let committed: Vec<Uuid> = (0..2).map(|_| Uuid::new_v4()).collect();
    let aborted: Vec<Uuid> = (0..2).map(|_| Uuid::new_v4()).collect();
    let last = Uuid::new_v4();
    let values = |jobs: &[Uuid]| jobs.iter().map(|j| add_request(*j)).collect::<Vec<_>>();
    produce_transactions(&topics.requests, &values(&committed), &values(&aborted)).await;
    kcat_produce(&topics.requests, &[], &[add_request(last)]);

    // Premise: a read_committed reader sees the committed requests and the last one only, a
    // read_uncommitted one all five.
    let seen = |extra: &[&str]| -> HashSet<String> {
        kcat_read(&topics.requests, extra)
            .iter()
            .map(|l| job_of(l.splitn(4, '|').nth(3).unwrap().as_bytes()))
            .collect()
    };
    let in_committed: HashSet<String> = committed
        .iter()
        .chain([&last])
        .map(Uuid::to_string)
        .collect();
    let everything: HashSet<String> = in_committed
        .iter()
        .cloned()
        .chain(aborted.iter().map(Uuid::to_string))
        .collect();
    assert_eq!(
        seen(&["-X", "isolation.level=read_committed"]),
        in_committed
    );
    assert_eq!(
        seen(&["-X", "isolation.level=read_uncommitted"]),
        everything
    );

    let mut wanted: Vec<Uuid> = committed.iter().chain([&last]).copied().collect();
    if expect_aborted {
        wanted.extend(&aborted);
    }
    // Lag 0 first: every offset (markers included) is done, so no response is still to come.
    wait_for_lag_zero(&topics, 1, &service).await;
    let responses = read_jobs(&client, &topics.responses, &wanted, WAIT).await;
    let answered: HashSet<String> = responses
        .iter()
        .map(|(_, r)| job_of(r.record.value.as_ref().unwrap()))
        .collect();
    let expected = if expect_aborted {
        everything
    } else {
        in_committed
    };
    assert_eq!(answered, expected, "log:\n{}", service.log_text());
    for job in &aborted {
        assert_eq!(
            double.calls_for_job(&job.to_string()),
            u64::from(expect_aborted),
            "{job}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn read_committed_executes_only_committed_transactions() {
    transactions_under(Some("read_committed"), false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn by_default_requests_of_aborted_transactions_are_executed_too() {
    transactions_under(None, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn read_uncommitted_executes_aborted_transactions_too() {
    transactions_under(Some("read_uncommitted"), true).await;
}

/// Flips one byte of `marker` in the log segment of `topic`/0 on the broker's disk, as a
/// failing disk would (the broker checks CRCs when it takes a batch, not when it serves one);
/// returns the segment as it is then.
fn corrupt_on_disk(topic: &str, marker: &[u8]) -> Vec<u8> {
    use std::io::{Seek, SeekFrom};
    let path = kafka_dir()
        .join("node1/data")
        .join(format!("{topic}-0"))
        .join("00000000000000000000.log");
    let mut bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("the segment {} cannot be read: {e}", path.display()));
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the marker is in the segment");
    bytes[at] ^= 0x01;
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(at as u64)).unwrap();
    file.write_all(&bytes[at..=at]).unwrap();
    bytes
}

/// A batch corrupted on the broker's disk between two good requests: each of its three
/// offsets gets a failure response naming it (no job id can be read), its raw bytes go to the
/// dead-letter topic once, none of its requests runs, the good requests are answered, and the
/// partition's lag ends at 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_batch_is_answered_per_offset_dead_lettered_and_passed() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "corrupt", 1).await;
    let good: Vec<Uuid> = (0..2).map(|_| Uuid::new_v4()).collect();
    let lost: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    kcat_produce(&topics.requests, &[], &[add_request(good[0])]);
    let records = lost
        .iter()
        .map(|j| (now_ms(), Some(add_request(*j)), vec![]))
        .collect();
    produce_raw(&topics.requests, 0, &plain_batch(Codec::None, records)).await;
    kcat_produce(&topics.requests, &[], &[add_request(good[1])]);
    let segment = corrupt_on_disk(&topics.requests, lost[1].to_string().as_bytes());

    // Premise: the broker's log holds a good batch, the corrupt one (offsets 1 to 3), a good one.
    let batches = record_batch::decode(&segment);
    let raw = match batches.as_slice() {
        [
            record_batch::Decoded::Batch(_),
            record_batch::Decoded::Unreadable(u),
            record_batch::Decoded::Batch(_),
        ] => {
            assert_eq!((u.base_offset, u.last_offset_delta), (1, Some(2)));
            assert!(u.problem.to_string().contains("CRC"), "{}", u.problem);
            u.raw.clone()
        }
        other => panic!("{other:#?}"),
    };

    let service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "1"]);
    service.wait_workers(1, WAIT);
    let responses = support::service::read_all(&client, &topics.responses, 5, WAIT).await;
    let values: Vec<serde_json::Value> = responses
        .iter()
        .map(|(_, r)| serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap())
        .collect();
    assert_eq!(values.len(), 5, "{values:#?}\nlog:\n{}", service.log_text());
    for job in &good {
        let v = values.iter().find(|v| v["job_id"] == job.to_string());
        assert_eq!(v.unwrap()["result"], "ok", "{values:#?}");
    }
    let mut failed: Vec<i64> = values
        .iter()
        .filter(|v| v["result"] == "failure")
        .map(|v| {
            assert_eq!(v["error"]["type"], "UndecodableRequestError", "{v}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains("corrupt"), "{message}");
            v["error"]["extra_information"]["offset"].as_i64().unwrap()
        })
        .collect();
    failed.sort_unstable();
    assert_eq!(failed, vec![1, 2, 3]);

    let dead = support::service::read_all(&client, &topics.dead_letters, 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1.record.value.as_deref(), Some(&raw[..]));
    assert!(
        dead[0]
            .1
            .record
            .headers
            .contains_key("hd-dead-letter-reason")
    );

    wait_for_lag_zero(&topics, 1, &service).await;
    for job in &lost {
        assert_eq!(double.calls_for_job(&job.to_string()), 0, "{job}");
    }
}

/// Every record of `topic`/0 from its start, read with a Fetch request of this test's own and
/// the service's batch reader (rskafka's refuses these headers); transaction markers left out.
async fn read_raw(topic: &str) -> Vec<Record> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest};
    let broker = &kafka_bootstrap()[0];
    let mut conn = BrokerConnection::open(broker, "record-batches-test", &BrokerAuth::plaintext())
        .await
        .unwrap();
    let version = conn.version(ApiKey::Fetch, "Fetch", 4..=12).unwrap();
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 24)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 24),
                    ]),
            ]);
        let response = conn.call(&request, version).await.unwrap();
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0, "{partition:?}");
        let batches = partition
            .records
            .as_ref()
            .map(|b| record_batch::decode(b))
            .unwrap_or_default();
        if batches.is_empty() {
            return out;
        }
        for decoded in batches {
            let record_batch::Decoded::Batch(batch) = decoded else {
                panic!("unreadable: {decoded:?}")
            };
            offset = batch.next_offset();
            if !batch.control {
                out.extend(batch.records);
            }
        }
    }
}

/// A record that is no request, with a key and value that are not UTF-8 and headers Kafka
/// allows (a repeated key, a null value, a key that is not UTF-8), between good requests: it
/// gets its failure response and goes to the dead-letter topic exactly as it was — key, value,
/// every header in order — with the reason and the job id in two headers after its own.
async fn dead_letter_keeps_the_record(extra: &[&str]) {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "verbatim", 1).await;
    let mut args = vec!["--workers", "1"];
    args.extend(extra);
    let service = ServiceProcess::start(&topics, &double.engine_url(), &args);
    service.wait_workers(1, WAIT);

    let good: Vec<Uuid> = (0..2).map(|_| Uuid::new_v4()).collect();
    let headers = vec![
        header(b"a", Some(b"1")),
        header(b"a", Some(b"2")),
        header(b"name", None),
        header(&[0xff, 0xfe, b'k'], Some(b"v")),
    ];
    let odd = Record {
        offset: 0,
        timestamp: now_ms(),
        key: Some(vec![0x00, 0xff]),
        value: Some(b"not json \xff".to_vec()),
        headers: headers.clone(),
    };
    kcat_produce(&topics.requests, &[], &[add_request(good[0])]);
    let mut batch = plain_batch(Codec::None, vec![(odd.timestamp, None, vec![])]);
    batch.records = vec![odd.clone()];
    produce_raw(&topics.requests, 0, &batch).await;
    kcat_produce(&topics.requests, &[], &[add_request(good[1])]);
    // Premise: the record is in the topic as written.
    let lines = kcat_read(&topics.requests, &[]);
    assert!(
        lines[1].contains("a=1") && lines[1].contains("a=2"),
        "{}",
        lines[1]
    );

    // Read with the service's batch reader: exactly-once responses come with transaction
    // markers, which rskafka misreads.
    eventually_async(WAIT, "three responses", || async {
        let n = read_raw(&topics.responses).await.len();
        if n == 3 {
            Ok(())
        } else {
            Err((n, service.log_text()))
        }
    })
    .await;
    let dead = eventually_async(WAIT, "a dead letter", || async {
        let records = read_raw(&topics.dead_letters).await;
        if records.is_empty() {
            Err(service.log_text())
        } else {
            Ok(records)
        }
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:#?}");
    let letter = &dead[0];
    assert_eq!(letter.key, odd.key);
    assert_eq!(letter.value, odd.value);
    assert_eq!(letter.headers[..4], headers[..], "{:#?}", letter.headers);
    let names: Vec<&[u8]> = letter.headers[4..].iter().map(|h| &h.key[..]).collect();
    assert_eq!(names, [&b"hd-dead-letter-reason"[..], b"hd-job-id"]);
    wait_for_lag_zero(&topics, 1, &service).await;
    for job in &good {
        assert_eq!(double.calls_for_job(&job.to_string()), 1, "{job}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_keeps_the_record_untouched() {
    dead_letter_keeps_the_record(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_exactly_once_a_dead_letter_keeps_the_record_untouched() {
    dead_letter_keeps_the_record(&["--exactly-once"]).await;
}

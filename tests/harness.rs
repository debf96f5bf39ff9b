//! Proves the test harness is real: an Apache Kafka broker that rskafka, kcat and aiokafka (the
//! client hetida itself uses) all talk to.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::record::Record;
use support::kafka::{
    client, create_topic, kafka_bootstrap, kcat, python_with_aiokafka, unique_topic,
};

async fn fetch_all(
    partition: &rskafka::client::partition::PartitionClient,
    expected: usize,
) -> Vec<rskafka::record::RecordAndOffset> {
    let mut out = Vec::new();
    let mut offset = partition.get_offset(OffsetAt::Earliest).await.unwrap();
    for _ in 0..50 {
        if out.len() >= expected {
            break;
        }
        let (records, _high) = partition
            .fetch_records(offset, 1..1_000_000, 500)
            .await
            .unwrap();
        for r in records {
            offset = r.offset + 1;
            out.push(r);
        }
    }
    out
}

#[tokio::test]
async fn rskafka_produces_and_fetches_keyed_records_with_headers_on_eight_partitions() {
    let client = client().await;
    let topic = unique_topic("harness-rskafka");
    create_topic(&client, &topic, 8).await;
    let topics = client.list_topics().await.unwrap();
    let meta = topics.iter().find(|t| t.name == topic).unwrap();
    assert_eq!(meta.partitions.len(), 8);

    for p in 0..8 {
        let partition = client
            .partition_client(&topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let record = Record {
            key: Some(format!("key-{p}").into_bytes()),
            value: Some(format!("value-{p}").into_bytes()),
            headers: BTreeMap::from([("hd-job-id".to_owned(), format!("job-{p}").into_bytes())]),
            timestamp: Utc::now(),
        };
        let offsets = partition
            .produce(vec![record], Compression::NoCompression)
            .await
            .unwrap();
        assert_eq!(offsets, vec![0]);
        let fetched = fetch_all(&partition, 1).await;
        assert_eq!(fetched.len(), 1);
        let r = &fetched[0].record;
        assert_eq!(r.key.as_deref(), Some(format!("key-{p}").as_bytes()));
        assert_eq!(r.value.as_deref(), Some(format!("value-{p}").as_bytes()));
        assert_eq!(r.headers["hd-job-id"], format!("job-{p}").into_bytes());
    }
}

#[tokio::test]
async fn kcat_console_producer_style_record_is_read_by_rskafka_with_its_key() {
    let client = client().await;
    let topic = unique_topic("harness-kcat");
    create_topic(&client, &topic, 1).await;

    // Like the seed's console producer: `key:value`, split on the first ':' only, so the JSON
    // value keeps its own colons.
    let line = r#"exec_job_1:{"id": "79ce1eb1-3ef8-4c74-9114-c856fd88dc89", "job_id": "00000000-0000-0000-0000-000000000002"}"#;
    let mut child = kcat()
        .args([
            "-P",
            "-b",
            &kafka_bootstrap().join(","),
            "-t",
            &topic,
            "-p",
            "0",
            "-K:",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{line}").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "kcat failed: {status}");

    let partition = client
        .partition_client(&topic, 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let fetched = fetch_all(&partition, 1).await;
    assert_eq!(fetched.len(), 1);
    let r = &fetched[0].record;
    assert_eq!(r.key.as_deref(), Some(&b"exec_job_1"[..]));
    assert_eq!(
        r.value.as_deref(),
        Some(&line.as_bytes()["exec_job_1:".len()..])
    );
}

#[tokio::test]
async fn aiokafka_consumer_reads_what_rskafka_produced() {
    let client = client().await;
    let topic = unique_topic("harness-aiokafka");
    create_topic(&client, &topic, 1).await;
    let partition = client
        .partition_client(&topic, 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let record = Record {
        key: Some(b"exec_job_2".to_vec()),
        value: Some(br#"{"result": "ok"}"#.to_vec()),
        headers: BTreeMap::from([("content-type".to_owned(), b"application/json".to_vec())]),
        timestamp: Utc::now(),
    };
    partition
        .produce(vec![record], Compression::NoCompression)
        .await
        .unwrap();

    let script = r#"
import asyncio, json, sys
from aiokafka import AIOKafkaConsumer

async def main():
    c = AIOKafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], auto_offset_reset="earliest",
                         group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        msg = await asyncio.wait_for(c.getone(), 30)
        print(json.dumps({"key": msg.key.decode(), "value": msg.value.decode(),
                          "headers": {k: v.decode() for k, v in msg.headers}}))
    finally:
        await c.stop()

asyncio.run(main())
"#;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python_with_aiokafka().get_program())
            .args(["-c", script, &kafka_bootstrap().join(","), &topic])
            .output(),
    )
    .await
    .expect("aiokafka consumer timed out")
    .unwrap();
    assert!(
        out.status.success(),
        "aiokafka consumer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["key"], "exec_job_2");
    assert_eq!(seen["value"], r#"{"result": "ok"}"#);
    assert_eq!(seen["headers"]["content-type"], "application/json");
}

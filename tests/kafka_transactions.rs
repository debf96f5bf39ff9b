//! Requests written by a transactional producer (Kafka Streams or Flink exactly-once, Kafka
//! Connect with exactly-once sources, aiokafka with a transactional_id) sit next to transaction
//! markers in the log. rskafka 0.6 cannot parse a marker (influxdata/rskafka#297), so every fetch
//! whose answer holds one fails; the fetch loop must still deliver every request and move on.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::Utc;
use hd_kafka_exec::config::{IsolationLevel, OffsetReset};
use hd_kafka_exec::kafka::consumer::FetchOptions;
use hd_kafka_exec::kafka::{BrokerAuth, ClusterMap, RequestConsumer};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use support::kafka::{client, create_topic, kafka_bootstrap, python_with_aiokafka, unique_topic};
use support::wait::eventually_async;
use tokio::sync::watch;

/// Produces `values` to partition 0 of `topic` in one committed transaction, with aiokafka.
async fn produce_in_transaction(topic: &str, values: &[&str]) {
    let script = r#"
import asyncio, sys
from aiokafka import AIOKafkaProducer
async def main(bootstrap, topic, values):
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=topic + "-tx")
    await p.start()
    try:
        async with p.transaction():
            for v in values:
                await p.send_and_wait(topic, v.encode(), key=b"tx", partition=0)
    finally:
        await p.stop()
asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
"#;
    let mut args = vec![
        "-c".to_owned(),
        script.to_owned(),
        kafka_bootstrap().join(","),
        topic.to_owned(),
    ];
    args.extend(values.iter().map(|v| (*v).to_owned()));
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python_with_aiokafka().get_program())
            .args(&args)
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

async fn produce_plain(client: &rskafka::client::Client, topic: &str, values: &[&str]) {
    let pc = client
        .partition_client(topic, 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let records = values
        .iter()
        .map(|v| Record {
            key: Some(b"plain".to_vec()),
            value: Some(v.as_bytes().to_vec()),
            headers: BTreeMap::new(),
            timestamp: Utc::now(),
        })
        .collect();
    pc.produce(records, Compression::NoCompression)
        .await
        .unwrap();
}

#[tokio::test]
async fn requests_next_to_transaction_markers_are_all_delivered() {
    let client = client().await;
    let topic = unique_topic("kafka-tx");
    create_topic(&client, &topic, 1).await;
    produce_plain(&client, &topic, &["p0", "p1"]).await;
    produce_in_transaction(&topic, &["t0", "t1"]).await; // + a commit marker
    produce_plain(&client, &topic, &["p2"]).await;
    produce_in_transaction(&topic, &["t2"]).await; // the log ends with a marker

    let (stop, shutdown) = watch::channel(false);
    let options = FetchOptions {
        topic: topic.clone(),
        max_in_flight: 16,
        max_wait: Duration::from_millis(200),
        max_bytes: 1 << 20,
        reset: OffsetReset::Earliest,
        isolation: IsolationLevel::ReadUncommitted,
        cluster: ClusterMap::new(kafka_bootstrap(), "test", BrokerAuth::plaintext()),
    };
    let (mut consumer, mut rx) =
        RequestConsumer::start(client.clone(), options, HashMap::from([(0, 0)]), shutdown)
            .await
            .unwrap();
    let mut values = Vec::new();
    while values.len() < 6 {
        let r = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("stuck after {values:?}"))
            .unwrap();
        values.push(String::from_utf8(r.value.clone().unwrap()).unwrap());
        r.done.complete();
    }
    assert_eq!(values, ["p0", "p1", "t0", "t1", "p2", "t2"]);

    // Past the last marker: the committed position is the end of the log (offsets 0-7 hold six
    // records and two markers), so lag shows 0 and a restart does not stop at the marker again.
    let end = 8;
    eventually_async(Duration::from_secs(30), "offset 8 committable", || async {
        match consumer.watermarks.lock().unwrap().committable(0) {
            Some(committable) if committable == end => Ok(()),
            other => Err(other),
        }
    })
    .await;
    stop.send(true).unwrap();
    consumer.join().await;
}

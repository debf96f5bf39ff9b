//! The Kafka plumbing against the real broker: group offsets through our coordinator client (and
//! Kafka's own tool), fetch loops with back-pressure and done-marking, keyed response partitioning.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::Utc;
use hd_kafka_exec::config::{IsolationLevel, OffsetReset};
use hd_kafka_exec::kafka::consumer::{FetchOptions, StartPosition, start_position};
use hd_kafka_exec::kafka::producer::partition_for_key;
use hd_kafka_exec::kafka::{
    BrokerAuth, ClusterMap, GroupCoordinator, OutgoingRecord, ProducerSettings, RequestConsumer,
    ResponseProducer,
};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use support::kafka::{
    client, create_topic, kafka_bootstrap, kafka_dir, scripts_kafka, unique_topic,
};
use tokio::sync::watch;

async fn produce_n(client: &rskafka::client::Client, topic: &str, partition: i32, n: usize) {
    let pc = client
        .partition_client(topic, partition, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let records = (0..n)
        .map(|i| Record {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            headers: BTreeMap::new(),
            timestamp: Utc::now(),
        })
        .collect();
    pc.produce(records, Compression::NoCompression)
        .await
        .unwrap();
}

#[tokio::test]
async fn committed_offsets_round_trip_and_show_in_kafkas_own_tool() {
    let client = client().await;
    let topic = unique_topic("kafka-commit");
    create_topic(&client, &topic, 3).await;
    produce_n(&client, &topic, 1, 10).await;
    let group = unique_topic("group");
    let mut coordinator = GroupCoordinator::new(kafka_bootstrap(), &group, "hd-kafka-exec-test");
    let before = coordinator.fetch(&topic, &[0, 1, 2]).await.unwrap();
    assert_eq!(before, HashMap::from([(0, None), (1, None), (2, None)]));
    coordinator.commit(&topic, &[(1, 7), (2, 0)]).await.unwrap();
    let after = coordinator.fetch(&topic, &[0, 1, 2]).await.unwrap();
    assert_eq!(
        after,
        HashMap::from([(0, None), (1, Some(7)), (2, Some(0))])
    );

    let text = scripts_kafka("groups", &kafka_dir(), &[&group]);
    let row = text
        .lines()
        .find(|l| {
            l.split_whitespace().nth(1) == Some(topic.as_str())
                && l.split_whitespace().nth(2) == Some("1")
        })
        .unwrap_or_else(|| panic!("no row for {topic}/1 in:\n{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cols[3..6],
        &["7", "10", "3"],
        "CURRENT-OFFSET LOG-END-OFFSET LAG in {row}"
    );
}

#[tokio::test]
async fn fetch_loops_respect_the_window_and_commit_only_the_contiguous_prefix() {
    let client = client().await;
    let topic = unique_topic("kafka-consume");
    create_topic(&client, &topic, 2).await;
    produce_n(&client, &topic, 0, 10).await;
    produce_n(&client, &topic, 1, 5).await;
    let pc0 = client
        .partition_client(&topic, 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let at = |offset, skipped| Some(StartPosition { offset, skipped });
    assert_eq!(
        start_position(&pc0, None, OffsetReset::Latest)
            .await
            .unwrap(),
        at(10, Some(0..10)),
        "latest passes over the ten records already there, and says so"
    );
    assert_eq!(
        start_position(&pc0, None, OffsetReset::Earliest)
            .await
            .unwrap(),
        at(0, None)
    );
    assert_eq!(
        start_position(&pc0, Some(4), OffsetReset::Latest)
            .await
            .unwrap(),
        at(4, None)
    );
    assert_eq!(
        start_position(&pc0, None, OffsetReset::Never)
            .await
            .unwrap(),
        None,
        "none (aiokafka's) resets nowhere: without a committed offset there is no start"
    );
    assert_eq!(
        start_position(&pc0, Some(4), OffsetReset::Never)
            .await
            .unwrap(),
        at(4, None)
    );

    let (stop, shutdown) = watch::channel(false);
    let options = FetchOptions {
        topic: topic.clone(),
        max_in_flight: 4,
        max_wait: Duration::from_millis(200),
        max_bytes: 1 << 20,
        reset: OffsetReset::Earliest,
        isolation: IsolationLevel::ReadUncommitted,
        cluster: ClusterMap::new(kafka_bootstrap(), "test", BrokerAuth::plaintext()),
    };
    let (mut consumer, mut rx) = RequestConsumer::start(
        client.clone(),
        options,
        HashMap::from([(0, 2), (1, 0)]),
        shutdown,
    )
    .await
    .unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    // The window is full: nothing more arrives until a record is done.
    assert!(
        tokio::time::timeout(Duration::from_millis(700), rx.recv())
            .await
            .is_err()
    );
    assert_eq!(consumer.watermarks.lock().unwrap().in_flight(), 4);

    let mut seen: Vec<(i32, i64)> = held.iter().map(|r| (r.partition, r.offset)).collect();
    // Finish the later ones first: the watermark must not move past an unfinished offset.
    held.sort_by_key(|r| std::cmp::Reverse(r.offset));
    let first = held.pop().unwrap();
    let first_pos = (first.partition, first.offset);
    for r in held.drain(..) {
        r.done.complete();
    }
    assert_eq!(
        consumer.watermarks.lock().unwrap().committable(first_pos.0),
        Some(first_pos.1)
    );
    first.done.complete();

    while seen.len() < 13 {
        let r = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap()
            .unwrap();
        seen.push((r.partition, r.offset));
        r.done.complete();
    }
    seen.sort();
    let expected: Vec<(i32, i64)> = (2..10)
        .map(|o| (0, o))
        .chain((0..5).map(|o| (1, o)))
        .collect();
    assert_eq!(
        seen, expected,
        "every record from the start offsets, each once"
    );
    let w = consumer.watermarks.lock().unwrap().clone();
    assert_eq!((w.committable(0), w.committable(1)), (Some(10), Some(5)));
    stop.send(true).unwrap();
    consumer.join().await;
}

#[tokio::test]
async fn keyed_responses_land_where_javas_partitioner_puts_them() {
    let client = client().await;
    let topic = unique_topic("kafka-produce");
    create_topic(&client, &topic, 8).await;
    let settings = ProducerSettings {
        bootstrap: kafka_bootstrap(),
        client_id: "hd-kafka-exec-test".into(),
        linger: Duration::ZERO,
        compression: hd_kafka_exec::config::Compression::None,
        max_request_size: hd_kafka_exec::config::DEFAULT_MAX_REQUEST_SIZE,
        auth: Default::default(),
    };
    let producer = ResponseProducer::new(client.clone(), &topic, &settings)
        .await
        .unwrap();
    for key in ["exec_job_1", "exec_job_2", "another-key"] {
        let headers = BTreeMap::from([("hd-job-id".to_owned(), b"j".to_vec())]);
        let (partition, offset) = producer
            .send(&OutgoingRecord {
                key: Some(key.into()),
                value: Some(b"{}".to_vec()),
                headers,
                exact_headers: None,
            })
            .await
            .unwrap();
        assert_eq!(partition, partition_for_key(key.as_bytes(), 8));
        let pc = client
            .partition_client(&topic, partition, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let (records, _) = pc.fetch_records(offset, 1..1_000_000, 1000).await.unwrap();
        let r = records.iter().find(|r| r.offset == offset).unwrap();
        assert_eq!(r.record.key.as_deref(), Some(key.as_bytes()));
        assert_eq!(r.record.headers["hd-job-id"], b"j");
    }
    let e = ResponseProducer::new(client.clone(), "no-such-topic-here", &settings)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}

/// A start offset that retention has deleted: the fetch loop resets per auto_offset_reset
/// (earliest here) with a warning, and the watermark follows.
#[tokio::test]
async fn an_out_of_range_offset_resets_per_auto_offset_reset() {
    let client = client().await;
    let topic = unique_topic("kafka-range");
    create_topic(&client, &topic, 1).await;
    produce_n(&client, &topic, 0, 10).await;
    let pc = client
        .partition_client(&topic, 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    pc.delete_records(6, 10_000).await.unwrap();
    assert_eq!(
        pc.get_offset(rskafka::client::partition::OffsetAt::Earliest)
            .await
            .unwrap(),
        6
    );

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
        RequestConsumer::start(client.clone(), options, HashMap::from([(0, 2)]), shutdown)
            .await
            .unwrap();
    let mut offsets = Vec::new();
    while offsets.len() < 4 {
        let r = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap()
            .unwrap();
        offsets.push(r.offset);
        r.done.complete();
    }
    assert_eq!(offsets, vec![6, 7, 8, 9]);
    assert_eq!(consumer.watermarks.lock().unwrap().committable(0), Some(10));
    stop.send(true).unwrap();
    consumer.join().await;
}

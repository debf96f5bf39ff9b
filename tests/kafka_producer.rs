//! The response producer against the real broker at the limits of record size: aiokafka's
//! `max_request_size` (default 1 MiB) and the topic's `max.message.bytes`, measured after
//! compression. hetida's producer delivers a 998,112-byte answer with default options, and
//! 1–1.2 MB ones with gzip and a raised `max_request_size`; so must this one.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hd_kafka_exec::config::{Compression, DEFAULT_MAX_REQUEST_SIZE};
use hd_kafka_exec::kafka::SizeLimit;
use hd_kafka_exec::kafka::{
    KafkaError, OutgoingRecord, ProducerSettings, ResponseProducer, backoff,
};
use rskafka::client::partition::UnknownTopicHandling;
use rskafka::client::{Client, ClientBuilder};
use support::kafka::{create_topic, kafka_bootstrap, kafka_dir, scripts_kafka, unique_topic};
use support::runtime_double::poorly_compressible;

async fn client() -> Arc<Client> {
    Arc::new(
        ClientBuilder::new(kafka_bootstrap())
            .backoff_config(backoff())
            .build()
            .await
            .unwrap(),
    )
}

fn settings(compression: Compression, max_request_size: usize) -> ProducerSettings {
    ProducerSettings {
        bootstrap: kafka_bootstrap(),
        client_id: "hd-kafka-exec-test".into(),
        linger: Duration::from_millis(20),
        compression,
        max_request_size,
        auth: Default::default(),
    }
}

fn record(key: &str, value: Vec<u8>) -> OutgoingRecord {
    OutgoingRecord {
        key: Some(key.as_bytes().to_vec()),
        value: Some(value),
        headers: BTreeMap::from([("hd-job-id".to_owned(), key.as_bytes().to_vec())]),
        exact_headers: None,
    }
}

/// The value at `offset` of partition 0, read back from Kafka.
async fn read_back(client: &Client, topic: &str, offset: i64) -> Vec<u8> {
    let pc = client
        .partition_client(topic, 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let (records, _) = pc.fetch_records(offset, 1..20_000_000, 1000).await.unwrap();
    let r = records.into_iter().find(|r| r.offset == offset).unwrap();
    r.record.value.unwrap()
}

fn too_large(e: KafkaError) -> hd_kafka_exec::kafka::RecordTooLarge {
    assert!(e.is_permanent(), "{e}");
    match e {
        KafkaError::RecordTooLarge(t) => t,
        other => panic!("not RecordTooLarge: {other}"),
    }
}

/// Default options: a 990 kB answer is delivered (as hetida delivers it); a 6 MB one is refused
/// at once, saying its size, the limit and the option that raises it; small records sent at
/// the same time are delivered.
#[tokio::test]
async fn up_to_max_request_size_is_delivered_and_beyond_it_refused_with_the_limit() {
    let client = client().await;
    let topic = unique_topic("produce-limit");
    create_topic(&client, &topic, 1).await;
    let producer = ResponseProducer::new(
        client.clone(),
        &topic,
        &settings(Compression::None, DEFAULT_MAX_REQUEST_SIZE),
    )
    .await
    .unwrap();
    let (near, huge, a, b) = (
        record("near", poorly_compressible(990_000).into_bytes()),
        record("huge", poorly_compressible(6_000_000).into_bytes()),
        record("a", b"1".to_vec()),
        record("b", b"2".to_vec()),
    );
    let (near_sent, huge_sent, a_sent, b_sent) =
        tokio::time::timeout(Duration::from_secs(60), async {
            tokio::join!(
                producer.send(&near),
                producer.send(&huge),
                producer.send(&a),
                producer.send(&b)
            )
        })
        .await
        .expect("producing hung");

    let (_, offset) = near_sent.unwrap();
    assert_eq!(
        read_back(&client, &topic, offset).await,
        near.value.clone().unwrap()
    );
    for (sent, r) in [(a_sent, &a), (b_sent, &b)] {
        let (_, offset) = sent.unwrap();
        assert_eq!(
            read_back(&client, &topic, offset).await,
            r.value.clone().unwrap()
        );
    }

    let refused = too_large(huge_sent.unwrap_err());
    assert_eq!(refused.exceeded, SizeLimit::MaxRequestSize);
    assert_eq!(refused.limit, DEFAULT_MAX_REQUEST_SIZE);
    assert_eq!(refused.compression, None);
    assert!(
        refused.bytes > 6_000_000 && refused.bytes < 6_001_000,
        "{refused:?}"
    );
    let text = refused.to_string();
    for part in [
        refused.bytes.to_string().as_str(),
        "1048576",
        "max_request_size",
        "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS",
    ] {
        assert!(text.contains(part), "{part:?} missing in: {text}");
    }
}

/// gzip with `max_request_size` 5 MiB: a 3 MB answer that stays over 1 MiB compressed is
/// delivered to a topic whose `max.message.bytes` is raised, and refused by one at Kafka's
/// default, with the topic's limit (read from the brokers) named and the size measured after
/// compression.
#[tokio::test]
async fn gzip_and_raised_limits_deliver_3_mb_and_the_topic_limit_is_read_from_kafka() {
    let client = client().await;
    let raised = unique_topic("produce-raised");
    scripts_kafka(
        "topic",
        &kafka_dir(),
        &[&raised, "1", "max.message.bytes=5242880"],
    );
    let default = unique_topic("produce-default");
    create_topic(&client, &default, 1).await;
    let settings = settings(Compression::Gzip, 5 << 20);
    // Stays over 1 MiB after gzip.
    let value = poorly_compressible(3_000_000).into_bytes();

    let producer = ResponseProducer::new(client.clone(), &raised, &settings)
        .await
        .unwrap();
    let (_, offset) = producer
        .send(&record("three", value.clone()))
        .await
        .unwrap();
    assert_eq!(read_back(&client, &raised, offset).await, value);

    let producer = ResponseProducer::new(client.clone(), &default, &settings)
        .await
        .unwrap();
    let refused = too_large(producer.send(&record("three", value)).await.unwrap_err());
    assert_eq!(refused.exceeded, SizeLimit::TopicMaxMessageBytes);
    assert_eq!(
        refused.topic_limit,
        Some(1_048_588),
        "Kafka's default, read from the broker"
    );
    assert_eq!(refused.compression, Some("gzip"));
    assert!(
        refused.bytes > 1_048_588 && refused.bytes < 3_000_000,
        "measured after compression: {refused:?}"
    );
    assert!(
        refused.to_string().contains("max.message.bytes"),
        "{refused}"
    );
}

/// A 3 MB answer that gzip shrinks well fits the default 1 MiB limit: the limit applies after
/// compression, as Kafka applies it.
#[tokio::test]
async fn a_record_over_the_limit_uncompressed_is_delivered_when_it_fits_compressed() {
    let client = client().await;
    let topic = unique_topic("produce-compressible");
    create_topic(&client, &topic, 1).await;
    let producer = ResponseProducer::new(
        client.clone(),
        &topic,
        &settings(Compression::Gzip, DEFAULT_MAX_REQUEST_SIZE),
    )
    .await
    .unwrap();
    let value = br#"{"x": 1.0, "y": 2.0}, "#.repeat(150_000);
    assert!(value.len() > 3_000_000);
    let (_, offset) = producer.send(&record("gz", value.clone())).await.unwrap();
    assert_eq!(read_back(&client, &topic, offset).await, value);
}

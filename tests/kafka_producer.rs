//! The response producer against the real broker when a record cannot be produced at all.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hd_kafka_exec::kafka::{ResponseProducer, backoff};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use support::kafka::{create_topic, kafka_bootstrap, unique_topic};

/// A response larger than a batch may be (a workflow with a big result) fails at once with a
/// permanent error naming topic and partition, so the worker can answer otherwise instead of
/// retrying forever; records sent alongside it are produced as usual.
#[tokio::test]
async fn an_oversize_record_fails_permanently_and_alone() {
    let client = Arc::new(
        ClientBuilder::new(kafka_bootstrap())
            .backoff_config(backoff())
            .build()
            .await
            .unwrap(),
    );
    let topic = unique_topic("kafka-oversize");
    create_topic(&client, &topic, 1).await;
    let producer = ResponseProducer::new(
        client.clone(),
        &topic,
        Duration::from_millis(20),
        Compression::NoCompression,
    )
    .await
    .unwrap();
    let headers = BTreeMap::from([("hd-job-id".to_owned(), b"small".to_vec())]);
    let big = producer.send(None, Some(vec![b'x'; 3 << 20]), BTreeMap::new());
    let small_a = producer.send(Some(b"a".to_vec()), Some(b"1".to_vec()), headers.clone());
    let small_b = producer.send(Some(b"b".to_vec()), Some(b"2".to_vec()), headers.clone());
    let (big, a, b) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(big, small_a, small_b)
    })
    .await
    .expect("producing hung");

    let e = big.unwrap_err();
    assert!(e.is_permanent(), "{e}");
    assert!(e.to_string().contains(&format!("{topic}/0")), "{e}");

    let (pa, oa) = a.unwrap();
    let (pb, ob) = b.unwrap();
    assert_eq!((pa, pb), (0, 0));
    let pc = client
        .partition_client(&topic, 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let (records, _) = pc
        .fetch_records(oa.min(ob), 1..1_000_000, 1000)
        .await
        .unwrap();
    let mut got: Vec<(Vec<u8>, Vec<u8>)> = records
        .iter()
        .map(|r| {
            assert_eq!(r.record.headers, headers);
            (
                r.record.key.clone().unwrap(),
                r.record.value.clone().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec())
        ]
    );
}

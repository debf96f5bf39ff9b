//! Compressed request batches, written by kcat (librdkafka's codecs, not rskafka's), through
//! `hd-kafka-exec serve` and the real broker, with the runtime double standing in for hetida's
//! runtime service.
//!
//! gzip and snappy are always built in. lz4 and zstd are opt-in features (they need C): a build
//! without one parks the partition at such a batch, says which feature is missing, skips and
//! commits nothing there, and goes on with its other partitions. `scripts/test` runs this file
//! once without and once with `--features lz4,zstd`, so every test here runs in one of the two.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use support::kafka::{client, kafka_bootstrap, kcat};
use support::runtime_double::RuntimeDouble;
use support::service::{ServiceProcess, Topics, add_request, job_of, read_jobs};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

/// Writes `values` to one partition in one kcat batch compressed with `codec`.
fn kcat_produce(topic: &str, partition: i32, codec: &str, values: &[Vec<u8>]) {
    let mut child = kcat()
        .args(["-P", "-b", &kafka_bootstrap().join(","), "-t", topic])
        .args(["-p", &partition.to_string(), "-z", codec])
        // One batch for all lines: librdkafka waits this long before it sends.
        .args(["-X", "linger.ms=200"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for v in values {
            stdin.write_all(v).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
    }
    assert!(child.wait().unwrap().success(), "kcat -z {codec} failed");
}

/// Every value of `topic` as kcat (an independent reader) decodes it.
fn kcat_read_all(topic: &str) -> Vec<String> {
    let out = kcat()
        .args(["-C", "-b", &kafka_bootstrap().join(","), "-t", topic])
        .args(["-o", "beginning", "-e", "-q", "-f", "%s\n"])
        .output()
        .unwrap();
    assert!(out.status.success(), "kcat -C failed: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(not(all(feature = "lz4", feature = "zstd")))]
async fn produce_plain(
    client: &std::sync::Arc<rskafka::client::Client>,
    topic: &str,
    partition: i32,
    value: Vec<u8>,
) {
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    use rskafka::record::Record;
    client
        .partition_client(topic.to_owned(), partition, UnknownTopicHandling::Retry)
        .await
        .unwrap()
        .produce(
            vec![Record {
                key: None,
                value: Some(value),
                headers: Default::default(),
                timestamp: chrono::Utc::now(),
            }],
            Compression::NoCompression,
        )
        .await
        .unwrap();
}

fn jobs_of(records: &[(i32, rskafka::record::RecordAndOffset)]) -> HashSet<String> {
    records
        .iter()
        .map(|(_, r)| job_of(r.record.value.as_ref().unwrap()))
        .collect()
}

/// Requests in one batch compressed with `codec` are each answered, and responses produced
/// with `compression_type: codec` read back with kcat.
async fn compressed_batch_is_answered(codec: &str) {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, codec, 2).await;
    let producer_options = format!(
        r#"{{"bootstrap_servers": "{}", "compression_type": "{codec}"}}"#,
        kafka_bootstrap().join(",")
    );
    let service = ServiceProcess::start_with(
        &topics,
        &double.engine_url(),
        &["--workers", "1"],
        &[("HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS", &producer_options)],
    );
    service.wait_workers(1, WAIT);

    let jobs: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let values: Vec<Vec<u8>> = jobs.iter().map(|j| add_request(*j)).collect();
    kcat_produce(&topics.requests, 0, codec, &values);

    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let expected: HashSet<String> = jobs.iter().map(Uuid::to_string).collect();
    assert_eq!(
        jobs_of(&responses),
        expected,
        "log:\n{}",
        service.log_text()
    );
    let read_by_kcat: HashSet<String> = kcat_read_all(&topics.responses)
        .iter()
        .map(|v| job_of(v.as_bytes()))
        .collect();
    assert_eq!(read_by_kcat, expected);
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gzip_batch_is_answered() {
    compressed_batch_is_answered("gzip").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snappy_batch_is_answered() {
    compressed_batch_is_answered("snappy").await;
}

#[cfg(feature = "lz4")]
#[tokio::test(flavor = "multi_thread")]
async fn with_the_lz4_feature_an_lz4_batch_is_answered() {
    compressed_batch_is_answered("lz4").await;
}

#[cfg(feature = "zstd")]
#[tokio::test(flavor = "multi_thread")]
async fn with_the_zstd_feature_a_zstd_batch_is_answered() {
    compressed_batch_is_answered("zstd").await;
}

/// In a build without `codec`: a batch compressed with it parks partition 0 at its offset with
/// an error naming the feature; the request behind it is not answered either (it is not
/// skipped), partition 0 commits nothing, and the same worker keeps answering partition 1.
#[cfg(not(all(feature = "lz4", feature = "zstd")))]
async fn batch_without_its_codec_parks_the_partition(codec: &str) {
    use support::wait::{Shown, eventually, eventually_async};

    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, &format!("no-{codec}"), 2).await;
    let service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "1"]);
    service.wait_workers(1, WAIT);
    let worker = service.workers();

    let compressed = Uuid::new_v4();
    let behind = Uuid::new_v4();
    kcat_produce(&topics.requests, 0, codec, &[add_request(compressed)]);
    produce_plain(&client, &topics.requests, 0, add_request(behind)).await;
    let other = Uuid::new_v4();
    produce_plain(&client, &topics.requests, 1, add_request(other)).await;

    let responses = read_jobs(&client, &topics.responses, &[other], WAIT).await;
    assert!(
        jobs_of(&responses).contains(&other.to_string()),
        "partition 1 was not answered; log:\n{}",
        service.log_text()
    );

    let log = eventually(WAIT, "an error about the batch", || {
        let log = service.log_text();
        if log.contains("cannot decode the request batch") {
            Ok(log)
        } else {
            Err(Shown(log))
        }
    });
    let line = log
        .lines()
        .find(|l| l.contains("cannot decode the request batch"))
        .unwrap();
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("partition=0"), "{line}");
    assert!(line.contains("offset=0"), "{line}");
    assert!(line.contains(&format!("--features {codec}")), "{line}");

    // The worker goes on: a request that arrives after the error is answered too.
    let later = Uuid::new_v4();
    produce_plain(&client, &topics.requests, 1, add_request(later)).await;
    let responses = read_jobs(&client, &topics.responses, &[other, later], WAIT).await;
    let expected: HashSet<String> = [other, later].iter().map(Uuid::to_string).collect();
    assert_eq!(
        jobs_of(&responses),
        expected,
        "only partition 1's requests may be answered; log:\n{}",
        service.log_text()
    );
    assert_eq!(service.workers(), worker, "the worker was replaced");

    // Committed: all of partition 1, nothing of partition 0.
    let coordinator = tokio::sync::Mutex::new(hd_kafka_exec::kafka::GroupCoordinator::new(
        kafka_bootstrap(),
        topics.group.clone(),
        "compressed-requests-test",
    ));
    eventually_async(WAIT, "partition 1 committed", || async {
        let mut coordinator = coordinator.lock().await;
        let committed = coordinator.fetch(&topics.requests, &[0, 1]).await.unwrap();
        if committed[&1] == Some(2) {
            assert!(
                matches!(committed[&0], None | Some(0)),
                "partition 0 committed past the batch it cannot read: {committed:?}"
            );
            Ok(())
        } else {
            Err(committed)
        }
    })
    .await;
    assert!(double.calls_for_job(&behind.to_string()) == 0);
}

#[cfg(not(feature = "lz4"))]
#[tokio::test(flavor = "multi_thread")]
async fn without_the_lz4_feature_an_lz4_batch_parks_only_its_partition() {
    batch_without_its_codec_parks_the_partition("lz4").await;
}

#[cfg(not(feature = "zstd"))]
#[tokio::test(flavor = "multi_thread")]
async fn without_the_zstd_feature_a_zstd_batch_parks_only_its_partition() {
    batch_without_its_codec_parks_the_partition("zstd").await;
}

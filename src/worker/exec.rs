//! `hd-kafka-exec exec`: one request in, its response out — the seed's three console terminals
//! in one command. The request goes to the request topic like any other producer's; the answer
//! is found on the response topic by its job id.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::ClientBuilder;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::config::Config;
use crate::kafka::{OutgoingRecord, ProducerSettings, ResponseProducer};
use crate::protocol::lenient::parse_uuid;

use super::execution::JOB_ID_HEADER;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("the request on stdin is not a JSON object: {0}")]
    NotARequest(String),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("no response for job {job_id} on {topic} within {wait:?}")]
    NoResponse {
        job_id: Uuid,
        topic: String,
        wait: Duration,
    },
}

/// The response found for the request.
#[derive(Debug)]
pub struct ExecResponse {
    pub job_id: Uuid,
    pub value: Vec<u8>,
    /// `"result": "ok"`.
    pub ok: bool,
}

fn kafka(e: impl std::fmt::Display) -> ExecError {
    ExecError::Kafka(e.to_string())
}

/// Produces `request` (adding a `job_id` when it has none, so its response can be recognised)
/// and waits up to `wait` for the response.
pub async fn exec_one(
    config: &Config,
    key: Option<String>,
    request: Vec<u8>,
    wait: Duration,
) -> Result<ExecResponse, ExecError> {
    let mut value: Value =
        serde_json::from_slice(&request).map_err(|e| ExecError::NotARequest(e.to_string()))?;
    let obj = value
        .as_object_mut()
        .ok_or_else(|| ExecError::NotARequest("found another JSON value".into()))?;
    let (job_id, bytes) = match obj
        .get("job_id")
        .and_then(Value::as_str)
        .and_then(parse_uuid)
    {
        Some(job) => (job, request),
        None => {
            let job = Uuid::new_v4();
            obj.insert("job_id".into(), Value::String(job.to_string()));
            (
                job,
                serde_json::to_vec(&value).expect("JSON value serialises"),
            )
        }
    };
    let k = &config.kafka;
    let client = Arc::new(
        ClientBuilder::new(k.consumer_bootstrap.clone())
            .build()
            .await
            .map_err(kafka)?,
    );
    let topics = client.list_topics().await.map_err(kafka)?;
    let partitions = topics
        .iter()
        .find(|t| t.name == k.response_topic)
        .map(|t| t.partitions.len() as i32)
        .ok_or_else(|| {
            ExecError::Kafka(format!(
                "response topic {} does not exist",
                k.response_topic
            ))
        })?;

    // Positions before producing, so the response cannot slip past.
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1);
    let mut watchers = Vec::new();
    for p in 0..partitions {
        let pc = client
            .partition_client(k.response_topic.clone(), p, UnknownTopicHandling::Retry)
            .await
            .map_err(kafka)?;
        let mut offset = pc.get_offset(OffsetAt::Latest).await.map_err(kafka)?;
        let tx = tx.clone();
        let job = job_id.to_string();
        watchers.push(tokio::spawn(async move {
            loop {
                let Ok((records, _)) = pc.fetch_records(offset, 1..50_000_000, 500).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let from = offset;
                for r in records.into_iter().filter(|r| r.offset >= from) {
                    offset = r.offset + 1;
                    let Some(v) = r.record.value else { continue };
                    let by_header = r
                        .record
                        .headers
                        .get(JOB_ID_HEADER)
                        .is_some_and(|h| h == job.as_bytes());
                    let by_value = || {
                        serde_json::from_slice::<Value>(&v)
                            .ok()
                            .and_then(|j| j["job_id"].as_str().map(|s| s == job))
                            .unwrap_or(false)
                    };
                    if by_header || by_value() {
                        let _ = tx.send(v).await;
                        return;
                    }
                }
            }
        }));
    }
    drop(tx);

    let settings = ProducerSettings {
        bootstrap: k.consumer_bootstrap.clone(),
        client_id: k.client_id.clone(),
        linger: Duration::ZERO,
        compression: crate::config::Compression::None,
        max_request_size: k.max_request_size,
    };
    let producer = ResponseProducer::new(client.clone(), &k.request_topic, &settings)
        .await
        .map_err(kafka)?;
    producer
        .send(&OutgoingRecord {
            key: key.map(String::into_bytes),
            value: Some(bytes),
            headers: BTreeMap::new(),
        })
        .await
        .map_err(kafka)?;

    let found = tokio::time::timeout(wait, rx.recv()).await;
    for w in &watchers {
        w.abort();
    }
    match found {
        Ok(Some(value)) => {
            let ok = serde_json::from_slice::<Value>(&value).is_ok_and(|v| v["result"] == "ok");
            Ok(ExecResponse { job_id, value, ok })
        }
        _ => Err(ExecError::NoResponse {
            job_id,
            topic: k.response_topic.clone(),
            wait,
        }),
    }
}

//! `exec`: one request in, its response out — the seed's three console terminals in one
//! command. The request goes to the request topic like any other producer's; the answer is
//! found on the response topic (read from its end, before producing) by its job id.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use hd_kafka_exec::config::{Compression, Config, Env, Flags};
use hd_kafka_exec::kafka::{
    BrokerAuth, OutgoingRecord, ProducerSettings, ResponseProducer, TailRecord, TopicTail, client,
};
use hd_kafka_exec::protocol::pyjson::{self, Document};
use hd_kafka_exec::protocol::{JOB_ID_HEADER, job_id_only};
use uuid::Uuid;

/// Runs `exec`: exits with success only when the response's `result` is `ok`.
pub(super) fn exec(flags: Flags, key: Option<String>, wait: f64) -> anyhow::Result<ExitCode> {
    let config = Config::load(&flags, &Env::from_process())?;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading the request from stdin")?;
    let wait = Duration::try_from_secs_f64(wait).context("--wait")?;
    let (job_id, request) = with_job_id(&input)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let response = rt.block_on(exec_one(&config, key, job_id, request, wait))?;
    std::io::stdout().write_all(&response)?;
    std::io::stdout().write_all(b"\n")?;
    // Read as Python's `json` reads it: a response may quote a lone surrogate (`"\ud800"`).
    let ok = match pyjson::document(&response) {
        Ok(Document::Object(members)) => members
            .iter()
            .rev()
            .find(|(key, _)| key.is("result"))
            .is_some_and(|(_, value)| value.text() == b"\"ok\""),
        _ => false,
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The request's job id, adding one (so the response can be recognised) when it has none. The
/// request is read as the service reads it (Python's `json.loads`: `NaN`, lone surrogates) and
/// sent as it was written: a missing job id is appended as the object's last member (which a
/// Python dict, and the service, take over an earlier one that is no UUID), never re-encoded.
fn with_job_id(request: &[u8]) -> anyhow::Result<(Uuid, Vec<u8>)> {
    let members = match pyjson::document(request).context("the request on stdin is not JSON")? {
        Document::Object(members) => members.len(),
        Document::Other { .. } => bail!("the request on stdin is not a JSON object"),
    };
    if let Some(job) = job_id_only(Some(request)) {
        return Ok((job, request.to_vec()));
    }
    let job = Uuid::new_v4();
    // The document is one object: after trailing whitespace comes its closing brace.
    let body = request.trim_ascii_end();
    let mut out = body
        .get(..body.len().saturating_sub(1))
        .unwrap_or_default()
        .to_vec();
    if members > 0 {
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(format!("\"job_id\": \"{job}\"}}").as_bytes());
    Ok((job, out))
}

/// Produces `request` and waits up to `wait` for the response to `job_id`.
async fn exec_one(
    config: &Config,
    key: Option<String>,
    job_id: Uuid,
    request: Vec<u8>,
    wait: Duration,
) -> anyhow::Result<Vec<u8>> {
    let k = &config.kafka;
    // The consumer side's brokers and security serve both: the request is produced where the
    // service consumes it.
    let auth = BrokerAuth::new(&k.consumer_security)?;
    let kafka = client::connect(&k.consumer_bootstrap, &k.client_id, &auth).await?;
    // Read from the end before producing, so the response cannot slip past.
    let mut tail = TopicTail::from_end(
        &kafka,
        &k.response_topic,
        &k.consumer_bootstrap,
        &k.client_id,
        &auth,
    )
    .await?;
    let settings = ProducerSettings {
        bootstrap: k.consumer_bootstrap.clone(),
        client_id: k.client_id.clone(),
        linger: Duration::ZERO,
        compression: Compression::None,
        max_request_size: k.max_request_size,
        auth,
    };
    ResponseProducer::new(kafka.clone(), &k.request_topic, &settings)
        .await?
        .send(&OutgoingRecord {
            key: key.map(String::into_bytes),
            value: Some(request),
            headers: BTreeMap::new(),
            exact_headers: None,
        })
        .await?;
    let job = job_id.to_string();
    let found = tokio::time::timeout(wait, async {
        while let Some(record) = tail.next().await {
            let record = record.with_context(|| format!("reading {}", k.response_topic))?;
            if let Some(value) = answers(record, &job) {
                return Ok(value);
            }
        }
        bail!("every partition of {} failed", k.response_topic)
    })
    .await;
    match found {
        Ok(found) => found,
        Err(_) => bail!(
            "no response for job {job_id} on {} within {wait:?}",
            k.response_topic
        ),
    }
}

/// The record's value if it is the response to `job` (by header, else by the value's job id).
fn answers(record: TailRecord, job: &str) -> Option<Vec<u8>> {
    let value = record.value?;
    let by_header = record
        .headers
        .iter()
        .any(|h| h.key == JOB_ID_HEADER.as_bytes() && h.value.as_deref() == Some(job.as_bytes()));
    // Read as Python's `json` reads it: a response may quote a lone surrogate (`"\ud800"`).
    let by_value = || job_id_only(Some(&value)).is_some_and(|id| id.to_string() == job);
    (by_header || by_value()).then_some(value)
}

//! Conformance with the reference: every case recorded from the real hetida services
//! (`../shared/vectors/cases`, read in place, never copied) through parse, resolve, prepare and
//! response building. Where the reference produced nothing, our failure response is asserted.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use support::normalise;

use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use hd_kafka_exec::protocol::response::Failure;
use hd_kafka_exec::protocol::{
    ExecutionRequest, PreparedRevision, ProtocolError, Step, Timings, build_response,
    failure_response, parse_request,
};
use hd_kafka_exec::store::DirIndex;
use serde_json::Value;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors")
}

fn timings() -> Timings {
    let t = |us: u32| {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
            + chrono::Duration::microseconds(us.into())
    };
    Timings {
        internal_full: Some(Step {
            start: t(0),
            end: t(900),
        }),
        prepare_execution_input: Some(Step {
            start: t(10),
            end: t(100),
        }),
        run_execution_input: Some(Step {
            start: t(100),
            end: t(800),
        }),
    }
}

struct Case {
    name: String,
    dir: PathBuf,
    meta: Value,
}

impl Case {
    fn file(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(name)).ok()
    }
    fn json(&self, name: &str) -> Option<Value> {
        self.file(name).map(|b| serde_json::from_slice(&b).unwrap())
    }
    fn request_bytes(&self) -> Option<Vec<u8>> {
        self.file("request.json")
            .or_else(|| self.file("request.bin"))
    }
    fn runtime_status(&self) -> u16 {
        self.meta["runtime_http_exchanges"][0]["status"]
            .as_u64()
            .unwrap_or(200) as u16
    }
}

fn cases() -> Vec<Case> {
    let mut out: Vec<Case> = std::fs::read_dir(vectors().join("cases"))
        .expect("../shared/vectors/cases must be beside the checkout")
        .map(|e| {
            let dir = e.unwrap().path();
            Case {
                name: dir.file_name().unwrap().to_string_lossy().into_owned(),
                meta: serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap())
                    .unwrap(),
                dir,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn resolve(
    store: &DirIndex,
    request: &ExecutionRequest,
) -> Result<PreparedRevision, ProtocolError> {
    let id = store.resolve(request.target)?;
    let tree = store.tree(id)?;
    PreparedRevision::new(&tree)
}

/// Runs one case the way the worker does; `Ok(response)` or the failure we would produce.
fn run_case(store: &DirIndex, case: &Case) -> (Option<Vec<u8>>, Result<Vec<u8>, ProtocolError>) {
    let request = match parse_request(case.request_bytes().as_deref()) {
        Ok(r) => r,
        Err(e) => return (None, Err(e)),
    };
    let prepared = match resolve(store, &request) {
        Ok(p) => p,
        Err(e) => return (None, Err(e)),
    };
    let runtime_request = match prepared.runtime_request(&request) {
        Ok(r) => r,
        Err(e) => return (None, Err(e)),
    };
    let body = case
        .file("runtime_response.json")
        .or_else(|| case.file("runtime_response.txt"));
    let Some(body) = body else {
        // No runtime exchange recorded: the runtime was unreachable.
        return (
            Some(runtime_request.body.to_vec()),
            Err(ProtocolError::RuntimeUnreachable {
                reason: "connection refused".into(),
            }),
        );
    };
    let response = build_response(
        case.runtime_status(),
        &body,
        prepared.output_types(),
        &timings(),
        Some(4242),
    );
    (Some(runtime_request.body.to_vec()), response)
}

#[test]
fn every_vector_case_matches_the_reference() {
    let store =
        DirIndex::open(&vectors().join("transformations")).expect("vector transformations open");
    let all = cases();
    assert_eq!(all.len(), 42, "the vectors hold 42 cases");
    let mut failures = Vec::new();
    for case in &all {
        let known = normalise::known_uuids(
            &vectors().join("transformations"),
            case.request_bytes().as_deref(),
        );
        let (runtime_request, outcome) = run_case(&store, case);

        if let Some(expected) = case.json("runtime_request.json") {
            match &runtime_request {
                None => failures.push(format!(
                    "{}: no runtime request prepared ({:?})",
                    case.name,
                    outcome.as_ref().err()
                )),
                Some(ours) => {
                    let ours: Value =
                        serde_json::from_slice(ours).expect("our runtime request is JSON");
                    let (a, b) = (
                        normalise::normalise(&ours, &known),
                        normalise::normalise(&expected, &known),
                    );
                    if a != b {
                        failures.push(format!(
                            "{}: runtime request differs\n ours: {a}\n ref:  {b}",
                            case.name
                        ));
                    }
                }
            }
        }

        match (case.json("response.json"), outcome) {
            (Some(expected), Ok(ours)) => {
                let ours_v: Value = serde_json::from_slice(&ours).expect("our response is JSON");
                let (a, b) = (
                    normalise::normalise(&ours_v, &known),
                    normalise::normalise(&expected, &known),
                );
                if a != b {
                    failures.push(format!(
                        "{}: response differs\n ours: {a}\n ref:  {b}",
                        case.name
                    ));
                }
            }
            (Some(_), Err(e)) => {
                failures.push(format!("{}: reference answered, we failed: {e}", case.name))
            }
            (None, outcome) => {
                let Some(expected_type) = normalise::expected_failure(&case.name) else {
                    failures.push(format!("{}: no expectation for a dropped case", case.name));
                    continue;
                };
                let error = match outcome {
                    Ok(_) => {
                        failures.push(format!(
                            "{}: reference dropped it, we produced a normal response",
                            case.name
                        ));
                        continue;
                    }
                    Err(e) => e,
                };
                let request_job_id = case
                    .request_bytes()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .and_then(|v| {
                        v["job_id"]
                            .as_str()
                            .and_then(hd_kafka_exec::protocol::lenient::parse_uuid)
                    });
                let extra =
                    serde_json::json!({"topic": "hd-execution-topic", "partition": 0, "offset": 7});
                let bytes = failure_response(&Failure {
                    error: &error,
                    job_id: request_job_id,
                    output_types: &[],
                    timings: &Timings::default(),
                    process_id: Some(1),
                    extra: Some(&extra),
                });
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                let checks = [
                    (v["result"] == "failure", "result is failure"),
                    (v["error"]["type"] == expected_type, "error type"),
                    (
                        v["error"]["message"]
                            .as_str()
                            .is_some_and(|m| !m.is_empty()),
                        "message",
                    ),
                    (
                        v["error"]["extra_information"] == extra,
                        "kafka coordinates",
                    ),
                    (
                        v["error"]["location"]["file"] == "hd-kafka-exec",
                        "location",
                    ),
                    (
                        v["output_results_by_output_name"] == serde_json::json!({}),
                        "no outputs",
                    ),
                    (
                        request_job_id.is_none_or(|j| v["job_id"] == j.to_string()),
                        "job id echoed",
                    ),
                ];
                for (ok, what) in checks {
                    if !ok {
                        failures.push(format!("{}: failure response {what}: {v}", case.name));
                    }
                }
                assert_eq!(
                    error.is_not_a_request(),
                    expected_type == "UndecodableRequestError",
                    "{}",
                    case.name
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn step_of(v: &Value) -> Option<Step> {
    let t = |s: &Value| {
        chrono::DateTime::parse_from_rfc3339(s.as_str()?)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    Some(Step {
        start: t(&v["start"])?,
        end: t(&v["end"])?,
    })
}

/// Byte for byte: with the reference's own timings and process id, our response value is the
/// reference's value (Python `json.dumps` style, field order, number text, escapes).
#[test]
fn responses_are_byte_identical_to_the_reference() {
    let store = DirIndex::open(&vectors().join("transformations")).unwrap();
    let mut compared = 0;
    for case in cases() {
        let (Some(expected), Some(body)) = (
            case.file("response.json"),
            case.file("runtime_response.json"),
        ) else {
            continue;
        };
        let reference: Value = serde_json::from_slice(&expected).unwrap();
        let steps = &reference["measured_steps"];
        let timings = Timings {
            internal_full: step_of(&steps["internal_full"]),
            prepare_execution_input: step_of(&steps["prepare_execution_input"]),
            run_execution_input: step_of(&steps["run_execution_input"]),
        };
        let request = parse_request(case.request_bytes().as_deref()).unwrap();
        let prepared = resolve(&store, &request).unwrap();
        let ours = build_response(
            case.runtime_status(),
            &body,
            prepared.output_types(),
            &timings,
            reference["process_id"].as_u64().map(|p| p as u32),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&expected),
            "{}: response bytes differ",
            case.name
        );
        compared += 1;
    }
    assert_eq!(
        compared, 22,
        "every case with a recorded response is compared"
    );
}

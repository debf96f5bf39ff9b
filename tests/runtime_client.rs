//! The runtime client against the runtime double (which stands in for hetida's runtime service).
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::time::Duration;

use bytes::Bytes;
use hd_kafka_exec::runtime_client::{RuntimeClient, RuntimeError, RuntimeOptions};
use hd_kafka_exec::secret::Secret;
use serde_json::Value;
use support::runtime_double::{Mode, RuntimeDouble};

fn vector_request(case: &str) -> Bytes {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/cases/").to_owned()
        + case
        + "/runtime_request.json";
    Bytes::from(std::fs::read(path).unwrap())
}

fn client(double: &RuntimeDouble) -> RuntimeClient {
    let mut o = RuntimeOptions::new(double.engine_url());
    o.retry_budget = Duration::from_secs(20);
    o.backoff_initial = Duration::from_millis(20);
    o.backoff_max = Duration::from_millis(200);
    RuntimeClient::new(o).unwrap()
}

#[tokio::test]
async fn a_vector_request_gets_the_recorded_answer_with_its_job_id() {
    let double = RuntimeDouble::start().await;
    let answer = client(&double)
        .run(vector_request("volatility_by_id"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    let v: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(v["result"], "ok");
    assert_eq!(v["job_id"], "00000000-0000-0000-0000-000000000002");
    assert!(v["output_results_by_output_name"]["score"].is_object());
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

#[tokio::test]
async fn every_recorded_runtime_request_passes_the_doubles_checks() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/cases");
    let mut checked = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path().join("runtime_request.json");
        if let Ok(b) = std::fs::read(&p) {
            let v: Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(
                support::runtime_double::check_request(&v),
                Vec::<String>::new(),
                "{}",
                p.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 20);
}

#[tokio::test]
async fn incomplete_wiring_is_rejected_with_422_and_recorded() {
    let double = RuntimeDouble::start().await;
    let mut v: Value = serde_json::from_slice(&vector_request("component_add_direct")).unwrap();
    v["workflow_wiring"]["input_wirings"]
        .as_array_mut()
        .unwrap()
        .pop();
    let answer = client(&double)
        .run(Bytes::from(v.to_string()))
        .await
        .unwrap();
    assert_eq!(answer.status, 422);
    assert!(
        double
            .violations()
            .iter()
            .any(|m| m.contains("Wiring Incomplete: Workflow Input 'b'"))
    );
}

#[tokio::test]
async fn misbehaviour_passes_through_as_answers() {
    let double = RuntimeDouble::start().await;
    let c = client(&double);
    double.set_mode(Mode::Http500Text);
    let a = c.run(vector_request("component_add_direct")).await.unwrap();
    assert_eq!(
        (a.status, &a.body[..]),
        (500, &b"Internal Server Error"[..])
    );
    double.set_mode(Mode::NonJson);
    assert!(
        serde_json::from_slice::<Value>(
            &c.run(vector_request("component_add_direct"))
                .await
                .unwrap()
                .body
        )
        .is_err()
    );
    double.set_mode(Mode::DropConnection);
    let e = c
        .run(vector_request("component_add_direct"))
        .await
        .unwrap_err();
    assert!(matches!(e, RuntimeError::Failed { .. }), "{e}");
}

/// Waits (up to 10 s) until the double holds exactly `calls`.
async fn wait_held(double: &RuntimeDouble, calls: &[(&str, u64)]) {
    let want: Vec<(String, u64)> = calls.iter().map(|(j, n)| ((*j).to_owned(), *n)).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while double.held() != want {
        assert!(
            std::time::Instant::now() < deadline,
            "held {:?}, not {want:?}",
            double.held()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The answer of a call in `task`, within 10 s.
async fn within(
    task: tokio::task::JoinHandle<hd_kafka_exec::runtime_client::RuntimeAnswer>,
) -> hd_kafka_exec::runtime_client::RuntimeAnswer {
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("answered within 10 s")
        .unwrap()
}

/// Held calls wait until the test releases them, each by job id and call number, in any order;
/// a held call's answer keeps the recorded outputs and names its call number; once holding is
/// off, a call is answered at once, without one.
#[tokio::test]
async fn held_calls_wait_for_their_release_and_name_their_call_number() {
    use support::runtime_double::{CALL_OUTPUT, call_of_response};
    let double = RuntimeDouble::start().await;
    let c = client(&double);
    let request = vector_request("component_add_direct");
    let job = serde_json::from_slice::<Value>(&request).unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = |c: RuntimeClient, r: Bytes| tokio::spawn(async move { c.run(r).await.unwrap() });
    double.hold(true);
    let first = run(c.clone(), request.clone());
    wait_held(&double, &[(&job, 1)]).await;
    let second = run(c.clone(), request.clone());
    wait_held(&double, &[(&job, 1), (&job, 2)]).await;
    assert_eq!(double.calls_for_job(&job), 2);

    assert!(double.release(&job, 2));
    let answer = within(second).await;
    assert_eq!(answer.status, 200);
    let v: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(v["output_results_by_output_name"]["sum"], 3.5, "{v}");
    assert_eq!(call_of_response(&answer.body), Some(2), "{v}");
    assert!(double.answered(&job, 2) && !double.answered(&job, 1));
    assert_eq!(double.held_calls(&job), [1]);
    assert!(!first.is_finished(), "the first call is still held");

    assert!(double.release(&job, 1));
    assert_eq!(call_of_response(&within(first).await.body), Some(1));
    assert!(double.answered(&job, 1) && double.held().is_empty());
    assert!(!double.release(&job, 1), "released twice");

    double.hold(false);
    let third = c.run(request).await.unwrap();
    let v: Value = serde_json::from_slice(&third.body).unwrap();
    assert!(
        v["output_results_by_output_name"]
            .get(CALL_OUTPUT)
            .is_none(),
        "{v}"
    );
    assert_eq!(double.calls_for_job(&job), 3);
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

#[tokio::test]
async fn an_unreachable_runtime_is_retried_until_it_is_back() {
    let double = RuntimeDouble::start().await;
    let c = client(&double);
    double.set_mode(Mode::Down);
    let back = async {
        // The outage's length is the point: the client must keep trying through it.
        tokio::time::sleep(Duration::from_millis(700)).await;
        double.set_mode(Mode::Normal);
    };
    let (answer, ()) = tokio::join!(c.run(vector_request("component_add_direct")), back);
    assert_eq!(answer.unwrap().status, 200);
}

#[tokio::test]
async fn an_unreachable_runtime_beyond_the_budget_is_an_error_naming_attempts() {
    let double = RuntimeDouble::start().await;
    double.set_mode(Mode::Down);
    let mut o = RuntimeOptions::new(double.engine_url());
    o.retry_budget = Duration::from_millis(300);
    o.backoff_initial = Duration::from_millis(20);
    let e = RuntimeClient::new(o)
        .unwrap()
        .run(Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    match e {
        RuntimeError::Unreachable { attempts, .. } => assert!(attempts > 1, "{attempts}"),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_slow_runtime_times_out() {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_secs(5));
    let mut o = RuntimeOptions::new(double.engine_url());
    o.call_timeout = Duration::from_millis(200);
    let e = RuntimeClient::new(o)
        .unwrap()
        .run(vector_request("component_add_direct"))
        .await
        .unwrap_err();
    assert!(matches!(e, RuntimeError::Timeout { .. }), "{e}");
}

#[tokio::test]
async fn bearer_token_and_keep_alive() {
    let double = RuntimeDouble::start().await;
    let mut o = RuntimeOptions::new(double.engine_url());
    o.bearer_token = Some(Secret::new("t0ken"));
    let c = RuntimeClient::new(o).unwrap();
    assert!(
        !format!("{c:?}").contains("t0ken"),
        "the token stays out of Debug"
    );
    for _ in 0..20 {
        assert_eq!(
            c.run(vector_request("component_add_direct"))
                .await
                .unwrap()
                .status,
            200
        );
    }
    assert_eq!(double.calls(), 20);
    assert_eq!(
        double.connections(),
        1,
        "one pooled connection serves sequential calls"
    );
}

mod hostile_answers {
    use std::time::Duration;

    use bytes::Bytes;
    use hd_kafka_exec::protocol::response::Failure;
    use hd_kafka_exec::protocol::revision::DataType;
    use hd_kafka_exec::protocol::{ProtocolError, Timings, build_response, failure_response};
    use hd_kafka_exec::runtime_client::{
        CallFailure, RuntimeAnswer, RuntimeClient, RuntimeError, RuntimeOptions,
    };
    use serde_json::Value;

    use crate::support::hostile_runtime::{Act, Runtime};

    const JOB: &str = "00000000-0000-0000-0000-000000000001";

    fn answer_with_outputs(outputs: &str) -> Vec<u8> {
        format!(r#"{{"error":null,"output_results_by_output_name":{outputs},"traceback":null,"job_id":"{JOB}","measured_steps":{{}},"result":"ok"}}"#)
            .into_bytes()
    }

    fn options(runtime: &Runtime) -> RuntimeOptions {
        let mut o = RuntimeOptions::new(runtime.engine_url());
        o.call_timeout = Duration::from_secs(10);
        o
    }

    async fn call(o: RuntimeOptions) -> Result<RuntimeAnswer, RuntimeError> {
        RuntimeClient::new(o)
            .unwrap()
            .run(Bytes::from_static(b"{}"))
            .await
    }

    /// The response the worker produces from an answer, as text (always ASCII).
    fn response(answer: &RuntimeAnswer) -> Result<String, ProtocolError> {
        build_response(
            answer.status,
            &answer.body,
            &[("x".to_owned(), DataType::Any)],
            &Timings::default(),
            None,
        )
        .map(|bytes| String::from_utf8(bytes).expect("ASCII"))
    }

    /// The failure response for an error, parsed: its `error` object.
    fn failure(error: &ProtocolError) -> Value {
        let bytes = failure_response(&Failure {
            error,
            job_id: None,
            output_types: &[],
            timings: &Timings::default(),
            process_id: None,
            extra: None,
        });
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["result"], "failure");
        v["error"].clone()
    }

    async fn delivered(outputs: &str) -> String {
        let runtime = Runtime::start(Act::Answer {
            status: 200,
            body: answer_with_outputs(outputs),
        })
        .await;
        let answer = call(options(&runtime)).await.unwrap();
        assert_eq!(answer.body, answer_with_outputs(outputs));
        response(&answer).unwrap()
    }

    #[tokio::test]
    async fn lone_surrogates_pass_through_as_written() {
        let out = delivered(r#"{"x":"a\ud800b"}"#).await;
        assert!(
            out.contains(r#""output_results_by_output_name": {"x": "a\ud800b"}"#),
            "{out}"
        );
        let out = delivered(r#"{"x":["\udfff","\uDFFF"]}"#).await;
        assert!(out.contains(r#"{"x": ["\udfff", "\udfff"]}"#), "{out}");
        let out = delivered(r#"{"x":{"\ud800":1,"k\udc00":"\ud83d\ude00"}}"#).await;
        assert!(
            out.contains(r#"{"x": {"\ud800": 1, "k\udc00": "\ud83d\ude00"}}"#),
            "{out}"
        );
        assert!(out.contains(r#""result": "ok""#), "{out}");
    }

    #[tokio::test]
    async fn nan_and_infinities_pass_through_as_python_writes_them() {
        let out = delivered(r#"{"x":[NaN,Infinity,-Infinity,{"y":NaN}]}"#).await;
        assert!(
            out.contains(r#"{"x": [NaN, Infinity, -Infinity, {"y": NaN}]}"#),
            "{out}"
        );
    }

    fn ten_megabytes() -> String {
        let row = r#"[0.1234567,-2.5e-07,"caf\u00e9 \/ x"],"#;
        let mut rows = String::with_capacity(10_000_100);
        while rows.len() < 10_000_000 {
            rows.push_str(row);
        }
        format!("{{\"x\":[{}]}}", rows.trim_end_matches(','))
    }

    #[tokio::test]
    async fn a_ten_megabyte_answer_under_the_limit_is_read_whole() {
        let outputs = ten_megabytes();
        let body = answer_with_outputs(&outputs);
        for act in [
            Act::Answer {
                status: 200,
                body: body.clone(),
            },
            Act::Chunked {
                status: 200,
                body: body.clone(),
                chunk: 100_000,
            },
        ] {
            let runtime = Runtime::start(act).await;
            let mut o = options(&runtime);
            o.max_answer_bytes = 16 << 20;
            let answer = call(o).await.unwrap();
            assert_eq!(answer.body.len(), body.len());
            let out = response(&answer).unwrap();
            let restyled = outputs
                .replace(',', ", ")
                .replace(":[", ": [")
                .replace(r"\/", "/");
            assert!(out.contains(&restyled), "the outputs arrive as written");
        }
    }

    #[tokio::test]
    async fn a_ten_megabyte_answer_over_the_limit_is_refused_with_sizes() {
        let body = answer_with_outputs(&ten_megabytes());
        let limit: u64 = 8 << 20;

        // Announced too large: refused before a byte of the body is read.
        let runtime = Runtime::start(Act::Answer {
            status: 200,
            body: body.clone(),
        })
        .await;
        let mut o = options(&runtime);
        o.max_answer_bytes = limit;
        let e = call(o).await.unwrap_err();
        let message = e.to_string();
        match &e {
            RuntimeError::Failed {
                failure:
                    CallFailure::TooLarge {
                        status: 200,
                        read: 0,
                        content_length: Some(announced),
                        limit: l,
                    },
                ..
            } => assert_eq!((*announced, *l), (body.len() as u64, limit)),
            other => panic!("{other}"),
        }
        assert!(
            message.contains(&format!(
                "larger than the 8388608 bytes a worker reads: it announced {} bytes",
                body.len()
            )),
            "{message}"
        );
        let error = ProtocolError::from(e);
        let f = failure(&error);
        assert_eq!(f["type"], "MessageSizeTooLargeError");
        assert_eq!(f["location"]["function_name"], "run_execution_input");
        assert!(
            f["message"]
                .as_str()
                .unwrap()
                .starts_with("the runtime's answer is too large: runtime at http://127.0.0.1:"),
            "{f}"
        );

        // Not announced (chunked): refused at the chunk that crosses the limit.
        let runtime = Runtime::start(Act::Chunked {
            status: 200,
            body,
            chunk: 64 << 10,
        })
        .await;
        let mut o = options(&runtime);
        o.max_answer_bytes = limit;
        let e = call(o).await.unwrap_err();
        let RuntimeError::Failed {
            failure:
                CallFailure::TooLarge {
                    read,
                    content_length: None,
                    ..
                },
            ..
        } = &e
        else {
            panic!("{e}")
        };
        assert!(
            *read > limit && *read <= limit + (64 << 10),
            "nothing buffered past the limit: {read}"
        );
        assert!(
            e.to_string().contains(&format!(
                "8388608 bytes a worker reads: refused after {read} bytes"
            )),
            "{e}"
        );
    }

    async fn not_json(body: &[u8], status: u16) -> (ProtocolError, Value) {
        let runtime = Runtime::start(Act::Answer {
            status,
            body: body.to_vec(),
        })
        .await;
        let answer = call(options(&runtime)).await.unwrap();
        assert_eq!((answer.status, &answer.body[..]), (status, body));
        let e = response(&answer).unwrap_err();
        let f = failure(&e);
        assert_eq!(f["type"], "TrafoExecutionResultValidationError");
        (e, f)
    }

    #[tokio::test]
    async fn invalid_utf8_is_a_failure_that_says_where() {
        let mut body = answer_with_outputs(r#"{"x":"ab"}"#);
        let at = body.iter().position(|b| *b == b'b').unwrap();
        body[at] = 0xff;
        let (e, f) = not_json(&body, 200).await;
        assert!(matches!(
            e,
            ProtocolError::RuntimeAnswerNotJson { status: 200, .. }
        ));
        let message = f["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "the runtime answered HTTP 200 with a body that is not JSON (the body is not UTF-8: byte 0xff at byte {at}): {{\"error\":null"
            )),
            "{message}"
        );
    }

    #[tokio::test]
    async fn truncated_json_is_a_failure_that_says_so() {
        let body = answer_with_outputs(r#"{"x":[1,2,3]}"#);
        let cut = body.windows(3).position(|w| w == b"2,3").unwrap();
        let (_, f) = not_json(&body[..cut], 200).await;
        let message = f["message"].as_str().unwrap();
        assert!(
            message.contains(&format!(
                "(the text ends at byte {cut} inside a list (truncated?))"
            )),
            "{message}"
        );
    }

    #[tokio::test]
    async fn an_http_error_page_is_quoted_with_its_status() {
        let (_, f) = not_json(b"<html><body>502 Bad Gateway</body></html>", 502).await;
        assert_eq!(
            f["message"],
            "the runtime answered HTTP 502 with a body that is not JSON (expected a value at byte 0, found `<`): <html><body>502 Bad Gateway</body></html>"
        );
    }

    #[tokio::test]
    async fn json_that_is_no_result_is_a_failure_naming_the_field() {
        let (e, f) = not_json(
            br#"{"output_results_by_output_name":{},"result":"ok"}"#,
            200,
        )
        .await;
        assert!(matches!(e, ProtocolError::RuntimeResultInvalid { .. }));
        assert!(
            f["message"]
                .as_str()
                .unwrap()
                .contains("is not a WorkflowExecutionResult (`job_id` is missing)"),
            "{f}"
        );
    }

    #[tokio::test]
    async fn a_connection_reset_mid_body_says_how_far_the_answer_came() {
        let body = answer_with_outputs(r#"{"x":"partial"}"#);
        let runtime = Runtime::start(Act::ResetMidBody {
            status: 200,
            announced: body.len() + 1000,
            body: body.clone(),
        })
        .await;
        let e = call(options(&runtime)).await.unwrap_err();
        match &e {
            RuntimeError::Failed {
                failure: CallFailure::BrokenAnswer { status, read, .. },
                ..
            } => assert_eq!((*status, *read), (200, body.len() as u64)),
            other => panic!("{other}"),
        }
        let f = failure(&ProtocolError::from(e));
        assert_eq!(f["type"], "TrafoExecutionRuntimeConnectionError");
        let message = f["message"].as_str().unwrap();
        assert!(
            message.contains(&format!(
                "the answer (HTTP 200) broke off after {} bytes of the body: ",
                body.len()
            )),
            "{message}"
        );
        assert!(message.contains(r#"it began: {"error":null"#), "{message}");
    }

    #[tokio::test]
    async fn a_runtime_that_hangs_times_out_saying_where() {
        let runtime = Runtime::start(Act::Hang).await;
        let mut o = options(&runtime);
        o.call_timeout = Duration::from_millis(300);
        let e = call(o).await.unwrap_err();
        assert!(
            matches!(e, RuntimeError::Timeout { answer: None, .. }),
            "{e}"
        );
        let f = failure(&ProtocolError::from(e));
        assert_eq!(f["type"], "TrafoExecutionRuntimeConnectionError");
        assert!(
            f["message"]
                .as_str()
                .unwrap()
                .ends_with("/engine/runtime did not answer within the call timeout of 300ms"),
            "{f}"
        );

        let body = answer_with_outputs(r#"{"x":1}"#);
        let runtime = Runtime::start(Act::HangMidBody {
            status: 200,
            announced: body.len() + 10,
            body: body.clone(),
        })
        .await;
        let mut o = options(&runtime);
        o.call_timeout = Duration::from_millis(300);
        let e = call(o).await.unwrap_err();
        assert!(e.to_string().ends_with(&format!(
            "answered HTTP 200 but did not finish the answer within the call timeout of 300ms ({} bytes of the body read)",
            body.len()
        )), "{e}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_then_named() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut o = RuntimeOptions::new(format!("http://127.0.0.1:{port}/engine/"));
        o.retry_budget = Duration::from_millis(300);
        o.backoff_initial = Duration::from_millis(20);
        let e = RuntimeClient::new(o)
            .unwrap()
            .run(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, RuntimeError::Unreachable { attempts, .. } if attempts > 1),
            "{e}"
        );
        let f = failure(&ProtocolError::from(e));
        assert_eq!(f["type"], "TrafoExecutionRuntimeConnectionError");
        let message = f["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "the runtime call failed: runtime at http://127.0.0.1:{port}/engine/runtime unreachable after "
            )),
            "{message}"
        );
        assert!(message.contains("Connection refused"), "{message}");
    }
}

/// The runtime over HTTPS: the double presents certificates the test generates (a trusted test
/// CA, a rogue CA, a certificate for another name), as a runtime behind TLS would.
#[cfg(feature = "tls")]
mod https {
    use std::time::Duration;

    use hd_kafka_exec::protocol::ProtocolError;
    use hd_kafka_exec::protocol::response::Failure;
    use hd_kafka_exec::protocol::{Timings, failure_response};
    use hd_kafka_exec::runtime_client::{CallFailure, RuntimeClient, RuntimeError, RuntimeOptions};
    use hd_kafka_exec::tls::{TlsError, TlsFiles};
    use serde_json::Value;

    use super::vector_request;
    use crate::support::pki::Pki;
    use crate::support::runtime_double::RuntimeDouble;
    use crate::support::wait::eventually_async;

    fn pki() -> (tempfile::TempDir, Pki) {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path());
        (dir, pki)
    }

    /// A client trusting `tls`, with a retry budget long enough that an error returned well
    /// within it was not retried.
    fn client(double: &RuntimeDouble, tls: TlsFiles) -> Result<RuntimeClient, RuntimeError> {
        let mut o = RuntimeOptions::new(double.engine_url());
        o.retry_budget = Duration::from_secs(20);
        o.backoff_initial = Duration::from_millis(20);
        o.tls = tls;
        RuntimeClient::new(o)
    }

    fn trusting(ca: std::path::PathBuf) -> TlsFiles {
        TlsFiles {
            ca_file: Some(ca),
            ..TlsFiles::system()
        }
    }

    /// The `error` object of the failure response the worker produces for `e`.
    fn failure(e: RuntimeError) -> Value {
        let error = ProtocolError::from(e);
        let bytes = failure_response(&Failure {
            error: &error,
            job_id: None,
            output_types: &[],
            timings: &Timings::default(),
            process_id: None,
            extra: None,
        });
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["result"], "failure");
        v["error"].clone()
    }

    /// Calls a runtime whose handshake the client must refuse; checks that it failed at once
    /// (one connection, no retry, no request reached the runtime) and returns the failure
    /// response's message.
    async fn refused(double: &RuntimeDouble, c: &RuntimeClient) -> String {
        let started = tokio::time::Instant::now();
        let e = c.run(vector_request("volatility_by_id")).await.unwrap_err();
        assert!(
            matches!(
                e,
                RuntimeError::Failed {
                    failure: CallFailure::Handshake { .. },
                    ..
                }
            ),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "retried: {e}");
        assert_eq!(double.connections(), 1, "one attempt only: {e}");
        assert_eq!(double.calls(), 0);
        // The double saw the client give up the handshake.
        eventually_async(Duration::from_secs(30), "a failed handshake", || async {
            match double.failed_handshakes() {
                0 => Err(0),
                _ => Ok(()),
            }
        })
        .await;
        let f = failure(e);
        assert_eq!(f["type"], "TrafoExecutionRuntimeConnectionError");
        let message = f["message"].as_str().unwrap().to_owned();
        assert!(
            message.starts_with(&format!(
                "the runtime call failed: runtime at {}runtime: TLS handshake failed: ",
                double.engine_url()
            )),
            "{message}"
        );
        message
    }

    #[tokio::test]
    async fn with_the_test_ca_as_bundle_a_request_executes_over_one_connection() {
        let (_dir, pki) = pki();
        let double = RuntimeDouble::start_tls(&pki.server_cert(), &pki.server_key()).await;
        assert!(double.engine_url().starts_with("https://127.0.0.1:"));
        let c = client(&double, trusting(pki.ca())).unwrap();
        for _ in 0..3 {
            let answer = c.run(vector_request("volatility_by_id")).await.unwrap();
            assert_eq!(answer.status, 200);
            let v: Value = serde_json::from_slice(&answer.body).unwrap();
            assert_eq!(v["result"], "ok");
            assert_eq!(v["job_id"], "00000000-0000-0000-0000-000000000002");
        }
        assert!(double.violations().is_empty(), "{:?}", double.violations());
        assert_eq!(double.calls(), 3);
        assert_eq!(double.connections(), 1, "the TLS connection is kept alive");
        assert_eq!(double.failed_handshakes(), 0);
    }

    #[tokio::test]
    async fn a_certificate_of_an_unknown_ca_fails_at_once_saying_it_is_not_trusted() {
        let (_dir, pki) = pki();
        // A bundle that holds another CA than the one that signed the runtime's certificate.
        let double = RuntimeDouble::start_tls(&pki.server_cert(), &pki.server_key()).await;
        let c = client(&double, trusting(pki.rogue_ca())).unwrap();
        let message = refused(&double, &c).await;
        assert!(
            message.contains("the server's certificate is not trusted"),
            "{message}"
        );
        assert!(message.contains("UnknownIssuer"), "{message}");
    }

    #[tokio::test]
    async fn the_systems_cas_do_not_trust_the_test_ca() {
        let (_dir, pki) = pki();
        let double = RuntimeDouble::start_tls(&pki.server_cert(), &pki.server_key()).await;
        match client(&double, TlsFiles::system()) {
            Ok(c) => {
                let message = refused(&double, &c).await;
                assert!(
                    message.contains("the server's certificate is not trusted"),
                    "{message}"
                );
            }
            // A machine without CA certificates: the client cannot trust anything, and says
            // which setting gives it something to trust.
            Err(RuntimeError::Tls {
                source: e @ TlsError::NoSystemRoots(_),
                ..
            }) => assert!(e.to_string().contains("HD_CA_BUNDLE"), "{e}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn a_certificate_for_another_name_is_a_name_mismatch() {
        let (_dir, pki) = pki();
        let double =
            RuntimeDouble::start_tls(&pki.misnamed_server_cert(), &pki.misnamed_server_key()).await;
        let c = client(&double, trusting(pki.ca())).unwrap();
        let message = refused(&double, &c).await;
        assert!(
            message.contains(
                "the server's certificate does not name the host connected to (name mismatch)"
            ),
            "{message}"
        );
        assert!(message.contains("elsewhere.invalid"), "{message}");
    }

    #[tokio::test]
    async fn with_verification_off_a_rogue_certificate_is_accepted() {
        let (_dir, pki) = pki();
        let double =
            RuntimeDouble::start_tls(&pki.rogue_server_cert(), &pki.rogue_server_key()).await;
        let tls = TlsFiles {
            verify_server: false,
            // Not read: nothing is verified against it.
            ca_file: Some(pki.dir.join("missing.pem")),
            ..TlsFiles::system()
        };
        let answer = client(&double, tls)
            .unwrap()
            .run(vector_request("volatility_by_id"))
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        let v: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(v["result"], "ok");
    }

    #[tokio::test]
    async fn a_plaintext_runtime_at_an_https_url_is_named() {
        let (_dir, pki) = pki();
        let double = RuntimeDouble::start().await;
        let mut o = RuntimeOptions::new(double.engine_url().replacen("http://", "https://", 1));
        o.retry_budget = Duration::from_secs(20);
        o.tls = trusting(pki.ca());
        let e = RuntimeClient::new(o)
            .unwrap()
            .run(vector_request("volatility_by_id"))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("TLS handshake failed: the server did not answer in TLS"),
            "{e}"
        );
        assert_eq!(double.connections(), 1, "not retried: {e}");
    }
}

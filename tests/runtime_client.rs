//! The runtime client against the runtime double (which stands in for hetida's runtime service).
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::time::Duration;

use bytes::Bytes;
use hd_kafka_exec::runtime_client::{RuntimeClient, RuntimeError, RuntimeOptions};
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

#[tokio::test]
async fn an_unreachable_runtime_is_retried_until_it_is_back() {
    let double = RuntimeDouble::start().await;
    let c = client(&double);
    double.set_mode(Mode::Down);
    let back = async {
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
    o.bearer_token = Some("t0ken".into());
    let c = RuntimeClient::new(o).unwrap();
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

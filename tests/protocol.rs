//! The protocol rules of spec §3 and §5 on this project's own revisions (`transformations/`:
//! the component Multiply and the workflow Rectangle Area) and variants made from them.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use hd_kafka_exec::protocol::revision::{Content, RevisionTree, TransformationRevision};
use hd_kafka_exec::protocol::{
    ExecutionRequest, Missing, PreparedRevision, ProtocolError, parse_request,
};
use hd_kafka_exec::store::{DirIndex, latest_released_of};
use serde_json::{Value, json};

const MULTIPLY: &str = "6b1c2a4e-0f3d-4a55-9d1e-1a2b3c4d5e01";
const AREA: &str = "6b1c2a4e-0f3d-4a55-9d1e-1a2b3c4d5f01";
const OPERATOR: &str = "6b1c2a4e-0f3d-4a55-9d1e-1a2b3c4d5f31";

fn store() -> DirIndex {
    DirIndex::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("transformations")).unwrap()
}

fn prepare(id: &str, request: Value) -> Result<Value, ProtocolError> {
    let store = store();
    let tree = store.tree(id.parse().unwrap()).unwrap();
    let request: ExecutionRequest = parse_request(Some(request.to_string().as_bytes())).unwrap();
    let prepared = PreparedRevision::new(&tree)?;
    let body = prepared.runtime_request(&request)?.body.to_vec();
    Ok(serde_json::from_slice(&body).unwrap())
}

fn wired(inputs: &[(&str, &str)]) -> Value {
    json!({"input_wirings": inputs.iter().map(|(n, v)| json!({"workflow_input_name": n, "adapter_id": "direct_provisioning", "filters": {"value": v}})).collect::<Vec<_>>()})
}

#[test]
fn a_component_runs_in_the_ad_hoc_wrapper_workflow() {
    let r = prepare(
        MULTIPLY,
        json!({"id": MULTIPLY, "wiring": wired(&[("a", "6")])}),
    )
    .unwrap();
    let wf = &r["workflow"];
    assert_eq!(wf["name"], "COMPONENT EXECUTION WRAPPER WORKFLOW");
    assert_eq!(wf["tr_name"], "COMPONENT EXECUTION WRAPPER WORKFLOW");
    assert_eq!(wf["tr_tag"], "1.0.0");
    assert_eq!(r["trafo_id"], MULTIPLY);
    assert_eq!(r["configuration"]["name"], wf["tr_id"]);
    assert_ne!(wf["tr_id"], MULTIPLY);
    let sub = &wf["sub_nodes"][0];
    assert_eq!(
        (sub["component_uuid"].as_str(), sub["name"].as_str()),
        (Some(MULTIPLY), Some("Multiply"))
    );
    let inputs = wf["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2);
    assert!(inputs.iter().all(|i| i["id_of_sub_node"] == sub["id"]));
    assert_eq!(
        (inputs[1]["name"].as_str(), inputs[1]["default"].as_bool()),
        (Some("b"), Some(true))
    );
    assert_eq!(inputs[1]["default_value"], "1.0");
    assert_eq!(wf["outputs"][0]["name_in_subnode"], "product");
    assert_eq!(r["code_modules"][0]["uuid"], MULTIPLY);
    assert_eq!(r["components"][0]["inputs"][1]["default"], true);
    // The optional input stays unwired; the output is auto-wired to direct provisioning.
    assert_eq!(
        r["workflow_wiring"]["output_wirings"],
        json!([{"workflow_output_name": "product", "adapter_id": 1, "ref_id": null, "ref_id_type": null, "ref_key": null, "type": null, "filters": {}}])
    );
    // Same request, same runtime request, apart from the root node's fresh id.
    let again = prepare(
        MULTIPLY,
        json!({"id": MULTIPLY, "wiring": wired(&[("a", "6")]), "job_id": r["job_id"]}),
    )
    .unwrap();
    assert_ne!(again["workflow"]["id"], wf["id"]);
    assert_eq!(again["workflow"]["tr_id"], wf["tr_id"]);
}

#[test]
fn a_workflow_becomes_its_node_tree() {
    let r = prepare(
        AREA,
        json!({"id": AREA, "wiring": wired(&[("width", "3"), ("height", "4")])}),
    )
    .unwrap();
    let wf = &r["workflow"];
    assert_eq!(
        (wf["name"].as_str(), wf["tr_id"].as_str()),
        (Some("Rectangle Area"), Some(AREA))
    );
    assert_eq!(
        wf["sub_nodes"],
        json!([{"id": OPERATOR, "component_uuid": MULTIPLY, "name": "Multiply"}])
    );
    // Links from and to the workflow's own IO are not connections.
    assert_eq!(wf["connections"], json!([]));
    let names: Vec<(&str, &str)> = wf["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap(),
                i["name_in_subnode"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, [("width", "a"), ("height", "b")]);
    assert!(
        wf["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["id_of_sub_node"] == OPERATOR && i["constant"] == false)
    );
    assert_eq!(r["configuration"]["name"], AREA);
    assert_eq!(r["components"].as_array().unwrap().len(), 1);
}

#[test]
fn no_wiring_falls_back_to_the_test_wiring_but_an_empty_one_does_not() {
    let r = prepare(AREA, json!({"id": AREA})).unwrap();
    let values: Vec<&str> = r["workflow_wiring"]["input_wirings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["filters"]["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["3.0", "4.0"]);
    let e = prepare(AREA, json!({"id": AREA, "wiring": {}})).unwrap_err();
    assert!(
        e.to_string()
            .contains("Wiring Incomplete: Workflow Input 'width' has no wiring!"),
        "{e}"
    );
}

#[test]
fn wirings_must_name_existing_inputs_and_outputs() {
    let e = prepare(
        AREA,
        json!({"id": AREA, "wiring": wired(&[("width", "3"), ("height", "4"), ("depth", "5")])}),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("There is no workflow input 'depth'"),
        "{e}"
    );
    let mut w = wired(&[("width", "3"), ("height", "4")]);
    w["output_wirings"] = json!([{"workflow_output_name": "volume", "adapter_id": 1}]);
    let e = prepare(AREA, json!({"id": AREA, "wiring": w})).unwrap_err();
    assert!(
        e.to_string()
            .contains("There is no workflow output 'volume'"),
        "{e}"
    );
    assert!(matches!(e, ProtocolError::WiringMismatch { .. }));
    // An explicit output wiring is kept as given, not completed again.
    let mut w = wired(&[("width", "3"), ("height", "4")]);
    w["output_wirings"] =
        json!([{"workflow_output_name": "area", "adapter_id": "sink-adapter", "ref_id": "x"}]);
    let r = prepare(AREA, json!({"id": AREA, "wiring": w})).unwrap();
    assert_eq!(
        r["workflow_wiring"]["output_wirings"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        r["workflow_wiring"]["output_wirings"][0]["adapter_id"],
        "sink-adapter"
    );
}

fn revision(id: &str) -> TransformationRevision {
    store()
        .revision(id.parse().unwrap())
        .unwrap()
        .as_ref()
        .clone()
}

#[test]
fn a_missing_nested_revision_and_an_unnamed_input_are_clear_errors() {
    let root = Arc::new(revision(AREA));
    let tree = RevisionTree {
        root: root.clone(),
        nested: HashMap::new(),
    };
    let e = PreparedRevision::new(&tree).unwrap_err();
    assert!(
        matches!(e, ProtocolError::Missing(Missing::Nested { .. })),
        "{e}"
    );
    assert!(e.to_string().contains(MULTIPLY));

    let mut unnamed = revision(AREA);
    if let Content::Workflow(w) = &mut unnamed.content {
        w.inputs[0].name = None;
    }
    let component = store().revision(MULTIPLY.parse().unwrap()).unwrap().clone();
    let tree = RevisionTree {
        root: Arc::new(unnamed),
        nested: HashMap::from([(component.id, component)]),
    };
    let e = PreparedRevision::new(&tree).unwrap_err();
    assert!(matches!(e, ProtocolError::InvalidRevision { .. }), "{e}");
    assert!(e.to_string().contains("has no name"), "{e}");
}

#[test]
fn the_latest_released_revision_of_a_group_wins() {
    let at = |id: &str, state: &str, released: Option<&str>, disabled: Option<&str>| {
        let mut r = serde_json::to_value(revision(MULTIPLY)).unwrap();
        r["id"] = id.into();
        r["state"] = state.into();
        r["released_timestamp"] = released.map_or(Value::Null, Value::from);
        r["disabled_timestamp"] = disabled.map_or(Value::Null, Value::from);
        Arc::new(serde_json::from_value::<TransformationRevision>(r).unwrap())
    };
    let r1 = at(
        "00000000-0000-4000-8000-000000000001",
        "RELEASED",
        Some("2026-01-01T00:00:00+00:00"),
        None,
    );
    let r2 = at(
        "00000000-0000-4000-8000-000000000002",
        "RELEASED",
        Some("2026-06-01T00:00:00+00:00"),
        None,
    );
    let r3 = at("00000000-0000-4000-8000-000000000003", "DRAFT", None, None);
    let r4 = at(
        "00000000-0000-4000-8000-000000000004",
        "DISABLED",
        Some("2026-09-01T00:00:00+00:00"),
        Some("2026-10-01T00:00:00+00:00"),
    );
    let all = [r1.clone(), r2.clone(), r3.clone(), r4.clone()];
    assert_eq!(latest_released_of(all.iter()).unwrap().id, r2.id);
    assert!(
        latest_released_of([r3, r4].iter()).is_none(),
        "drafts and disabled never count"
    );
    // A tie goes to the one that comes last in store order.
    let r5 = at(
        "00000000-0000-4000-8000-000000000005",
        "RELEASED",
        Some("2026-06-01T00:00:00+00:00"),
        None,
    );
    assert_eq!(
        latest_released_of([r2, r5.clone()].iter()).unwrap().id,
        r5.id
    );
}

#[test]
fn the_store_directory_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let area = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "transformations/workflows/rectangle-area_100_{AREA}.json"
    )))
    .unwrap();
    std::fs::write(dir.path().join("a.json"), &area).unwrap();
    std::fs::write(dir.path().join("b.json"), &area).unwrap();
    std::fs::write(dir.path().join("c.json"), "{not json").unwrap();
    let problems = DirIndex::open(dir.path()).unwrap_err().0;
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 3, "{text:?}");
    assert!(
        text.iter()
            .any(|t| t.contains("b.json") && t.contains("already defined in")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("c.json") && t.contains("not a transformation revision")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("a.json") && t.contains(MULTIPLY) && t.contains("no file defines")),
        "{text:?}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hd-kafka-exec"))
        .args(["check", "--store", &format!("dir:{}", dir.path().display())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hd-kafka-exec"))
        .args([
            "check",
            "--store",
            &format!(
                "dir:{}",
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("transformations")
                    .display()
            ),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Rectangle Area"));
}

/// Revisions survive writing and reading back (every vector revision and our own).
#[test]
fn revisions_round_trip() {
    let dirs = [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("transformations"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/transformations"),
    ];
    let mut n = 0;
    for dir in dirs {
        for (_, r) in DirIndex::open(&dir).unwrap().iter() {
            let text = serde_json::to_string(r.as_ref()).unwrap();
            let back: TransformationRevision = serde_json::from_str(&text).unwrap();
            assert_eq!(&back, r.as_ref(), "{}", r.id);
            n += 1;
        }
    }
    assert_eq!(n, 31);
}

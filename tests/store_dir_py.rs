//! The directory store reads hetida's `.py` component files as hetida's importer does.
//!
//! `fixtures/hetida_layout` holds components written as `.py` files (hetida's layout:
//! `components/<category>/<name>_<tag>_<id>.py`) and a workflow over them;
//! `fixtures/hetida_layout_json` holds the same components exported to JSON in hetida's export
//! format (checked against what hetida's own importer makes of the `.py` files), and the same
//! workflow. Whatever reaches the runtime must not depend on which of the two was read.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::path::{Path, PathBuf};

use hd_kafka_exec::protocol::revision::{InputType, Kind, State};
use hd_kafka_exec::protocol::{PreparedRevision, parse_request};
use hd_kafka_exec::store::{DirIndex, DirProblem};
use serde_json::{Value, json};
use support::normalise;
use uuid::Uuid;

const SCALE: &str = "5ca1e5ca-1e00-4e00-8000-000000000001";
const GREETING: &str = "9ee7ab1e-0000-4000-8000-000000000002";
const UNNAMED: &str = "defa0175-0000-4000-8000-000000000003";
const DRAFT_PLOT: &str = "d2af7000-0000-4000-8000-000000000004";
const WORKFLOW: &str = "f10f0000-0000-4000-8000-000000000010";

fn fixtures(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn id(s: &str) -> Uuid {
    s.parse().unwrap()
}

/// The runtime request body for `request` from the revisions of `dir`, or the error's text.
fn runtime_request(index: &DirIndex, request: &Value) -> Result<Value, String> {
    let request = parse_request(Some(request.to_string().as_bytes())).unwrap();
    let target = index.resolve(request.target).map_err(|e| e.to_string())?;
    let tree = index.tree(target).map_err(|e| e.to_string())?;
    PreparedRevision::new(&tree)
        .and_then(|p| p.runtime_request(&request))
        .map(|r| serde_json::from_slice(&r.body.to_vec()).unwrap())
        .map_err(|e| e.to_string())
}

fn wiring(inputs: &[(&str, &str)]) -> Value {
    json!({"input_wirings": inputs.iter().map(|(name, value)| json!({
        "workflow_input_name": name,
        "adapter_id": "direct_provisioning",
        "filters": {"value": value},
    })).collect::<Vec<_>>()})
}

#[test]
fn every_file_is_a_revision_and_none_is_a_problem() {
    for dir in ["hetida_layout", "hetida_layout_json"] {
        let index = DirIndex::open(&fixtures(dir)).unwrap_or_else(|p| panic!("{dir}: {p}"));
        let mut files: Vec<String> = index
            .iter()
            .map(|(path, r)| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                assert!(name.contains(&r.id.to_string()), "{name} holds {}", r.id);
                name
            })
            .collect();
        files.sort();
        let ext = if dir == "hetida_layout" { "py" } else { "json" };
        assert_eq!(
            files,
            [
                format!("draft-plot_001_{DRAFT_PLOT}.{ext}"),
                format!("greeting_010_{GREETING}.{ext}"),
                format!("scale-and-greet_100_{WORKFLOW}.json"),
                format!("scale_100_{SCALE}.{ext}"),
                format!("unnamed-component_100_{UNNAMED}.{ext}"),
            ],
            "{dir}"
        );
    }
}

/// The `.py` forms turn into what hetida's importer makes of them (the JSON exports say what
/// that is); only the release time of a component that has none is "now", as in hetida.
#[test]
fn py_components_read_as_their_json_exports() {
    let before = chrono::Utc::now();
    let py = DirIndex::open(&fixtures("hetida_layout")).unwrap();
    let after = chrono::Utc::now();
    let exported = DirIndex::open(&fixtures("hetida_layout_json")).unwrap();
    for component in [SCALE, GREETING, UNNAMED, DRAFT_PLOT] {
        let mut read = py.revision(id(component)).unwrap().as_ref().clone();
        let export = exported.revision(id(component)).unwrap();
        assert_eq!(read.kind, Kind::Component);
        if component == UNNAMED {
            let stamped = read.released_timestamp.unwrap();
            assert!(before <= stamped && stamped <= after, "stamped {stamped}");
            read.released_timestamp = export.released_timestamp;
        }
        assert_eq!(&read, export.as_ref(), "{component}");
    }

    let unnamed = py.revision(id(UNNAMED)).unwrap();
    assert_eq!(
        (
            unnamed.name.as_str(),
            unnamed.description.as_str(),
            unnamed.category.as_str(),
            unnamed.version_tag.as_str(),
            unnamed.state,
        ),
        (
            "Unnamed Component",
            "No description provided",
            "Other",
            "1.0.0",
            State::Released
        ),
        "hetida's defaults"
    );
    let draft = py.revision(id(DRAFT_PLOT)).unwrap();
    assert_eq!(
        (draft.state, draft.released_timestamp),
        (State::Draft, None)
    );

    let scale = py.revision(id(SCALE)).unwrap();
    let inputs: Vec<(&str, InputType, Option<&str>)> = scale
        .io_interface
        .inputs
        .iter()
        .map(|i| {
            (
                i.name.as_deref().unwrap(),
                i.input_type,
                i.value.as_ref().map(|v| v.as_str().unwrap()),
            )
        })
        .collect();
    use InputType::{Optional, Required};
    assert_eq!(
        inputs,
        [
            ("values", Required, None),
            ("factor", Optional, Some("2.5")),
            ("offset", Optional, Some("-3")),
            ("clip", Optional, Some("false")),
            ("label", Optional, Some("scaled")),
            (
                "options",
                Optional,
                Some(r#"{"mode": "fast", "limits": [0, 1e-05], "note": "\u00e9"}"#)
            ),
            ("threshold", Optional, Some("1000.0")),
            ("window", Optional, None),
            ("big", Optional, Some("4722366482869645213695")),
            ("quoted", Optional, Some(r#""not a STRING input""#)),
        ]
    );
    // The ids CPython's `random.seed("component_input_values")` gives.
    assert_eq!(
        scale.io_interface.inputs[0].id,
        id("6fde78c6-e571-b3d6-ae1d-18fcf572969a")
    );
    assert!(scale.documentation.starts_with("# Scale\n## Description\n"));
    assert!(
        scale
            .documentation
            .ends_with("## Details\n        A tab expands to eight columns.")
    );
    let greeting = py.revision(id(GREETING)).unwrap();
    assert_eq!(greeting.description, "Greets someone a number of times");
    assert_eq!(greeting.documentation, "");
}

/// For every component, with its test wiring and with a wiring of the request, the runtime
/// request from the `.py` file equals the one from its JSON export.
#[test]
fn py_components_prepare_as_their_json_exports() {
    let py = DirIndex::open(&fixtures("hetida_layout")).unwrap();
    let exported = DirIndex::open(&fixtures("hetida_layout_json")).unwrap();
    let job = "00000000-0000-4000-8000-00000000f001";
    let requests = [
        json!({"id": SCALE, "job_id": job}),
        json!({"id": SCALE, "job_id": job, "wiring": wiring(&[("values", "[1.0, 2.0]"), ("offset", "7")])}),
        json!({"id": GREETING, "job_id": job, "wiring": wiring(&[("name", "world"), ("times", "2")])}),
        json!({"id": UNNAMED, "job_id": job, "wiring": {"input_wirings": []}}),
        json!({"id": DRAFT_PLOT, "job_id": job, "wiring": wiring(&[("frame", "[]")])}),
    ];
    for request in &requests {
        let known = normalise::known_uuids(
            &fixtures("hetida_layout_json"),
            Some(request.to_string().as_bytes()),
        );
        let from_py = runtime_request(&py, request).unwrap_or_else(|e| panic!("{request}: {e}"));
        let from_json = runtime_request(&exported, request).unwrap();
        assert_eq!(
            normalise::normalise(&from_py, &known),
            normalise::normalise(&from_json, &known),
            "{request}"
        );
    }
    // No wiring and a test wiring without the required input: refused alike.
    let request = json!({"id": DRAFT_PLOT, "job_id": job});
    let refused = runtime_request(&py, &request).unwrap_err();
    assert_eq!(refused, runtime_request(&exported, &request).unwrap_err());
    assert!(refused.contains("'frame'"), "{refused}");
}

#[test]
fn a_workflow_over_py_components_prepares() {
    let py = DirIndex::open(&fixtures("hetida_layout")).unwrap();
    let exported = DirIndex::open(&fixtures("hetida_layout_json")).unwrap();
    let request = json!({"id": WORKFLOW, "job_id": "00000000-0000-4000-8000-00000000f010"});
    let known = normalise::known_uuids(
        &fixtures("hetida_layout_json"),
        Some(request.to_string().as_bytes()),
    );
    let from_py = runtime_request(&py, &request).unwrap();
    let from_json = runtime_request(&exported, &request).unwrap();
    assert_eq!(
        normalise::normalise(&from_py, &known),
        normalise::normalise(&from_json, &known)
    );
    let mut components: Vec<&str> = from_py["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["uuid"].as_str().unwrap())
        .collect();
    components.sort();
    assert_eq!(components, [SCALE, GREETING, UNNAMED]);
    assert_eq!(
        from_py["workflow"]["sub_nodes"].as_array().unwrap().len(),
        3
    );
}

/// Each broken file is one problem that names it and the line at fault; nothing else in the
/// directory is reported.
#[test]
fn broken_files_are_problems_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let components = dir.path().join("components/broken");
    std::fs::create_dir_all(&components).unwrap();
    let info = |inputs: &str, id: &str| {
        format!(
            "\"\"\"Broken\n\nA component file with one mistake.\n\"\"\"\n\nCOMPONENT_INFO = {{\n    \"inputs\": {{\n{inputs}\n    }},\n    \"outputs\": {{}},\n    \"name\": \"Broken\",\n    \"id\": \"{id}\",\n    \"revision_group_id\": \"{id}\",\n    \"released_timestamp\": \"2026-11-20T10:00:00+00:00\",\n}}\n\n\ndef main(**kwargs):\n    return {{}}\n"
        )
    };
    let files = [
        // Line 9: the string is never closed (Python cannot parse the file).
        (
            "unterminated.py",
            info(
                "        \"x\": {\"data_type\": \"INT\"},\n        \"y\": {\"data_type\": \"INT}",
                "b0000000-0000-4000-8000-000000000001",
            ),
            "line 9, column 28: Python cannot parse this: unterminated string literal (detected at line 9)",
        ),
        // Line 8: a name is no literal.
        (
            "name_in_literal.py",
            info(
                "        \"x\": {\"data_type\": INT},",
                "b0000000-0000-4000-8000-000000000002",
            ),
            "line 8, column 28: COMPONENT_INFO cannot be read with ast.literal_eval: malformed node or string: `INT` is a name",
        ),
        // Line 8: not a hetida data type.
        (
            "bad_data_type.py",
            info(
                "        \"x\": {\"data_type\": \"FLOT\"},",
                "b0000000-0000-4000-8000-000000000003",
            ),
            "line 8, column 28: COMPONENT_INFO[\"inputs\"][\"x\"][\"data_type\"]: `FLOT` is not a hetida data type",
        ),
        (
            "helpers.py",
            "\"\"\"Shared helpers, not a component.\"\"\"\n\n\ndef helper():\n    return 1\n"
                .to_owned(),
            "not a hetida component file: it has no module-level `COMPONENT_INFO = {...}` assignment",
        ),
    ];
    for (name, text, _) in &files {
        std::fs::write(components.join(name), text).unwrap();
    }
    // A good .py component and a JSON export with the same id: one index, one duplicate.
    let good = info(
        "        \"x\": {\"data_type\": \"INT\"},",
        "b0000000-0000-4000-8000-0000000000aa",
    );
    std::fs::write(components.join("a_good.py"), &good).unwrap();
    let mut export: Value = serde_json::to_value(
        DirIndex::open(&fixtures("hetida_layout_json"))
            .unwrap()
            .revision(id(GREETING))
            .unwrap()
            .as_ref(),
    )
    .unwrap();
    export["id"] = json!("b0000000-0000-4000-8000-0000000000aa");
    std::fs::write(components.join("b_copy.json"), export.to_string()).unwrap();

    let problems = DirIndex::open(dir.path()).unwrap_err().0;
    assert_eq!(problems.len(), files.len() + 1, "{problems:#?}");
    for (name, _, expected) in &files {
        let problem = problems
            .iter()
            .find(|p| matches!(p, DirProblem::Component { path, .. } if path.ends_with(name)))
            .unwrap_or_else(|| panic!("no problem for {name}: {problems:#?}"));
        let text = problem.to_string();
        let path = components.join(name);
        assert!(
            text.starts_with(&format!("{}: {expected}", path.display())),
            "{text}"
        );
    }
    assert!(problems.iter().any(|p| matches!(
        p,
        DirProblem::DuplicateId { path, first, .. }
            if path.ends_with("b_copy.json") && first.ends_with("a_good.py")
    )));
}

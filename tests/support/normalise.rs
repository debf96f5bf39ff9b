//! The normalisation of `shared/vectors/README.md`: two documents are equivalent when they are
//! equal after it. Random UUIDs become numbered placeholders, timings placeholders, and the
//! order-free lists (`code_modules`, `components`) are sorted.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::Value;

/// Every UUID in `text`, lower-cased, in order of appearance.
pub fn uuids_in(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 36 <= b.len() {
        let cand = &b[i..i + 36];
        let shape_ok = cand.iter().enumerate().all(|(j, c)| {
            if [8, 13, 18, 23].contains(&j) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
        let before_ok = i == 0 || !b[i - 1].is_ascii_hexdigit();
        let after_ok = i + 36 == b.len() || !b[i + 36].is_ascii_hexdigit();
        if shape_ok && before_ok && after_ok {
            out.push(String::from_utf8_lossy(cand).to_lowercase());
            i += 36;
        } else {
            i += 1;
        }
    }
    out
}

/// UUIDs that are not random: those of the store's revisions and of the request.
pub fn known_uuids(transformations: &Path, request: Option<&[u8]>) -> HashSet<String> {
    let mut known = HashSet::new();
    fn walk(dir: &Path, known: &mut HashSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, known);
            } else if p.extension().is_some_and(|x| x == "json") {
                known.extend(uuids_in(&std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    walk(transformations, &mut known);
    if let Some(r) = request {
        known.extend(uuids_in(&String::from_utf8_lossy(r)));
    }
    known
}

fn sort_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sort_keys(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

/// The normal form of a runtime request, runtime answer or response, as comparable text.
pub fn normalise(doc: &Value, known: &HashSet<String>) -> String {
    let mut doc = doc.clone();
    if let Some(obj) = doc.as_object_mut() {
        for list in ["code_modules", "components"] {
            if let Some(Value::Array(items)) = obj.get_mut(list) {
                items.sort_by_key(|i| i["uuid"].as_str().unwrap_or_default().to_owned());
            }
        }
        if let Some(Value::Object(steps)) = obj.get_mut("measured_steps") {
            for (_, step) in steps.iter_mut() {
                if let Value::Object(s) = step {
                    for field in ["start", "end", "duration"] {
                        if s.get(field).is_some_and(|v| !v.is_null()) {
                            s.insert(field.into(), Value::String(format!("<{field}>")));
                        }
                    }
                }
            }
        }
        if obj.get("traceback").is_some_and(|t| !t.is_null()) {
            obj.insert("traceback".into(), Value::String("<traceback>".into()));
        }
        if let Some(pid) = obj.get_mut("process_id") {
            assert!(
                pid.is_null() || pid.is_u64(),
                "process_id must be an integer or null: {pid}"
            );
            if !pid.is_null() {
                *pid = Value::String("<pid>".into());
            }
        }
    }
    let mut text = serde_json::to_string(&sort_keys(&doc)).unwrap();
    let mut placeholders: HashMap<String, String> = HashMap::new();
    for u in uuids_in(&text) {
        if !known.contains(&u) && !placeholders.contains_key(&u) {
            let n = placeholders.len() + 1;
            placeholders.insert(u, format!("<uuid-{n}>"));
        }
    }
    for (u, p) in &placeholders {
        text = text.replace(u.as_str(), p).replace(&u.to_uppercase(), p);
    }
    text
}

/// What we answer where the reference dropped the request: the error class per case.
pub fn expected_failure(case: &str) -> Option<&'static str> {
    Some(match case {
        "invalid_not_json" | "invalid_non_utf8" | "invalid_tombstone" => "UndecodableRequestError",
        "invalid_neither_id_nor_group"
        | "invalid_group_without_wiring"
        | "invalid_adapter_id_int"
        | "invalid_reserved_filter_key"
        | "invalid_duplicate_input_wiring"
        | "invalid_job_id" => "ValidationError",
        "invalid_unknown_group" | "invalid_group_only_drafts" => "DBNotFoundError",
        "invalid_unknown_id" => "TrafoExecutionNotFoundError",
        "invalid_wiring_incomplete"
        | "invalid_wiring_unknown_input"
        | "invalid_wiring_unknown_output"
        | "invalid_unnamed_workflow_input" => "TrafoExecutionInputValidationError",
        "invalid_runtime_unreachable" => "TrafoExecutionRuntimeConnectionError",
        "invalid_runtime_bad_result"
        | "invalid_runtime_text_500"
        | "invalid_runtime_nan_output" => "TrafoExecutionResultValidationError",
        _ => return None,
    })
}

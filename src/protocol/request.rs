//! The Kafka request (spec §2): `ExecByIdInput` or `ExecLatestByGroupIdInput`, told apart by the
//! reference's dispatch rules (§2.3).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::budget::{self, Footprint};
use super::error::ProtocolError;
use super::lenient::{kind, parse_bool, parse_uuid};
use super::wiring::WorkflowWiring;

/// What to execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A revision by id, whatever its state.
    Id(Uuid),
    /// The latest RELEASED revision of a revision group (spec §3).
    LatestOfGroup(Uuid),
}

/// One execution request as read from Kafka.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRequest {
    /// Which revision to run: by id, or the latest released of a group.
    pub target: Target,
    /// `None`: use the revision's stored test wiring (by id only; by group it is required).
    pub wiring: Option<WorkflowWiring>,
    /// Whether the runtime also runs plot-only operators (hetida's switch for dashboards); passed
    /// through to the runtime.
    pub run_pure_plot_operators: bool,
    /// From the request, or a fresh uuid4 when it had none.
    pub job_id: Uuid,
}

/// Parses a record value; `None` is a tombstone.
pub fn parse_request(value: Option<&[u8]>) -> Result<ExecutionRequest, ProtocolError> {
    let not_a_request = |reason: String| ProtocolError::NotARequest { reason };
    let bytes = value.ok_or_else(|| not_a_request("the record has no value (tombstone)".into()))?;
    let text = std::str::from_utf8(bytes).map_err(|e| {
        not_a_request(format!(
            "the value is not UTF-8 (invalid byte at position {})",
            e.valid_up_to()
        ))
    })?;
    let obj = read_fields(text)?;

    let by_id = by_id(&obj);
    let by_id_err = match by_id {
        Ok(request) => return Ok(request),
        Err(e) => e,
    };
    // Only when the by-id form fails is the group form tried (spec §2.3), so an invalid `id`
    // next to a valid group executes the group's latest revision, as in the reference.
    let by_group_err = match by_group(&obj) {
        Ok(request) => return Ok(request),
        Err(e) => e,
    };
    let reason = match (
        obj.contains_key("id"),
        obj.contains_key("revision_group_id"),
    ) {
        (false, false) => "it has neither `id` nor `revision_group_id`".to_owned(),
        (true, false) => by_id_err,
        (false, true) => by_group_err,
        (true, true) => format!(
            "as execution by id: {by_id_err}; as execution of the latest revision of a group: {by_group_err}"
        ),
    };
    Err(ProtocolError::InvalidRequest {
        job_id: obj
            .get("job_id")
            .and_then(Value::as_str)
            .and_then(parse_uuid),
        reason,
    })
}

/// The top-level fields a request is read by (spec §2); hetida ignores any other.
const FIELDS: [&str; 5] = [
    "id",
    "revision_group_id",
    "wiring",
    "run_pure_plot_operators",
    "job_id",
];

/// The request's fields this service reads, each read into a tree; every other field is skipped
/// as it is read, so what hetida ignores costs no memory however large it is. The fields read
/// are held to the memory budget ([`budget`]) before their trees are built.
fn read_fields(text: &str) -> Result<Map<String, Value>, ProtocolError> {
    let not_json = |e: serde_json::Error| ProtocolError::NotARequest {
        reason: format!("the value is not JSON: {e}"),
    };
    let first = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .as_bytes()
        .first()
        .copied();
    if first != Some(b'{') {
        // Not an object: say what it is, once it is known to be JSON at all, building nothing.
        serde_json::from_str::<IgnoredAny>(text).map_err(not_json)?;
        let found = match first {
            Some(b'[') => "a list",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            _ => "a number",
        };
        return Err(ProtocolError::NotARequest {
            reason: format!("the value is JSON but not an object (found {found})"),
        });
    }
    let Read(raw) = serde_json::from_str::<Read<'_>>(text).map_err(not_json)?;
    Footprint::of_parts(text.len(), raw.iter().map(|(_, v)| v.get().as_bytes()))
        .check()
        .map_err(|reason| ProtocolError::InvalidRequest {
            job_id: budget::job_id_only(Some(text.as_bytes())),
            reason,
        })?;
    raw.into_iter()
        .map(|(name, v)| {
            Ok((
                name.to_owned(),
                serde_json::from_str(v.get()).map_err(not_json)?,
            ))
        })
        .collect()
}

/// The raw text of the [`FIELDS`] of a request object (the last of a repeated one, as
/// serde_json's own map keeps it).
struct Read<'a>(Vec<(&'static str, &'a RawValue)>);

impl<'de> Deserialize<'de> for Read<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Read<'de>, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Read<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Read<'de>, A::Error> {
                let mut read: Vec<(&'static str, &'de RawValue)> = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match FIELDS.iter().find(|f| **f == key) {
                        Some(name) => {
                            let value: &'de RawValue = map.next_value()?;
                            read.retain(|(n, _)| n != name);
                            read.push((name, value));
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Read(read))
            }
        }
        d.deserialize_map(Fields)
    }
}

fn uuid_field(obj: &Map<String, Value>, name: &str) -> Result<Option<Uuid>, String> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => parse_uuid(s)
            .map(Some)
            .ok_or_else(|| format!("`{name}`: `{s}` is not a valid UUID")),
        Some(other) => Err(format!(
            "`{name}` must be a UUID string, found {}",
            kind(other)
        )),
    }
}

/// The fields both forms share.
fn common(obj: &Map<String, Value>) -> Result<(bool, Uuid), String> {
    let run_pure_plot_operators = match obj.get("run_pure_plot_operators") {
        None => false,
        Some(v) => parse_bool(v)
            .ok_or_else(|| format!("`run_pure_plot_operators`: {v} is not a boolean"))?,
    };
    let job_id = uuid_field(obj, "job_id")?.unwrap_or_else(Uuid::new_v4);
    Ok((run_pure_plot_operators, job_id))
}

fn by_id(obj: &Map<String, Value>) -> Result<ExecutionRequest, String> {
    let id = uuid_field(obj, "id")?.ok_or("`id` is required")?;
    let wiring = match obj.get("wiring") {
        None | Some(Value::Null) => None,
        Some(w) => Some(WorkflowWiring::from_value(w, "wiring").map_err(|e| e.to_string())?),
    };
    let (run_pure_plot_operators, job_id) = common(obj)?;
    Ok(ExecutionRequest {
        target: Target::Id(id),
        wiring,
        run_pure_plot_operators,
        job_id,
    })
}

fn by_group(obj: &Map<String, Value>) -> Result<ExecutionRequest, String> {
    let group = uuid_field(obj, "revision_group_id")?.ok_or("`revision_group_id` is required")?;
    let wiring = match obj.get("wiring") {
        None | Some(Value::Null) => {
            return Err(
                "`wiring` is required when executing the latest revision of a group".into(),
            );
        }
        Some(w) => WorkflowWiring::from_value(w, "wiring").map_err(|e| e.to_string())?,
    };
    let (run_pure_plot_operators, job_id) = common(obj)?;
    Ok(ExecutionRequest {
        target: Target::LatestOfGroup(group),
        wiring: Some(wiring),
        run_pure_plot_operators,
        job_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ExecutionRequest, ProtocolError> {
        parse_request(Some(s.as_bytes()))
    }

    const ID: &str = "79ce1eb1-3ef8-4c74-9114-c856fd88dc89";
    const GROUP: &str = "d0d40c45-aef0-424a-a8f4-b16cd5f8b129";

    #[test]
    fn by_id_with_defaults() {
        let r = parse(&format!(r#"{{"id": "{ID}"}}"#)).unwrap();
        assert_eq!(r.target, Target::Id(ID.parse().unwrap()));
        assert_eq!(r.wiring, None);
        assert!(!r.run_pure_plot_operators);
        assert_eq!(r.job_id.get_version_num(), 4);
    }

    #[test]
    fn empty_wiring_is_not_absent() {
        let r = parse(&format!(r#"{{"id": "{ID}", "wiring": {{}}}}"#)).unwrap();
        assert_eq!(r.wiring, Some(WorkflowWiring::default()));
    }

    #[test]
    fn id_wins_over_group_and_bad_id_falls_back_to_group() {
        let r = parse(&format!(
            r#"{{"id": "{ID}", "revision_group_id": "{GROUP}"}}"#
        ))
        .unwrap();
        assert_eq!(r.target, Target::Id(ID.parse().unwrap()));
        let r = parse(&format!(r#"{{"id": "garbage", "revision_group_id": "{GROUP}", "wiring": {{}}, "job_id": "{ID}"}}"#)).unwrap();
        assert_eq!(r.target, Target::LatestOfGroup(GROUP.parse().unwrap()));
        assert_eq!(r.job_id, ID.parse::<Uuid>().unwrap());
    }

    #[test]
    fn group_requires_wiring() {
        let e = parse(&format!(
            r#"{{"revision_group_id": "{GROUP}", "job_id": "{ID}"}}"#
        ))
        .unwrap_err();
        match e {
            ProtocolError::InvalidRequest { job_id, reason } => {
                assert_eq!(job_id, Some(ID.parse().unwrap()));
                assert!(reason.contains("`wiring` is required"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn undecodable_values_are_not_requests() {
        for value in [
            None,
            Some(&b"\xff\xfe"[..]),
            Some(&b"{not json"[..]),
            Some(&b"[1]"[..]),
        ] {
            let e = parse_request(value).unwrap_err();
            assert!(e.is_not_a_request(), "{e}");
        }
    }

    #[test]
    fn invalid_fields_are_named() {
        for (req, needle) in [
            ("{}".to_owned(), "neither"),
            (format!(r#"{{"id": "{ID}", "job_id": "nope"}}"#), "job_id"),
            (
                format!(r#"{{"id": "{ID}", "run_pure_plot_operators": "perhaps"}}"#),
                "run_pure_plot_operators",
            ),
            (
                format!(r#"{{"id": "{ID}", "run_pure_plot_operators": null}}"#),
                "run_pure_plot_operators",
            ),
            (
                format!(
                    r#"{{"id": "{ID}", "wiring": {{"input_wirings": [{{"workflow_input_name": "x", "adapter_id": 2}}]}}}}"#
                ),
                "adapter_id",
            ),
            (r#"{"id": 5}"#.to_owned(), "`id` must be a UUID string"),
        ] {
            let e = parse(&req).unwrap_err().to_string();
            assert!(e.contains(needle), "{req} -> {e}");
        }
    }

    /// Fields hetida ignores are skipped unread, however large; the fields read are held to
    /// the memory budget.
    #[test]
    fn ignored_fields_cost_nothing_and_read_ones_are_budgeted() {
        let objects = vec!["{}"; 500_000].join(",");
        let r = parse(&format!(
            r#"{{"junk": [{objects}], "id": "{ID}", "more": {{"a": [1]}}}}"#
        ));
        assert_eq!(r.unwrap().target, Target::Id(ID.parse().unwrap()));
        let e = parse(&format!(
            r#"{{"id": "{ID}", "job_id": "{GROUP}", "wiring": {{"x": [{objects}]}}}}"#
        ))
        .unwrap_err();
        match e {
            ProtocolError::InvalidRequest { job_id, reason } => {
                assert_eq!(job_id, Some(GROUP.parse().unwrap()));
                assert!(reason.contains("more than a request may take"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_repeated_field_counts_as_its_last_and_non_objects_say_what_they_are() {
        let r = parse(&format!(r#"{{"id": "garbage", "id": "{ID}"}}"#)).unwrap();
        assert_eq!(r.target, Target::Id(ID.parse().unwrap()));
        for (text, found) in [
            ("[1]", "a list"),
            (" \"x\"", "a string"),
            ("true", "a boolean"),
            ("null", "null"),
            ("-1.5", "a number"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(
                e.contains(&format!("not an object (found {found})")),
                "{text}: {e}"
            );
        }
        let e = parse("[1,").unwrap_err().to_string();
        assert!(e.contains("is not JSON"), "{e}");
    }

    #[test]
    fn lenient_bool_and_uuid_spellings() {
        let r = parse(&format!(
            r#"{{"id": "{}", "run_pure_plot_operators": "yes", "job_id": "{{{}}}"}}"#,
            ID.to_uppercase(),
            ID
        ))
        .unwrap();
        assert!(r.run_pure_plot_operators);
        assert_eq!(r.job_id.to_string(), ID);
    }
}

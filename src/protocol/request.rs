//! The Kafka request (spec §2): `ExecByIdInput` or `ExecLatestByGroupIdInput`, told apart by the
//! reference's dispatch rules (§2.3).

use uuid::Uuid;

use super::budget::{self, Footprint};
use super::error::ProtocolError;
use super::lenient::{parse_bool, parse_uuid, shown};
use super::pyjson::{self, Document, Json, PyStr, Raw};
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
///
/// Read as hetida reads it: `msg.value.decode("utf8")` (strict: no encoded surrogates), then
/// pydantic 1's `parse_raw`, i.e. Python's `json.loads` (`NaN`, `Infinity`, `-Infinity`, numbers
/// of any size, lone surrogates in escapes), then the models' coercions ([`super::lenient`]).
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
        obj.get("id").is_some(),
        obj.get("revision_group_id").is_some(),
    ) {
        (false, false) => "it has neither `id` nor `revision_group_id`".to_owned(),
        (true, false) => by_id_err,
        (false, true) => by_group_err,
        (true, true) => format!(
            "as execution by id: {by_id_err}; as execution of the latest revision of a group: {by_group_err}"
        ),
    };
    Err(ProtocolError::InvalidRequest {
        job_id: uuid_field(&obj, "job_id").ok().flatten(),
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

/// The [`FIELDS`] of a request, as `json.loads` read them (the last of a repeated one, as a
/// Python dict keeps it).
struct Fields<'a>(Vec<(&'static str, Json<'a>)>);

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&Json<'a>> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// The request's fields this service reads, each read into a tree; every other field is
/// validated and dropped as it is read, so what hetida ignores costs no memory however large it
/// is. The fields read are held to the memory budget ([`budget`]) before their trees are built.
fn read_fields(text: &str) -> Result<Fields<'_>, ProtocolError> {
    let not_json = |e: pyjson::NotJson| ProtocolError::NotARequest {
        reason: format!("the value is not JSON: {e}"),
    };
    let wanted = |key: &PyStr| FIELDS.iter().any(|f| key.is(f));
    let members = match pyjson::document_keeping(text.as_bytes(), wanted).map_err(not_json)? {
        Document::Object(members) => members,
        Document::Other { kind } => {
            return Err(ProtocolError::NotARequest {
                reason: format!("the value is JSON but not an object (found {kind})"),
            });
        }
    };
    let mut read: Vec<(&'static str, Raw<'_>)> = Vec::with_capacity(FIELDS.len());
    for (key, raw) in members {
        if let Some(name) = FIELDS.iter().find(|f| key.is(f)) {
            read.retain(|(n, _)| n != name);
            read.push((name, raw));
        }
    }
    Footprint::of_parts(text.len(), read.iter().map(|(_, raw)| raw.text()))
        .check()
        .map_err(|reason| ProtocolError::InvalidRequest {
            job_id: budget::job_id_only(Some(text.as_bytes())),
            reason,
        })?;
    read.into_iter()
        .map(|(name, raw)| Ok((name, raw.parse().map_err(not_json)?)))
        .collect::<Result<Vec<_>, ProtocolError>>()
        .map(Fields)
}

fn uuid_field(obj: &Fields<'_>, name: &str) -> Result<Option<Uuid>, String> {
    match obj.get(name) {
        None => Ok(None),
        Some(Json::Str(s)) => s
            .to_text()
            .as_deref()
            .and_then(parse_uuid)
            .map(Some)
            .ok_or_else(|| format!("`{name}`: `{}` is not a valid UUID", s.as_held())),
        Some(other) => Err(format!(
            "`{name}` must be a UUID string, found {}",
            shown(other)
        )),
    }
}

/// The fields both forms share.
fn common(obj: &Fields<'_>) -> Result<(bool, Uuid), String> {
    let run_pure_plot_operators = match obj.get("run_pure_plot_operators") {
        None => false,
        Some(v) => parse_bool(v)
            .ok_or_else(|| format!("`run_pure_plot_operators`: {} is not a boolean", shown(v)))?,
    };
    let job_id = uuid_field(obj, "job_id")?.unwrap_or_else(Uuid::new_v4);
    Ok((run_pure_plot_operators, job_id))
}

fn by_id(obj: &Fields<'_>) -> Result<ExecutionRequest, String> {
    let id = uuid_field(obj, "id")?.ok_or("`id` is required")?;
    let wiring = match obj.get("wiring") {
        None | Some(Json::Null) => None,
        Some(w) => Some(WorkflowWiring::from_json(w, "wiring").map_err(|e| e.to_string())?),
    };
    let (run_pure_plot_operators, job_id) = common(obj)?;
    Ok(ExecutionRequest {
        target: Target::Id(id),
        wiring,
        run_pure_plot_operators,
        job_id,
    })
}

fn by_group(obj: &Fields<'_>) -> Result<ExecutionRequest, String> {
    let group = uuid_field(obj, "revision_group_id")?.ok_or("`revision_group_id` is required")?;
    let wiring = match obj.get("wiring") {
        None | Some(Json::Null) => {
            return Err(
                "`wiring` is required when executing the latest revision of a group".into(),
            );
        }
        Some(w) => WorkflowWiring::from_json(w, "wiring").map_err(|e| e.to_string())?,
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

    fn written_filters(r: &ExecutionRequest) -> String {
        let wiring = r.wiring.as_ref().unwrap();
        String::from_utf8(pyjson::to_vec(&wiring.input_wirings[0].filters)).unwrap()
    }

    /// `NaN`, `Infinity`, `-Infinity` and numbers beyond a double are numbers to `json.loads`;
    /// in a `str` field pydantic 1 holds Python's `str()` of them, in a bool or UUID field they
    /// are errors, in a field hetida ignores they are nothing (the request executes).
    #[test]
    fn python_number_literals_read_as_hetida_reads_them() {
        let r = parse(&format!(
            r#"{{"id": "{ID}", "junk": [NaN, -Infinity, 1e999, {{"a": Infinity}}], "wiring": {{"input_wirings": [{{"workflow_input_name": NaN, "adapter_id": "direct_provisioning", "ref_id": -Infinity, "filters": {{"value": NaN, "hi": Infinity, "lo": -Infinity, "big": 1e400, "int": 123456789012345678901234567890, "exp": 1E5}}}}]}}, "run_pure_plot_operators": 1.0}}"#
        ))
        .unwrap();
        assert!(r.run_pure_plot_operators);
        let input = &r.wiring.as_ref().unwrap().input_wirings[0];
        assert_eq!(input.workflow_input_name, "nan");
        assert_eq!(input.ref_id.as_deref(), Some("-inf"));
        assert_eq!(
            written_filters(&r),
            r#"{"value": "nan", "hi": "inf", "lo": "-inf", "big": "inf", "int": "123456789012345678901234567890", "exp": "100000.0"}"#
        );
        for (field, value, needle) in [
            ("job_id", "NaN", "`job_id` must be a UUID string, found NaN"),
            ("run_pure_plot_operators", "NaN", "NaN is not a boolean"),
            (
                "run_pure_plot_operators",
                "Infinity",
                "Infinity is not a boolean",
            ),
            ("run_pure_plot_operators", "1e400", "1e400 is not a boolean"),
        ] {
            let e = parse(&format!(r#"{{"id": "{ID}", "{field}": {value}}}"#))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{field}: {value} -> {e}");
        }
        let e = parse(&format!(
            r#"{{"id": "{ID}", "wiring": {{"input_wirings": [{{"workflow_input_name": "x", "adapter_id": NaN}}]}}}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("adapter_id: must be an integer or a string, found NaN"),
            "{e}"
        );
        let e = parse(&format!(
            r#"{{"id": "{ID}", "wiring": {{"input_wirings": [{{"workflow_input_name": "x", "adapter_id": 1, "use_default_value": -Infinity}}]}}}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("use_default_value"), "{e}");
    }

    /// A lone surrogate (`"\ud800"`) is a string to `json.loads`; hetida passes it on, and
    /// `json.dumps` writes it back as the same escape, in the runtime request and in any
    /// message that quotes it. An escaped pair is one character.
    #[test]
    fn lone_surrogates_pass_through_as_python_writes_them() {
        let r = parse(&format!(
            r#"{{"id": "{ID}", "junk": "\udfff", "wiring": {{"input_wirings": [{{"workflow_input_name": "x", "adapter_id": "a\udc00", "ref_key": "\ud800", "filters": {{"value": "a\ud800b\udc00\ud83d\ude00\uD83D\ud83d\ude00\ufdd0\ue000\ud800\u0000", "plain": "\u00e9\ufdd0"}}}}]}}}}"#
        ))
        .unwrap();
        assert_eq!(
            written_filters(&r),
            r#"{"value": "a\ud800b\udc00\ud83d\ude00\ud83d\ud83d\ude00\ufdd0\ue000\ud800\u0000", "plain": "\u00e9\ufdd0"}"#
        );
        let input = &r.wiring.as_ref().unwrap().input_wirings[0];
        let mut out = Vec::new();
        pyjson::write(&mut out, &input.adapter_id);
        pyjson::write(&mut out, &input.ref_key);
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\udc00""\ud800""#);
        // Distinct Python strings stay distinct: two wirings of inputs whose names differ only
        // in a surrogate are no duplicates, and a message quoting one writes it as it came.
        let e = parse(&format!(
            r#"{{"id": "{ID}", "job_id": "{GROUP}", "wiring": {{"input_wirings": [{{"workflow_input_name": "x\ud800", "adapter_id": 1}}]}}}}"#
        ))
        .unwrap_err();
        let mut out = Vec::new();
        pyjson::write_str(&mut out, &e.to_string());
        let written = String::from_utf8(out).unwrap();
        assert!(
            written.contains(r"`x\ud800` is not a valid Python identifier"),
            "{written}"
        );
        assert_eq!(e.job_id(), Some(GROUP.parse().unwrap()));
        // An id or job id holding a surrogate is no UUID.
        let e = parse(&format!(r#"{{"id": "{ID}", "job_id": "\ud800"}}"#)).unwrap_err();
        assert!(e.to_string().contains("is not a valid UUID"), "{e}");
    }

    /// What `json.loads` refuses is still refused (each checked against CPython 3.11), and
    /// a value hetida's strict `decode("utf8")` refuses (an encoded surrogate) too.
    #[test]
    fn what_python_refuses_is_no_request() {
        for text in [
            format!(r#"{{"id": "{ID}", "x": [1,]}}"#),
            format!(r#"{{"id": "{ID}",}}"#),
            format!("{{\"id\": \"{ID}\", \"x\": \"a\x01\"}}"),
            format!("{{\"id\": \"{ID}\", \"x\": \"a\tb\"}}"),
            format!(r#"{{"id": "{ID}", "x": nan}}"#),
            format!(r#"{{"id": "{ID}", "x": -NaN}}"#),
            format!(r#"{{"id": "{ID}", "x": +1}}"#),
            format!(r#"{{"id": "{ID}", "x": .5}}"#),
            format!(r#"{{"id": "{ID}", "x": 1.}}"#),
            format!(r#"{{"id": "{ID}", "x": 01}}"#),
            format!(r#"{{"id": "{ID}", "x": Infinity1}}"#),
            format!(r#"{{"id": "{ID}", "x": "\x"}}"#),
            format!(r#"{{"id": "{ID}", "x": "\ud80"}}"#),
            format!(r#"{{'id': "{ID}"}}"#),
            format!("\u{feff}{{\"id\": \"{ID}\"}}"),
            format!(r#"{{"id": "{ID}"}} x"#),
            format!(r#"{{"id": "{ID}", "x": {}}}"#, "9".repeat(4301)),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.is_not_a_request(), "{text}: {e}");
        }
        let mut bytes = format!(r#"{{"id": "{ID}", "x": ""#).into_bytes();
        bytes.extend_from_slice(b"\xed\xa0\x80\"}");
        assert!(parse_request(Some(&bytes)).unwrap_err().is_not_a_request());
    }

    /// A filter key is hetida's `FilterKey`, matched by Python's `re`, whose `$` also matches
    /// before a final newline; a repeated key keeps its first place and its last value, as a
    /// Python dict does.
    #[test]
    fn filter_keys_as_python_matches_them() {
        let r = parse(&format!(
            r#"{{"id": "{ID}", "wiring": {{"input_wirings": [{{"workflow_input_name": "x", "adapter_id": 1, "filters": {{"ab\n": "1", "value": {{}}, "other": null, "value": "2"}}}}]}}}}"#
        ))
        .unwrap();
        assert_eq!(
            written_filters(&r),
            r#"{"ab\n": "1", "value": "2", "other": ""}"#
        );
        for key in [r"ab\n\n", r"a", r"ab c", r"\u00e9b", r"ab\ud800"] {
            let e = parse(&format!(
                r#"{{"id": "{ID}", "wiring": {{"input_wirings": [{{"workflow_input_name": "x", "adapter_id": 1, "filters": {{"{key}": "1"}}}}]}}}}"#
            ))
            .unwrap_err();
            assert!(e.to_string().contains("must be a letter"), "{key}: {e}");
        }
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

//! The Kafka response: `ExecutionResponseFrontendDto` (spec §6.3, §7, §10).
//!
//! Built from the runtime's answer exactly as the reference builds it — the runtime's result
//! fields in model order, `node_results` dropped, the backend's three timings, the output types
//! and the process id — and written in Python `json.dumps` style. What the runtime computed
//! (output values, error details) is carried as the runtime wrote it, re-spaced only.
//!
//! Every request the reference drops gets a [`failure_response`] instead.

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::error::{ProtocolError, body_start};
use super::lenient::{kind, parse_uuid};
use super::pyjson;
use super::revision::DataType;

/// How much of an unusable runtime body a failure response quotes.
const QUOTED_BODY_CHARS: usize = 300;

/// One measured step of the backend's own work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The backend's measured steps (spec §6.3 point 3); a step that did not happen is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    pub internal_full: Option<Step>,
    pub prepare_execution_input: Option<Step>,
    pub run_execution_input: Option<Step>,
}

const RUNTIME_STEPS: [&str; 4] = [
    "runtime_service_handling",
    "pure_execution",
    "load_data",
    "send_data",
];
const PROCESS_STAGES: [&str; 6] = [
    "PARSING_WORKFLOW",
    "LOADING_DATA_FROM_ADAPTERS",
    "PARSING_LOADED_DATA",
    "EXECUTING_COMPONENT_CODE",
    "SENDING_DATA_TO_ADAPTERS",
    "ENCODING_RESULTS_TO_JSON",
];

/// Builds the response value from the runtime's answer. The HTTP status does not matter as long
/// as the body is a valid result (the reference accepts a 500 with a valid body).
pub fn build_response(
    status: u16,
    body: &[u8],
    output_types: &[(String, DataType)],
    timings: &Timings,
    process_id: Option<u32>,
) -> Result<Vec<u8>, ProtocolError> {
    let not_json = || ProtocolError::RuntimeAnswerNotJson {
        status,
        body_start: body_start(body, QUOTED_BODY_CHARS),
    };
    let text = std::str::from_utf8(body).map_err(|_| not_json())?;
    let raw: &RawValue = serde_json::from_str(text).map_err(|_| not_json())?;
    let invalid = |reason: String| ProtocolError::RuntimeResultInvalid {
        status,
        reason,
        body_start: body_start(body, QUOTED_BODY_CHARS),
    };
    let fields: indexmap_like::Fields<'_> =
        serde_json::from_str(raw.get()).map_err(|_| invalid("not a JSON object".into()))?;
    let result = RuntimeResult::from_fields(&fields).map_err(invalid)?;

    let mut out = Vec::with_capacity(text.len() + 1024);
    out.extend_from_slice(b"{\"error\": ");
    match &result.error {
        None => out.extend_from_slice(b"null"),
        Some(e) => e.write(&mut out),
    }
    out.extend_from_slice(b", \"output_results_by_output_name\": ");
    pyjson::write_json_text(&mut out, result.outputs.get());
    out.extend_from_slice(b", \"traceback\": ");
    write_opt_str(&mut out, result.traceback.as_deref());
    out.extend_from_slice(b", \"job_id\": ");
    write_uuid(&mut out, result.job_id);
    out.extend_from_slice(b", \"measured_steps\": ");
    write_measured_steps(&mut out, timings, &result.runtime_steps);
    out.extend_from_slice(b", \"result\": ");
    pyjson::write_str(&mut out, result.result);
    write_tail(&mut out, output_types, process_id);
    Ok(out)
}

/// What the worker knows when an execution fails before a runtime result exists.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    pub error: &'a ProtocolError,
    /// The request's job id when it could be read.
    pub job_id: Option<Uuid>,
    /// Workflow outputs when the revision was prepared, else empty.
    pub output_types: &'a [(String, DataType)],
    pub timings: &'a Timings,
    pub process_id: Option<u32>,
    /// Goes to `error.extra_information` (the worker passes the record's Kafka coordinates).
    pub extra: Option<&'a Value>,
}

/// A response with `"result": "failure"` that hetida's own `ExecutionResponseFrontendDto`
/// accepts (design decision 6): `error.type` names the reference's exception class for the same
/// path, `error.message` says what to fix, `error.location.function_name` the failed step.
pub fn failure_response(f: &Failure<'_>) -> Vec<u8> {
    let job_id = f
        .job_id
        .or(match f.error {
            ProtocolError::InvalidRequest { job_id, .. } => *job_id,
            _ => None,
        })
        .unwrap_or_else(Uuid::new_v4);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"error\": {\"type\": ");
    pyjson::write_str(&mut out, f.error.error_type());
    out.extend_from_slice(b", \"error_code\": null, \"message\": ");
    pyjson::write_str(&mut out, &f.error.to_string());
    out.extend_from_slice(b", \"extra_information\": ");
    match f.extra {
        Some(v) => pyjson::write(&mut out, v),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b", \"process_stage\": null, \"operator_info\": null, \"location\": {\"file\": \"hd-kafka-exec\", \"function_name\": ");
    pyjson::write_str(&mut out, f.error.step());
    out.extend_from_slice(b", \"line_number\": 0}}, \"output_results_by_output_name\": {}, \"traceback\": null, \"job_id\": ");
    write_uuid(&mut out, job_id);
    out.extend_from_slice(b", \"measured_steps\": ");
    write_measured_steps(&mut out, f.timings, &[None, None, None, None]);
    out.extend_from_slice(b", \"result\": \"failure\"");
    write_tail(&mut out, f.output_types, f.process_id);
    out
}

fn write_tail(out: &mut Vec<u8>, output_types: &[(String, DataType)], process_id: Option<u32>) {
    out.extend_from_slice(b", \"output_types_by_output_name\": {");
    for (i, (name, data_type)) in output_types.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        pyjson::write_str(out, name);
        out.extend_from_slice(b": ");
        pyjson::write_str(out, data_type.as_str());
    }
    out.extend_from_slice(b"}, \"process_id\": ");
    match process_id {
        Some(pid) => out.extend_from_slice(pid.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

fn write_uuid(out: &mut Vec<u8>, id: Uuid) {
    out.push(b'"');
    out.extend_from_slice(
        id.hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    out.push(b'"');
}

fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => pyjson::write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Python's `datetime.isoformat()` of a UTC time: microseconds only when non-zero.
fn isoformat(t: DateTime<Utc>) -> String {
    let t = truncate_micros(t);
    if t.nanosecond() == 0 {
        t.to_rfc3339_opts(SecondsFormat::Secs, false)
    } else {
        t.to_rfc3339_opts(SecondsFormat::Micros, false)
    }
}

/// A measured step as pydantic writes it: name, start, end, duration in float seconds.
#[derive(Debug, Clone, PartialEq)]
struct MeasuredStep {
    name: String,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    /// Microseconds, as Python's `timedelta` holds them.
    duration_micros: Option<i64>,
}

impl MeasuredStep {
    fn from_backend(name: &str, step: &Step) -> MeasuredStep {
        let start = truncate_micros(step.start);
        let end = truncate_micros(step.end);
        MeasuredStep {
            name: name.to_owned(),
            start: Some(start),
            end: Some(end),
            duration_micros: (end - start).num_microseconds(),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"name\": ");
        pyjson::write_str(out, &self.name);
        out.extend_from_slice(b", \"start\": ");
        write_opt_str(out, self.start.map(isoformat).as_deref());
        out.extend_from_slice(b", \"end\": ");
        write_opt_str(out, self.end.map(isoformat).as_deref());
        out.extend_from_slice(b", \"duration\": ");
        match self.duration_micros {
            // timedelta.total_seconds(): microseconds / 10**6, correctly rounded.
            Some(us) => out.extend_from_slice(pyjson::float_repr(us as f64 / 1e6).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
}

fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t)
}

fn write_measured_steps(out: &mut Vec<u8>, timings: &Timings, runtime: &[Option<MeasuredStep>; 4]) {
    let backend = [
        ("internal_full", timings.internal_full),
        ("prepare_execution_input", timings.prepare_execution_input),
        ("run_execution_input", timings.run_execution_input),
    ];
    out.push(b'{');
    for (i, (name, step)) in backend.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        pyjson::write_str(out, name);
        out.extend_from_slice(b": ");
        match step {
            Some(s) => MeasuredStep::from_backend(name, s).write(out),
            None => out.extend_from_slice(b"null"),
        }
    }
    for (name, step) in RUNTIME_STEPS.iter().zip(runtime) {
        out.extend_from_slice(b", ");
        pyjson::write_str(out, name);
        out.extend_from_slice(b": ");
        match step {
            Some(s) => s.write(out),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

/// Top-level fields of a JSON object, raw, last duplicate winning (as Python's `json`).
mod indexmap_like {
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use serde_json::value::RawValue;

    #[derive(Debug)]
    pub struct Fields<'a>(pub Vec<(String, &'a RawValue)>);

    impl<'a> Fields<'a> {
        pub fn get(&self, name: &str) -> Option<&'a RawValue> {
            self.0
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| *v)
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<'a>(std::marker::PhantomData<&'a ()>);
            impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                type Value = Fields<'a>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Fields<'a>, M::Error> {
                    let mut v = Vec::new();
                    while let Some((k, raw)) = m.next_entry::<String, &'de RawValue>()? {
                        v.push((k, raw));
                    }
                    Ok(Fields(v))
                }
            }
            d.deserialize_map(V(std::marker::PhantomData))
        }
    }
}

/// The fields of a `WorkflowExecutionResult` the response carries, validated.
struct RuntimeResult<'a> {
    error: Option<ExecutionError<'a>>,
    outputs: &'a RawValue,
    traceback: Option<String>,
    job_id: Uuid,
    runtime_steps: [Option<MeasuredStep>; 4],
    result: &'static str,
}

fn parse_raw(raw: &RawValue) -> Value {
    // Raw values come out of a successful parse of the same text.
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

impl<'a> RuntimeResult<'a> {
    fn from_fields(fields: &indexmap_like::Fields<'a>) -> Result<RuntimeResult<'a>, String> {
        let outputs = fields
            .get("output_results_by_output_name")
            .ok_or("`output_results_by_output_name` is missing")?;
        if !outputs.get().trim_start().starts_with('{') {
            return Err(format!(
                "`output_results_by_output_name` must be an object, found {}",
                kind(&parse_raw(outputs))
            ));
        }
        let job_id = match fields.get("job_id").map(parse_raw) {
            Some(Value::String(s)) => {
                parse_uuid(&s).ok_or(format!("`job_id` `{s}` is not a UUID"))?
            }
            Some(other) => {
                return Err(format!(
                    "`job_id` must be a UUID string, found {}",
                    kind(&other)
                ));
            }
            None => return Err("`job_id` is missing".into()),
        };
        let result = match fields.get("result").map(parse_raw) {
            Some(Value::String(s)) if s == "ok" => "ok",
            Some(Value::String(s)) if s == "failure" => "failure",
            Some(other) => {
                return Err(format!(
                    "`result` must be \"ok\" or \"failure\", found {other}"
                ));
            }
            None => return Err("`result` is missing".into()),
        };
        let traceback = match fields.get("traceback").map(parse_raw) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                return Err(format!(
                    "`traceback` must be a string, found {}",
                    kind(&other)
                ));
            }
        };
        let error = match fields.get("error") {
            None => None,
            Some(raw) if raw.get().trim() == "null" => None,
            Some(raw) => Some(ExecutionError::parse(raw)?),
        };
        let mut runtime_steps = [None, None, None, None];
        match fields.get("measured_steps").map(parse_raw) {
            None => {}
            Some(Value::Object(steps)) => {
                for (slot, name) in runtime_steps.iter_mut().zip(RUNTIME_STEPS) {
                    *slot = match steps.get(name) {
                        None | Some(Value::Null) => None,
                        Some(v) => Some(parse_step(name, v)?),
                    };
                }
            }
            Some(other) => {
                return Err(format!(
                    "`measured_steps` must be an object, found {}",
                    kind(&other)
                ));
            }
        }
        Ok(RuntimeResult {
            error,
            outputs,
            traceback,
            job_id,
            runtime_steps,
            result,
        })
    }
}

fn parse_step(name: &str, v: &Value) -> Result<MeasuredStep, String> {
    let obj = v
        .as_object()
        .ok_or(format!("`measured_steps.{name}` must be an object"))?;
    let step_name = match obj.get("name") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(format!("`measured_steps.{name}.name` must be a string")),
    };
    let time = |field: &str| -> Result<Option<DateTime<Utc>>, String> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                let t = DateTime::parse_from_rfc3339(s).map_err(|_| {
                    format!("`measured_steps.{name}.{field}` `{s}` is not a datetime with offset")
                })?;
                if t.offset().local_minus_utc() != 0 {
                    return Err(format!(
                        "`measured_steps.{name}.{field}` must be explicit UTC, found `{s}`"
                    ));
                }
                Ok(Some(truncate_micros(t.with_timezone(&Utc))))
            }
            Some(other) => Err(format!(
                "`measured_steps.{name}.{field}` must be a datetime string, found {}",
                kind(other)
            )),
        }
    };
    let duration_micros = match obj.get("duration") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let secs = n
                .as_f64()
                .ok_or(format!("`measured_steps.{name}.duration` is out of range"))?;
            // timedelta(seconds=x) keeps whole microseconds, rounding half to even.
            Some((secs * 1e6).round_ties_even() as i64)
        }
        Some(other) => {
            return Err(format!(
                "`measured_steps.{name}.duration` must be a number of seconds, found {}",
                kind(other)
            ));
        }
    };
    Ok(MeasuredStep {
        name: step_name,
        start: time("start")?,
        end: time("end")?,
        duration_micros,
    })
}

/// `WorkflowExecutionError` (spec §6.2), validated and re-written in model order.
struct ExecutionError<'a> {
    error_type: String,
    error_code: Option<ErrorCode>,
    message: String,
    extra_information: Option<&'a RawValue>,
    process_stage: Option<String>,
    operator_info: Option<OperatorInfo>,
    location: Location,
}

/// `int | str`: pydantic tries int first, so a numeric string becomes an integer (quirk 12).
enum ErrorCode {
    Int(i64),
    Str(String),
}

struct OperatorInfo {
    id: String,
    name: String,
    tag: String,
    kind: String,
    by_name: Vec<String>,
    by_id: Vec<Uuid>,
}

struct Location {
    file: String,
    function_name: String,
    line_number: i64,
}

fn string_field(
    obj: &serde_json::Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<String, String> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(super::lenient::python_number_str(n)),
        Some(other) => Err(format!(
            "`{path}.{name}` must be a string, found {}",
            kind(other)
        )),
        None => Err(format!("`{path}.{name}` is missing")),
    }
}

fn object<'v>(v: &'v Value, path: &str) -> Result<&'v serde_json::Map<String, Value>, String> {
    v.as_object()
        .ok_or(format!("`{path}` must be an object, found {}", kind(v)))
}

impl<'a> ExecutionError<'a> {
    fn parse(raw: &'a RawValue) -> Result<ExecutionError<'a>, String> {
        let value = parse_raw(raw);
        let obj = object(&value, "error")?;
        let error_code = match obj.get("error_code") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(ErrorCode::Int(i64::from(*b))),
            Some(Value::Number(n)) => Some(ErrorCode::Int(
                n.as_i64()
                    .or_else(|| n.as_f64().map(|f| f.trunc() as i64))
                    .unwrap_or_default(),
            )),
            Some(Value::String(s)) => Some(match s.trim().replace('_', "").parse::<i64>() {
                Ok(i) if !s.trim().is_empty() => ErrorCode::Int(i),
                _ => ErrorCode::Str(s.clone()),
            }),
            Some(other) => {
                return Err(format!(
                    "`error.error_code` must be an int or a string, found {}",
                    kind(other)
                ));
            }
        };
        // Keep the runtime's text of extra_information (key order and numbers as written).
        let extra_information = match obj.get("extra_information") {
            None | Some(Value::Null) => None,
            Some(Value::Object(_)) => {
                let fields: indexmap_like::Fields<'a> =
                    serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
                fields.get("extra_information")
            }
            Some(other) => {
                return Err(format!(
                    "`error.extra_information` must be an object, found {}",
                    kind(other)
                ));
            }
        };
        let process_stage = match obj.get("process_stage") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if PROCESS_STAGES.contains(&s.as_str()) => Some(s.clone()),
            Some(other) => {
                return Err(format!(
                    "`error.process_stage` {other} is not a process stage"
                ));
            }
        };
        let operator_info = match obj.get("operator_info") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let oi = object(v, "error.operator_info")?;
                let ti = object(
                    oi.get("transformation_info").unwrap_or(&Value::Null),
                    "error.operator_info.transformation_info",
                )?;
                let hi = object(
                    oi.get("hierarchy_in_workflow").unwrap_or(&Value::Null),
                    "error.operator_info.hierarchy_in_workflow",
                )?;
                let p = "error.operator_info.transformation_info";
                let kind_ = string_field(ti, "type", p)?;
                if kind_ != "COMPONENT" && kind_ != "WORKFLOW" {
                    return Err(format!(
                        "`{p}.type` must be COMPONENT or WORKFLOW, found `{kind_}`"
                    ));
                }
                let list = |name: &str| -> Result<Vec<String>, String> {
                    match hi.get(name) {
                        Some(Value::Array(items)) => items
                            .iter()
                            .map(|i| i.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                            .ok_or(format!("`error.operator_info.hierarchy_in_workflow.{name}` must hold strings")),
                        _ => Err(format!("`error.operator_info.hierarchy_in_workflow.{name}` must be a list")),
                    }
                };
                let by_id = list("by_id")?
                    .iter()
                    .map(|s| {
                        parse_uuid(s).ok_or(format!(
                            "`{s}` in hierarchy_in_workflow.by_id is not a UUID"
                        ))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(OperatorInfo {
                    id: string_field(ti, "id", p)?,
                    name: string_field(ti, "name", p)?,
                    tag: string_field(ti, "tag", p)?,
                    kind: kind_,
                    by_name: list("by_name")?,
                    by_id,
                })
            }
        };
        let loc = object(
            obj.get("location").unwrap_or(&Value::Null),
            "error.location",
        )?;
        let line_number = match loc.get("line_number") {
            Some(Value::Number(n)) if n.is_i64() => n.as_i64().expect("checked is_i64"),
            _ => return Err("`error.location.line_number` must be an integer".into()),
        };
        Ok(ExecutionError {
            error_type: string_field(obj, "type", "error")?,
            error_code,
            message: string_field(obj, "message", "error")?,
            extra_information,
            process_stage,
            operator_info,
            location: Location {
                file: string_field(loc, "file", "error.location")?,
                function_name: string_field(loc, "function_name", "error.location")?,
                line_number,
            },
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"type\": ");
        pyjson::write_str(out, &self.error_type);
        out.extend_from_slice(b", \"error_code\": ");
        match &self.error_code {
            None => out.extend_from_slice(b"null"),
            Some(ErrorCode::Int(i)) => out.extend_from_slice(i.to_string().as_bytes()),
            Some(ErrorCode::Str(s)) => pyjson::write_str(out, s),
        }
        out.extend_from_slice(b", \"message\": ");
        pyjson::write_str(out, &self.message);
        out.extend_from_slice(b", \"extra_information\": ");
        match self.extra_information {
            None => out.extend_from_slice(b"null"),
            Some(raw) => pyjson::write_json_text(out, raw.get()),
        }
        out.extend_from_slice(b", \"process_stage\": ");
        write_opt_str(out, self.process_stage.as_deref());
        out.extend_from_slice(b", \"operator_info\": ");
        match &self.operator_info {
            None => out.extend_from_slice(b"null"),
            Some(oi) => {
                out.extend_from_slice(b"{\"transformation_info\": {\"id\": ");
                pyjson::write_str(out, &oi.id);
                out.extend_from_slice(b", \"name\": ");
                pyjson::write_str(out, &oi.name);
                out.extend_from_slice(b", \"tag\": ");
                pyjson::write_str(out, &oi.tag);
                out.extend_from_slice(b", \"type\": ");
                pyjson::write_str(out, &oi.kind);
                out.extend_from_slice(b"}, \"hierarchy_in_workflow\": {\"by_name\": ");
                pyjson::write(out, &oi.by_name);
                out.extend_from_slice(b", \"by_id\": ");
                pyjson::write(out, &oi.by_id);
                out.extend_from_slice(b"}}");
            }
        }
        out.extend_from_slice(b", \"location\": {\"file\": ");
        pyjson::write_str(out, &self.location.file);
        out.extend_from_slice(b", \"function_name\": ");
        pyjson::write_str(out, &self.location.function_name);
        out.extend_from_slice(b", \"line_number\": ");
        out.extend_from_slice(self.location.line_number.to_string().as_bytes());
        out.extend_from_slice(b"}}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn isoformat_like_python() {
        assert_eq!(
            isoformat(t("2026-11-24T00:48:20.544220Z")),
            "2026-11-24T00:48:20.544220+00:00"
        );
        assert_eq!(
            isoformat(t("2026-11-24T00:48:20Z")),
            "2026-11-24T00:48:20+00:00"
        );
        assert_eq!(
            isoformat(t("2026-11-24T00:48:20.1234567Z")),
            "2026-11-24T00:48:20.123456+00:00"
        );
    }

    #[test]
    fn minimal_valid_result_becomes_a_response() {
        let body = br#"{"output_results_by_output_name":{"x":1.50},"job_id":"00000000-0000-0000-0000-000000000001","result":"ok"}"#;
        let step = Step {
            start: t("2026-01-01T00:00:00.000001Z"),
            end: t("2026-01-01T00:00:00.5Z"),
        };
        let timings = Timings {
            internal_full: Some(step),
            ..Timings::default()
        };
        let out = build_response(
            200,
            body,
            &[("x".into(), DataType::Float)],
            &timings,
            Some(7),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"error": null, "output_results_by_output_name": {"x": 1.50}, "traceback": null, "job_id": "00000000-0000-0000-0000-000000000001", "measured_steps": {"internal_full": {"name": "internal_full", "start": "2026-01-01T00:00:00.000001+00:00", "end": "2026-01-01T00:00:00.500000+00:00", "duration": 0.499999}, "prepare_execution_input": null, "run_execution_input": null, "runtime_service_handling": null, "pure_execution": null, "load_data": null, "send_data": null}, "result": "ok", "output_types_by_output_name": {"x": "FLOAT"}, "process_id": 7}"#
        );
    }

    #[test]
    fn unusable_answers_are_errors_that_quote_status_and_body() {
        let e = build_response(
            500,
            b"Internal Server Error",
            &[],
            &Timings::default(),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(e, ProtocolError::RuntimeAnswerNotJson { status: 500, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("Internal Server Error"));
        for (body, needle) in [
            (&br#"{"foo": 1}"#[..], "output_results_by_output_name"),
            (br#"[1]"#, "object"),
            (br#"{"output_results_by_output_name": {}, "job_id": "x", "result": "ok"}"#, "job_id"),
            (br#"{"output_results_by_output_name": {}, "job_id": "00000000-0000-0000-0000-000000000001", "result": "maybe"}"#, "result"),
            (br#"{"output_results_by_output_name": {}, "job_id": "00000000-0000-0000-0000-000000000001", "result": "failure", "error": {"type": "X", "message": "m"}}"#, "location"),
        ] {
            let e = build_response(200, body, &[], &Timings::default(), None).unwrap_err();
            assert!(matches!(e, ProtocolError::RuntimeResultInvalid { .. }), "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    #[test]
    fn numeric_error_code_string_becomes_int() {
        let body = br#"{"error":{"type":"E","error_code":"5","message":"m","location":{"file":"f","function_name":"g","line_number":3}},"output_results_by_output_name":{},"job_id":"00000000-0000-0000-0000-000000000001","result":"failure"}"#;
        let out =
            String::from_utf8(build_response(200, body, &[], &Timings::default(), None).unwrap())
                .unwrap();
        assert!(out.contains(r#""error_code": 5, "#), "{out}");
    }

    #[test]
    fn failure_response_names_the_reference_error_class() {
        let error = ProtocolError::RevisionNotFound {
            id: Uuid::from_u128(9),
        };
        let extra = serde_json::json!({"topic": "t", "partition": 0, "offset": 3});
        let out = failure_response(&Failure {
            error: &error,
            job_id: Some(Uuid::from_u128(1)),
            output_types: &[],
            timings: &Timings::default(),
            process_id: Some(5),
            extra: Some(&extra),
        });
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"], "failure");
        assert_eq!(v["error"]["type"], "TrafoExecutionNotFoundError");
        assert_eq!(v["error"]["extra_information"]["offset"], 3);
        assert_eq!(v["job_id"], "00000000-0000-0000-0000-000000000001");
        assert_eq!(
            v["error"]["location"]["function_name"],
            "load_transformation_revision"
        );
        assert_eq!(v["process_id"], 5);
    }
}

//! The Kafka response: `ExecutionResponseFrontendDto` (spec §6.3, §7, §10).
//!
//! Built from the runtime's answer exactly as the reference builds it — the runtime's result
//! fields in model order, `node_results` dropped, the backend's three timings, the output types
//! and the process id — and written in Python `json.dumps` style. What the runtime computed
//! (output values, error details) is carried as the runtime wrote it, re-spaced only.
//!
//! The answer is outside input. It is read as hetida reads it — `json.loads` (see [`pyjson`]),
//! then pydantic 1's `WorkflowExecutionResult` — so every answer hetida turns into a response
//! is one here, and every answer it cannot use is a [`ProtocolError`] that says what is wrong,
//! never a panic. Every request the reference drops gets a [`failure_response`] instead.

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::error::{ProtocolError, body_start};
use super::lenient::parse_uuid;
use super::pyjson::{self, Document, Json, NotJson, Number, PyStr, Raw};
use super::revision::DataType;

/// How much of an unusable runtime body a failure response quotes.
const QUOTED_BODY_CHARS: usize = 300;

/// One measured step of the backend's own work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// When the step began.
    pub start: DateTime<Utc>,
    /// When the step ended.
    pub end: DateTime<Utc>,
}

/// The backend's measured steps (spec §6.3 point 3); a step that did not happen is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// The whole execution, from taking the request up to the runtime's answer (hetida's
    /// `internal_full`).
    pub internal_full: Option<Step>,
    /// Loading the revisions and building the runtime request.
    pub prepare_execution_input: Option<Step>,
    /// The runtime call, from sending the request to reading its answer.
    pub run_execution_input: Option<Step>,
}

/// `AllMeasuredSteps` in model order: the backend's three, then the runtime's four.
const MEASURED_STEPS: [&str; 7] = [
    "internal_full",
    "prepare_execution_input",
    "run_execution_input",
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

/// `timedelta`'s range in microseconds: pydantic's duration beyond it raises OverflowError,
/// which hetida does not catch (the request is dropped).
const TIMEDELTA_MICROS: std::ops::RangeInclusive<i128> =
    -86_399_999_913_600_000_000..=86_399_999_999_999_999_999;

/// Builds the response value from the runtime's answer. The HTTP status does not matter as long
/// as the body is a valid result (the reference accepts a 500 with a valid body).
pub fn build_response(
    status: u16,
    body: &[u8],
    output_types: &[(String, DataType)],
    timings: &Timings,
    process_id: Option<u32>,
) -> Result<Vec<u8>, ProtocolError> {
    build_result_response(status, body, output_types, timings, process_id).map(|r| r.value)
}

/// A response built from the runtime's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltResponse {
    /// The response JSON.
    pub value: Vec<u8>,
    /// The runtime's `result` was `ok` (not `failure`).
    pub ok: bool,
}

/// [`build_response`], also saying whether the runtime reported success.
pub fn build_result_response(
    status: u16,
    body: &[u8],
    output_types: &[(String, DataType)],
    timings: &Timings,
    process_id: Option<u32>,
) -> Result<BuiltResponse, ProtocolError> {
    // hetida's `response.json()` raises on these outside its error handling, so it drops the
    // request (spec §7.2, row 7); it accepts NaN, ±Infinity and lone surrogates, and so do we.
    let not_json = |e: NotJson| ProtocolError::RuntimeAnswerNotJson {
        status,
        reason: e.what,
        body_start: body_start(body, QUOTED_BODY_CHARS),
    };
    // pydantic's ValidationError (TrafoExecutionResultValidationError, dropped by hetida's
    // consumer), or the TypeError of `WorkflowExecutionResult(**json_obj)` for JSON that is
    // not an object (dropped as well).
    let invalid = |reason: String| ProtocolError::RuntimeResultInvalid {
        status,
        reason,
        body_start: body_start(body, QUOTED_BODY_CHARS),
    };
    let text = pyjson::decode(body).map_err(not_json)?;
    let members = match pyjson::document(&text).map_err(not_json)? {
        Document::Object(members) => members,
        Document::Other { kind } => {
            return Err(invalid(format!("the answer is {kind}, not a JSON object")));
        }
    };
    let result = RuntimeResult::from_members(&members).map_err(invalid)?;

    let mut out = Vec::with_capacity(text.len() + 1024);
    out.extend_from_slice(b"{\"error\": ");
    match &result.error {
        None => out.extend_from_slice(b"null"),
        Some(e) => e.write(&mut out).map_err(not_json)?,
    }
    out.extend_from_slice(b", \"output_results_by_output_name\": ");
    result.outputs.write_python(&mut out).map_err(not_json)?;
    out.extend_from_slice(b", \"traceback\": ");
    write_opt_py_str(&mut out, result.traceback.as_ref());
    out.extend_from_slice(b", \"job_id\": ");
    write_uuid(&mut out, result.job_id);
    out.extend_from_slice(b", \"measured_steps\": ");
    write_measured_steps(&mut out, timings, &result.runtime_steps);
    out.extend_from_slice(b", \"result\": ");
    pyjson::write_str(&mut out, result.result);
    write_tail(&mut out, output_types, process_id);
    Ok(BuiltResponse {
        value: out,
        ok: result.result == "ok",
    })
}

/// What the worker knows when an execution fails before a runtime result exists.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// What failed; decides the error type, message and step of the response.
    pub error: &'a ProtocolError,
    /// The request's job id when it could be read.
    pub job_id: Option<Uuid>,
    /// Workflow outputs when the revision was prepared, else empty.
    pub output_types: &'a [(String, DataType)],
    /// The backend's steps that did happen before the failure, reported as on success.
    pub timings: &'a Timings,
    /// The worker's process id for `process_id`, when performance measurement information is on
    /// (hetida's `HD_ADVANCED_PERFORMANCE_MEASUREMENT_INFORMATION`).
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
        .or_else(|| f.error.job_id())
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

fn write_opt_py_str(out: &mut Vec<u8>, s: Option<&PyStr>) {
    match s {
        Some(s) => pyjson::write_py_str(out, s),
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
    name: PyStr,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// Microseconds, as Python's `timedelta` holds them (its range exceeds i64's).
    duration_micros: Option<i128>,
}

impl MeasuredStep {
    fn from_backend(name: &str, step: &Step) -> MeasuredStep {
        let start = truncate_micros(step.start);
        let end = truncate_micros(step.end);
        MeasuredStep {
            name: PyStr::from(name),
            start,
            end,
            duration_micros: (end - start).num_microseconds().map(i128::from),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"name\": ");
        pyjson::write_py_str(out, &self.name);
        out.extend_from_slice(b", \"start\": ");
        pyjson::write_str(out, &isoformat(self.start));
        out.extend_from_slice(b", \"end\": ");
        pyjson::write_str(out, &isoformat(self.end));
        out.extend_from_slice(b", \"duration\": ");
        match self.duration_micros {
            Some(us) => out.extend_from_slice(pyjson::float_repr(total_seconds(us)).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
}

/// `timedelta.total_seconds()`: microseconds / 10**6, correctly rounded — which reading the
/// exact decimal is, at any magnitude.
fn total_seconds(micros: i128) -> f64 {
    let sign = if micros < 0 { "-" } else { "" };
    let us = micros.unsigned_abs();
    format!("{sign}{}.{:06}", us / 1_000_000, us % 1_000_000)
        .parse()
        .unwrap_or(f64::NAN)
}

fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t)
}

fn write_measured_steps(out: &mut Vec<u8>, timings: &Timings, runtime: &[Option<MeasuredStep>; 4]) {
    let backend = [
        timings.internal_full,
        timings.prepare_execution_input,
        timings.run_execution_input,
    ];
    out.push(b'{');
    for (i, (name, step)) in MEASURED_STEPS.iter().zip(&backend).enumerate() {
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
    for (name, step) in MEASURED_STEPS.iter().skip(3).zip(runtime) {
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

/// The member `name` of an object, as a Python dict holds it: the last of duplicates wins.
fn member<'a>(members: &[(PyStr, Raw<'a>)], name: &str) -> Option<Raw<'a>> {
    members
        .iter()
        .rev()
        .find(|(k, _)| k.is(name))
        .map(|(_, v)| *v)
}

/// A member's value as a tree. The document was validated, so this fails only on a bug, and
/// then as an invalid answer rather than a panic.
fn parsed<'a>(raw: Option<Raw<'a>>) -> Result<Option<Json<'a>>, String> {
    raw.map(|r| r.parse()).transpose().map_err(|e| e.what)
}

/// A value for an error message: strings and numbers as written (cut short), others by kind.
fn shown(v: &Json<'_>) -> String {
    let cut = |text: &str| {
        let mut cut: String = text.chars().take(60).collect();
        if cut.len() < text.len() {
            cut.push('…');
        }
        cut
    };
    match v {
        Json::Str(s) => format!("\"{}\"", cut(&s.to_text_lossy())),
        Json::Number(n) => cut(n),
        other => other.kind().to_owned(),
    }
}

/// pydantic 1's `str`: strings as they are, numbers and booleans through Python's `str()`.
fn py_str(v: &Json<'_>) -> Option<PyStr> {
    match v {
        Json::Str(s) => Some(s.clone()),
        Json::Number(text) => Some(PyStr::from(pyjson::python_str_of_number(text).as_str())),
        Json::Bool(true) => Some(PyStr::from("True")),
        Json::Bool(false) => Some(PyStr::from("False")),
        _ => None,
    }
}

fn required_str(v: Option<&Json<'_>>, path: &str) -> Result<PyStr, String> {
    match v {
        None => Err(format!("`{path}` is missing")),
        Some(v) => {
            py_str(v).ok_or_else(|| format!("`{path}` must be a string, found {}", v.kind()))
        }
    }
}

fn optional_str(v: Option<&Json<'_>>, path: &str) -> Result<Option<PyStr>, String> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(v) => required_str(Some(v), path).map(Some),
    }
}

/// pydantic 1's `int`, i.e. Python's `int(v)`: integers as they are, floats truncated,
/// booleans 0/1, decimal strings; NaN, infinities and everything else fail. Decimal digits.
fn py_int(v: &Json<'_>) -> Option<String> {
    match v {
        Json::Bool(b) => Some(u8::from(*b).to_string()),
        Json::Number(text) => match pyjson::number_value(text) {
            Number::Int(digits) => Some(digits),
            Number::Float(x) if x.is_finite() => {
                let digits = format!("{:.0}", x.trunc());
                Some(if digits == "-0" {
                    "0".to_owned()
                } else {
                    digits
                })
            }
            Number::Float(_) => None,
        },
        Json::Str(s) => int_of_str(&s.to_text()?),
        _ => None,
    }
}

/// Python's `int(str)`: whitespace around, a sign, decimal digits with single underscores
/// between them; pydantic refuses strings longer than 4300 characters first.
fn int_of_str(s: &str) -> Option<String> {
    if s.chars().count() > pyjson::MAX_INT_DIGITS {
        return None;
    }
    let s = s.trim();
    let (negative, body) = match s.strip_prefix('-') {
        Some(body) => (true, body),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let well_formed = !body.is_empty()
        && !body.starts_with('_')
        && !body.ends_with('_')
        && !body.contains("__")
        && body.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    if !well_formed {
        return None;
    }
    let digits: String = body.chars().filter(|c| *c != '_').collect();
    let digits = digits.trim_start_matches('0');
    Some(match (negative, digits.is_empty()) {
        (_, true) => "0".to_owned(),
        (true, false) => format!("-{digits}"),
        (false, false) => digits.to_owned(),
    })
}

/// pydantic 1's `timedelta` from a number: `f'{value:f}'` (six decimals, correctly rounded —
/// as Rust's `{:.6}`) read back as seconds and microseconds. NaN and infinities do not read
/// back, and beyond `timedelta`'s range Python overflows.
fn duration_micros(v: &Json<'_>) -> Option<i128> {
    let secs = match v {
        Json::Bool(b) => f64::from(u8::from(*b)),
        Json::Number(text) => match pyjson::number_value(text) {
            Number::Int(digits) => digits.parse().ok()?,
            Number::Float(x) => x,
        },
        _ => return None,
    };
    if !secs.is_finite() {
        return None;
    }
    let fixed = format!("{secs:.6}");
    let (whole, fraction) = fixed.split_once('.')?;
    let micros: i128 = fraction.parse().ok()?;
    let micros = whole
        .parse::<i128>()
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(if whole.starts_with('-') {
            -micros
        } else {
            micros
        })?;
    TIMEDELTA_MICROS.contains(&micros).then_some(micros)
}

/// The fields of a `WorkflowExecutionResult` the response carries, validated as pydantic
/// validates them.
struct RuntimeResult<'a> {
    error: Option<ExecutionError<'a>>,
    outputs: Raw<'a>,
    traceback: Option<PyStr>,
    job_id: Uuid,
    runtime_steps: [Option<MeasuredStep>; 4],
    result: &'static str,
}

impl<'a> RuntimeResult<'a> {
    fn from_members(m: &[(PyStr, Raw<'a>)]) -> Result<RuntimeResult<'a>, String> {
        let outputs = member(m, "output_results_by_output_name")
            .ok_or("`output_results_by_output_name` is missing")?;
        // pydantic would also make a dict of a list of pairs or of "" (`dict(v)`); no runtime
        // writes those, so they are refused as what they are.
        if outputs.kind() != "an object" {
            return Err(format!(
                "`output_results_by_output_name` must be an object, found {}",
                outputs.kind()
            ));
        }
        let job_id = match parsed(member(m, "job_id"))? {
            None => return Err("`job_id` is missing".into()),
            Some(Json::Str(s)) => s
                .to_text()
                .as_deref()
                .and_then(parse_uuid)
                .ok_or_else(|| format!("`job_id` `{}` is not a UUID", s.to_text_lossy()))?,
            Some(other) => {
                return Err(format!(
                    "`job_id` must be a UUID string, found {}",
                    other.kind()
                ));
            }
        };
        let result = match parsed(member(m, "result"))? {
            Some(Json::Str(s)) if s.is("ok") => "ok",
            Some(Json::Str(s)) if s.is("failure") => "failure",
            Some(other) => {
                return Err(format!(
                    "`result` must be \"ok\" or \"failure\", found {}",
                    shown(&other)
                ));
            }
            None => return Err("`result` is missing".into()),
        };
        let traceback = optional_str(parsed(member(m, "traceback"))?.as_ref(), "traceback")?;
        // Validated although dropped: pydantic refuses the whole result for a bad one.
        optional_str(parsed(member(m, "node_results"))?.as_ref(), "node_results")?;
        let error = match member(m, "error") {
            None => None,
            Some(raw) if raw.is_null() => None,
            Some(raw) => Some(ExecutionError::parse(raw)?),
        };
        let mut runtime_steps = [None, None, None, None];
        match parsed(member(m, "measured_steps"))? {
            None => {}
            Some(steps @ Json::Object(_)) => {
                // The backend's three are replaced by its own, but pydantic validates them too.
                for (i, name) in MEASURED_STEPS.iter().enumerate() {
                    let step = match steps.get(name) {
                        None | Some(Json::Null) => None,
                        Some(v) => Some(parse_step(name, v)?),
                    };
                    if let Some(slot) = i.checked_sub(3).and_then(|i| runtime_steps.get_mut(i)) {
                        *slot = step;
                    }
                }
            }
            Some(other) => {
                return Err(format!(
                    "`measured_steps` must be an object, found {}",
                    other.kind()
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

fn parse_step(name: &str, v: &Json<'_>) -> Result<MeasuredStep, String> {
    if !matches!(v, Json::Object(_)) {
        return Err(format!(
            "`measured_steps.{name}` must be an object, found {}",
            v.kind()
        ));
    }
    // A step without start or end fails hetida's backend (its UTC validator reads the None that
    // `.dict()` passes on: AttributeError, the request is dropped); the runtime sets both.
    let time = |field: &str| -> Result<DateTime<Utc>, String> {
        match v.get(field) {
            None | Some(Json::Null) => Err(format!(
                "`measured_steps.{name}.{field}` is missing (a measured step has start and end)"
            )),
            Some(Json::Str(s)) => {
                let text = s.to_text_lossy();
                let t = DateTime::parse_from_rfc3339(&text).map_err(|_| {
                    format!(
                        "`measured_steps.{name}.{field}` `{text}` is not a datetime with offset"
                    )
                })?;
                if t.offset().local_minus_utc() != 0 {
                    return Err(format!(
                        "`measured_steps.{name}.{field}` must be explicit UTC, found `{text}`"
                    ));
                }
                Ok(truncate_micros(t.with_timezone(&Utc)))
            }
            Some(other) => Err(format!(
                "`measured_steps.{name}.{field}` must be a datetime string, found {}",
                other.kind()
            )),
        }
    };
    let duration_micros = match v.get("duration") {
        None | Some(Json::Null) => None,
        Some(d @ (Json::Number(_) | Json::Bool(_))) => Some(duration_micros(d).ok_or_else(|| {
            format!(
                "`measured_steps.{name}.duration` {} is not a duration (finite seconds within timedelta's range)",
                shown(d)
            )
        })?),
        Some(other) => {
            return Err(format!(
                "`measured_steps.{name}.duration` must be a number of seconds, found {}",
                other.kind()
            ));
        }
    };
    Ok(MeasuredStep {
        name: required_str(v.get("name"), &format!("measured_steps.{name}.name"))?,
        start: time("start")?,
        end: time("end")?,
        duration_micros,
    })
}

/// `WorkflowExecutionError` (spec §6.2), validated and re-written in model order. Its strings
/// are Python strings: whatever the runtime wrote, lone surrogates included, goes on unchanged.
struct ExecutionError<'a> {
    error_type: PyStr,
    error_code: Option<ErrorCode>,
    message: PyStr,
    extra_information: Option<Raw<'a>>,
    process_stage: Option<&'static str>,
    operator_info: Option<OperatorInfo>,
    location: Location,
}

/// `int | str`: pydantic tries int first, so a numeric string becomes an integer (quirk 12)
/// and NaN becomes the string "nan".
enum ErrorCode {
    /// Decimal digits, any size (Python ints are unbounded).
    Int(String),
    Str(PyStr),
}

struct OperatorInfo {
    id: PyStr,
    name: PyStr,
    tag: PyStr,
    kind: PyStr,
    by_name: Vec<PyStr>,
    by_id: Vec<Uuid>,
}

struct Location {
    file: PyStr,
    function_name: PyStr,
    line_number: String,
}

fn object<'v, 'a>(v: Option<&'v Json<'a>>, path: &str) -> Result<&'v Json<'a>, String> {
    match v {
        Some(v @ Json::Object(_)) => Ok(v),
        Some(other) => Err(format!(
            "`{path}` must be an object, found {}",
            other.kind()
        )),
        None => Err(format!("`{path}` is missing")),
    }
}

impl<'a> ExecutionError<'a> {
    fn parse(raw: Raw<'a>) -> Result<ExecutionError<'a>, String> {
        // Members stay raw, so extra_information goes on as the runtime wrote it.
        let m = match pyjson::document(raw.text()).map_err(|e| e.what)? {
            Document::Object(m) => m,
            Document::Other { kind } => {
                return Err(format!("`error` must be an object, found {kind}"));
            }
        };
        let error_code = match parsed(member(&m, "error_code"))? {
            None | Some(Json::Null) => None,
            Some(v) => Some(match (py_int(&v), py_str(&v)) {
                (Some(digits), _) => ErrorCode::Int(digits),
                (None, Some(s)) => ErrorCode::Str(s),
                (None, None) => {
                    return Err(format!(
                        "`error.error_code` must be an int or a string, found {}",
                        v.kind()
                    ));
                }
            }),
        };
        // pydantic would also make a dict of a list of pairs or of ""; no runtime writes those.
        let extra_information = match member(&m, "extra_information") {
            None => None,
            Some(raw) if raw.is_null() => None,
            Some(raw) if raw.kind() == "an object" => Some(raw),
            Some(raw) => {
                return Err(format!(
                    "`error.extra_information` must be an object, found {}",
                    raw.kind()
                ));
            }
        };
        let process_stage = match parsed(member(&m, "process_stage"))? {
            None | Some(Json::Null) => None,
            Some(v) => Some(
                PROCESS_STAGES
                    .into_iter()
                    .find(|stage| matches!(&v, Json::Str(s) if s.is(stage)))
                    .ok_or_else(|| {
                        format!("`error.process_stage` {} is not a process stage", shown(&v))
                    })?,
            ),
        };
        let operator_info = match parsed(member(&m, "operator_info"))? {
            None | Some(Json::Null) => None,
            Some(v) => Some(OperatorInfo::parse(&v)?),
        };
        let location = parsed(member(&m, "location"))?;
        let location = object(location.as_ref(), "error.location")?;
        let line_number = location
            .get("line_number")
            .and_then(py_int)
            .ok_or("`error.location.line_number` must be an integer")?;
        Ok(ExecutionError {
            error_type: required_str(parsed(member(&m, "type"))?.as_ref(), "error.type")?,
            error_code,
            message: required_str(parsed(member(&m, "message"))?.as_ref(), "error.message")?,
            extra_information,
            process_stage,
            operator_info,
            location: Location {
                file: required_str(location.get("file"), "error.location.file")?,
                function_name: required_str(
                    location.get("function_name"),
                    "error.location.function_name",
                )?,
                line_number,
            },
        })
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), NotJson> {
        out.extend_from_slice(b"{\"type\": ");
        pyjson::write_py_str(out, &self.error_type);
        out.extend_from_slice(b", \"error_code\": ");
        match &self.error_code {
            None => out.extend_from_slice(b"null"),
            Some(ErrorCode::Int(digits)) => out.extend_from_slice(digits.as_bytes()),
            Some(ErrorCode::Str(s)) => pyjson::write_py_str(out, s),
        }
        out.extend_from_slice(b", \"message\": ");
        pyjson::write_py_str(out, &self.message);
        out.extend_from_slice(b", \"extra_information\": ");
        match self.extra_information {
            None => out.extend_from_slice(b"null"),
            Some(raw) => raw.write_python(out)?,
        }
        out.extend_from_slice(b", \"process_stage\": ");
        write_opt_str(out, self.process_stage);
        out.extend_from_slice(b", \"operator_info\": ");
        match &self.operator_info {
            None => out.extend_from_slice(b"null"),
            Some(oi) => oi.write(out),
        }
        out.extend_from_slice(b", \"location\": {\"file\": ");
        pyjson::write_py_str(out, &self.location.file);
        out.extend_from_slice(b", \"function_name\": ");
        pyjson::write_py_str(out, &self.location.function_name);
        out.extend_from_slice(b", \"line_number\": ");
        out.extend_from_slice(self.location.line_number.as_bytes());
        out.extend_from_slice(b"}}");
        Ok(())
    }
}

impl OperatorInfo {
    fn parse(v: &Json<'_>) -> Result<OperatorInfo, String> {
        let oi = object(Some(v), "error.operator_info")?;
        let p = "error.operator_info.transformation_info";
        let ti = object(oi.get("transformation_info"), p)?;
        let h = "error.operator_info.hierarchy_in_workflow";
        let hi = object(oi.get("hierarchy_in_workflow"), h)?;
        let kind = required_str(ti.get("type"), &format!("{p}.type"))?;
        if !kind.is("COMPONENT") && !kind.is("WORKFLOW") {
            return Err(format!(
                "`{p}.type` must be COMPONENT or WORKFLOW, found `{}`",
                kind.to_text_lossy()
            ));
        }
        let list = |name: &str| -> Result<Vec<PyStr>, String> {
            match hi.get(name) {
                Some(Json::List(items)) => items
                    .iter()
                    .map(py_str)
                    .collect::<Option<Vec<_>>>()
                    .ok_or(format!("`{h}.{name}` must hold strings")),
                _ => Err(format!("`{h}.{name}` must be a list")),
            }
        };
        let by_id = list("by_id")?
            .iter()
            .map(|s| {
                s.to_text().as_deref().and_then(parse_uuid).ok_or(format!(
                    "`{}` in `{h}.by_id` is not a UUID",
                    s.to_text_lossy()
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OperatorInfo {
            id: required_str(ti.get("id"), &format!("{p}.id"))?,
            name: required_str(ti.get("name"), &format!("{p}.name"))?,
            tag: required_str(ti.get("tag"), &format!("{p}.tag"))?,
            kind,
            by_name: list("by_name")?,
            by_id,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"transformation_info\": {\"id\": ");
        pyjson::write_py_str(out, &self.id);
        out.extend_from_slice(b", \"name\": ");
        pyjson::write_py_str(out, &self.name);
        out.extend_from_slice(b", \"tag\": ");
        pyjson::write_py_str(out, &self.tag);
        out.extend_from_slice(b", \"type\": ");
        pyjson::write_py_str(out, &self.kind);
        out.extend_from_slice(b"}, \"hierarchy_in_workflow\": {\"by_name\": [");
        for (i, name) in self.by_name.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            pyjson::write_py_str(out, name);
        }
        out.extend_from_slice(b"], \"by_id\": [");
        for (i, id) in self.by_id.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            write_uuid(out, *id);
        }
        out.extend_from_slice(b"]}}");
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
        let error = ProtocolError::Missing(crate::protocol::Missing::Revision {
            id: Uuid::from_u128(9),
        });
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

//! `WorkflowWiring`: which adapter feeds each workflow input and receives each output (spec §2.4–2.7).
//!
//! Parsed with the reference's validation and lenient coercions, serialised with every field
//! (nulls included) in the reference's field order, because the runtime request carries it.

use std::collections::HashMap;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::lenient::{coerce_str, is_python_identifier, parse_bool, shown};
use super::pyjson::{self, Json, Number, PyStr};

/// The reference's only registered integer adapter id: 1, direct provisioning.
pub const DIRECT_PROVISIONING: i64 = 1;

/// How the inputs and outputs of one execution are connected to data sources and sinks.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct WorkflowWiring {
    /// Where each workflow input's value comes from; an unwired REQUIRED input fails the request.
    pub input_wirings: Vec<InputWiring>,
    /// Where each workflow output goes; the reference adds direct provisioning for any output left
    /// out (spec §5.6).
    pub output_wirings: Vec<OutputWiring>,
    /// Dashboard layout; only carried through to the runtime.
    pub dashboard_positionings: Vec<GridstackItemPositioning>,
}

/// An adapter: the integer 1 (direct provisioning) or any name (unknown names mean the runtime's
/// generic REST adapter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterId {
    /// A registered adapter by number; only 1 (direct provisioning) is registered, so any other is
    /// refused.
    Int(i64),
    /// An adapter by name (`"direct_provisioning"`, or one the runtime reaches over its generic
    /// REST adapter).
    Name(String),
}

impl Serialize for AdapterId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AdapterId::Int(i) => s.serialize_i64(*i),
            AdapterId::Name(n) => s.serialize_str(n),
        }
    }
}

/// What a `ref_id` of an external adapter points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RefIdType {
    /// The source of an input's data in the external system.
    Source,
    /// The sink of an output's data in the external system.
    Sink,
    /// A node of the external system's hierarchy (metadata attached to it).
    Thingnode,
}

/// Data types of external adapters (spec §2.7); aliases are read, the canonical name is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalType(&'static str);

impl ExternalType {
    const CANONICAL: [(&'static str, &'static [&'static str]); 17] = [
        ("metadata(int)", &["metadata(integer)"]),
        ("metadata(float)", &[]),
        ("metadata(string)", &["metadata(str)"]),
        ("metadata(boolean)", &["metadata(bool)"]),
        ("metadata(any)", &[]),
        ("timeseries(int)", &["timeseries(integer)"]),
        ("timeseries(float)", &[]),
        ("timeseries(string)", &["timeseries(str)"]),
        ("timeseries(boolean)", &["timeseries(bool)"]),
        ("timeseries(any)", &["timeseries(object)"]),
        ("series(int)", &["series(integer)"]),
        ("series(float)", &[]),
        ("series(string)", &["series(str)"]),
        ("series(boolean)", &["series(bool)"]),
        ("series(any)", &["series(object)"]),
        ("multitsframe", &[]),
        ("dataframe", &[]),
    ];

    /// The canonical type for `s`, a canonical name or an alias; `None` when hetida knows no such
    /// type.
    pub fn parse(s: &str) -> Option<ExternalType> {
        Self::CANONICAL
            .iter()
            .find(|(name, aliases)| *name == s || aliases.contains(&s))
            .map(|(name, _)| ExternalType(name))
    }

    /// The canonical name, as the runtime request carries it.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    fn is_metadata(self) -> bool {
        self.0.starts_with("metadata(")
    }
}

impl Serialize for ExternalType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

/// Filters keep the request's key order; values are strings after coercion.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filters(pub Vec<(String, String)>);

impl Filters {
    /// The value of filter `key`: for direct provisioning, `value` is the input's data.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Serialize for Filters {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Source of one workflow input.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InputWiring {
    /// The workflow input it feeds, by name (a Python identifier).
    pub workflow_input_name: String,
    /// The adapter that provides the value: direct provisioning takes it from `filters`.
    pub adapter_id: AdapterId,
    /// The source in the external system; unused by direct provisioning.
    pub ref_id: Option<String>,
    /// What kind of thing `ref_id` names in the external system.
    pub ref_id_type: Option<RefIdType>,
    /// Which metadata entry of `ref_id` is meant; required with a `metadata(...)` type.
    pub ref_key: Option<String>,
    /// The data type the external adapter delivers; a `metadata(...)` type needs `ref_id_type` and
    /// `ref_key`.
    #[serde(rename = "type")]
    pub external_type: Option<ExternalType>,
    /// The runtime then uses the input's default instead of loading it.
    pub use_default_value: bool,
    /// Adapter parameters; for direct provisioning `value` holds the input's value as text.
    pub filters: Filters,
}

/// Sink of one workflow output.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutputWiring {
    /// The workflow output it receives, by name.
    pub workflow_output_name: String,
    /// The adapter that receives the value: direct provisioning returns it in the response.
    pub adapter_id: AdapterId,
    /// The sink in the external system; unused by direct provisioning.
    pub ref_id: Option<String>,
    /// What kind of thing `ref_id` names in the external system.
    pub ref_id_type: Option<RefIdType>,
    /// Which metadata entry of `ref_id` is meant; required with a `metadata(...)` type.
    pub ref_key: Option<String>,
    /// The data type the external adapter receives; a `metadata(...)` type needs `ref_id_type` and
    /// `ref_key`.
    #[serde(rename = "type")]
    pub external_type: Option<ExternalType>,
    /// Adapter parameters, passed on to the sink adapter.
    pub filters: Filters,
}

impl OutputWiring {
    /// The wiring the reference appends for an unwired workflow output (spec §5.6 rule 3).
    pub fn direct_provisioning(name: &str) -> OutputWiring {
        OutputWiring {
            workflow_output_name: name.to_owned(),
            adapter_id: AdapterId::Int(DIRECT_PROVISIONING),
            ref_id: None,
            ref_id_type: None,
            ref_key: None,
            external_type: None,
            filters: Filters::default(),
        }
    }
}

/// Dashboard position of one item.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GridstackItemPositioning {
    /// Column in the dashboard's grid; `None` lets the dashboard place it.
    pub x: Option<u64>,
    /// Row in the dashboard's grid; `None` lets the dashboard place it.
    pub y: Option<u64>,
    /// Width in grid cells.
    pub w: Option<u64>,
    /// Height in grid cells.
    pub h: Option<u64>,
    /// The dashboard item (an input or output) this positions.
    pub id: String,
}

/// Where in the wiring a value was wrong, and why; rendered as `path: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct WiringError {
    /// Where in the wiring, as the reference's validation names it (`input_wirings.0.filters`).
    pub path: String,
    /// What the reference's validation says about it.
    pub reason: String,
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> WiringError {
    WiringError {
        path: path.into(),
        reason: reason.into(),
    }
}

/// Absent and null read alike for optional fields.
fn field<'j, 'a>(obj: &'j Json<'a>, name: &str) -> Option<&'j Json<'a>> {
    obj.get(name).filter(|v| !matches!(v, Json::Null))
}

fn as_object<'j, 'a>(v: &'j Json<'a>, path: &str) -> Result<&'j Json<'a>, WiringError> {
    match v {
        Json::Object(_) => Ok(v),
        other => Err(err(
            path,
            format!("must be an object, found {}", other.kind()),
        )),
    }
}

fn list<'j, 'a>(obj: &'j Json<'a>, name: &str, path: &str) -> Result<&'j [Json<'a>], WiringError> {
    match obj.get(name) {
        None => Ok(&[]),
        Some(Json::List(items)) => Ok(items),
        Some(other) => Err(err(
            format!("{path}.{name}"),
            format!("must be a list, found {}", other.kind()),
        )),
    }
}

fn optional_str(obj: &Json<'_>, name: &str, path: &str) -> Result<Option<String>, WiringError> {
    field(obj, name)
        .map(|v| {
            coerce_str(v).ok_or_else(|| {
                err(
                    format!("{path}.{name}"),
                    format!("must be a string, found {}", v.kind()),
                )
            })
        })
        .transpose()
}

fn io_name(obj: &Json<'_>, name: &str, path: &str) -> Result<String, WiringError> {
    let v = obj
        .get(name)
        .ok_or_else(|| err(format!("{path}.{name}"), "is required"))?;
    let s = coerce_str(v).ok_or_else(|| {
        err(
            format!("{path}.{name}"),
            format!("must be a string, found {}", v.kind()),
        )
    })?;
    // A lone surrogate's stand-in is no identifier character, as the surrogate is none in Python.
    if !is_python_identifier(&s) {
        return Err(err(
            format!("{path}.{name}"),
            format!("`{s}` is not a valid Python identifier"),
        ));
    }
    Ok(s)
}

/// `StrictInt | StrictStr`: a string as it is, an integer only if registered; a float (`1.0`,
/// `NaN`) or a bool is neither.
fn adapter_id(obj: &Json<'_>, path: &str, role: &str) -> Result<AdapterId, WiringError> {
    let p = format!("{path}.adapter_id");
    match obj.get("adapter_id") {
        None => Err(err(p, "is required")),
        Some(Json::Str(s)) => Ok(AdapterId::Name(s.as_held().to_owned())),
        Some(Json::Number(text)) => match pyjson::number_value(text) {
            Number::Int(digits) if digits.parse() == Ok(DIRECT_PROVISIONING) => {
                Ok(AdapterId::Int(DIRECT_PROVISIONING))
            }
            Number::Int(digits) => Err(err(
                p,
                format!(
                    "adapter {digits} is not known / not registered as {role} adapter (only 1, direct provisioning, is)"
                ),
            )),
            Number::Float(_) => Err(err(
                p,
                format!("must be an integer or a string, found {text}"),
            )),
        },
        Some(other) => Err(err(
            p,
            format!("must be an integer or a string, found {}", shown(other)),
        )),
    }
}

fn ref_id_type(obj: &Json<'_>, path: &str) -> Result<Option<RefIdType>, WiringError> {
    match field(obj, "ref_id_type") {
        None => Ok(None),
        Some(Json::Str(s)) => match s.as_held() {
            "SOURCE" => Ok(Some(RefIdType::Source)),
            "SINK" => Ok(Some(RefIdType::Sink)),
            "THINGNODE" => Ok(Some(RefIdType::Thingnode)),
            other => Err(err(
                format!("{path}.ref_id_type"),
                format!("`{other}` is not one of SOURCE, SINK, THINGNODE"),
            )),
        },
        Some(other) => Err(err(
            format!("{path}.ref_id_type"),
            format!("must be a string, found {}", other.kind()),
        )),
    }
}

fn external_type(
    obj: &Json<'_>,
    path: &str,
    ref_id_type: Option<RefIdType>,
    ref_key: &Option<String>,
) -> Result<Option<ExternalType>, WiringError> {
    let Some(v) = field(obj, "type") else {
        return Ok(None);
    };
    let p = format!("{path}.type");
    let s = match v {
        Json::Str(s) => s.as_held(),
        other => return Err(err(&p, format!("must be a string, found {}", other.kind()))),
    };
    let t = ExternalType::parse(s)
        .ok_or_else(|| err(&p, format!("`{s}` is not a known external type")))?;
    if t.is_metadata() && (ref_id_type.is_none() || ref_key.is_none()) {
        return Err(err(
            p,
            "a metadata type requires the fields \"ref_id_type\" and \"ref_key\"",
        ));
    }
    Ok(Some(t))
}

/// hetida's `FilterKey`: `re.match(r"^[a-zA-Z]\w+$", key)` with `re.ASCII`, where `$` also
/// matches before a newline that ends the key, so `"ab\n"` is a key.
fn is_filter_key(key: &str) -> bool {
    let body = key.strip_suffix('\n').unwrap_or(key);
    let mut bytes = body.bytes();
    body.len() >= 2
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn filters(obj: &Json<'_>, path: &str) -> Result<Filters, WiringError> {
    let p = format!("{path}.filters");
    let members = match obj.get("filters") {
        None => return Ok(Filters::default()),
        Some(Json::Object(m)) => m,
        Some(other) => {
            return Err(err(p, format!("must be an object, found {}", other.kind())));
        }
    };
    // As a Python dict holds them: a repeated key keeps its first place and its last value.
    let mut place: HashMap<&PyStr, usize> = HashMap::with_capacity(members.len());
    let mut unique: Vec<(&PyStr, &Json<'_>)> = Vec::with_capacity(members.len());
    for (key, value) in members {
        match place.get(key).and_then(|&i| unique.get_mut(i)) {
            Some(entry) => entry.1 = value,
            None => {
                place.insert(key, unique.len());
                unique.push((key, value));
            }
        }
    }
    let mut out = Vec::with_capacity(unique.len());
    for (key, value) in unique {
        let key = key.as_held();
        if !is_filter_key(key) {
            return Err(err(
                &p,
                format!(
                    "key `{key}` must be a letter followed by at least one letter, digit or underscore"
                ),
            ));
        }
        if matches!(key, "from" | "to" | "id") {
            return Err(err(
                &p,
                format!("`{key}` is a reserved filter key (from, to, id)"),
            ));
        }
        let value = match value {
            Json::Null => String::new(),
            v => coerce_str(v).ok_or_else(|| {
                err(
                    format!("{p}.{key}"),
                    format!("must be a string, found {}", v.kind()),
                )
            })?,
        };
        out.push((key.to_owned(), value));
    }
    Ok(Filters(out))
}

impl InputWiring {
    fn from_json(v: &Json<'_>, path: &str) -> Result<InputWiring, WiringError> {
        let obj = as_object(v, path)?;
        let workflow_input_name = io_name(obj, "workflow_input_name", path)?;
        let adapter_id = adapter_id(obj, path, "source")?;
        let ref_id = optional_str(obj, "ref_id", path)?;
        let ref_id_type = ref_id_type(obj, path)?;
        let ref_key = optional_str(obj, "ref_key", path)?;
        let external_type = external_type(obj, path, ref_id_type, &ref_key)?;
        let use_default_value = match obj.get("use_default_value") {
            None => false,
            Some(v) => parse_bool(v).ok_or_else(|| {
                err(
                    format!("{path}.use_default_value"),
                    format!("`{}` is not a boolean", shown(v)),
                )
            })?,
        };
        Ok(InputWiring {
            workflow_input_name,
            adapter_id,
            ref_id,
            ref_id_type,
            ref_key,
            external_type,
            use_default_value,
            filters: filters(obj, path)?,
        })
    }
}

impl OutputWiring {
    fn from_json(v: &Json<'_>, path: &str) -> Result<OutputWiring, WiringError> {
        let obj = as_object(v, path)?;
        let workflow_output_name = io_name(obj, "workflow_output_name", path)?;
        let adapter_id = adapter_id(obj, path, "sink")?;
        let ref_id = optional_str(obj, "ref_id", path)?;
        let ref_id_type = ref_id_type(obj, path)?;
        let ref_key = optional_str(obj, "ref_key", path)?;
        let external_type = external_type(obj, path, ref_id_type, &ref_key)?;
        Ok(OutputWiring {
            workflow_output_name,
            adapter_id,
            ref_id,
            ref_id_type,
            ref_key,
            external_type,
            filters: filters(obj, path)?,
        })
    }
}

impl GridstackItemPositioning {
    fn from_json(v: &Json<'_>, path: &str) -> Result<Self, WiringError> {
        let obj = as_object(v, path)?;
        let coord = |name: &str| -> Result<Option<u64>, WiringError> {
            let Some(v) = field(obj, name) else {
                return Ok(None);
            };
            let int = match v {
                Json::Number(text) => match pyjson::number_value(text) {
                    Number::Int(digits) => digits.parse::<u64>().ok(),
                    Number::Float(_) => None,
                },
                _ => None,
            };
            int.map(Some).ok_or_else(|| {
                err(
                    format!("{path}.{name}"),
                    format!("must be an integer >= 0, found {}", shown(v)),
                )
            })
        };
        let id = match obj.get("id") {
            Some(v) => coerce_str(v).ok_or_else(|| {
                err(
                    format!("{path}.id"),
                    format!("must be a string, found {}", v.kind()),
                )
            })?,
            None => return Err(err(format!("{path}.id"), "is required")),
        };
        Ok(GridstackItemPositioning {
            x: coord("x")?,
            y: coord("y")?,
            w: coord("w")?,
            h: coord("h")?,
            id,
        })
    }
}

impl WorkflowWiring {
    /// Parses and validates a wiring as the reference does, from what `json.loads` read; `path`
    /// names it in errors. Strings stay as [`PyStr`] holds them, so a lone surrogate in a filter
    /// value reaches the runtime request as `\udXXX`, as hetida sends it.
    pub fn from_json(v: &Json<'_>, path: &str) -> Result<WorkflowWiring, WiringError> {
        let obj = as_object(v, path)?;
        let input_wirings = list(obj, "input_wirings", path)?
            .iter()
            .enumerate()
            .map(|(i, w)| InputWiring::from_json(w, &format!("{path}.input_wirings[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let output_wirings = list(obj, "output_wirings", path)?
            .iter()
            .enumerate()
            .map(|(i, w)| OutputWiring::from_json(w, &format!("{path}.output_wirings[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let dashboard_positionings = list(obj, "dashboard_positionings", path)?
            .iter()
            .enumerate()
            .map(|(i, w)| {
                GridstackItemPositioning::from_json(
                    w,
                    &format!("{path}.dashboard_positionings[{i}]"),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(dup) =
            first_duplicate(input_wirings.iter().map(|w| w.workflow_input_name.as_str()))
        {
            return Err(err(
                format!("{path}.input_wirings"),
                format!("duplicate workflow input name `{dup}`: each input may be wired once"),
            ));
        }
        if let Some(dup) = first_duplicate(
            output_wirings
                .iter()
                .map(|w| w.workflow_output_name.as_str()),
        ) {
            return Err(err(
                format!("{path}.output_wirings"),
                format!("duplicate workflow output name `{dup}`: each output may be wired once"),
            ));
        }
        Ok(WorkflowWiring {
            input_wirings,
            output_wirings,
            dashboard_positionings,
        })
    }

    /// Parses and validates a wiring that serde read (a revision's test wiring), by way of its
    /// JSON text, so that it is read by the same rules as a request's.
    pub fn from_value(v: &Value, path: &str) -> Result<WorkflowWiring, WiringError> {
        let text = serde_json::to_string(v).map_err(|e| err(path, e.to_string()))?;
        let tree = pyjson::parse(text.as_bytes()).map_err(|e| err(path, e.to_string()))?;
        WorkflowWiring::from_json(&tree, path)
    }
}

fn first_duplicate<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = std::collections::HashSet::new();
    names.into_iter().find(|n| !seen.insert(*n))
}

impl<'de> Deserialize<'de> for WorkflowWiring {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        WorkflowWiring::from_value(&v, "wiring").map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<WorkflowWiring, WiringError> {
        WorkflowWiring::from_value(&v, "wiring")
    }

    #[test]
    fn defaults_and_coercions_follow_the_reference() {
        let w = parse(json!({"input_wirings": [{
            "workflow_input_name": "x", "adapter_id": "direct_provisioning",
            "filters": {"value": 10.5, "other": null, "flag": true, "num": 10}
        }]}))
        .unwrap();
        let iw = &w.input_wirings[0];
        assert_eq!(
            iw.filters.0,
            vec![
                ("value".into(), "10.5".into()),
                ("other".into(), "".into()),
                ("flag".into(), "True".into()),
                ("num".into(), "10".into()),
            ]
        );
        assert!(!iw.use_default_value);
        assert!(w.output_wirings.is_empty() && w.dashboard_positionings.is_empty());
        let bytes = pyjson::to_vec(&w);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"input_wirings": [{"workflow_input_name": "x", "adapter_id": "direct_provisioning", "ref_id": null, "ref_id_type": null, "ref_key": null, "type": null, "use_default_value": false, "filters": {"value": "10.5", "other": "", "flag": "True", "num": "10"}}], "output_wirings": [], "dashboard_positionings": []}"#
        );
    }

    #[test]
    fn each_rule_rejects_with_the_field_named() {
        let cases = [
            (
                json!({"input_wirings": [{"workflow_input_name": "x", "adapter_id": 2}]}),
                "adapter_id",
            ),
            (
                json!({"input_wirings": [{"workflow_input_name": "x", "adapter_id": true}]}),
                "adapter_id",
            ),
            (
                json!({"input_wirings": [{"workflow_input_name": "x", "adapter_id": 1.0}]}),
                "adapter_id",
            ),
            (
                json!({"input_wirings": [{"workflow_input_name": "1x", "adapter_id": 1}]}),
                "workflow_input_name",
            ),
            (
                json!({"input_wirings": [{"workflow_input_name": "class", "adapter_id": 1}]}),
                "workflow_input_name",
            ),
            (
                json!({"input_wirings": [{"adapter_id": 1}]}),
                "workflow_input_name",
            ),
            (
                json!({"input_wirings": [{"workflow_input_name": "x", "adapter_id": 1, "filters": {"from": "a"}}]}),
                "reserved",
            ),
            (
                json!({"input_wirings": [{"workflow_input_name": "x", "adapter_id": 1, "filters": {"v": "a"}}]}),
                "key `v`",
            ),
            (
                json!({"input_wirings": [{"workflow_input_name": "x", "adapter_id": 1, "filters": {"value": {}}}]}),
                "filters.value",
            ),
            (
                json!({"input_wirings": [{"workflow_input_name": "x", "adapter_id": 1, "type": "metadata(int)"}]}),
                "ref_id_type",
            ),
            (
                json!({"input_wirings": [{"workflow_input_name": "x", "adapter_id": 1, "type": "nonsense"}]}),
                "type",
            ),
            (
                json!({"input_wirings": [{"workflow_input_name": "x", "adapter_id": 1, "ref_id_type": "X"}]}),
                "ref_id_type",
            ),
            (
                json!({"input_wirings": [{"workflow_input_name": "x", "adapter_id": 1, "use_default_value": "maybe"}]}),
                "use_default_value",
            ),
            (
                json!({"input_wirings": [
                {"workflow_input_name": "x", "adapter_id": 1},
                {"workflow_input_name": "x", "adapter_id": 1}]}),
                "duplicate",
            ),
            (
                json!({"output_wirings": [
                {"workflow_output_name": "y", "adapter_id": 1},
                {"workflow_output_name": "y", "adapter_id": "a"}]}),
                "duplicate",
            ),
            (
                json!({"output_wirings": [{"workflow_output_name": "y", "adapter_id": 3}]}),
                "sink",
            ),
            (
                json!({"dashboard_positionings": [{"x": -1, "id": "a"}]}),
                "x",
            ),
            (json!({"dashboard_positionings": [{"x": 1}]}), "id"),
            (json!({"input_wirings": {}}), "must be a list"),
            (json!([]), "must be an object"),
        ];
        for (v, needle) in cases {
            let e = parse(v.clone()).unwrap_err().to_string();
            assert!(e.contains(needle), "{v} -> {e} (expected {needle})");
        }
    }

    #[test]
    fn external_type_aliases_are_canonicalised() {
        let w = parse(json!({"output_wirings": [{
            "workflow_output_name": "y", "adapter_id": "sink-adapter", "type": "series(object)",
            "ref_id": 7
        }]}))
        .unwrap();
        assert_eq!(
            w.output_wirings[0].external_type.unwrap().as_str(),
            "series(any)"
        );
        assert_eq!(w.output_wirings[0].ref_id.as_deref(), Some("7"));
    }
}

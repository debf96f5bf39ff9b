//! hetida's component files: a component revision written as a Python module.
//!
//! hetida designer ships its base components as `.py` files and imports them with
//! `transformation_revision_from_python_code` (`hetdesrun/trafoutils/io/load.py`). This module
//! reads them the same way, without running Python:
//!
//! * `COMPONENT_INFO`, the first module-level single-target assignment to that name, read with
//!   `ast.literal_eval` ([`literal`]), merged over hetida's defaults;
//! * the documentation from the module docstring ([`docstring`]);
//! * the ids of inputs and outputs derived from their names with CPython's seeded RNG
//!   ([`seeded_uuid`]), which is what workflows point at;
//! * default values of OPTIONAL inputs written as `json.dumps` writes them;
//! * `TEST_WIRING_FROM_PY_FILE_IMPORT`, or an empty test wiring when it is missing, and (with a
//!   warning) when it is no valid wiring, as hetida falls back;
//! * the content: the file's text after universal-newline translation, which is what
//!   Python's text-mode `open` hands hetida.
//!
//! The result is deserialised with the same serde model as a `.json` export, so both kinds of
//! file are validated alike.

mod docstring;
mod literal;
mod seeded_uuid;
mod tokens;

use std::borrow::Cow;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::protocol::revision::{DataType, State, TransformationRevision};
use crate::protocol::wiring::WorkflowWiring;
use literal::{Literal, LiteralError, PyValue};
use tokens::{LogicalLine, Pos, Token};

pub use seeded_uuid::uuid_from_seed;

/// Why a component file cannot be read, with the 1-based line (and column) it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComponentFileError {
    /// Python could not parse the file; hetida refuses it ("Could not parse component code").
    #[error("line {line}, column {column}: Python cannot parse this: {reason}")]
    Syntax {
        /// 1-based, as Python counts.
        line: usize,
        /// 1-based, in characters.
        column: usize,
        /// Python's message, as CPython 3.11 words it.
        reason: String,
    },
    /// hetida's `ast.literal_eval` would raise on the assigned value.
    #[error("line {line}, column {column}: {name} cannot be read with ast.literal_eval: {reason}")]
    NotALiteral {
        /// The name assigned to (`COMPONENT_INFO`; a bad test wiring only warns).
        name: &'static str,
        /// 1-based, as Python counts.
        line: usize,
        /// 1-based, in characters.
        column: usize,
        /// What in the value is no literal, in `literal_eval`'s terms.
        reason: String,
    },
    /// hetida would make an "Unnamed Component" with a random id and random group id, which no
    /// request could ever name: almost certainly a stray helper module, not a component. It is
    /// refused so that it is noticed instead of being served under a name nobody can call.
    #[error(
        "not a hetida component file: it has no module-level `COMPONENT_INFO = {{...}}` assignment"
    )]
    NotAComponent,
    /// Valid Python that hetida would read but that we cannot hold (a lone surrogate or a
    /// `\N{...}` escape where its value is needed): refused rather than read differently.
    #[error("line {line}, column {column}: not supported: {reason}")]
    Unsupported {
        /// 1-based, as Python counts.
        line: usize,
        /// 1-based, in characters.
        column: usize,
        /// What we cannot hold, and what to write instead.
        reason: String,
    },
    /// `COMPONENT_INFO` reads, but hetida (or pydantic) would refuse what it says.
    #[error("line {line}, column {column}: {key}: {reason}")]
    Info {
        /// Where in `COMPONENT_INFO`, e.g. `COMPONENT_INFO["inputs"]["x"]["data_type"]`.
        key: String,
        /// 1-based, as Python counts.
        line: usize,
        /// 1-based, in characters.
        column: usize,
        /// What hetida or pydantic would object to.
        reason: String,
    },
}

impl ComponentFileError {
    /// The line the error is about, if it is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ComponentFileError::Syntax { line, .. }
            | ComponentFileError::NotALiteral { line, .. }
            | ComponentFileError::Unsupported { line, .. }
            | ComponentFileError::Info { line, .. } => Some(*line),
            ComponentFileError::NotAComponent => None,
        }
    }
}

const COMPONENT_INFO: &str = "COMPONENT_INFO";
const TEST_WIRING: &str = "TEST_WIRING_FROM_PY_FILE_IMPORT";

/// Keyword arguments hetida passes to `TransformationRevision` itself: `COMPONENT_INFO`
/// repeating one makes Python raise "got multiple values for keyword argument".
const SET_BY_HETIDA: [&str; 5] = [
    "type",
    "documentation",
    "content",
    "io_interface",
    "test_wiring",
];

/// Reads a component file as hetida's `transformation_revision_from_python_code` does.
/// `origin` only names the file in warnings; `now` is the release time hetida would stamp on
/// a component whose `COMPONENT_INFO` has none.
pub fn read_component(
    source: &str,
    origin: &Path,
    now: DateTime<Utc>,
) -> Result<TransformationRevision, ComponentFileError> {
    let code = universal_newlines(source);
    let lines = tokens::logical_lines(&code).map_err(|e| ComponentFileError::Syntax {
        line: e.at.line,
        column: e.at.column,
        reason: e.reason,
    })?;
    let docstring = docstring::module_docstring(&lines).map_err(|(at, reason)| {
        ComponentFileError::Unsupported {
            line: at.line,
            column: at.column,
            reason,
        }
    })?;
    let (info_at, info) = component_info(&lines)?;
    let info = Info::new(&info)?;

    let mut revision = serde_json::Map::new();
    insert_identity(&mut revision, &info, origin, info_at)?;
    insert_timestamps(&mut revision, &info, now)?;
    revision.insert("type".into(), Value::from("COMPONENT"));
    revision.insert(
        "documentation".into(),
        Value::from(docstring::documentation(docstring.as_deref())),
    );
    revision.insert("content".into(), Value::from(code.as_ref()));
    revision.insert(
        "io_interface".into(),
        json!({"inputs": info.inputs()?, "outputs": info.outputs()?}),
    );
    revision.insert("test_wiring".into(), json!({}));
    let mut revision: TransformationRevision = serde_json::from_value(Value::Object(revision))
        .map_err(|e| ComponentFileError::Info {
            key: COMPONENT_INFO.into(),
            line: info_at.line,
            column: info_at.column,
            reason: e.to_string(),
        })?;
    revision.test_wiring = test_wiring(&lines, origin);
    Ok(revision)
}

/// The value of the module's `COMPONENT_INFO` assignment as `ast.literal_eval` reads it, and
/// where the assignment is (errors about what it says point there).
fn component_info(lines: &[LogicalLine]) -> Result<(Pos, Literal), ComponentFileError> {
    let Some(found) = module_assignment(lines, COMPONENT_INFO) else {
        return Err(ComponentFileError::NotAComponent);
    };
    let info = evaluate(&found).map_err(|e| {
        if e.unsupported {
            ComponentFileError::Unsupported {
                line: e.at.line,
                column: e.at.column,
                reason: e.reason,
            }
        } else {
            ComponentFileError::NotALiteral {
                name: COMPONENT_INFO,
                line: e.at.line,
                column: e.at.column,
                reason: e.reason,
            }
        }
    })?;
    Ok((found.target.at, info))
}

/// What names the revision (ids, name, category, tag, state): from `COMPONENT_INFO`, else
/// hetida's defaults; a missing id is random, as hetida makes it, with a warning since no
/// request can name it across restarts.
fn insert_identity(
    revision: &mut serde_json::Map<String, Value>,
    info: &Info<'_>,
    origin: &Path,
    info_at: Pos,
) -> Result<(), ComponentFileError> {
    for (key, default) in [
        ("id", None),
        ("revision_group_id", None),
        ("name", Some("Unnamed Component")),
        ("description", Some("No description provided")),
        ("category", Some("Other")),
        ("version_tag", Some("1.0.0")),
        ("state", Some("RELEASED")),
    ] {
        let value = match (info.get(key), default) {
            (Some(lit), _) => info.json(key, lit)?,
            (None, Some(default)) => Value::from(default),
            (None, None) => {
                tracing::warn!(
                    file = %origin.display(),
                    line = info_at.line,
                    "COMPONENT_INFO has no \"{key}\": the component gets a random one on every start, as in hetida"
                );
                Value::from(Uuid::new_v4().to_string())
            }
        };
        revision.insert(key.to_owned(), value);
    }
    info.check::<Uuid>("id")?;
    info.check::<Uuid>("revision_group_id")?;
    for key in ["name", "description", "category", "version_tag"] {
        info.check::<String>(key)?;
    }
    info.check::<State>("state")
}

/// The release and disable timestamps: as `COMPONENT_INFO` gives them, else `now` where
/// hetida stamps it (released unless DRAFT, disabled if DISABLED).
fn insert_timestamps(
    revision: &mut serde_json::Map<String, Value>,
    info: &Info<'_>,
    now: DateTime<Utc>,
) -> Result<(), ComponentFileError> {
    // hetida compares the state as written (before pydantic validates it) to decide which
    // timestamps to stamp with "now".
    let state_is = |s: &str| match info.get("state") {
        Some(lit) => matches!(&lit.value, PyValue::Str(v) if v == s),
        None => s == "RELEASED",
    };
    let now_text = Value::from(now.to_rfc3339_opts(SecondsFormat::Micros, false));
    for (key, stamp_now) in [
        ("released_timestamp", !state_is("DRAFT")),
        ("disabled_timestamp", state_is("DISABLED")),
    ] {
        let value = match info.get(key) {
            Some(lit) => info.json(key, lit)?,
            None if stamp_now => now_text.clone(),
            None => Value::Null,
        };
        info.check::<Option<DateTime<Utc>>>(key)?;
        revision.insert(key.to_owned(), value);
    }
    Ok(())
}

/// Python's text-mode `open` turns `\r\n` and a lone `\r` into `\n`.
fn universal_newlines(source: &str) -> Cow<'_, str> {
    if source.contains('\r') {
        Cow::Owned(source.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(source)
    }
}

/// An assignment `NAME = value` found at module level.
struct Assignment<'a> {
    /// The assigned name; messages and warnings about the assignment give its line.
    target: &'a Token,
    /// The right-hand side, to the end of the simple statement.
    value: &'a [Token],
    /// Just after the `=`, for "expected an expression".
    end: Pos,
}

/// Statements that open a block: anything on their line belongs to the block, not the module.
const COMPOUND_KEYWORDS: [&str; 12] = [
    "if", "elif", "else", "while", "for", "try", "except", "finally", "with", "def", "class",
    "async",
];

/// hetida's `get_global_from_code`: the first `ast.Assign` in the module body with a single
/// target that is the plain name `name`. Annotated (`NAME: T = v`), augmented (`NAME += v`)
/// and chained (`A = NAME = v`) assignments do not count; `(NAME) = v` does, as in Python's AST.
fn module_assignment<'a>(lines: &'a [LogicalLine], name: &str) -> Option<Assignment<'a>> {
    for line in lines.iter().filter(|l| l.indent == 0) {
        let first = &line.tokens[0];
        if first.is_op("@") || COMPOUND_KEYWORDS.iter().any(|k| first.is_name(k)) {
            continue;
        }
        for statement in split_statements(&line.tokens) {
            let Some(equals) = single_assignment(statement) else {
                continue;
            };
            let mut target = &statement[..equals];
            while target.len() >= 2 && target[0].is_op("(") && target[target.len() - 1].is_op(")") {
                target = &target[1..target.len() - 1];
            }
            if let [t] = target
                && t.is_name(name)
            {
                let eq = &statement[equals];
                return Some(Assignment {
                    target: t,
                    value: &statement[equals + 1..],
                    end: Pos {
                        line: eq.at.line,
                        column: eq.at.column + 1,
                    },
                });
            }
        }
    }
    None
}

/// The simple statements of a logical line (`a = 1; b = 2`).
fn split_statements(tokens: &[Token]) -> impl Iterator<Item = &[Token]> {
    tokens
        .split(|t| t.is_op(";"))
        .filter(|statement| !statement.is_empty())
}

/// The index of the `=` of a single-target assignment statement, if it is one.
fn single_assignment(statement: &[Token]) -> Option<usize> {
    let mut depth = 0usize;
    let mut equals = None;
    for (i, t) in statement.iter().enumerate() {
        if t.is_op("(") || t.is_op("[") || t.is_op("{") {
            depth += 1;
        } else if t.is_op(")") || t.is_op("]") || t.is_op("}") {
            depth = depth.saturating_sub(1);
        } else if depth == 0 && t.is_name("lambda") {
            // A lambda's default values (`lambda x=1: x`) are not assignments.
            break;
        } else if depth == 0 && t.is_op("=") {
            if equals.is_some() {
                return None;
            }
            equals = Some(i);
        }
    }
    equals
}

fn evaluate(found: &Assignment<'_>) -> Result<Literal, LiteralError> {
    literal::literal_eval(found.value, found.end)
}

/// hetida falls back to an empty test wiring when `TEST_WIRING_FROM_PY_FILE_IMPORT` is missing
/// or is no valid wiring; so do we, and say so. (A value that is not a dict at all makes hetida
/// raise instead; the test wiring only matters for requests without a wiring, so it is not
/// worth refusing the component for.)
fn test_wiring(lines: &[LogicalLine], origin: &Path) -> WorkflowWiring {
    let Some(found) = module_assignment(lines, TEST_WIRING) else {
        return WorkflowWiring::default();
    };
    let parsed = evaluate(&found)
        .and_then(|lit| literal::to_json(&lit))
        .map_err(|e| format!("line {}: {}", e.at.line, e.reason))
        .and_then(|v| {
            WorkflowWiring::from_value(&v, TEST_WIRING)
                .map_err(|e| format!("line {}: {e}", found.target.at.line))
        });
    match parsed {
        Ok(wiring) => wiring,
        Err(reason) => {
            tracing::warn!(
                file = %origin.display(),
                line = found.target.at.line,
                "{TEST_WIRING} is not a valid workflow wiring ({reason}); using an empty test wiring, as hetida does"
            );
            WorkflowWiring::default()
        }
    }
}

/// `COMPONENT_INFO` as hetida merges it over its defaults (`dict.update`): keys with string
/// names, in order, each once.
struct Info<'a> {
    /// Key and value, in dict order; the keys are all `str` and unique (by Python's `==`), a
    /// repeated key's last value having won.
    entries: Vec<(&'a Literal, &'a Literal)>,
}

impl<'a> Info<'a> {
    fn new(info: &'a Literal) -> Result<Info<'a>, ComponentFileError> {
        let mut entries: Vec<(&'a Literal, &'a Literal)> = Vec::new();
        match &info.value {
            PyValue::Dict(items) => entries.extend(items.iter().map(|(k, v)| (k, v))),
            // `dict.update` also takes a sequence of key-value pairs; later pairs win.
            PyValue::List(items) | PyValue::Tuple(items) => {
                for item in items {
                    let (PyValue::Tuple(pair) | PyValue::List(pair)) = &item.value else {
                        return Err(info_error(
                            COMPONENT_INFO.into(),
                            item.at,
                            format!(
                                "as a sequence it must hold (key, value) pairs, found {}",
                                item.value.type_name()
                            ),
                        ));
                    };
                    let [key, value] = pair.as_slice() else {
                        return Err(info_error(
                            COMPONENT_INFO.into(),
                            item.at,
                            format!("a (key, value) pair has 2 items, not {}", pair.len()),
                        ));
                    };
                    if let Some(kind) = key.value.unhashable() {
                        return Err(info_error(
                            COMPONENT_INFO.into(),
                            key.at,
                            format!("unhashable type: '{kind}'"),
                        ));
                    }
                    match entries.iter_mut().find(|(k, _)| k.value.py_eq(&key.value)) {
                        Some(entry) => entry.1 = value,
                        None => entries.push((key, value)),
                    }
                }
            }
            other => {
                return Err(info_error(
                    COMPONENT_INFO.into(),
                    info.at,
                    format!("must be a dict, found {}", other.type_name()),
                ));
            }
        }
        // hetida passes the merged dict as keyword arguments.
        for (key, _) in &entries {
            if !matches!(key.value, PyValue::Str(_)) {
                return Err(info_error(
                    COMPONENT_INFO.into(),
                    key.at,
                    format!(
                        "keys must be strings (hetida passes them as keyword arguments), found {}",
                        key.value.type_name()
                    ),
                ));
            }
        }
        let info = Info { entries };
        for key in SET_BY_HETIDA {
            if let Some((k, _)) = info.entry(key) {
                return Err(info_error(
                    COMPONENT_INFO.into(),
                    k.at,
                    format!("\"{key}\" is set by hetida itself and may not be given here"),
                ));
            }
        }
        Ok(info)
    }

    fn entry(&self, key: &str) -> Option<(&'a Literal, &'a Literal)> {
        self.entries
            .iter()
            .find(|(k, _)| matches!(&k.value, PyValue::Str(s) if s == key))
            .copied()
    }

    fn get(&self, key: &str) -> Option<&'a Literal> {
        self.entry(key).map(|(_, v)| v)
    }

    fn json(&self, key: &str, lit: &Literal) -> Result<Value, ComponentFileError> {
        literal::to_json(lit).map_err(|e| info_error(path(&[key]), e.at, e.reason))
    }

    /// The entry `key`, if given, deserialises as the revision's field does.
    fn check<T: DeserializeOwned>(&self, key: &str) -> Result<(), ComponentFileError> {
        let Some(lit) = self.get(key) else {
            return Ok(());
        };
        let value = self.json(key, lit)?;
        serde_json::from_value::<T>(value)
            .map(drop)
            .map_err(|e| info_error(path(&[key]), lit.at, e.to_string()))
    }

    /// `inputs` or `outputs`: a dict from names to a data type or a dict holding one.
    fn connectors(&self, key: &str) -> Result<Vec<(&'a str, &'a Literal)>, ComponentFileError> {
        let Some(lit) = self.get(key) else {
            return Ok(Vec::new());
        };
        let PyValue::Dict(entries) = &lit.value else {
            return Err(info_error(
                path(&[key]),
                lit.at,
                format!("must be a dict, found {}", lit.value.type_name()),
            ));
        };
        entries
            .iter()
            .map(|(name, spec)| match &name.value {
                PyValue::Str(n) => Ok((n.as_str(), spec)),
                other => Err(info_error(
                    path(&[key]),
                    name.at,
                    format!("names must be strings, found {}", other.type_name()),
                )),
            })
            .collect()
    }

    fn inputs(&self) -> Result<Vec<Value>, ComponentFileError> {
        self.connectors("inputs")?
            .into_iter()
            .map(|(name, spec)| {
                let value = default_value(name, spec)?;
                let data_type = data_type("inputs", name, spec)?;
                // OPTIONAL whenever the key is there, even with None (then without a value).
                let optional = matches!(spec.value, PyValue::Dict(_))
                    && spec.value.get("default_value").is_some();
                Ok(json!({
                    "id": uuid_from_seed(&format!("component_input_{name}")),
                    "name": name,
                    "data_type": data_type.as_str(),
                    "type": if optional { "OPTIONAL" } else { "REQUIRED" },
                    "value": value,
                }))
            })
            .collect()
    }

    fn outputs(&self) -> Result<Vec<Value>, ComponentFileError> {
        self.connectors("outputs")?
            .into_iter()
            .map(|(name, spec)| {
                Ok(json!({
                    "id": uuid_from_seed(&format!("component_output_{name}")),
                    "name": name,
                    "data_type": data_type("outputs", name, spec)?.as_str(),
                }))
            })
            .collect()
    }
}

/// The data type of an input or output: `spec["data_type"]` of a dict, else `spec` itself
/// (plain strings are the older form).
fn data_type(kind: &str, name: &str, spec: &Literal) -> Result<DataType, ComponentFileError> {
    let (lit, key) = match spec.value.get("data_type") {
        Some(dt) => (dt, path(&[kind, name, "data_type"])),
        None => (spec, path(&[kind, name])),
    };
    let found = match &lit.value {
        PyValue::Str(s) => s,
        PyValue::Dict(_) => {
            return Err(info_error(key, lit.at, "has no \"data_type\""));
        }
        other => {
            return Err(info_error(
                key,
                lit.at,
                format!("a data type must be a string, found {}", other.type_name()),
            ));
        }
    };
    serde_json::from_value(Value::from(found.as_str())).map_err(|_| {
        info_error(
            key,
            lit.at,
            format!(
                "`{found}` is not a hetida data type (INT, FLOAT, STRING, DATAFRAME, SERIES, MULTITSFRAME, BOOLEAN, ANY, PLOTLYJSON)"
            ),
        )
    })
}

/// hetida's `get_json_default_value_from_python_object`: no value for an absent or None
/// default, a string as it is for STRING and ANY inputs, else the `json.dumps` text.
fn default_value(name: &str, spec: &Literal) -> Result<Option<String>, ComponentFileError> {
    let Some(default) = spec.value.get("default_value") else {
        return Ok(None);
    };
    if default.value == PyValue::None {
        return Ok(None);
    }
    let Some(data_type) = spec.value.get("data_type") else {
        return Err(info_error(
            path(&["inputs", name]),
            spec.at,
            "For optional inputs a data type must be provided in the COMPONENT_INFO!",
        ));
    };
    if let (PyValue::Str(text), PyValue::Str(dt)) = (&default.value, &data_type.value)
        && (dt == "STRING" || dt == "ANY")
    {
        return Ok(Some(text.clone()));
    }
    literal::json_dumps(default)
        .map(Some)
        .map_err(|e| info_error(path(&["inputs", name, "default_value"]), e.at, e.reason))
}

/// `COMPONENT_INFO["inputs"]["x"]`, for messages.
fn path(keys: &[&str]) -> String {
    let mut p = COMPONENT_INFO.to_owned();
    for k in keys {
        p.push_str(&format!("[{k:?}]"));
    }
    p
}

fn info_error(key: String, at: Pos, reason: impl Into<String>) -> ComponentFileError {
    ComponentFileError::Info {
        key,
        line: at.line,
        column: at.column,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::revision::{Content, InputType};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 8, 30, 0).unwrap()
    }

    fn read(source: &str) -> Result<TransformationRevision, ComponentFileError> {
        read_component(source, Path::new("test.py"), now())
    }

    const IDS: &str = r#""id": "c0000000-0000-4000-8000-000000000001", "revision_group_id": "c0000000-0000-4000-8000-000000000002""#;

    #[test]
    fn the_first_module_level_single_target_assignment_counts() {
        let src = format!(
            "COMPONENT_INFO: dict = {{'name': 'annotated'}}\n\
             A = COMPONENT_INFO = {{'name': 'chained'}}\n\
             COMPONENT_INFO += {{'name': 'augmented'}}\n\
             if True: x = 1; COMPONENT_INFO = {{'name': 'in a block'}}\n\
             class C:\n    COMPONENT_INFO = {{'name': 'in a class'}}\n\
             f = lambda x=1: x; COMPONENT_INFO = {{'name': 'after a semicolon', {IDS}}}\n\
             COMPONENT_INFO = {{'name': 'second'}}\n"
        );
        assert_eq!(read(&src).unwrap().name, "after a semicolon");
        assert_eq!(
            read("COMPONENT_INFO = lambda x=1: x\n").unwrap_err(),
            ComponentFileError::NotALiteral {
                name: COMPONENT_INFO,
                line: 1,
                column: 18,
                reason: "malformed node or string: `lambda` is a name, not a literal (only strings, bytes, numbers, tuples, lists, dicts, sets, True, False and None are)".into(),
            }
        );
        assert_eq!(
            read("X = 1\nCOMPONENT_INFO: dict = {}\n").unwrap_err(),
            ComponentFileError::NotAComponent
        );
    }

    #[test]
    fn content_has_python_newlines_and_the_rest_follows_hetida() {
        let src = format!(
            "\"\"\"Title\r\n\r\nDoc line\r\n\"\"\"\r\nCOMPONENT_INFO = {{{IDS}, 'state': 'DISABLED',\r\n  'inputs': {{'a': 'INT', 'b': {{'data_type': 'FLOAT', 'default_value': None}}}}}}\rdef main(): pass\r\n"
        );
        let r = read(&src).unwrap();
        let Content::Component(code) = &r.content else {
            panic!("a component")
        };
        assert!(!code.contains('\r'));
        assert!(code.ends_with("}}\ndef main(): pass\n"));
        assert_eq!(r.documentation, "Doc line");
        assert_eq!(r.state, State::Disabled);
        assert_eq!(
            (r.released_timestamp, r.disabled_timestamp),
            (Some(now()), Some(now()))
        );
        let b = &r.io_interface.inputs[1];
        assert_eq!((b.input_type, &b.value), (InputType::Optional, &None));
        assert_eq!(r.io_interface.inputs[0].input_type, InputType::Required);
    }

    #[test]
    fn pairs_update_the_defaults_as_a_dict_does() {
        let r = read(
            "COMPONENT_INFO = [\n\
             ('name', 'first'),\n\
             ['category', 'Pairs'],\n\
             ('id', 'c0000000-0000-4000-8000-000000000001'),\n\
             ('revision_group_id', 'c0000000-0000-4000-8000-000000000002'),\n\
             ('name', 'last'),\n\
             ]\n",
        )
        .unwrap();
        assert_eq!((r.name.as_str(), r.category.as_str()), ("last", "Pairs"));
        assert_eq!(r.id.to_string(), "c0000000-0000-4000-8000-000000000001");
    }

    #[test]
    fn hetidas_defaults_fill_what_is_missing() {
        let r = read("COMPONENT_INFO = {}\n").unwrap();
        assert_eq!(
            (r.name.as_str(), r.category.as_str(), r.version_tag.as_str()),
            ("Unnamed Component", "Other", "1.0.0")
        );
        // Random, as in hetida: a fresh id on every read.
        assert_ne!(r.id, read("COMPONENT_INFO = {}\n").unwrap().id);
        assert_ne!(r.id, r.revision_group_id);
        assert_eq!(
            r.io_interface.inputs.len() + r.io_interface.outputs.len(),
            0
        );
        let draft = read(&format!("COMPONENT_INFO = {{{IDS}, 'state': 'DRAFT'}}")).unwrap();
        assert_eq!(
            (draft.released_timestamp, draft.disabled_timestamp),
            (None, None)
        );
    }

    #[test]
    fn an_unusable_test_wiring_is_an_empty_one() {
        for wiring in [
            "TEST_WIRING_FROM_PY_FILE_IMPORT = {'input_wirings': [{'workflow_input_name': 'a', 'adapter_id': 7}]}",
            "TEST_WIRING_FROM_PY_FILE_IMPORT = {'input_wirings': [some_name]}",
            "TEST_WIRING_FROM_PY_FILE_IMPORT = [1, 2]",
            "TEST_WIRING_FROM_PY_FILE_IMPORT = {'input_wirings': None}",
        ] {
            let r = read(&format!("COMPONENT_INFO = {{{IDS}}}\n{wiring}\n")).unwrap();
            assert_eq!(r.test_wiring, WorkflowWiring::default(), "{wiring}");
        }
        let r = read(&format!(
            "COMPONENT_INFO = {{{IDS}}}\nTEST_WIRING_FROM_PY_FILE_IMPORT = {{'input_wirings': [{{'workflow_input_name': 'a', 'adapter_id': 'direct_provisioning', 'filters': {{'value': 1.5}}}}]}}\n"
        ))
        .unwrap();
        assert_eq!(
            r.test_wiring.input_wirings[0].filters.get("value"),
            Some("1.5")
        );
    }

    #[test]
    fn what_hetida_would_refuse_is_an_error_with_its_line() {
        let err = |src: &str| read(src).unwrap_err().to_string();
        assert_eq!(
            err("COMPONENT_INFO = 'ab'\n"),
            "line 1, column 18: COMPONENT_INFO: must be a dict, found str"
        );
        assert_eq!(
            err("COMPONENT_INFO = [('name', 'x'),\n  'id']\n"),
            "line 2, column 3: COMPONENT_INFO: as a sequence it must hold (key, value) pairs, found str"
        );
        assert_eq!(
            err("COMPONENT_INFO = {\n  1: 'x'}\n"),
            "line 2, column 3: COMPONENT_INFO: keys must be strings (hetida passes them as keyword arguments), found int"
        );
        assert_eq!(
            err("COMPONENT_INFO = {\n  'type': 'WORKFLOW'}\n"),
            "line 2, column 3: COMPONENT_INFO: \"type\" is set by hetida itself and may not be given here"
        );
        assert_eq!(
            err("COMPONENT_INFO = {'inputs': {\n  'a': {'default_value': 1}}}\n"),
            "line 2, column 8: COMPONENT_INFO[\"inputs\"][\"a\"]: For optional inputs a data type must be provided in the COMPONENT_INFO!"
        );
        assert_eq!(
            err("COMPONENT_INFO = {'outputs': {'a': {}}}\n"),
            "line 1, column 36: COMPONENT_INFO[\"outputs\"][\"a\"]: has no \"data_type\""
        );
        assert_eq!(
            err("COMPONENT_INFO = {'inputs': {'a': ['INT']}}\n"),
            "line 1, column 35: COMPONENT_INFO[\"inputs\"][\"a\"]: a data type must be a string, found list"
        );
        assert!(
            err("COMPONENT_INFO = {'id': 'not-a-uuid'}\n")
                .starts_with("line 1, column 25: COMPONENT_INFO[\"id\"]: ")
        );
        assert!(
            err("COMPONENT_INFO = {\n'state': 'released'}\n").starts_with(
                "line 2, column 10: COMPONENT_INFO[\"state\"]: unknown variant `released`"
            )
        );
        assert_eq!(
            err("\u{feff}COMPONENT_INFO = {}\n"),
            "line 1, column 1: Python cannot parse this: invalid non-printable character U+FEFF"
        );
        // A lexical error anywhere refuses the file, as Python's parser would.
        assert_eq!(
            err("COMPONENT_INFO = {}\n\ndef main():\n    return 'a\n"),
            "line 4, column 12: Python cannot parse this: unterminated string literal (detected at line 4)"
        );
        // Valid Python, refused only where we would need a value we cannot hold.
        let src = format!(
            "COMPONENT_INFO = {{{IDS}}}\n\ndef main():\n    return '\\ud800\\N{{BULLET}}'\n"
        );
        assert!(read(&src).is_ok());
        assert_eq!(
            err("COMPONENT_INFO = {\n  'name': '\\N{BULLET}'}\n"),
            "line 2, column 11: not supported: a \\N{...} escape (a character by name) is not supported here; write the character itself or a \\u escape"
        );
        assert_eq!(read("").unwrap_err(), ComponentFileError::NotAComponent);
        assert_eq!(ComponentFileError::NotAComponent.line(), None);
    }

    /// Pieces that make the tokenizer and the literal reader take every branch they have.
    const PIECES: [&str; 44] = [
        "COMPONENT_INFO",
        "TEST_WIRING_FROM_PY_FILE_IMPORT",
        " = ",
        "=",
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        "'",
        "\"",
        "\"\"\"",
        "\\",
        "\n",
        "#",
        "1",
        "0x",
        "0o7",
        "e",
        "j",
        ".",
        "...",
        ",",
        ":",
        ";",
        "-",
        "+",
        "_",
        "r",
        "b",
        "f",
        "\\N{",
        "\\u",
        "\\x",
        "set()",
        "True",
        "None",
        "lambda",
        " ",
        "\t",
        "'inputs'",
        "'data_type'",
        "'default_value'",
    ];

    proptest::proptest! {
        /// A revision file is outside input: whatever it holds, reading it returns.
        #[test]
        fn no_text_makes_reading_panic(
            pieces in proptest::collection::vec(0..PIECES.len(), 0..60),
            noise in ".{0,40}",
        ) {
            let text: String = pieces.iter().map(|&i| PIECES[i]).collect();
            let _ = read(&text);
            let _ = read(&format!("{text}{noise}"));
            let _ = read(&format!("COMPONENT_INFO = {{'inputs': {{'a': {text}}}}}\n"));
        }
    }
}

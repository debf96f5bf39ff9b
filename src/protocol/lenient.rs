//! The reference's lenient value rules (pydantic 1 and Python builtins), so that every request
//! hetida accepts is accepted here with the same meaning (spec §2, quirk 12).

use serde_json::Value;
use uuid::Uuid;

/// A UUID in any spelling Python's `uuid.UUID(str)` accepts: upper case, no hyphens, braces,
/// `urn:uuid:` prefix (vector `job_id_noncanonical_format`).
pub fn parse_uuid(s: &str) -> Option<Uuid> {
    let s = s.replace("urn:", "").replace("uuid:", "");
    let s = s.trim_matches(|c| c == '{' || c == '}').replace('-', "");
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(&s, 16).ok().map(Uuid::from_u128)
}

/// pydantic 1's bool: JSON bools, 0/1, and the strings on/off, yes/no, true/false, t/f, y/n, 1/0
/// in any case.
pub fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.to_lowercase().as_str() {
            "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
            "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// pydantic 1's `str`: strings as they are, numbers and bools through Python's `str()`.
pub fn coerce_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(true) => Some("True".to_owned()),
        Value::Bool(false) => Some("False".to_owned()),
        Value::Number(n) => Some(python_number_str(n)),
        _ => None,
    }
}

/// Python's `str()` of a JSON number: integers as written, floats in `repr` form.
pub fn python_number_str(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        n.to_string()
    } else {
        super::pyjson::float_repr(n.as_f64().unwrap_or(f64::NAN))
    }
}

const PYTHON_KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Python's `str.isidentifier()` and not a keyword: what a workflow input or output may be named.
pub fn is_python_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first == '_' || unicode_ident::is_xid_start(first))
        && chars.all(unicode_ident::is_xid_continue)
        && !PYTHON_KEYWORDS.contains(&s)
}

/// A short description of a JSON value's kind for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uuid_spellings_python_accepts() {
        let canonical = "79ce1eb1-3ef8-4c74-9114-c856fd88dc89";
        for s in [
            canonical,
            "79CE1EB1-3EF8-4C74-9114-C856FD88DC89",
            "79ce1eb13ef84c749114c856fd88dc89",
            "{79ce1eb1-3ef8-4c74-9114-c856fd88dc89}",
            "urn:uuid:79ce1eb1-3ef8-4c74-9114-c856fd88dc89",
        ] {
            assert_eq!(parse_uuid(s).unwrap().to_string(), canonical, "{s}");
        }
        for s in [
            "",
            "79ce1eb1",
            "garbage",
            "79ce1eb1-3ef8-4c74-9114-c856fd88dc8g",
        ] {
            assert!(parse_uuid(s).is_none(), "{s}");
        }
    }

    #[test]
    fn bools_like_pydantic() {
        for (v, b) in [
            (json!(true), true),
            (json!(0), false),
            (json!(1.0), true),
            (json!("YES"), true),
            (json!("off"), false),
            (json!("t"), true),
        ] {
            assert_eq!(parse_bool(&v), Some(b), "{v}");
        }
        for v in [json!(2), json!("maybe"), json!(null), json!([])] {
            assert_eq!(parse_bool(&v), None, "{v}");
        }
    }

    #[test]
    fn str_coercion_like_python() {
        assert_eq!(coerce_str(&json!(10.5)).unwrap(), "10.5");
        assert_eq!(coerce_str(&json!(10)).unwrap(), "10");
        assert_eq!(coerce_str(&json!(true)).unwrap(), "True");
        assert_eq!(coerce_str(&json!(1e20)).unwrap(), "1e+20");
        assert_eq!(coerce_str(&json!({})), None);
        // Exact parsing matters: a lossy parse would print other digits than Python does.
        let v: Value = serde_json::from_str("-3.5578982111060975e-152").unwrap();
        assert_eq!(coerce_str(&v).unwrap(), "-3.5578982111060975e-152");
    }

    #[test]
    fn identifiers_like_python() {
        for ok in ["a", "_x", "input_series", "größe", "x1"] {
            assert!(is_python_identifier(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "class", "None", "a b", "5"] {
            assert!(!is_python_identifier(bad), "{bad}");
        }
    }
}

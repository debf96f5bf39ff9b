//! The reference's lenient value rules (pydantic 1 and Python builtins), so that every request
//! hetida accepts is accepted here with the same meaning (spec §2, quirk 12).

use uuid::Uuid;

use super::pyjson::{Json, Number, number_value, python_str_of_number};

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

/// pydantic 1's bool (`bool_validator`): JSON bools, numbers equal to 0 or 1, and the strings
/// on/off, yes/no, true/false, t/f, y/n, 1/0 in any case. `NaN`, `Infinity` are neither.
pub fn parse_bool(v: &Json<'_>) -> Option<bool> {
    match v {
        Json::Bool(b) => Some(*b),
        Json::Number(text) => match number_value(text) {
            Number::Int(digits) => match digits.as_str() {
                "1" => Some(true),
                "0" => Some(false),
                _ => None,
            },
            Number::Float(1.0) => Some(true),
            Number::Float(0.0) => Some(false),
            Number::Float(_) => None,
        },
        Json::Str(s) => match s.to_text()?.to_lowercase().as_str() {
            "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
            "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// pydantic 1's `str` (`str_validator`): strings as they are (held as [`PyStr`] holds them, lone
/// surrogates and all), numbers and bools through Python's `str()`: `NaN` is `"nan"`,
/// `-Infinity` and `-1e400` are `"-inf"`, `1E5` is `"100000.0"`, integers keep every digit.
pub fn coerce_str(v: &Json<'_>) -> Option<String> {
    match v {
        Json::Str(s) => Some(s.as_held().to_owned()),
        Json::Bool(true) => Some("True".to_owned()),
        Json::Bool(false) => Some("False".to_owned()),
        Json::Number(text) => Some(python_str_of_number(text)),
        _ => None,
    }
}

/// A value for an error message: scalars as written, strings quoted, containers by kind.
pub fn shown(v: &Json<'_>) -> String {
    match v {
        Json::Null => "null".to_owned(),
        Json::Bool(b) => b.to_string(),
        Json::Number(text) => (*text).to_owned(),
        Json::Str(s) => format!("\"{}\"", s.as_held()),
        other => other.kind().to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn json(text: &str) -> Json<'_> {
        crate::protocol::pyjson::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn bools_like_pydantic() {
        for (v, b) in [
            ("true", true),
            ("0", false),
            ("-0", false),
            ("-0.0", false),
            ("1.0", true),
            ("1e0", true),
            ("\"YES\"", true),
            ("\"off\"", false),
            ("\"t\"", true),
        ] {
            assert_eq!(parse_bool(&json(v)), Some(b), "{v}");
        }
        for v in [
            "2",
            "\"maybe\"",
            "null",
            "[]",
            "NaN",
            "Infinity",
            "-Infinity",
            "1e400",
            "\"\\ud800\"",
        ] {
            assert_eq!(parse_bool(&json(v)), None, "{v}");
        }
    }

    /// What Python's `str()` gives for what `json.loads` read (checked against CPython 3.11).
    #[test]
    fn str_coercion_like_python() {
        for (text, python) in [
            ("10.5", "10.5"),
            ("10", "10"),
            ("true", "True"),
            ("1e20", "1e+20"),
            ("1E5", "100000.0"),
            ("NaN", "nan"),
            ("Infinity", "inf"),
            ("-Infinity", "-inf"),
            ("1e400", "inf"),
            ("-1e400", "-inf"),
            ("-0", "0"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
            // Exact parsing matters: a lossy parse would print other digits than Python does.
            ("-3.5578982111060975e-152", "-3.5578982111060975e-152"),
        ] {
            assert_eq!(coerce_str(&json(text)).unwrap(), python, "{text}");
        }
        assert_eq!(coerce_str(&json("{}")), None);
        assert_eq!(coerce_str(&json("null")), None);
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

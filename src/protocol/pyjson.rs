//! JSON the way Python's `json` module writes and reads it (spec §10).
//!
//! Writing: hetida serialises the runtime request and the Kafka response with pydantic's
//! `.json()`, i.e. `json.dumps` defaults: separators `", "` and `": "`, `ensure_ascii` (every
//! character outside printable ASCII as `\uXXXX`, surrogate pairs above U+FFFF) and floats in
//! `repr` form. Readers that compare bytes, or hash them, see the same bytes from us.
//!
//! Reading: the backend reads the runtime's answer with `json.loads(bytes)` (httpx 0.26's
//! `Response.json()`), which is more than RFC 8259: `NaN`, `Infinity` and `-Infinity` are numbers,
//! strings may hold lone surrogates (escaped, or raw through the decoder's `surrogatepass`), and
//! the body may be UTF-16 or UTF-32. [`decode`] and [`document`] accept what it accepts (nested
//! up to [`MAX_DEPTH`]), so an answer hetida delivers is delivered here, and everything else is a
//! [`NotJson`] that says what is wrong and where — never a panic. A Kafka request is read the
//! same way (pydantic 1's `parse_raw` is `json.loads` of the decoded text), without [`decode`]:
//! hetida decodes it as strict UTF-8 first. Its strings are [`PyStr`]s, which hold a lone
//! surrogate as a stand-in ([`MARK`]) that this module's writer turns back into `\udXXX`.
//!
//! JSON that arrives as text (the runtime's output values) is re-spaced and re-escaped token by
//! token, with every number copied verbatim: re-encoding a number could change its digits.

use std::borrow::Cow;
use std::io::{self, Write};

use serde::Serialize;

/// Deeper nesting is refused. hetida's backend fails on far less (pydantic's `.dict()` recurses
/// into outputs and hits Python's recursion limit: at about 330 nested lists when measured), so
/// every answer it delivers is delivered here; the bound keeps our responses readable by
/// Python's `json.loads` (which stops near 1000 levels).
pub const MAX_DEPTH: usize = 512;

/// Python 3.11's `int` refuses to read longer decimal integers (`sys.get_int_max_str_digits`),
/// so `json.loads` fails on them; the backend then drops the request.
pub const MAX_INT_DIGITS: usize = 4300;

/// Python-style JSON bytes of `value`.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(&mut out, value);
    out
}

/// Appends Python-style JSON of `value` to `out`.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, PyFormatter);
    // Only typed protocol data comes here (no input text): writing to a Vec cannot fail, every
    // map has string keys, and the formatter itself fails only on a RawValue that is not JSON,
    // which serde_json never builds.
    value
        .serialize(&mut ser)
        .expect("serialising protocol data to JSON");
}

/// Appends `text` re-spaced and re-escaped in Python style, numbers kept verbatim. Text that is
/// not JSON as Python reads it appends nothing and says why.
pub fn write_json_text(out: &mut Vec<u8>, text: &str) -> Result<(), NotJson> {
    let start = out.len();
    let written = Scanner::new(text.as_bytes()).document(&mut Writer(out));
    if written.is_err() {
        out.truncate(start);
    }
    written
}

/// Appends `s` as a Python-style JSON string literal.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape_str(s, |bytes| out.extend_from_slice(bytes));
    out.push(b'"');
}

/// Appends a Python string (which may hold lone surrogates) as a Python-style JSON literal.
pub fn write_py_str(out: &mut Vec<u8>, s: &PyStr) {
    write_str(out, &s.0);
}

/// The content of `s` Python-style escaped, in pieces: runs that need no escape as they are.
/// This is the one place where text becomes a JSON string, so it is also where a [`PyStr`]'s
/// stand-ins for lone surrogates ([`MARK`]) become the `\udXXX` that `json.dumps` writes.
fn escape_str(s: &str, mut emit: impl FnMut(&[u8])) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if (' '..='~').contains(&c) && c != '"' && c != '\\' {
            continue;
        }
        emit(bytes.get(start..i).unwrap_or_default());
        start = i + c.len_utf8();
        if let Some(unit) = chars.peek().and_then(|&(_, next)| marked_unit(c, next)) {
            if let Some((j, next)) = chars.next() {
                start = j + next.len_utf8();
            }
            let (escaped, len) = escape_unit(unit);
            emit(escaped.get(..len).unwrap_or_default());
            continue;
        }
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            let (escaped, len) = escape_unit(*unit);
            emit(escaped.get(..len).unwrap_or_default());
        }
    }
    emit(bytes.get(start..).unwrap_or_default());
}

/// A Python string's code unit that a Rust `String` cannot hold — a lone surrogate, which
/// `json.loads` reads from `"\ud800"` — is held as two characters: [`MARK`] then
/// U+E000 + (unit − 0xD800). [`MARK`] itself is held as [`MARK`] then U+E800, so the mapping is
/// injective and [`PyStr`] and the `String`s made from it (wiring values, error messages) stay
/// ordinary Rust text that moves through the service unchanged. U+FDD0 is a noncharacter,
/// which Unicode sets aside for a program's internal use; text meant for people does not hold
/// it. Each stand-in takes 6 bytes, as many as the `\udXXX` it stands for. Only [`escape_str`]
/// and [`PyStr`]'s readers turn the pairs back; text from elsewhere (a revision) that held
/// U+FDD0 right before one of U+E000..=U+E800 would be read as such a pair.
pub const MARK: char = '\u{FDD0}';
/// The second character of [`MARK`] standing for itself.
const MARK_ITSELF: u32 = 0xE800;
/// The second character of the stand-in for lone surrogate 0xD800 + k is U+E000 + k.
const LONE_BASE: u32 = 0xE000;

/// The UTF-16 unit that `c` followed by `next` stands for, if they are a stand-in pair.
fn marked_unit(c: char, next: char) -> Option<u16> {
    if c != MARK {
        return None;
    }
    match u32::from(next) {
        MARK_ITSELF => Some(0xfdd0),
        n @ LONE_BASE..MARK_ITSELF => u16::try_from(0xd800 + n - LONE_BASE).ok(),
        _ => None,
    }
}

/// Appends one UTF-16 unit of a Python string in [`PyStr`]'s form: a lone surrogate as its
/// stand-in pair; `unit` is not half of a pair that makes one character.
fn push_py_unit(out: &mut String, unit: u16) {
    match char::from_u32(u32::from(unit)) {
        Some(MARK) => {
            out.push(MARK);
            out.push(char::from_u32(MARK_ITSELF).unwrap_or(MARK));
        }
        Some(c) => out.push(c),
        None => {
            out.push(MARK);
            let standin = LONE_BASE + u32::from(unit).saturating_sub(0xd800);
            out.push(char::from_u32(standin).unwrap_or(char::REPLACEMENT_CHARACTER));
        }
    }
}

/// One code point of a Python string: a character, or a lone surrogate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PyChar {
    Char(char),
    Lone(u16),
}

/// The code points of a Python string held in [`PyStr`]'s form.
fn py_chars(s: &str) -> impl Iterator<Item = PyChar> + '_ {
    let mut chars = s.chars().peekable();
    std::iter::from_fn(move || {
        let c = chars.next()?;
        match chars.peek().and_then(|&next| marked_unit(c, next)) {
            Some(unit) => {
                chars.next();
                Some(match char::from_u32(u32::from(unit)) {
                    Some(c) => PyChar::Char(c),
                    None => PyChar::Lone(unit),
                })
            }
            None => Some(PyChar::Char(c)),
        }
    })
}

fn push_escaped_unit(out: &mut Vec<u8>, unit: u16) {
    let (escaped, len) = escape_unit(unit);
    out.extend_from_slice(escaped.get(..len).unwrap_or_default());
}

/// `json.dumps`' escape of one UTF-16 code unit (what `ensure_ascii` writes for it), and its
/// length.
fn escape_unit(unit: u16) -> ([u8; 6], usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = |c: u8| ([b'\\', c, 0, 0, 0, 0], 2);
    match unit {
        0x22 => short(b'"'),
        0x5c => short(b'\\'),
        0x0a => short(b'n'),
        0x0d => short(b'r'),
        0x09 => short(b't'),
        0x08 => short(b'b'),
        0x0c => short(b'f'),
        0x20..=0x7e => ([unit as u8, 0, 0, 0, 0, 0], 1),
        _ => (
            [
                b'\\',
                b'u',
                HEX[usize::from(unit >> 12)],
                HEX[usize::from((unit >> 8) & 0xf)],
                HEX[usize::from((unit >> 4) & 0xf)],
                HEX[usize::from(unit & 0xf)],
            ],
            6,
        ),
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form below 1e-4 and from 1e16.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    // `{:e}` gives the shortest round-trip digits: "d.ddde-7".
    let sci = format!("{:e}", x.abs());
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return format!("{x:?}");
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return format!("{x:?}");
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let (first, rest) = digits.split_at(1.min(digits.len()));
    let decpt = exp + 1;
    let mut s = String::with_capacity(digits.len() + 8);
    if x < 0.0 {
        s.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        s.push_str(first);
        if !rest.is_empty() {
            s.push('.');
            s.push_str(rest);
        }
        s.push('e');
        s.push(if exp < 0 { '-' } else { '+' });
        s.push_str(&format!("{:02}", exp.abs()));
    } else if decpt <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', decpt.unsigned_abs() as usize));
        s.push_str(&digits);
    } else {
        let point = decpt as usize;
        match (digits.get(..point), digits.get(point..)) {
            (Some(int), Some(frac)) if !frac.is_empty() => {
                s.push_str(int);
                s.push('.');
                s.push_str(frac);
            }
            _ => {
                s.push_str(&digits);
                s.extend(std::iter::repeat_n('0', point.saturating_sub(digits.len())));
                s.push_str(".0");
            }
        }
    }
    s
}

/// Python's `str()` of the number that JSON number text becomes under `json.loads`: integers
/// as written (`-0` is `0`), floats in `repr` form with `nan`/`inf` spelled as `str` spells them.
pub fn python_str_of_number(text: &str) -> String {
    match number_value(text) {
        Number::Int(digits) => digits,
        Number::Float(x) if x.is_nan() => "nan".to_owned(),
        Number::Float(x) if x.is_infinite() => if x > 0.0 { "inf" } else { "-inf" }.to_owned(),
        Number::Float(x) => float_repr(x),
    }
}

/// What Python makes of a JSON number: an `int` (canonical digits) or a `float`.
#[derive(Debug, Clone, PartialEq)]
pub enum Number {
    /// An `int`: its digits as Python would print it (arbitrary size, `-0` as `0`).
    Int(String),
    /// A `float`, including `nan` and `±inf`, which Python's JSON reads and writes.
    Float(f64),
}

/// Reads valid JSON number text (incl. `NaN` and `±Infinity`) the way `json.loads` does.
pub fn number_value(text: &str) -> Number {
    match text {
        "NaN" => return Number::Float(f64::NAN),
        "Infinity" => return Number::Float(f64::INFINITY),
        "-Infinity" => return Number::Float(f64::NEG_INFINITY),
        _ => {}
    }
    if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        // Rust's parse is correctly rounded, like Python's float(); beyond range it is ±inf,
        // as in Python (`json.loads("1e400")` is `inf`).
        return Number::Float(text.parse().unwrap_or(f64::NAN));
    }
    match text.strip_prefix('-') {
        Some(digits) if digits.bytes().all(|b| b == b'0') => Number::Int("0".to_owned()),
        _ => Number::Int(text.to_owned()),
    }
}

/// Why a text is not JSON as Python's `json.loads` reads it, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct NotJson {
    /// Byte offset in the (decoded) text.
    pub at: usize,
    /// What Python's message says is wrong (`Expecting value`, ...), for the failure response.
    pub what: String,
}

impl NotJson {
    fn new(at: usize, what: impl Into<String>) -> NotJson {
        NotJson {
            at,
            what: what.into(),
        }
    }
}

/// A Python `str`, which may hold lone surrogates (Python strings may, Rust strings may not):
/// a `String` in which each lone surrogate is a stand-in pair (see [`MARK`]). Written by
/// [`write_str`] and [`write_py_str`] exactly as `json.dumps` writes the Python string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PyStr(String);

impl PyStr {
    /// The string in its held form (lone surrogates as stand-ins), for values that go on into
    /// the runtime request or a message, where the writer turns the stand-ins back.
    pub fn as_held(&self) -> &str {
        &self.0
    }

    /// The text, unless it holds a lone surrogate.
    pub fn to_text(&self) -> Option<String> {
        if !self.0.contains(MARK) {
            return Some(self.0.clone());
        }
        py_chars(&self.0)
            .map(|c| match c {
                PyChar::Char(c) => Some(c),
                PyChar::Lone(_) => None,
            })
            .collect()
    }

    /// The text with lone surrogates as U+FFFD, for messages.
    pub fn to_text_lossy(&self) -> String {
        py_chars(&self.0)
            .map(|c| match c {
                PyChar::Char(c) => c,
                PyChar::Lone(_) => char::REPLACEMENT_CHARACTER,
            })
            .collect()
    }

    /// Whether it is exactly `s` (a lone surrogate never matches).
    pub fn is(&self, s: &str) -> bool {
        if !self.0.contains(MARK) {
            return self.0 == s;
        }
        py_chars(&self.0).eq(s.chars().map(PyChar::Char))
    }
}

impl From<&str> for PyStr {
    fn from(s: &str) -> PyStr {
        let mut held = String::with_capacity(s.len());
        for c in s.chars() {
            if c == MARK {
                push_py_unit(&mut held, 0xfdd0);
            } else {
                held.push(c);
            }
        }
        PyStr(held)
    }
}

/// A JSON value as `json.loads` gives it to Python. Numbers stay text (see [`number_value`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    /// JSON `null`: Python's `None`.
    Null,
    /// `true` or `false`: Python's `True` or `False`.
    Bool(bool),
    /// The number as written; [`number_value`] says what Python makes of it.
    Number(&'a str),
    /// A string, which may hold lone surrogates as Python's may.
    Str(PyStr),
    /// An array: a Python list.
    List(Vec<Json<'a>>),
    /// Members in document order, duplicates kept; [`Json::get`] reads them as a dict would.
    Object(Vec<(PyStr, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// The member `key` as a Python dict holds it: the last of duplicates wins.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(members) => members.iter().rev().find(|(k, _)| k.is(key)).map(|m| &m.1),
            _ => None,
        }
    }

    /// A short description of the value's kind for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::Str(_) => "a string",
            Json::List(_) => "a list",
            Json::Object(_) => "an object",
        }
    }
}

/// `text` (UTF-8, one JSON document) as `json.loads` reads it, as a tree.
pub fn parse(text: &[u8]) -> Result<Json<'_>, NotJson> {
    Raw(text).parse()
}

/// The text of one JSON value inside a validated document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a>(&'a [u8]);

impl<'a> Raw<'a> {
    /// The value's JSON text exactly as it is in the document.
    pub fn text(&self) -> &'a [u8] {
        self.0
    }

    /// Whether the value is `null` (Python's `None`), without parsing it.
    pub fn is_null(&self) -> bool {
        self.0 == b"null"
    }

    /// A short description of the value's kind for error messages, without parsing it.
    pub fn kind(&self) -> &'static str {
        match self.0.first() {
            Some(b'{') => "an object",
            Some(b'[') => "a list",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            _ => "a number",
        }
    }

    /// The value as a tree. Fails only if the text was not validated JSON after all.
    pub fn parse(&self) -> Result<Json<'a>, NotJson> {
        let mut tree = Tree::default();
        Scanner::new(self.0).document(&mut tree)?;
        tree.done.ok_or_else(|| NotJson::new(0, "no JSON value"))
    }

    /// Appends the value in Python style (see [`write_json_text`]).
    pub fn write_python(&self, out: &mut Vec<u8>) -> Result<(), NotJson> {
        let start = out.len();
        let written = Scanner::new(self.0).document(&mut Writer(out));
        if written.is_err() {
            out.truncate(start);
        }
        written
    }
}

/// A validated JSON document; an object keeps its members as raw text, so a large member is
/// not built into a tree only to be written out again.
#[derive(Debug, Clone, PartialEq)]
pub enum Document<'a> {
    /// An object (the runtime's answer, normally): its members in document order, each as raw text.
    Object(Vec<(PyStr, Raw<'a>)>),
    /// Any other value, which no caller accepts.
    Other {
        /// What it is instead ("a list", "null", ...), for the error message.
        kind: &'static str,
    },
}

/// Validates `text` (from [`decode`]) as one JSON document the way `json.loads` does.
pub fn document(text: &[u8]) -> Result<Document<'_>, NotJson> {
    document_keeping(text, |_| true)
}

/// Like [`document`], but an object keeps only the members whose key `keep` wants: the others
/// are validated and dropped as they are read, so they cost no memory however many they are.
pub fn document_keeping(
    text: &[u8],
    mut keep: impl FnMut(&PyStr) -> bool,
) -> Result<Document<'_>, NotJson> {
    let mut sc = Scanner::new(text);
    sc.skip_ws();
    if sc.peek() != Some(b'{') {
        let kind = Raw(text.get(sc.pos..).unwrap_or_default()).kind();
        sc.document(&mut Discard)?;
        return Ok(Document::Other { kind });
    }
    sc.pos += 1;
    let mut members = Vec::new();
    sc.skip_ws();
    if sc.peek() == Some(b'}') {
        sc.pos += 1;
    } else {
        loop {
            let mut key = Key::default();
            sc.key(&mut key)?;
            sc.skip_ws();
            let start = sc.pos;
            sc.value(&mut Discard, 1)?;
            let key = key.0.finish();
            if keep(&key) {
                members.push((key, Raw(text.get(start..sc.pos).unwrap_or_default())));
            }
            sc.skip_ws();
            match sc.peek() {
                Some(b',') => {
                    sc.pos += 1;
                    sc.skip_ws();
                }
                Some(b'}') => {
                    sc.pos += 1;
                    break;
                }
                None => return Err(sc.truncated("an object")),
                Some(b) => return Err(sc.unexpected(b, "`,` or `}` after an object member")),
            }
        }
    }
    sc.end()?;
    Ok(Document::Object(members))
}

/// The text `json.loads(bytes)` would read from a body, as UTF-8 in which string literals may
/// also hold surrogates (encoded like any other code point, three bytes each). Like Python, it
/// drops a UTF-8 BOM, reads UTF-16 and UTF-32 told by a BOM or by zero bytes, and lets
/// surrogates pass (`surrogatepass`); anything else undecodable is refused.
pub fn decode(body: &[u8]) -> Result<Cow<'_, [u8]>, NotJson> {
    match body {
        [0xff, 0xfe, 0, 0, rest @ ..] => utf32(rest, u32::from_le_bytes, "UTF-32"),
        [0, 0, 0xfe, 0xff, rest @ ..] => utf32(rest, u32::from_be_bytes, "UTF-32"),
        [0xff, 0xfe, rest @ ..] => utf16(rest, u16::from_le_bytes, "UTF-16"),
        [0xfe, 0xff, rest @ ..] => utf16(rest, u16::from_be_bytes, "UTF-16"),
        [0xef, 0xbb, 0xbf, rest @ ..] => utf8(rest),
        [0, 0, _, _, ..] => utf32(body, u32::from_be_bytes, "UTF-32-BE"),
        [0, _, _, _, ..] | [0, _] => utf16(body, u16::from_be_bytes, "UTF-16-BE"),
        [_, 0, 0, 0, ..] => utf32(body, u32::from_le_bytes, "UTF-32-LE"),
        [_, 0, _, _, ..] | [_, 0] => utf16(body, u16::from_le_bytes, "UTF-16-LE"),
        _ => utf8(body),
    }
}

fn utf8(body: &[u8]) -> Result<Cow<'_, [u8]>, NotJson> {
    let mut at = 0;
    while let Some(rest) = body.get(at..) {
        let (bad, complete) = match std::str::from_utf8(rest) {
            Ok(_) => break,
            Err(e) => (at + e.valid_up_to(), e.error_len().is_some()),
        };
        match body.get(bad..) {
            // An encoded surrogate: Python's `surrogatepass` reads it as a lone surrogate.
            Some([0xed, 0xa0..=0xbf, 0x80..=0xbf, ..]) => at = bad + 3,
            // A surrogate, or any other sequence, that the end of the body cuts short.
            Some([0xed] | [0xed, 0xa0..=0xbf]) => return Err(utf8_truncated(bad, body.len())),
            Some(_) if !complete => return Err(utf8_truncated(bad, body.len())),
            Some([byte, ..]) => {
                return Err(NotJson::new(
                    bad,
                    format!("the body is not UTF-8: byte 0x{byte:02x} at byte {bad}"),
                ));
            }
            _ => break,
        }
    }
    Ok(Cow::Borrowed(body))
}

fn utf8_truncated(at: usize, len: usize) -> NotJson {
    NotJson::new(
        at,
        format!("the body ends at byte {len} inside a UTF-8 sequence (truncated?)"),
    )
}

fn utf16(body: &[u8], unit: fn([u8; 2]) -> u16, name: &str) -> Result<Cow<'static, [u8]>, NotJson> {
    let chunks = body.chunks_exact(2);
    if !chunks.remainder().is_empty() {
        return Err(NotJson::new(
            body.len(),
            format!("the body looks like {name} but has an odd number of bytes"),
        ));
    }
    let units = chunks.map(|c| unit(<[u8; 2]>::try_from(c).unwrap_or_default()));
    let mut out = Vec::with_capacity(body.len());
    for decoded in char::decode_utf16(units) {
        match decoded {
            Ok(c) => push_code_point(&mut out, u32::from(c)),
            Err(lone) => push_code_point(&mut out, u32::from(lone.unpaired_surrogate())),
        }
    }
    Ok(Cow::Owned(out))
}

fn utf32(body: &[u8], unit: fn([u8; 4]) -> u32, name: &str) -> Result<Cow<'static, [u8]>, NotJson> {
    let chunks = body.chunks_exact(4);
    if !chunks.remainder().is_empty() {
        return Err(NotJson::new(
            body.len(),
            format!("the body looks like {name} but its length is not a multiple of 4"),
        ));
    }
    let mut out = Vec::with_capacity(body.len());
    for (i, c) in chunks.enumerate() {
        let cp = unit(<[u8; 4]>::try_from(c).unwrap_or_default());
        if cp > 0x10ffff {
            return Err(NotJson::new(
                i * 4,
                format!("the body looks like {name} but holds 0x{cp:x}, which is no code point"),
            ));
        }
        push_code_point(&mut out, cp);
    }
    Ok(Cow::Owned(out))
}

/// UTF-8 encoding extended to surrogates (which `char` cannot hold).
fn push_code_point(out: &mut Vec<u8>, cp: u32) {
    match cp {
        0..=0x7f => out.push(cp as u8),
        0x80..=0x7ff => out.extend_from_slice(&[0xc0 | (cp >> 6) as u8, 0x80 | (cp & 0x3f) as u8]),
        0x800..=0xffff => out.extend_from_slice(&[
            0xe0 | (cp >> 12) as u8,
            0x80 | ((cp >> 6) & 0x3f) as u8,
            0x80 | (cp & 0x3f) as u8,
        ]),
        _ => out.extend_from_slice(&[
            0xf0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3f) as u8,
            0x80 | ((cp >> 6) & 0x3f) as u8,
            0x80 | (cp & 0x3f) as u8,
        ]),
    }
}

/// The code point at `at` of UTF-8 that may hold surrogates, and its length in bytes.
fn code_point_at(text: &[u8], at: usize) -> Option<(u32, usize)> {
    let first = *text.get(at)?;
    let (len, bits, min) = match first {
        0x00..=0x7f => return Some((u32::from(first), 1)),
        0xc2..=0xdf => (2, first & 0x1f, 0x80),
        0xe0..=0xef => (3, first & 0x0f, 0x800),
        0xf0..=0xf4 => (4, first & 0x07, 0x10000),
        _ => return None,
    };
    let mut cp = u32::from(bits);
    for k in 1..len {
        let b = *text.get(at + k)?;
        if b & 0xc0 != 0x80 {
            return None;
        }
        cp = (cp << 6) | u32::from(b & 0x3f);
    }
    (min..=0x10ffff).contains(&cp).then_some((cp, len))
}

/// Where the content of a string literal goes, one piece at a time.
trait StrSink {
    /// A run of printable ASCII other than `"` and `\`.
    fn plain(&mut self, run: &[u8]);
    fn unit(&mut self, unit: u16);
}

/// Python-style escaped into a response.
struct Escaped<'o>(&'o mut Vec<u8>);

impl StrSink for Escaped<'_> {
    fn plain(&mut self, run: &[u8]) {
        self.0.extend_from_slice(run);
    }
    fn unit(&mut self, unit: u16) {
        push_escaped_unit(self.0, unit);
    }
}

/// Decoded into a [`PyStr`]. An escaped high surrogate followed by an escaped low one is one
/// character, as `json.loads` reads them (`"\ud83d\ude00"` is one emoji); any other surrogate
/// is a lone one.
#[derive(Default)]
struct Text {
    held: String,
    /// A high surrogate that the next unit may complete.
    high: Option<u16>,
}

impl Text {
    fn flush(&mut self) {
        if let Some(high) = self.high.take() {
            push_py_unit(&mut self.held, high);
        }
    }

    fn finish(mut self) -> PyStr {
        self.flush();
        PyStr(self.held)
    }
}

impl StrSink for Text {
    fn plain(&mut self, run: &[u8]) {
        // The scanner also reports empty runs, between two escapes that may make a pair.
        if run.is_empty() {
            return;
        }
        self.flush();
        // A plain run is printable ASCII, always UTF-8.
        self.held
            .push_str(std::str::from_utf8(run).unwrap_or_default());
    }

    fn unit(&mut self, unit: u16) {
        match (self.high.take(), unit) {
            (Some(high), 0xdc00..=0xdfff) => {
                let cp = 0x10000 + ((u32::from(high) - 0xd800) << 10) + (u32::from(unit) - 0xdc00);
                self.held
                    .push(char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            (pending, _) => {
                if let Some(high) = pending {
                    push_py_unit(&mut self.held, high);
                }
                if (0xd800..0xdc00).contains(&unit) {
                    self.high = Some(unit);
                } else {
                    push_py_unit(&mut self.held, unit);
                }
            }
        }
    }
}

/// Checked only.
struct Ignore;

impl StrSink for Ignore {
    fn plain(&mut self, _: &[u8]) {}
    fn unit(&mut self, _: u16) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    List,
    Object,
}

impl Container {
    fn close(self) -> u8 {
        match self {
            Container::List => b']',
            Container::Object => b'}',
        }
    }
}

/// A scalar token: its Python value is fixed by its text.
enum Scalar<'a> {
    Null,
    Bool(bool),
    Number(&'a str),
}

/// What a validated document is turned into while it is scanned.
trait Events<'a> {
    fn open(&mut self, c: Container);
    fn close(&mut self, c: Container);
    fn comma(&mut self);
    fn colon(&mut self);
    /// The scanner is at the opening quote of a string (a key when `key`).
    fn string(&mut self, sc: &mut Scanner<'a>, key: bool) -> Result<(), NotJson>;
    fn scalar(&mut self, s: Scalar<'a>);
}

/// Validation only.
struct Discard;

impl<'a> Events<'a> for Discard {
    fn open(&mut self, _: Container) {}
    fn close(&mut self, _: Container) {}
    fn comma(&mut self) {}
    fn colon(&mut self) {}
    fn string(&mut self, sc: &mut Scanner<'a>, _: bool) -> Result<(), NotJson> {
        sc.string(&mut Ignore)
    }
    fn scalar(&mut self, _: Scalar<'a>) {}
}

/// Only reads an object key.
#[derive(Default)]
struct Key(Text);

impl<'a> Events<'a> for Key {
    fn open(&mut self, _: Container) {}
    fn close(&mut self, _: Container) {}
    fn comma(&mut self) {}
    fn colon(&mut self) {}
    fn string(&mut self, sc: &mut Scanner<'a>, _: bool) -> Result<(), NotJson> {
        sc.string(&mut self.0)
    }
    fn scalar(&mut self, _: Scalar<'a>) {}
}

/// Python `json.dumps` style; numbers and literals as written (Python writes them alike).
struct Writer<'o>(&'o mut Vec<u8>);

impl<'a> Events<'a> for Writer<'_> {
    fn open(&mut self, c: Container) {
        self.0.push(match c {
            Container::List => b'[',
            Container::Object => b'{',
        });
    }
    fn close(&mut self, c: Container) {
        self.0.push(c.close());
    }
    fn comma(&mut self) {
        self.0.extend_from_slice(b", ");
    }
    fn colon(&mut self) {
        self.0.extend_from_slice(b": ");
    }
    fn string(&mut self, sc: &mut Scanner<'a>, _: bool) -> Result<(), NotJson> {
        self.0.push(b'"');
        sc.string(&mut Escaped(&mut *self.0))?;
        self.0.push(b'"');
        Ok(())
    }
    fn scalar(&mut self, s: Scalar<'a>) {
        self.0.extend_from_slice(match s {
            Scalar::Null => b"null",
            Scalar::Bool(true) => b"true",
            Scalar::Bool(false) => b"false",
            Scalar::Number(text) => text.as_bytes(),
        });
    }
}

/// Builds a [`Json`] tree.
#[derive(Default)]
struct Tree<'a> {
    open: Vec<Partial<'a>>,
    done: Option<Json<'a>>,
}

enum Partial<'a> {
    List(Vec<Json<'a>>),
    Object(Vec<(PyStr, Json<'a>)>, PyStr),
}

impl<'a> Tree<'a> {
    fn add(&mut self, v: Json<'a>) {
        match self.open.last_mut() {
            None => self.done = Some(v),
            Some(Partial::List(items)) => items.push(v),
            Some(Partial::Object(members, key)) => members.push((std::mem::take(key), v)),
        }
    }
}

impl<'a> Events<'a> for Tree<'a> {
    fn open(&mut self, c: Container) {
        self.open.push(match c {
            Container::List => Partial::List(Vec::new()),
            Container::Object => Partial::Object(Vec::new(), PyStr::default()),
        });
    }
    fn close(&mut self, _: Container) {
        match self.open.pop() {
            Some(Partial::List(items)) => self.add(Json::List(items)),
            Some(Partial::Object(members, _)) => self.add(Json::Object(members)),
            None => {}
        }
    }
    fn comma(&mut self) {}
    fn colon(&mut self) {}
    fn string(&mut self, sc: &mut Scanner<'a>, key: bool) -> Result<(), NotJson> {
        let mut text = Text::default();
        sc.string(&mut text)?;
        let s = text.finish();
        match (key, self.open.last_mut()) {
            (true, Some(Partial::Object(_, pending))) => *pending = s,
            _ => self.add(Json::Str(s)),
        }
        Ok(())
    }
    fn scalar(&mut self, s: Scalar<'a>) {
        self.add(match s {
            Scalar::Null => Json::Null,
            Scalar::Bool(b) => Json::Bool(b),
            Scalar::Number(text) => Json::Number(text),
        });
    }
}

/// Python's JSON grammar (`json.scanner`, strict mode): RFC 8259 plus `NaN`, `Infinity`,
/// `-Infinity`, lone surrogates; no raw control characters in strings.
struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a [u8]) -> Scanner<'a> {
        Scanner { text, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn truncated(&self, inside: &str) -> NotJson {
        NotJson::new(
            self.pos,
            format!(
                "the text ends at byte {} inside {inside} (truncated?)",
                self.pos
            ),
        )
    }

    fn unexpected(&self, found: u8, expected: &str) -> NotJson {
        let found = match found {
            0x21..=0x7e => format!("`{}`", found as char),
            _ => format!("byte 0x{found:02x}"),
        };
        NotJson::new(
            self.pos,
            format!("expected {expected} at byte {}, found {found}", self.pos),
        )
    }

    /// One value, then nothing but whitespace.
    fn document(&mut self, ev: &mut impl Events<'a>) -> Result<(), NotJson> {
        self.skip_ws();
        if self.peek().is_none() {
            return Err(NotJson::new(
                self.pos,
                "there is no JSON value (the text is empty)",
            ));
        }
        self.value(ev, 0)?;
        self.end()
    }

    fn end(&mut self) -> Result<(), NotJson> {
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some(b) => Err(self.unexpected(b, "the end after the JSON value")),
        }
    }

    /// One value, containers without recursion; `depth` containers already enclose it.
    fn value(&mut self, ev: &mut impl Events<'a>, depth: usize) -> Result<(), NotJson> {
        let mut open: Vec<Container> = Vec::new();
        'value: loop {
            self.skip_ws();
            match self.peek() {
                None => {
                    return Err(self.truncated(match open.last() {
                        Some(Container::List) => "a list",
                        Some(Container::Object) => "an object",
                        None => "a value",
                    }));
                }
                Some(b @ (b'{' | b'[')) => {
                    if depth + open.len() >= MAX_DEPTH {
                        return Err(NotJson::new(
                            self.pos,
                            format!(
                                "the JSON is nested deeper than {MAX_DEPTH} levels at byte {}",
                                self.pos
                            ),
                        ));
                    }
                    let c = if b == b'{' {
                        Container::Object
                    } else {
                        Container::List
                    };
                    self.pos += 1;
                    ev.open(c);
                    self.skip_ws();
                    if self.peek() == Some(c.close()) {
                        self.pos += 1;
                        ev.close(c);
                    } else {
                        open.push(c);
                        if c == Container::Object {
                            self.key(ev)?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => ev.string(self, false)?,
                Some(_) => {
                    let s = self.scalar()?;
                    ev.scalar(s);
                }
            }
            // A value is complete: close what it completes, up to the next value.
            loop {
                let Some(&c) = open.last() else {
                    return Ok(());
                };
                self.skip_ws();
                match self.peek() {
                    None => {
                        return Err(self.truncated(match c {
                            Container::List => "a list",
                            Container::Object => "an object",
                        }));
                    }
                    Some(b',') => {
                        self.pos += 1;
                        ev.comma();
                        if c == Container::Object {
                            self.skip_ws();
                            self.key(ev)?;
                        }
                        continue 'value;
                    }
                    Some(b) if b == c.close() => {
                        self.pos += 1;
                        open.pop();
                        ev.close(c);
                    }
                    Some(b) => {
                        return Err(self.unexpected(
                            b,
                            match c {
                                Container::List => "`,` or `]` after a list item",
                                Container::Object => "`,` or `}` after an object member",
                            },
                        ));
                    }
                }
            }
        }
    }

    /// An object key and its colon; the scanner is at the key.
    fn key(&mut self, ev: &mut impl Events<'a>) -> Result<(), NotJson> {
        match self.peek() {
            Some(b'"') => ev.string(self, true)?,
            None => return Err(self.truncated("an object")),
            Some(b) => return Err(self.unexpected(b, "a string key")),
        }
        self.skip_ws();
        match self.peek() {
            Some(b':') => {
                self.pos += 1;
                ev.colon();
                Ok(())
            }
            None => Err(self.truncated("an object")),
            Some(b) => Err(self.unexpected(b, "`:` after an object key")),
        }
    }

    /// A string literal's content (the scanner is at its opening quote), decoded into `sink`.
    fn string(&mut self, sink: &mut impl StrSink) -> Result<(), NotJson> {
        let start = self.pos;
        self.pos += 1;
        loop {
            let run = self.pos;
            while matches!(self.peek(), Some(b) if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
            {
                self.pos += 1;
            }
            sink.plain(self.text.get(run..self.pos).unwrap_or_default());
            let in_string = || format!("a string that starts at byte {start}");
            match self.peek() {
                None => return Err(self.truncated(&in_string())),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    let unit = match self.text.get(self.pos + 1) {
                        None => {
                            self.pos += 1;
                            return Err(self.truncated(&in_string()));
                        }
                        Some(b'"') => 0x22,
                        Some(b'\\') => 0x5c,
                        Some(b'/') => 0x2f,
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => 0x0a,
                        Some(b'r') => 0x0d,
                        Some(b't') => 0x09,
                        Some(b'u') => self.hex_escape()?,
                        Some(&b) => {
                            return Err(NotJson::new(
                                self.pos,
                                format!(
                                    "invalid escape `\\{}` at byte {}",
                                    (b as char).escape_default(),
                                    self.pos
                                ),
                            ));
                        }
                    };
                    self.pos += if self.text.get(self.pos + 1) == Some(&b'u') {
                        6
                    } else {
                        2
                    };
                    // Each escaped unit stands alone: a pair written as two escapes comes out
                    // as the same two escapes, a lone surrogate as itself (as in Python).
                    sink.unit(unit);
                }
                Some(b) if b < 0x20 => {
                    return Err(NotJson::new(
                        self.pos,
                        format!(
                            "control character U+{b:04X} not escaped in a string at byte {}",
                            self.pos
                        ),
                    ));
                }
                Some(_) => {
                    let Some((cp, len)) = code_point_at(self.text, self.pos) else {
                        return Err(NotJson::new(
                            self.pos,
                            format!("invalid UTF-8 in a string at byte {}", self.pos),
                        ));
                    };
                    self.pos += len;
                    if cp >= 0x10000 {
                        let c = cp - 0x10000;
                        sink.unit(0xd800 | (c >> 10) as u16);
                        sink.unit(0xdc00 | (c & 0x3ff) as u16);
                    } else {
                        sink.unit(cp as u16);
                    }
                }
            }
        }
    }

    /// The unit of the `\uXXXX` at the scanner (which stays put).
    fn hex_escape(&self) -> Result<u16, NotJson> {
        let digits = self.text.get(self.pos + 2..self.pos + 6);
        let parsed = digits
            .filter(|d| d.iter().all(u8::is_ascii_hexdigit))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u16::from_str_radix(d, 16).ok());
        match parsed {
            Some(unit) => Ok(unit),
            None if self.text.len() < self.pos + 6
                && self
                    .text
                    .get(self.pos + 2..)
                    .unwrap_or_default()
                    .iter()
                    .all(u8::is_ascii_hexdigit) =>
            {
                Err(self.truncated("a `\\u` escape"))
            }
            None => Err(NotJson::new(
                self.pos,
                format!(
                    "invalid `\\u` escape at byte {} (four hex digits must follow)",
                    self.pos
                ),
            )),
        }
    }

    /// A literal or number, with Python's rules: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`,
    /// where a `.` or exponent without digits ends the number before it.
    fn scalar(&mut self) -> Result<Scalar<'a>, NotJson> {
        let rest = self.text.get(self.pos..).unwrap_or_default();
        for (literal, scalar) in [
            (&b"null"[..], Scalar::Null),
            (b"true", Scalar::Bool(true)),
            (b"false", Scalar::Bool(false)),
            (b"NaN", Scalar::Number("NaN")),
            (b"Infinity", Scalar::Number("Infinity")),
            (b"-Infinity", Scalar::Number("-Infinity")),
        ] {
            if rest.starts_with(literal) {
                self.pos += literal.len();
                return Ok(scalar);
            }
            if !rest.is_empty() && literal.starts_with(rest) {
                self.pos += rest.len();
                return Err(self.truncated("a literal"));
            }
        }
        let digit = |i: usize| rest.get(i).is_some_and(u8::is_ascii_digit);
        let mut i = usize::from(rest.first() == Some(&b'-'));
        match rest.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while digit(i) {
                    i += 1;
                }
            }
            None => {
                self.pos += i;
                return Err(self.truncated("a number"));
            }
            Some(&b) => {
                self.pos += i;
                return Err(self.unexpected(b, "a value"));
            }
        }
        let int_digits = i - usize::from(rest.first() == Some(&b'-'));
        let mut float = false;
        if rest.get(i) == Some(&b'.') {
            if digit(i + 1) {
                i += 2;
                while digit(i) {
                    i += 1;
                }
                float = true;
            } else if i + 1 == rest.len() {
                self.pos += rest.len();
                return Err(self.truncated("a number"));
            }
        }
        if matches!(rest.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(rest.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            let exp_digits = j;
            while digit(j) {
                j += 1;
            }
            if j > exp_digits {
                i = j;
                float = true;
            } else if j == rest.len() {
                self.pos += rest.len();
                return Err(self.truncated("a number"));
            }
        }
        if !float && int_digits > MAX_INT_DIGITS {
            return Err(NotJson::new(
                self.pos,
                format!(
                    "the integer at byte {} has {int_digits} digits; Python reads at most {MAX_INT_DIGITS}",
                    self.pos
                ),
            ));
        }
        let text = rest
            .get(..i)
            .and_then(|t| std::str::from_utf8(t).ok())
            .ok_or_else(|| NotJson::new(self.pos, "invalid number"))?;
        self.pos += i;
        Ok(Scalar::Number(text))
    }
}

/// serde_json formatter producing Python `json.dumps` default output.
#[derive(Debug, Clone, Copy, Default)]
pub struct PyFormatter;

impl serde_json::ser::Formatter for PyFormatter {
    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(float_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut written = Ok(());
        escape_str(fragment, |bytes| {
            if written.is_ok() {
                written = writer.write_all(bytes);
            }
        });
        written
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_raw_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut restyled = Vec::with_capacity(fragment.len() + fragment.len() / 4);
        write_json_text(&mut restyled, fragment)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        writer.write_all(&restyled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restyled(text: &[u8]) -> Result<String, NotJson> {
        let text = decode(text)?;
        let mut out = Vec::new();
        Raw(&text).write_python(&mut out)?;
        Scanner::new(&text).document(&mut Discard)?;
        Ok(String::from_utf8(out).expect("Python style is ASCII"))
    }

    #[test]
    fn floats_follow_python_repr() {
        for (x, py) in [
            (0.0, "0.0"),
            (12.0, "12.0"),
            (0.1, "0.1"),
            (-2.629306217262931e-07, "-2.629306217262931e-07"),
            (1e-05, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (2.5e20, "2.5e+20"),
            (123456.789, "123456.789"),
            (0.073011, "0.073011"),
            (1.5e-300, "1.5e-300"),
        ] {
            assert_eq!(float_repr(x), py, "{x:e}");
        }
    }

    #[test]
    fn strings_are_ascii_with_python_escapes() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\nd\te/é€😀\u{1}\u{7f}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""a\"b\\c\nd\te/\u00e9\u20ac\ud83d\ude00\u0001\u007f""#
        );
    }

    #[test]
    fn serde_values_get_python_separators() {
        let v = serde_json::json!({"a": [1, 2.5, null], "b": {"c": "ü"}, "e": {}, "f": []});
        assert_eq!(
            String::from_utf8(to_vec(&v)).unwrap(),
            r#"{"a": [1, 2.5, null], "b": {"c": "\u00fc"}, "e": {}, "f": []}"#
        );
    }

    #[test]
    fn json_text_is_restyled_with_numbers_verbatim() {
        let mut out = Vec::new();
        write_json_text(
            &mut out,
            r#"{"x":[1e-07,12.0,-0.5,true],"y":"ä\"","z":{"k":null}, "w" : 2.50}"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"x": [1e-07, 12.0, -0.5, true], "y": "\u00e4\"", "z": {"k": null}, "w": 2.50}"#
        );
    }

    /// What `json.dumps(json.loads(text))` writes, checked against CPython 3.11.
    #[test]
    fn what_python_reads_is_written_as_python_writes_it() {
        for (text, python) in [
            (
                &br#"["a\ud800b","\udfff","\uD83D\uDE00","\uDBFF"]"#[..],
                r#"["a\ud800b", "\udfff", "\ud83d\ude00", "\udbff"]"#,
            ),
            (br#"{"\ud800k":1}"#, r#"{"\ud800k": 1}"#),
            (
                b"[\"\xed\xa0\x80\",\"\xed\xa0\xbd\xed\xb8\x80\"]",
                r#"["\ud800", "\ud83d\ude00"]"#,
            ),
            (br#"[NaN,Infinity,-Infinity]"#, "[NaN, Infinity, -Infinity]"),
            (b"\"a\x7fb\\/\"", r#""a\u007fb/""#),
            (b"\xef\xbb\xbf{} \n", "{}"),
            (b"\xff\xfe[\x001\x00]\x00", "[1]"),
            (b"\x00[\x00\"\xd8\x00\x00\"\x00]", r#"["\ud800"]"#),
            (b"[\x00\x00\x00]\x00\x00\x00", "[]"),
            (b" [ ] ", "[]"),
        ] {
            assert_eq!(
                restyled(text).unwrap(),
                python,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    /// Each of these makes `json.loads(bytes)` raise in CPython 3.11.
    #[test]
    fn what_python_refuses_is_refused_with_the_reason() {
        let nines = "9".repeat(MAX_INT_DIGITS + 1);
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        for (text, reason) in [
            (&b""[..], "empty"),
            (b"   ", "empty"),
            (b"{\"a\":\xff}", "not UTF-8: byte 0xff at byte 5"),
            (b"[\"\xc0\xaf\"]", "not UTF-8"),
            (b"[\"a\x01\"]", "control character U+0001"),
            (br#"{"x":[1,2"#, "ends at byte 9 inside a list (truncated?)"),
            (br#"{"x":"ab"#, "inside a string that starts at byte 5"),
            (br#"{"x":tr"#, "inside a literal"),
            (br#"{"x":1."#, "inside a number"),
            (br#"{"x":"\u12"#, "`\\u` escape"),
            (
                br#"{"x":1}x"#,
                "expected the end after the JSON value at byte 7, found `x`",
            ),
            (br#"[-NaN]"#, "expected a value"),
            (br#"[nan]"#, "expected a value"),
            (br#"[01]"#, "expected `,` or `]`"),
            (br#"[1,]"#, "expected a value"),
            (br#"{"a":1,}"#, "a string key"),
            (br#"{1:2}"#, "a string key"),
            (br#"["\x"]"#, "invalid escape `\\x`"),
            (br#"["\u12G4"]"#, "invalid `\\u` escape"),
            (nines.as_bytes(), "4301 digits"),
            (deep.as_bytes(), "nested deeper than 512 levels"),
            (b"\xff\xfe[\x00]", "odd number of bytes"),
        ] {
            let e = restyled(text).unwrap_err();
            assert!(
                e.what.contains(reason),
                "{}: {e}",
                String::from_utf8_lossy(text)
            );
        }
        let ok_nines = "9".repeat(MAX_INT_DIGITS);
        assert_eq!(restyled(ok_nines.as_bytes()).unwrap(), ok_nines);
        assert_eq!(restyled(b"-1e400").unwrap(), "-1e400");
    }

    #[test]
    fn documents_keep_members_raw() {
        let text = br#" {"a" : [1, {"b":2}], "\u0061":"x", "c":null} "#;
        let Document::Object(members) = document(text).unwrap() else {
            panic!("an object");
        };
        let names: Vec<String> = members.iter().map(|(k, _)| k.to_text_lossy()).collect();
        assert_eq!(names, ["a", "a", "c"]);
        assert_eq!(members[0].1.text(), br#"[1, {"b":2}]"#);
        assert!(members[2].1.is_null());
        let tree = Raw(text).parse().unwrap();
        assert_eq!(tree.get("a"), Some(&Json::Str(PyStr::from("x"))));
        assert_eq!(
            document(b"[1]").unwrap(),
            Document::Other { kind: "a list" }
        );
        assert!(document(b"[1").is_err());
    }

    /// A Python string's lone surrogates are held as stand-ins and written back as
    /// `json.dumps` writes them (checked against CPython 3.11); U+FDD0 itself stays U+FDD0;
    /// distinct Python strings stay distinct.
    #[test]
    fn lone_surrogates_are_held_and_written_back() {
        let text = br#"["\ud800", "\udbff\udfff", "\ufdd0\ue000", "\ufdd0", "\udfff\ud800x", "\ud800\ue000", "\ue800"]"#;
        let Json::List(items) = parse(text).unwrap() else {
            panic!("a list");
        };
        let held: Vec<PyStr> = items
            .into_iter()
            .map(|v| match v {
                Json::Str(s) => s,
                other => panic!("{other:?}"),
            })
            .collect();
        let mut out = Vec::new();
        for s in &held {
            write_py_str(&mut out, s);
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""\ud800" "\udbff\udfff" "\ufdd0\ue000" "\ufdd0" "\udfff\ud800x" "\ud800\ue000" "\ue800" "#
        );
        for (i, a) in held.iter().enumerate() {
            for b in held.get(i + 1..).unwrap() {
                assert_ne!(a, b);
            }
        }
        assert_eq!(held[0].to_text(), None);
        assert_eq!(held[1].to_text().as_deref(), Some("\u{10ffff}"));
        assert_eq!(held[4].to_text_lossy(), "\u{fffd}\u{fffd}x");
        assert!(held[2].is("\u{fdd0}\u{e000}") && !held[5].is("\u{fdd0}\u{e000}"));
        assert!(held[3].is("\u{fdd0}") && !held[0].is("\u{fffd}"));
        assert_eq!(PyStr::from("\u{fdd0}\u{e000}"), held[2]);
        assert_eq!(held[2].to_text().as_deref(), Some("\u{fdd0}\u{e000}"));
    }

    #[test]
    fn numbers_read_as_python_reads_them() {
        for (text, python_str) in [
            ("-0", "0"),
            ("12", "12"),
            ("1.50", "1.5"),
            ("1E5", "100000.0"),
            ("1e400", "inf"),
            ("-1e400", "-inf"),
            ("NaN", "nan"),
            ("-Infinity", "-inf"),
            ("-0.0", "-0.0"),
        ] {
            assert_eq!(python_str_of_number(text), python_str, "{text}");
        }
    }
}

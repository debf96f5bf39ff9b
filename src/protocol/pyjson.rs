//! JSON written the way Python's `json.dumps` writes it with its defaults (spec §10).
//!
//! hetida serialises the runtime request and the Kafka response with pydantic's `.json()`, i.e.
//! `json.dumps` defaults: separators `", "` and `": "`, `ensure_ascii` (every character outside
//! printable ASCII as `\uXXXX`, surrogate pairs above U+FFFF) and floats in `repr` form. Readers
//! that compare bytes, or hash them, see the same bytes from us.
//!
//! JSON that arrives as text (the runtime's output values) is re-spaced and re-escaped token by
//! token, with every number copied verbatim: re-encoding a number could change its digits.

use std::io::{self, Write};

use serde::Serialize;

/// Python-style JSON bytes of `value`.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(&mut out, value);
    out
}

/// Appends Python-style JSON of `value` to `out`.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, PyFormatter);
    // Writing to a Vec cannot fail, and every type serialised here has string keys.
    value
        .serialize(&mut ser)
        .expect("serialising protocol data to JSON");
}

/// Appends `text` (valid JSON) re-spaced and re-escaped in Python style, numbers kept verbatim.
pub fn write_json_text(out: &mut Vec<u8>, text: &str) {
    restyle(out, text).expect("writing to a Vec cannot fail");
}

/// Appends `s` as a Python-style JSON string literal.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape_into(out, s).expect("writing to a Vec cannot fail");
    out.push(b'"');
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
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let decpt = exp + 1;
    let mut s = String::with_capacity(digits.len() + 8);
    if x < 0.0 {
        s.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if exp < 0 { '-' } else { '+' });
        s.push_str(&format!("{:02}", exp.abs()));
    } else if decpt <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-decpt) as usize));
        s.push_str(&digits);
    } else if (decpt as usize) < digits.len() {
        s.push_str(&digits[..decpt as usize]);
        s.push('.');
        s.push_str(&digits[decpt as usize..]);
    } else {
        s.push_str(&digits);
        s.extend(std::iter::repeat_n('0', decpt as usize - digits.len()));
        s.push_str(".0");
    }
    s
}

fn escape_into<W: Write + ?Sized>(w: &mut W, s: &str) -> io::Result<()> {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let plain = (' '..='~').contains(&c) && c != '"' && c != '\\';
        if plain {
            continue;
        }
        w.write_all(&bytes[start..i])?;
        start = i + c.len_utf8();
        match c {
            '"' => w.write_all(b"\\\"")?,
            '\\' => w.write_all(b"\\\\")?,
            '\n' => w.write_all(b"\\n")?,
            '\r' => w.write_all(b"\\r")?,
            '\t' => w.write_all(b"\\t")?,
            '\u{8}' => w.write_all(b"\\b")?,
            '\u{c}' => w.write_all(b"\\f")?,
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
    }
    w.write_all(&bytes[start..])
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
        escape_into(writer, fragment)
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
        restyle(writer, fragment)
    }
}

/// Re-spaces and re-escapes valid JSON text; numbers and literals are copied as they are.
fn restyle<W: Write + ?Sized>(w: &mut W, text: &str) -> io::Result<()> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b',' => {
                w.write_all(b", ")?;
                i += 1;
            }
            b':' => {
                w.write_all(b": ")?;
                i += 1;
            }
            b'{' | b'}' | b'[' | b']' => {
                w.write_all(&bytes[i..=i])?;
                i += 1;
            }
            b'"' => {
                let end = string_end(bytes, i);
                let literal = &text[i..end];
                // The literal is valid JSON (the caller's text is), so decoding cannot fail.
                let decoded: String = serde_json::from_str(literal)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                w.write_all(b"\"")?;
                escape_into(w, &decoded)?;
                w.write_all(b"\"")?;
                i = end;
            }
            _ => {
                let start = i;
                while i < bytes.len()
                    && !matches!(
                        bytes[i],
                        b',' | b':' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                    )
                {
                    i += 1;
                }
                w.write_all(&bytes[start..i])?;
            }
        }
    }
    Ok(())
}

/// Index just past the closing quote of the string literal starting at `start`.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"x": [1e-07, 12.0, -0.5, true], "y": "\u00e4\"", "z": {"k": null}, "w": 2.50}"#
        );
    }
}

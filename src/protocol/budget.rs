//! The memory budget of one request: what reading it as JSON would cost, estimated from its
//! bytes before anything is built, and refused over the budget.
//!
//! The fields of a request that are read (`id`, `wiring`, …; the others are skipped unread) are
//! read into [`pyjson::Json`] trees. That costs little for what hetida's requests carry (their
//! data travels as strings: `filters.value` is text), but each JSON value, however small in the
//! request, is a whole node in memory, in a vector that may have grown to twice its length. A
//! 9.9 MB request of 3.3 M empty objects (`[{},{},…]`) so grew its worker (then reading into
//! `serde_json::Value`, 80 bytes a node) to about 540 MB (55×), and under a memory limit the
//! worker aborted, again and again. The scan here counts the values without building anything,
//! and a request whose tree would take more than [`budget`] is refused with a failure response
//! instead. The costs stay those of `serde_json::Value`, which are more than a [`pyjson::Json`]
//! node and member take, so the estimate stays above what is built.
use uuid::Uuid;

use super::lenient::parse_uuid;
use super::pyjson::{self, Document, Json};

/// A request may take this many times its size to read, ...
pub const FACTOR: usize = 8;
/// ... or this much, whichever is more: small requests are never refused.
pub const FLOOR: usize = 16 << 20;

/// Bytes a JSON value takes in the tree beyond its text: a node (reckoned as a
/// `serde_json::Value`, larger than a [`pyjson::Json`]), twice over for the slack of the vector
/// it sits in.
const VALUE_COST: usize = 2 * size_of::<serde_json::Value>();
/// Bytes of string a byte of string text may take: a string grows by appending, up to twice its
/// length, and the stand-in of a raw U+FDD0 takes twice its bytes (see [`pyjson::MARK`]).
const STRING_COST: usize = 2;
/// Bytes an object member takes beyond its value: the key's `String`, the entry's hash and its
/// index in the map's table, twice over for the slack.
const MEMBER_COST: usize = 2 * (size_of::<String>() + 2 * size_of::<usize>());

/// What a request's JSON holds, counted without parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footprint {
    /// The request's size.
    pub bytes: usize,
    /// JSON values of every kind (object keys not counted).
    pub values: usize,
    /// Object members (key and value pairs).
    pub members: usize,
    /// Bytes inside strings, keys included (an upper bound of their decoded length).
    pub string_bytes: usize,
}

impl Footprint {
    /// Counts the values of `json` in one pass, building nothing. Text that is no JSON gets
    /// some count; the parser that follows says what is wrong with it.
    pub fn of(json: &[u8]) -> Footprint {
        let (mut containers, mut scalars, mut strings) = (0usize, 0usize, 0usize);
        let (mut members, mut string_bytes) = (0usize, 0usize);
        let (mut in_string, mut escaped, mut in_scalar) = (false, false, false);
        for &b in json {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                    continue;
                }
                string_bytes += 1;
                continue;
            }
            match b {
                b'"' => {
                    in_string = true;
                    in_scalar = false;
                    strings += 1;
                }
                b'{' | b'[' => {
                    containers += 1;
                    in_scalar = false;
                }
                b':' => {
                    members += 1;
                    in_scalar = false;
                }
                b'}' | b']' | b',' | b' ' | b'\t' | b'\n' | b'\r' => in_scalar = false,
                _ if !in_scalar => {
                    scalars += 1;
                    in_scalar = true;
                }
                _ => {}
            }
        }
        Footprint {
            bytes: json.len(),
            // Each member's key is a string that is no value.
            values: (containers + scalars + strings).saturating_sub(members),
            members,
            string_bytes,
        }
    }

    /// The footprint of `parts` of a request of `bytes`: what reading only those parts (the
    /// fields read; the rest is skipped) costs.
    pub fn of_parts<'a>(bytes: usize, parts: impl IntoIterator<Item = &'a [u8]>) -> Footprint {
        let mut sum = Footprint {
            bytes,
            ..Footprint::default()
        };
        for part in parts {
            let f = Footprint::of(part);
            sum.values += f.values;
            sum.members += f.members;
            sum.string_bytes += f.string_bytes;
        }
        sum
    }

    /// Estimated bytes of the tree the request would be read into.
    pub fn tree_bytes(&self) -> usize {
        self.values
            .saturating_mul(VALUE_COST)
            .saturating_add(self.members.saturating_mul(MEMBER_COST))
            .saturating_add(self.string_bytes.saturating_mul(STRING_COST))
    }

    /// `Err` with the reason when reading the request would take more than its budget.
    pub fn check(&self) -> Result<(), String> {
        let tree = self.tree_bytes();
        let allowed = budget(self.bytes);
        if tree <= allowed {
            return Ok(());
        }
        Err(format!(
            "reading it would take about {} MB of memory ({} JSON values in {} bytes), more than a request may take: {FACTOR} times its size or {} MB, whichever is more ({} MB); hetida requests carry their data as strings (filters.value), which cost no more than their size",
            tree >> 20,
            self.values,
            self.bytes,
            FLOOR >> 20,
            allowed >> 20,
        ))
    }
}

/// Bytes reading a request of `bytes` may take.
pub fn budget(bytes: usize) -> usize {
    bytes.saturating_mul(FACTOR).max(FLOOR)
}

/// The request's `job_id` (a string in one of the spellings Python's `uuid.UUID` reads), read
/// without building the request: every other field is validated and dropped as it is read, so
/// no request, however large, costs memory here. `None` when there is none that can be read (or
/// when `json.loads` would not read the request at all).
pub fn job_id_only(value: Option<&[u8]>) -> Option<Uuid> {
    let text = std::str::from_utf8(value?).ok()?;
    let Ok(Document::Object(members)) =
        pyjson::document_keeping(text.as_bytes(), |k| k.is("job_id"))
    else {
        return None;
    };
    let (_, raw) = members.last()?;
    match raw.parse().ok()? {
        Json::Str(s) => parse_uuid(&s.to_text()?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_values_members_and_string_bytes() {
        let f = Footprint::of(br#"{"a": [1, -2.5e3, true, null, {}], "b\"c": "x,y:z"}"#);
        assert_eq!(
            f,
            Footprint {
                bytes: 51,
                values: 8,
                members: 2,
                string_bytes: 1 + 4 + 5,
            }
        );
        assert_eq!(Footprint::of(b"").values, 0);
        assert_eq!(Footprint::of(b"17").values, 1);
    }

    /// The estimate against what serde_json really allocates: 3.3 M empty objects in 9.9 MB
    /// peaked at about 540 MB (BENCHMARKS.md), 80 bytes a `Value` twice over; the estimate
    /// must not be below that.
    #[test]
    fn empty_objects_are_estimated_at_their_tree() {
        let n = 200_000;
        let json = format!("[{}]", vec!["{}"; n].join(","));
        let f = Footprint::of(json.as_bytes());
        assert_eq!(f.values, n + 1);
        assert!(f.tree_bytes() >= n * size_of::<serde_json::Value>() * 2);
        let err = f.check().unwrap_err();
        assert!(err.contains("200001 JSON values"), "{err}");
    }

    #[test]
    fn requests_carrying_strings_pass_and_small_ones_always_do() {
        let series = "x".repeat(30 << 20);
        let request = format!(
            r#"{{"id": "6b1c2a4e-0f3d-4a55-9d1e-1a2b3c4d5f01", "wiring": {{"input_wirings": [{{"workflow_input_name": "s", "adapter_id": "direct_provisioning", "filters": {{"value": "{series}"}}}}]}}}}"#
        );
        assert_eq!(Footprint::of(request.as_bytes()).check(), Ok(()));
        // 65,536 empty objects (192 KB): 10 MB of tree, under the floor.
        let json = format!("[{}]", vec!["{}"; 1 << 16].join(","));
        assert_eq!(Footprint::of(json.as_bytes()).check(), Ok(()));
        assert_eq!(budget(10), FLOOR);
        assert_eq!(budget(10 << 20), FACTOR * (10 << 20));
    }

    #[test]
    fn the_job_id_is_read_past_anything() {
        let id = "79ce1eb1-3ef8-4c74-9114-c856fd88dc89";
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let request = format!(r#"{{"junk": [{{}}, {{}}], "job_id": "{}", "x": 1}}"#, id);
        assert_eq!(
            job_id_only(Some(request.as_bytes())),
            Some(id.parse().unwrap())
        );
        // Read as `json.loads` reads it: past `NaN`, lone surrogates and numbers beyond a double.
        let python = format!(r#"{{"junk": [NaN, "\ud800", -Infinity, 1e400], "job_id": "{id}"}}"#);
        assert_eq!(
            job_id_only(Some(python.as_bytes())),
            Some(id.parse().unwrap())
        );
        for value in [
            Some(deep.as_bytes()),
            Some(&br#"{"job_id": "\ud800"}"#[..]),
            Some(&br#"{"job_id": "79ce1eb1-3ef8-4c74-9114-c856fd88dc89", "x": [1,]}"#[..]),
            Some(&br#"{"job_id": 5}"#[..]),
            Some(&b"\xff"[..]),
            None,
        ] {
            assert_eq!(job_id_only(value), None);
        }
    }
}

//! Properties of the protocol types: what we write, we (and Python) read back unchanged; no
//! input, however broken, makes parsing or response building panic.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

use hd_kafka_exec::kafka::record_batch::{self, Codec, Decoded, Header, Record, RecordBatch};
use hd_kafka_exec::protocol::budget::Footprint;
use hd_kafka_exec::protocol::pyjson;
use hd_kafka_exec::protocol::wiring::WorkflowWiring;
use hd_kafka_exec::protocol::{ProtocolError, Timings, build_response, job_id_only, parse_request};
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{Value, json};

fn identifier() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,12}".prop_filter("not a keyword", |s| {
        ![
            "and", "as", "if", "in", "is", "or", "def", "del", "for", "not", "try",
        ]
        .contains(&s.as_str())
    })
}

fn filter_key() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_]{1,8}"
        .prop_filter("reserved", |k| !["from", "to", "id"].contains(&k.as_str()))
}

prop_compose! {
    fn input_wiring()(name in identifier(), adapter in prop_oneof![Just(json!(1)), "[a-z_]{1,20}".prop_map(Value::from)],
                      filters in proptest::collection::btree_map(filter_key(), ".{0,20}", 0..4),
                      ref_id in proptest::option::of(".{0,10}"), use_default in any::<bool>()) -> Value {
        json!({"workflow_input_name": name, "adapter_id": adapter, "filters": filters, "ref_id": ref_id, "use_default_value": use_default})
    }
}

prop_compose! {
    fn output_wiring()(name in identifier(), adapter in prop_oneof![Just(json!(1)), "[a-z_]{1,20}".prop_map(Value::from)],
                       filters in proptest::collection::btree_map(filter_key(), ".{0,20}", 0..4)) -> Value {
        json!({"workflow_output_name": name, "adapter_id": adapter, "filters": filters})
    }
}

proptest! {
    /// A wiring written in the reference's style parses back to the same wiring.
    #[test]
    fn wiring_round_trips(inputs in proptest::collection::vec(input_wiring(), 0..5),
                          outputs in proptest::collection::vec(output_wiring(), 0..5)) {
        let mut seen = std::collections::HashSet::new();
        let inputs: Vec<Value> = inputs.into_iter().filter(|w| seen.insert(w["workflow_input_name"].clone())).collect();
        let mut seen = std::collections::HashSet::new();
        let outputs: Vec<Value> = outputs.into_iter().filter(|w| seen.insert(w["workflow_output_name"].clone())).collect();
        let wiring = WorkflowWiring::from_value(&json!({"input_wirings": inputs, "output_wirings": outputs}), "wiring").unwrap();
        let written = pyjson::to_vec(&wiring);
        let reread = WorkflowWiring::from_value(&serde_json::from_slice(&written).unwrap(), "wiring").unwrap();
        prop_assert_eq!(reread, wiring);
    }

    /// Strings survive Python-style escaping, which writes only ASCII.
    #[test]
    fn strings_round_trip_as_ascii(s in any::<String>()) {
        let mut out = Vec::new();
        pyjson::write_str(&mut out, &s);
        prop_assert!(out.is_ascii());
        let back: String = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(back, s);
    }

    /// Python's float repr is shortest round-trip: reading it gives the same float.
    #[test]
    fn float_repr_round_trips(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
        let text = pyjson::float_repr(x);
        let back: f64 = text.parse().unwrap();
        prop_assert_eq!(back.to_bits(), x.to_bits(), "{}", text);
    }

    /// Restyled JSON text is the same value, with every number's text kept.
    #[test]
    fn restyled_json_is_the_same_value(v in arbitrary_json()) {
        let compact = serde_json::to_string(&v).unwrap();
        let mut out = Vec::new();
        pyjson::write_json_text(&mut out, &compact).unwrap();
        let back: Value = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(back, v);
    }

    /// No bytes make request parsing or response building panic, and what a response is built
    /// from, whatever it was, is JSON.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_request(Some(&bytes));
        if let Ok(response) = build_response(200, &bytes, &[], &Timings::default(), None) {
            assert_python_json(&response);
        }
    }

    /// Whatever a runtime writes as outputs — any JSON Python reads, lone surrogates, control
    /// characters, odd escapes, NaN, huge and odd numbers — becomes a response, and the outputs
    /// in it are what Python's `json.dumps` writes for them (numbers as the runtime wrote them).
    #[test]
    fn runtime_outputs_arrive_as_written(outputs in output_members(), ws in any::<bool>()) {
        let value = Out::Object(outputs);
        let body = answer(&value, ws);
        let response = build_response(200, &body, &[], &Timings::default(), None)
            .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&body)));
        assert_python_json(&response);
        let mut expected = b"\"output_results_by_output_name\": ".to_vec();
        value.python(&mut expected);
        expected.extend_from_slice(b", \"traceback\": ");
        prop_assert!(
            response.windows(expected.len()).any(|w| w == expected),
            "{}\nnot in\n{}", String::from_utf8_lossy(&expected), String::from_utf8_lossy(&response)
        );
        // An independent reading where serde_json can read the runtime's text (not when a
        // surrogate pair is spelled half escaped, half raw, which Python reads).
        if let (true, Ok(theirs)) = (value.plain(), serde_json::from_slice::<Value>(&value.text(false))) {
            let ours: Value = serde_json::from_slice(&response).unwrap();
            prop_assert_eq!(&ours["output_results_by_output_name"], &theirs);
        }
    }

    /// An answer cut short anywhere is refused, and the failure says it was cut short.
    #[test]
    fn truncated_answers_are_refused_as_truncated(outputs in output_members(), ws in any::<bool>(), cut in any::<prop::sample::Index>()) {
        let body = answer(&Out::Object(outputs), ws);
        let cut = 1 + cut.index(body.len() - 1);
        match build_response(200, &body[..cut], &[], &Timings::default(), None) {
            Err(ProtocolError::RuntimeAnswerNotJson { reason, .. }) => {
                prop_assert!(reason.contains("(truncated?)"), "{}", reason)
            }
            other => prop_assert!(false, "{:?}", other.map(|r| String::from_utf8_lossy(&r).into_owned())),
        }
    }

    /// An answer with a byte changed, inserted or removed never panics; if it still makes a
    /// response, that response is JSON.
    #[test]
    fn mangled_answers_never_panic(outputs in output_members(), at in any::<prop::sample::Index>(), byte in any::<u8>(), how in 0..3u8) {
        let mut body = answer(&Out::Object(outputs), false);
        let at = at.index(body.len());
        match how {
            0 => body[at] = byte,
            1 => body.insert(at, byte),
            _ => { body.remove(at); }
        }
        if let Ok(response) = build_response(200, &body, &[], &Timings::default(), None) {
            assert_python_json(&response);
        }
    }

    /// A control character Python's strict reader refuses, unescaped in an output string.
    #[test]
    fn raw_control_characters_are_refused(prefix in "[a-z]{0,5}", c in 0u8..0x20) {
        let body = format!(r#"{{"output_results_by_output_name":{{"x":"{prefix}{}"}},"job_id":"{JOB}","result":"ok"}}"#, c as char);
        match build_response(200, body.as_bytes(), &[], &Timings::default(), None) {
            Err(ProtocolError::RuntimeAnswerNotJson { reason, .. }) => {
                prop_assert!(reason.contains(&format!("control character U+{c:04X}")), "{}", reason)
            }
            other => prop_assert!(false, "{:?}", other.map(|r| String::from_utf8_lossy(&r).into_owned())),
        }
    }

    /// Nor does arbitrary JSON shaped roughly like a request.
    #[test]
    fn arbitrary_json_requests_never_panic(v in arbitrary_json(), id in proptest::option::of(any::<u128>())) {
        let mut obj = json!({"wiring": v.clone(), "run_pure_plot_operators": v.clone(), "job_id": v});
        if let Some(id) = id {
            obj["id"] = json!(uuid::Uuid::from_u128(id).to_string());
        }
        let _ = parse_request(Some(obj.to_string().as_bytes()));
    }

    /// Requests as they come out of a fetched batch (issue 26): records with any headers —
    /// keys that are not UTF-8, null values, repeated keys, a `traceparent` among them — and
    /// values that are requests, near-requests or bytes, in a batch compressed or not. Read
    /// back, each record is what was produced, header for header, and the request parser
    /// decides on the value exactly as on the bytes produced; nothing panics.
    #[test]
    fn requests_read_from_a_batch_parse_as_produced(
        records in proptest::collection::vec(batch_record(), 1..6),
        codec in prop_oneof![Just(Codec::None), Just(Codec::Gzip), Just(Codec::Snappy)],
        base_offset in 0i64..1_000_000,
    ) {
        let batch = RecordBatch::plain(
            base_offset,
            codec,
            records
                .iter()
                .enumerate()
                .map(|(i, (key, value, headers))| Record {
                    offset: base_offset + i as i64,
                    timestamp: 0,
                    key: key.clone(),
                    value: value.clone(),
                    headers: headers.clone(),
                })
                .collect(),
        );
        let bytes = record_batch::encode(&batch).unwrap();
        let decoded = record_batch::decode(&bytes);
        prop_assert_eq!(decoded.len(), 1);
        let Decoded::Batch(read) = &decoded[0] else {
            panic!("a batch just written does not read: {:?}", decoded[0]);
        };
        prop_assert_eq!(read.records.len(), records.len());
        for (got, (key, value, headers)) in read.records.iter().zip(&records) {
            prop_assert_eq!(&got.key, key);
            prop_assert_eq!(&got.headers, headers);
            prop_assert_eq!(&got.value, value);
            // Compared but for a job id the request lacks, which each parse makes up afresh.
            let decided = |value: Option<&[u8]>| {
                parse_request(value)
                    .map(|r| format!("{:?} {:?} {}", r.target, r.wiring, r.run_pure_plot_operators))
                    .map_err(|e| e.to_string())
            };
            prop_assert_eq!(decided(got.value.as_deref()), decided(value.as_deref()));
        }
    }

    /// The memory budget's scan counts exactly the values and members of any JSON text,
    /// pretty-printed or not, escapes in strings included: what it estimates is the tree the
    /// parser would build.
    #[test]
    fn the_budget_scan_counts_every_value(v in arbitrary_json(), pretty in any::<bool>()) {
        fn count(v: &Value) -> (usize, usize) {
            match v {
                Value::Array(items) => items.iter().map(count).fold((1, 0), |(a, b), (c, d)| (a + c, b + d)),
                Value::Object(map) => map.values().map(count).fold((1, map.len()), |(a, b), (c, d)| (a + c, b + d)),
                _ => (1, 0),
            }
        }
        let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
        let f = Footprint::of(text.as_bytes());
        prop_assert_eq!((f.values, f.members), count(&v));
        prop_assert!(f.string_bytes <= text.len());
    }

    /// Nor do the budget's scan and the job id reader, on any bytes.
    #[test]
    fn the_budget_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let f = Footprint::of(&bytes);
        prop_assert!(f.values <= bytes.len() && f.members <= bytes.len());
        let _ = f.check();
        let _ = job_id_only(Some(&bytes));
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const JOB: &str = "00000000-0000-0000-0000-000000000001";

/// A response is ASCII, and JSON: strict JSON (with lone surrogate escapes, which serde_json's
/// raw values pass) once Python's NaN and infinities are out of the way, and JSON as Python
/// reads it.
fn assert_python_json(response: &[u8]) {
    assert!(response.is_ascii());
    let text = std::str::from_utf8(response).unwrap();
    assert!(
        matches!(pyjson::document(response), Ok(pyjson::Document::Object(_))),
        "{text}"
    );
    let strict = without_python_numbers(text);
    assert!(
        serde_json::from_str::<&RawValue>(&strict).is_ok(),
        "{strict}"
    );
}

/// `text` with NaN, Infinity and -Infinity outside strings replaced by 0.
fn without_python_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !in_string
            && let Some(literal) = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|l| rest.starts_with(l))
        {
            out.push('0');
            rest = &rest[literal.len()..];
            continue;
        }
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => in_string = !in_string,
            _ => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn answer(outputs: &Out, ws: bool) -> Vec<u8> {
    let mut body = br#"{"output_results_by_output_name":"#.to_vec();
    body.extend_from_slice(&outputs.text(ws));
    body.extend_from_slice(format!(r#","job_id":"{JOB}","result":"ok"}}"#).as_bytes());
    body
}

/// How one UTF-16 unit (or pair) of a string is written in the runtime's text.
#[derive(Debug, Clone, Copy)]
enum Spelling {
    Raw,
    Escape,
    EscapeUpper,
}

/// A JSON value as a runtime may write it: Python's JSON, every spelling Python reads.
#[derive(Debug, Clone)]
enum Out {
    Null,
    Bool(bool),
    /// Number text, written verbatim (NaN and ±Infinity included).
    Number(String),
    Str(Vec<(u16, Spelling)>),
    List(Vec<Out>),
    Object(Vec<(Vec<(u16, Spelling)>, Out)>),
}

fn write_units(out: &mut Vec<u8>, units: &[(u16, Spelling)]) {
    out.push(b'"');
    let mut i = 0;
    while let Some(&(u, spelling)) = units.get(i) {
        i += 1;
        let next = units.get(i).map(|n| n.0);
        let escape = |out: &mut Vec<u8>, u: u16, upper: bool| {
            let hex = if upper {
                format!("\\u{u:04X}")
            } else {
                format!("\\u{u:04x}")
            };
            out.extend_from_slice(hex.as_bytes());
        };
        match (spelling, u) {
            (Spelling::EscapeUpper, _) => escape(out, u, true),
            (Spelling::Escape, 0x22) => out.extend_from_slice(b"\\\""),
            (Spelling::Escape, 0x5c) => out.extend_from_slice(b"\\\\"),
            (Spelling::Escape, 0x2f) => out.extend_from_slice(b"\\/"),
            (Spelling::Escape, 0x08) => out.extend_from_slice(b"\\b"),
            (Spelling::Escape, 0x0c) => out.extend_from_slice(b"\\f"),
            (Spelling::Escape, 0x0a) => out.extend_from_slice(b"\\n"),
            (Spelling::Escape, 0x0d) => out.extend_from_slice(b"\\r"),
            (Spelling::Escape, 0x09) => out.extend_from_slice(b"\\t"),
            (Spelling::Escape, _) => escape(out, u, false),
            // Raw: what must be escaped is, the rest goes as (generalised) UTF-8.
            (Spelling::Raw, 0x22 | 0x5c | 0..=0x1f) => escape(out, u, false),
            (Spelling::Raw, 0xd800..=0xdbff) if matches!(next, Some(0xdc00..=0xdfff)) => {
                let low = next.unwrap_or_default();
                i += 1;
                let c = char::from_u32(
                    0x10000 + ((u32::from(u) - 0xd800) << 10) + (u32::from(low) - 0xdc00),
                )
                .unwrap();
                out.extend_from_slice(c.to_string().as_bytes());
            }
            (Spelling::Raw, _) => {
                // Surrogates as Python's `surrogatepass` encodes them: three bytes each.
                let u = u32::from(u);
                if u < 0x80 {
                    out.push(u as u8);
                } else if u < 0x800 {
                    out.extend_from_slice(&[0xc0 | (u >> 6) as u8, 0x80 | (u & 0x3f) as u8]);
                } else {
                    out.extend_from_slice(&[
                        0xe0 | (u >> 12) as u8,
                        0x80 | ((u >> 6) & 0x3f) as u8,
                        0x80 | (u & 0x3f) as u8,
                    ]);
                }
            }
        }
    }
    out.push(b'"');
}

/// Python's `json.dumps` (ensure_ascii) of a string, written independently of the library.
fn python_units(out: &mut Vec<u8>, units: &[(u16, Spelling)]) {
    out.push(b'"');
    for &(u, _) in units {
        match u {
            0x22 => out.extend_from_slice(b"\\\""),
            0x5c => out.extend_from_slice(b"\\\\"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0d => out.extend_from_slice(b"\\r"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x20..=0x7e => out.push(u as u8),
            _ => out.extend_from_slice(format!("\\u{u:04x}").as_bytes()),
        }
    }
    out.push(b'"');
}

impl Out {
    /// The runtime's text: compact, or with whitespace everywhere it may go.
    fn text(&self, ws: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out, ws);
        out
    }

    fn write(&self, out: &mut Vec<u8>, ws: bool) {
        let space = |out: &mut Vec<u8>| {
            if ws {
                out.extend_from_slice(b" \n\t\r");
            }
        };
        match self {
            Out::Null => out.extend_from_slice(b"null"),
            Out::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Out::Number(n) => out.extend_from_slice(n.as_bytes()),
            Out::Str(units) => write_units(out, units),
            Out::List(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    space(out);
                    if i > 0 {
                        out.push(b',');
                        space(out);
                    }
                    item.write(out, ws);
                }
                space(out);
                out.push(b']');
            }
            Out::Object(members) => {
                out.push(b'{');
                for (i, (key, value)) in members.iter().enumerate() {
                    space(out);
                    if i > 0 {
                        out.push(b',');
                        space(out);
                    }
                    write_units(out, key);
                    space(out);
                    out.push(b':');
                    space(out);
                    value.write(out, ws);
                }
                space(out);
                out.push(b'}');
            }
        }
    }

    /// What Python writes for it: `json.dumps` spacing and escapes, numbers as written.
    fn python(&self, out: &mut Vec<u8>) {
        match self {
            Out::Str(units) => python_units(out, units),
            Out::List(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    item.python(out);
                }
                out.push(b']');
            }
            Out::Object(members) => {
                out.push(b'{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    python_units(out, key);
                    out.extend_from_slice(b": ");
                    value.python(out);
                }
                out.push(b'}');
            }
            scalar => scalar.write(out, false),
        }
    }

    /// Strict JSON serde_json reads: no NaN or infinities, no lone surrogates, no huge
    /// numbers (which serde_json reads as infinity or refuses).
    fn plain(&self) -> bool {
        let plain_str = |units: &[(u16, Spelling)]| {
            String::from_utf16(&units.iter().map(|u| u.0).collect::<Vec<_>>()).is_ok()
        };
        match self {
            Out::Null | Out::Bool(_) => true,
            Out::Number(n) => {
                n.len() < 20
                    && n.parse::<f64>()
                        .is_ok_and(|x| x.is_finite() && x.abs() < 1e300)
            }
            Out::Str(units) => plain_str(units),
            Out::List(items) => items.iter().all(Out::plain),
            Out::Object(members) => members.iter().all(|(k, v)| plain_str(k) && v.plain()),
        }
    }
}

fn units() -> impl Strategy<Value = Vec<(u16, Spelling)>> {
    let unit = prop_oneof![
        4 => 0x20u16..0x7f,
        2 => 0u16..0x20,
        2 => 0xd800u16..0xe000,
        1 => Just(0x22u16),
        1 => Just(0x5cu16),
        1 => Just(0x2fu16),
        2 => any::<u16>(),
    ];
    let spelling = prop_oneof![
        3 => Just(Spelling::Raw),
        1 => Just(Spelling::Escape),
        1 => Just(Spelling::EscapeUpper),
    ];
    let from_string = (".{0,8}", spelling.clone())
        .prop_map(|(s, spelling)| s.encode_utf16().map(|u| (u, spelling)).collect::<Vec<_>>());
    prop_oneof![
        proptest::collection::vec((unit, spelling), 0..12),
        from_string,
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| format!("{x:?}")),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| format!("{x:e}")),
        "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,25})?([eE][-+]?[0-9]{1,4})?",
        (any::<bool>(), 1usize..=4300, any::<u64>()).prop_map(|(negative, len, seed)| {
            let digits: String = seed.to_string().chars().cycle().take(len).collect();
            let digits = digits.trim_start_matches('0');
            let digits = if digits.is_empty() { "7" } else { digits };
            format!("{}{digits}", if negative { "-" } else { "" })
        }),
        prop_oneof![
            Just("NaN"),
            Just("Infinity"),
            Just("-Infinity"),
            Just("-0"),
            Just("-0.0"),
            Just("1e400"),
            Just("-1E-400"),
        ]
        .prop_map(str::to_owned),
    ]
}

fn output_value() -> impl Strategy<Value = Out> {
    let leaf = prop_oneof![
        Just(Out::Null),
        any::<bool>().prop_map(Out::Bool),
        number().prop_map(Out::Number),
        units().prop_map(Out::Str),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Out::List),
            proptest::collection::vec((units(), inner), 0..5).prop_map(Out::Object),
        ]
    })
}

fn output_members() -> impl Strategy<Value = Vec<(Vec<(u16, Spelling)>, Out)>> {
    proptest::collection::vec((units(), output_value()), 0..5)
}

/// One record to put in a batch: key, value and headers. Values are valid requests, requests
/// with arbitrary JSON in their fields, or arbitrary bytes; header keys are arbitrary bytes or
/// the names the service reads, repeated at will.
fn batch_record() -> impl Strategy<Value = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<Header>)> {
    let header_key = prop_oneof![
        Just(b"traceparent".to_vec()),
        Just(b"hd-job-id".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    let header = (
        header_key,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
    )
        .prop_map(|(key, value)| Header { key, value });
    let value = prop_oneof![
        any::<u128>().prop_map(|id| {
            json!({"id": uuid::Uuid::from_u128(id).to_string(), "wiring": {"input_wirings": [], "output_wirings": []}})
                .to_string()
                .into_bytes()
        }),
        (arbitrary_json(), any::<u128>()).prop_map(|(v, id)| {
            json!({"id": uuid::Uuid::from_u128(id).to_string(), "wiring": v.clone(), "job_id": v})
                .to_string()
                .into_bytes()
        }),
        proptest::collection::vec(any::<u8>(), 0..200),
    ];
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        proptest::option::of(value),
        proptest::collection::vec(header, 0..6),
    )
}

//! Properties of the protocol types: what we write, we (and Python) read back unchanged; no
//! input, however broken, makes parsing panic.

use hd_kafka_exec::protocol::pyjson;
use hd_kafka_exec::protocol::wiring::WorkflowWiring;
use hd_kafka_exec::protocol::{Timings, build_response, parse_request};
use proptest::prelude::*;
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

    /// No bytes make request parsing or response building panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_request(Some(&bytes));
        let _ = build_response(200, &bytes, &[], &Timings::default(), None);
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

//! The protocol hot path for the seed's Volatility request: parse, prepare + serialise the
//! runtime request (cold, and with the reusable prepared revision), serialise the response.
//!
//! Reads the recorded case from `../shared/vectors` (beside the checkout).
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

use std::hint::black_box;
use std::path::Path;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hd_kafka_exec::protocol::{
    PreparedRevision, Step, Target, Timings, build_response, parse_request,
};
use hd_kafka_exec::store::DirIndex;

fn vectors() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors")
}

fn protocol(c: &mut Criterion) {
    let store = DirIndex::open(&vectors().join("transformations")).expect("vector transformations");
    let case = vectors().join("cases/volatility_by_id");
    let request_bytes = std::fs::read(case.join("request.json")).unwrap();
    let runtime_answer = std::fs::read(case.join("runtime_response.json")).unwrap();
    let request = parse_request(Some(&request_bytes)).unwrap();
    let Target::Id(id) = request.target else {
        unreachable!()
    };
    let tree = store.tree(id).unwrap();
    let prepared = PreparedRevision::new(&tree).unwrap();
    let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let timings = Timings {
        internal_full: Some(Step {
            start: t,
            end: t + chrono::Duration::milliseconds(5),
        }),
        prepare_execution_input: Some(Step {
            start: t,
            end: t + chrono::Duration::milliseconds(1),
        }),
        run_execution_input: Some(Step {
            start: t,
            end: t + chrono::Duration::milliseconds(4),
        }),
    };

    let mut g = c.benchmark_group("volatility");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse request", |b| {
        b.iter(|| parse_request(Some(black_box(&request_bytes))).unwrap())
    });
    g.bench_function("prepare + serialise runtime request (cold)", |b| {
        b.iter(|| {
            let tree = store.tree(id).unwrap();
            PreparedRevision::new(&tree)
                .unwrap()
                .runtime_request(black_box(&request))
                .unwrap()
        })
    });
    g.bench_function("serialise runtime request (prepared revision)", |b| {
        b.iter(|| prepared.runtime_request(black_box(&request)).unwrap())
    });
    g.bench_function("build response", |b| {
        b.iter(|| {
            build_response(
                200,
                black_box(&runtime_answer),
                prepared.output_types(),
                &timings,
                Some(1),
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, protocol);
criterion_main!(benches);

use super::*;
use proptest::prelude::*;

fn record(offset: i64, timestamp: i64, headers: Vec<Header>) -> Record {
    Record {
        offset,
        timestamp,
        key: Some(b"k".to_vec()),
        value: Some(format!("value {offset}").into_bytes()),
        headers,
    }
}

fn batch(base_offset: i64, codec: Codec, records: Vec<Record>) -> RecordBatch {
    RecordBatch::plain(base_offset, codec, records)
}

fn odd_headers() -> Vec<Header> {
    vec![
        Header {
            key: b"name".to_vec(),
            value: None,
        },
        Header {
            key: vec![0xff, 0xfe, b'x'],
            value: Some(b"not utf-8 key".to_vec()),
        },
        Header {
            key: b"a".to_vec(),
            value: Some(b"1".to_vec()),
        },
        Header {
            key: b"a".to_vec(),
            value: Some(b"2".to_vec()),
        },
    ]
}

fn only_batch(bytes: &[u8]) -> RecordBatch {
    match decode(bytes).as_slice() {
        [Decoded::Batch(b)] => b.clone(),
        other => panic!("one batch expected, got {other:?}"),
    }
}

#[test]
fn odd_but_valid_records_are_read_as_written() {
    for codec in [Codec::None, Codec::Gzip, Codec::Snappy] {
        let written = batch(
            40,
            codec,
            vec![
                record(40, -9_000_000_000_000_000_000, odd_headers()),
                Record {
                    offset: 41,
                    timestamp: i64::MAX,
                    key: None,
                    value: None,
                    headers: vec![],
                },
                record(43, 0, vec![]),
            ],
        );
        let bytes = encode(&written).unwrap();
        assert_eq!(only_batch(&bytes), written, "{codec:?}");
    }
}

#[test]
fn several_batches_are_read_and_a_truncated_last_one_is_left_for_the_next_fetch() {
    let first = encode(&batch(0, Codec::None, vec![record(0, 1, vec![])])).unwrap();
    let second = encode(&batch(1, Codec::Gzip, vec![record(1, 2, odd_headers())])).unwrap();
    let third = encode(&batch(2, Codec::None, vec![record(2, 3, vec![])])).unwrap();
    let mut bytes = [first.clone(), second, third.clone()].concat();
    for cut in [0, 5, 12, 30, third.len() - 1] {
        let response = &bytes[..bytes.len() - third.len() + cut];
        let decoded = decode(response);
        assert_eq!(decoded.len(), 2, "cut at {cut}");
        assert!(decoded.iter().all(|d| matches!(d, Decoded::Batch(_))));
    }
    bytes.truncate(first.len());
    assert_eq!(decode(&bytes).len(), 1);
}

#[test]
fn a_bad_crc_names_the_batch_and_keeps_its_bytes_and_the_batches_after_it_are_read() {
    let mut bad = encode(&batch(
        7,
        Codec::None,
        vec![record(7, 1, vec![]), record(9, 1, vec![])],
    ))
    .unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let good = encode(&batch(10, Codec::None, vec![record(10, 1, vec![])])).unwrap();
    let decoded = decode(&[bad.clone(), good].concat());
    let [Decoded::Unreadable(u), Decoded::Batch(b)] = decoded.as_slice() else {
        panic!("{decoded:?}")
    };
    assert_eq!(u.base_offset, 7);
    assert_eq!(u.last_offset_delta, Some(2));
    assert_eq!(u.record_count, Some(2));
    assert_eq!(u.raw, bad);
    assert!(matches!(&u.problem, Problem::Corrupt(why) if why.contains("CRC")));
    assert_eq!(u.named_offsets(0), 7..10);
    assert_eq!(u.named_offsets(8), 8..10);
    assert_eq!(b.base_offset, 10);
}

#[test]
fn a_garbage_offset_delta_names_one_offset_only() {
    let u = Unreadable {
        base_offset: 5,
        last_offset_delta: Some(i32::MAX),
        record_count: Some(1),
        problem: Problem::Corrupt("x".into()),
        raw: vec![],
    };
    assert_eq!(u.named_offsets(3), 5..6);
    assert_eq!(u.named_offsets(9), 9..10);
}

#[test]
fn a_valid_crc_over_records_that_do_not_add_up_is_corrupt() {
    let mut written = batch(3, Codec::None, vec![record(3, 1, vec![])]);
    let mut bytes = encode(&written).unwrap();
    // Declare two records where one is.
    bytes[57..61].copy_from_slice(&2i32.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[CRC_COVERED_FROM..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        decode(&bytes).as_slice(),
        [Decoded::Unreadable(Unreadable {
            problem: Problem::Corrupt(_),
            ..
        })]
    ));
    // A gzip batch whose payload is not gzip.
    written.codec = Codec::Gzip;
    let mut bytes = encode(&written).unwrap();
    let at = LOG_OVERHEAD + HEADER_AFTER_LENGTH;
    bytes[at] ^= 0xff;
    let crc = crc32c::crc32c(&bytes[CRC_COVERED_FROM..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        decode(&bytes).as_slice(),
        [Decoded::Unreadable(Unreadable {
            problem: Problem::Corrupt(_),
            ..
        })]
    ));
}

#[test]
fn raw_snappy_as_rskafka_and_librdkafka_write_it_is_read_too() {
    let written = batch(0, Codec::None, vec![record(0, 5, odd_headers())]);
    let plain_batch = encode(&written).unwrap();
    let plain = &plain_batch[LOG_OVERHEAD + HEADER_AFTER_LENGTH..];
    let raw = snap::raw::Encoder::new().compress_vec(plain).unwrap();
    let mut bytes = plain_batch[..LOG_OVERHEAD + HEADER_AFTER_LENGTH].to_vec();
    bytes.extend_from_slice(&raw);
    let length = (bytes.len() - LOG_OVERHEAD) as i32;
    bytes[8..12].copy_from_slice(&length.to_be_bytes());
    bytes[21..23].copy_from_slice(&2i16.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[CRC_COVERED_FROM..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    let read = only_batch(&bytes);
    assert_eq!(read.codec, Codec::Snappy);
    assert_eq!(read.records, written.records);
}

#[test]
fn xerial_snappy_spans_several_blocks() {
    let big = Record {
        offset: 0,
        timestamp: 0,
        key: None,
        value: Some((0..100_000u32).flat_map(|i| i.to_le_bytes()).collect()),
        headers: vec![],
    };
    let written = batch(0, Codec::Snappy, vec![big]);
    assert_eq!(only_batch(&encode(&written).unwrap()), written);
}

#[test]
fn a_control_batch_says_what_it_marks() {
    let marker = |kind: i16| {
        let mut key = 0i16.to_be_bytes().to_vec();
        key.extend_from_slice(&kind.to_be_bytes());
        let mut b = batch(
            9,
            Codec::None,
            vec![Record {
                offset: 9,
                timestamp: 0,
                key: Some(key),
                value: Some(vec![0, 0, 0, 0, 0, 0]),
                headers: vec![],
            }],
        );
        b.control = true;
        b.transactional = true;
        b.producer_id = 77;
        only_batch(&encode(&b).unwrap())
    };
    assert_eq!(marker(0).control_type(), Some(ControlType::Abort));
    assert_eq!(marker(1).control_type(), Some(ControlType::Commit));
    assert_eq!(marker(5).control_type(), Some(ControlType::Other(5)));
    let data = batch(0, Codec::None, vec![record(0, 0, vec![])]);
    assert_eq!(data.control_type(), None);
}

#[test]
fn an_unknown_codec_or_magic_is_reported_not_read() {
    let mut bytes = encode(&batch(0, Codec::None, vec![record(0, 0, vec![])])).unwrap();
    bytes[21..23].copy_from_slice(&7i16.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[CRC_COVERED_FROM..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        decode(&bytes).as_slice(),
        [Decoded::Unreadable(Unreadable {
            problem: Problem::Corrupt(_),
            ..
        })]
    ));
    bytes[16] = 1;
    assert!(matches!(
        decode(&bytes).as_slice(),
        [Decoded::Unreadable(Unreadable {
            problem: Problem::OldFormat(1),
            ..
        })]
    ));
}

#[cfg(not(feature = "lz4"))]
#[test]
fn a_codec_the_build_lacks_is_named() {
    let mut bytes = encode(&batch(0, Codec::None, vec![record(0, 0, vec![])])).unwrap();
    bytes[21..23].copy_from_slice(&3i16.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[CRC_COVERED_FROM..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        decode(&bytes).as_slice(),
        [Decoded::Unreadable(Unreadable {
            problem: Problem::CodecNotBuilt(Codec::Lz4),
            ..
        })]
    ));
}

#[cfg(all(feature = "lz4", feature = "zstd"))]
#[test]
fn lz4_and_zstd_round_trip_when_built() {
    for codec in [Codec::Lz4, Codec::Zstd] {
        let written = batch(
            0,
            codec,
            vec![record(0, 1, odd_headers()), record(1, 2, vec![])],
        );
        assert_eq!(only_batch(&encode(&written).unwrap()), written);
    }
}

#[test]
fn a_negative_length_ends_the_response_as_unreadable() {
    let mut bytes = vec![0u8; 30];
    bytes[0..8].copy_from_slice(&12i64.to_be_bytes());
    bytes[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    let decoded = decode(&bytes);
    let [Decoded::Unreadable(u)] = decoded.as_slice() else {
        panic!("{decoded:?}")
    };
    assert_eq!((u.base_offset, u.raw.len()), (12, 30));
    assert_eq!(u.named_offsets(0), 12..13);
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn arb_header() -> impl Strategy<Value = Header> {
    (arb_bytes(12), prop::option::of(arb_bytes(12))).prop_map(|(key, value)| Header { key, value })
}

fn arb_timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(-9_000_000_000_000_000_000),
        Just(-1),
        any::<i64>(),
        0i64..2_000_000_000_000,
    ]
}

fn arb_batch() -> impl Strategy<Value = RecordBatch> {
    let record = (
        0i64..5,
        arb_timestamp(),
        prop::option::of(arb_bytes(40)),
        prop::option::of(arb_bytes(200)),
        prop::collection::vec(arb_header(), 0..4),
    );
    (
        any::<i64>().prop_map(|o| o.clamp(-1, i64::MAX / 2)),
        prop::sample::select(vec![Codec::None, Codec::Gzip, Codec::Snappy]),
        prop::collection::vec(record, 0..8),
        (
            any::<bool>(),
            any::<bool>(),
            any::<i64>(),
            any::<i16>(),
            any::<i32>(),
        ),
        arb_timestamp(),
    )
        .prop_map(|(base, codec, records, extra, base_timestamp)| {
            let (append, transactional, producer_id, epoch, sequence) = extra;
            let mut offset = base;
            let records: Vec<Record> = records
                .into_iter()
                .map(|(gap, timestamp, key, value, headers)| {
                    offset += gap;
                    Record {
                        offset,
                        timestamp,
                        key,
                        value,
                        headers,
                    }
                })
                .collect();
            RecordBatch {
                base_offset: base,
                partition_leader_epoch: 3,
                codec,
                log_append_time: append,
                transactional,
                control: false,
                delete_horizon: false,
                last_offset_delta: (offset - base) as i32,
                base_timestamp,
                max_timestamp: records.iter().map(|r| r.timestamp).max().unwrap_or(-1),
                producer_id,
                producer_epoch: epoch,
                base_sequence: sequence,
                records,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes_never_panic_the_reader(bytes in arb_bytes(400)) {
        for d in decode(&bytes) {
            if let Decoded::Unreadable(u) = d {
                let named = u.named_offsets(0);
                prop_assert!(named.end - named.start <= i64::from(MAX_NAMED_OFFSETS));
            }
        }
    }

    #[test]
    fn a_valid_batch_with_bytes_flipped_never_panics_and_is_never_misread(
        b in arb_batch(), at in any::<prop::sample::Index>(), flip in 1u8..=255,
    ) {
        let mut bytes = encode(&b).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        // A flip past the base offset and length is caught by the CRC, never read as other
        // records.
        if i >= CRC_COVERED_FROM {
            for d in decode(&bytes) {
                prop_assert!(!matches!(d, Decoded::Batch(_)));
            }
        } else {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn every_valid_batch_round_trips(batches in prop::collection::vec(arb_batch(), 1..4)) {
        let bytes: Vec<u8> = batches.iter().flat_map(|b| encode(b).unwrap()).collect();
        let read: Vec<Decoded> = decode(&bytes);
        let expected: Vec<Decoded> = batches.into_iter().map(Decoded::Batch).collect();
        prop_assert_eq!(read, expected);
    }
}

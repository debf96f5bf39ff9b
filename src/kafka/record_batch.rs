//! Kafka record batches (format v2, magic 2) as bytes, both ways, without IO.
//!
//! rskafka's reader refuses batches that Kafka's brokers accept and the Java consumer reads
//! (a header without a value, a header key that is not UTF-8, a timestamp outside the
//! calendar, control batches), and one refused batch stopped its partition for good (design
//! decision 14). This reader takes every batch the format allows: keys, values and header keys
//! are raw bytes, header values may be null, repeated header keys stay in order, timestamps
//! are plain i64 milliseconds.
//!
//! A fetch response holds several batches and usually ends in a truncated one (the broker cuts
//! at the size asked for): [`decode`] returns the whole batches and stops at the cut. A batch
//! whose CRC-32C does not match, or whose records do not add up, comes back as an
//! [`Unreadable`] batch with what can still be read of it (base offset, last offset delta,
//! record count) and its raw bytes, so a caller can answer for it and move on; arbitrary bytes
//! never panic the reader.
//!
//! Codecs: none, gzip, snappy (raw, and the xerial framing Java producers write) always; lz4
//! and zstd with the features of the same names (they build C).

use std::io::{Read, Write};

/// Bytes before a batch's length field: base offset (8) and the length itself (4).
const LOG_OVERHEAD: usize = 12;
/// A batch's header after the length field, up to and including the record count.
const HEADER_AFTER_LENGTH: usize = 49;
/// Where the fields the CRC covers start, counted from the batch's first byte.
const CRC_COVERED_FROM: usize = 21;
/// How many offsets of an unreadable batch a caller may answer for, at most: a batch whose
/// last offset delta is garbage must not turn into billions of failure responses.
pub const MAX_NAMED_OFFSETS: i32 = 1 << 17;
/// A batch's records decompressed, at most: more is a corrupt (or hostile) batch, not a
/// request; the service's own limits are far below.
const MAX_DECOMPRESSED: u64 = 1 << 30;
/// The xerial snappy framing's magic, version and compatible version, as Java writes them.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER: usize = 16;
/// Uncompressed bytes per xerial block (the Java library's default block size).
const XERIAL_BLOCK: usize = 32 * 1024;

/// How a batch's records are compressed (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Records as they are.
    None,
    /// gzip (flate2, pure Rust).
    Gzip,
    /// snappy, raw or in Java's xerial framing.
    Snappy,
    /// lz4 frames (feature `lz4`).
    Lz4,
    /// zstd frames (feature `zstd`).
    Zstd,
}

impl Codec {
    fn from_attributes(attributes: i16) -> Option<Codec> {
        Some(match attributes & 0x7 {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }

    fn bits(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    /// Whether this build can read and write the codec.
    pub fn built(self) -> bool {
        match self {
            Codec::None | Codec::Gzip | Codec::Snappy => true,
            Codec::Lz4 => cfg!(feature = "lz4"),
            Codec::Zstd => cfg!(feature = "zstd"),
        }
    }
}

/// One record header: the key is bytes (Kafka does not make it UTF-8), the value may be null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's key, as produced.
    pub key: Vec<u8>,
    /// Its value; `None` is a null value (`kcat -H name` without `=`).
    pub value: Option<Vec<u8>>,
}

/// One record of a batch, with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's offset in the partition.
    pub offset: i64,
    /// Milliseconds since the epoch as written; any i64 (the broker does not bound it).
    pub timestamp: i64,
    /// The key; `None` when null.
    pub key: Option<Vec<u8>>,
    /// The value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// The headers in the order produced, repeated keys included.
    pub headers: Vec<Header>,
}

/// What a control record says (its key: version, type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    /// The producer's transaction was aborted: its records before this marker are void.
    Abort,
    /// The producer's transaction was committed.
    Commit,
    /// Another control record (e.g. a leader-change marker); it holds no data either.
    Other(i16),
}

/// One record batch as written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    /// The offset of the batch's first record (before compaction removed any).
    pub base_offset: i64,
    /// The leader epoch the batch was written in (-1 from producers).
    pub partition_leader_epoch: i32,
    /// How the records are compressed.
    pub codec: Codec,
    /// Whether timestamps are the broker's append time rather than the producer's.
    pub log_append_time: bool,
    /// Part of a producer's transaction.
    pub transactional: bool,
    /// Holds control records (transaction markers) only, never data.
    pub control: bool,
    /// Whether the first timestamp is a compaction delete horizon (attributes bit 6).
    pub delete_horizon: bool,
    /// The last offset of the batch is `base_offset + last_offset_delta` (even if compaction
    /// removed that record).
    pub last_offset_delta: i32,
    /// The first timestamp; the records' timestamps are deltas to it.
    pub base_timestamp: i64,
    /// The largest timestamp in the batch.
    pub max_timestamp: i64,
    /// The producer's id (-1 when not idempotent).
    pub producer_id: i64,
    /// The producer's epoch.
    pub producer_epoch: i16,
    /// The first record's sequence number (-1 when not idempotent).
    pub base_sequence: i32,
    /// The records (those compaction left).
    pub records: Vec<Record>,
}

impl RecordBatch {
    /// A batch as a plain producer (neither idempotent nor transactional) writes `records`:
    /// the last offset and the timestamps are the records' own.
    pub fn plain(base_offset: i64, codec: Codec, records: Vec<Record>) -> RecordBatch {
        let last_offset_delta = records.last().map_or(0, |r| {
            i32::try_from(r.offset.saturating_sub(base_offset)).unwrap_or(i32::MAX)
        });
        RecordBatch {
            base_offset,
            partition_leader_epoch: -1,
            codec,
            log_append_time: false,
            transactional: false,
            control: false,
            delete_horizon: false,
            last_offset_delta,
            base_timestamp: records.first().map_or(0, |r| r.timestamp),
            max_timestamp: records.iter().map(|r| r.timestamp).max().unwrap_or(0),
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records,
        }
    }

    /// The offset after the batch: where reading goes on.
    pub fn next_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
            .saturating_add(1)
    }

    /// What the first record of a control batch says; `None` for a data batch or a control
    /// batch whose record is not a control record.
    pub fn control_type(&self) -> Option<ControlType> {
        if !self.control {
            return None;
        }
        let key = self.records.first()?.key.as_deref()?;
        let kind = i16::from_be_bytes([*key.get(2)?, *key.get(3)?]);
        Some(match kind {
            0 => ControlType::Abort,
            1 => ControlType::Commit,
            other => ControlType::Other(other),
        })
    }
}

/// Why a batch cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The bytes are not a valid batch (CRC mismatch, lengths that do not add up): no reader
    /// can get its records back.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// A valid batch this build cannot read: compressed with a codec it was built without.
    #[error("the batch is {0:?}-compressed and this build has no such codec")]
    CodecNotBuilt(Codec),
    /// A valid message set of the old formats (magic 0 or 1), which this reader does not know.
    #[error("message format v{0} (only v2 record batches are read)")]
    OldFormat(i8),
}

/// A batch that cannot be read, with what is known of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The offset of its first record (always readable: the first 8 bytes).
    pub base_offset: i64,
    /// Its last offset delta, when the header is there.
    pub last_offset_delta: Option<i32>,
    /// How many records it says it holds, when the header is there.
    pub record_count: Option<i32>,
    /// Why it cannot be read.
    pub problem: Problem,
    /// The batch's bytes as fetched (the rest of the response when its length is unusable).
    pub raw: Vec<u8>,
}

impl Unreadable {
    /// The offsets from `from` on that the batch can be said to hold: its whole range when
    /// the header names a plausible one (at most [`MAX_NAMED_OFFSETS`]), else the first offset
    /// at or after both `from` and its base offset alone. Empty when the batch ends before
    /// `from`.
    pub fn named_offsets(&self, from: i64) -> std::ops::Range<i64> {
        let start = self.base_offset.max(from);
        let end = match self.last_offset_delta {
            Some(delta) if (0..MAX_NAMED_OFFSETS).contains(&delta) => {
                self.base_offset.saturating_add(i64::from(delta) + 1)
            }
            _ => start.saturating_add(1),
        };
        start..end.max(start)
    }
}

/// One batch of a fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A batch read in full.
    Batch(RecordBatch),
    /// A batch that cannot be read.
    Unreadable(Unreadable),
}

/// The batches in `bytes` (a fetch response's records), in order. A truncated batch at the end
/// is left out; a batch whose length cannot be trusted ends the list (as an [`Unreadable`]
/// with the rest of the bytes).
pub fn decode(bytes: &[u8]) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= LOG_OVERHEAD {
        let base_offset = i64::from_be_bytes(array(&rest[..8]));
        let length = i32::from_be_bytes(array(&rest[8..12]));
        let Ok(length) = usize::try_from(length) else {
            out.push(unusable_length(base_offset, rest, length));
            break;
        };
        if length < HEADER_AFTER_LENGTH && length + LOG_OVERHEAD <= rest.len() {
            // Too short for a v2 header: old formats have shorter ones.
            let magic = (LOG_OVERHEAD + length > 16).then(|| rest[16] as i8);
            if let Some(magic @ (0 | 1)) = magic {
                out.push(old_format(
                    base_offset,
                    magic,
                    &rest[..LOG_OVERHEAD + length],
                ));
                rest = &rest[LOG_OVERHEAD + length..];
                continue;
            }
            out.push(unusable_length(base_offset, rest, length as i32));
            break;
        }
        let Some(batch) = rest.get(..LOG_OVERHEAD + length) else {
            // Cut off by the fetch size: the next fetch starts at it.
            break;
        };
        out.push(decode_one(batch));
        rest = &rest[LOG_OVERHEAD + length..];
    }
    out
}

fn unusable_length(base_offset: i64, rest: &[u8], length: i32) -> Decoded {
    Decoded::Unreadable(Unreadable {
        base_offset,
        last_offset_delta: None,
        record_count: None,
        problem: Problem::Corrupt(format!("batch length {length}")),
        raw: rest.to_vec(),
    })
}

fn old_format(base_offset: i64, magic: i8, bytes: &[u8]) -> Decoded {
    Decoded::Unreadable(Unreadable {
        base_offset,
        last_offset_delta: Some(0),
        record_count: Some(1),
        problem: Problem::OldFormat(magic),
        raw: bytes.to_vec(),
    })
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes.try_into().expect("callers slice exactly N bytes")
}

/// The fixed header of a batch (everything before the records).
struct FixedHeader {
    base_offset: i64,
    partition_leader_epoch: i32,
    magic: i8,
    crc: u32,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: i32,
}

impl FixedHeader {
    /// `bytes` holds at least `LOG_OVERHEAD + HEADER_AFTER_LENGTH` bytes.
    fn read(bytes: &[u8]) -> FixedHeader {
        let field = |at: usize, n: usize| &bytes[at..at + n];
        FixedHeader {
            base_offset: i64::from_be_bytes(array(field(0, 8))),
            partition_leader_epoch: i32::from_be_bytes(array(field(12, 4))),
            magic: bytes[16] as i8,
            crc: u32::from_be_bytes(array(field(17, 4))),
            attributes: i16::from_be_bytes(array(field(21, 2))),
            last_offset_delta: i32::from_be_bytes(array(field(23, 4))),
            base_timestamp: i64::from_be_bytes(array(field(27, 8))),
            max_timestamp: i64::from_be_bytes(array(field(35, 8))),
            producer_id: i64::from_be_bytes(array(field(43, 8))),
            producer_epoch: i16::from_be_bytes(array(field(51, 2))),
            base_sequence: i32::from_be_bytes(array(field(53, 4))),
            record_count: i32::from_be_bytes(array(field(57, 4))),
        }
    }
}

/// One whole batch (`bytes` is exactly its length).
fn decode_one(bytes: &[u8]) -> Decoded {
    let header = FixedHeader::read(bytes);
    let unreadable = |problem: Problem| {
        Decoded::Unreadable(Unreadable {
            base_offset: header.base_offset,
            last_offset_delta: Some(header.last_offset_delta),
            record_count: Some(header.record_count),
            problem,
            raw: bytes.to_vec(),
        })
    };
    if header.magic != 2 {
        if matches!(header.magic, 0 | 1) {
            return old_format(header.base_offset, header.magic, bytes);
        }
        return unreadable(Problem::Corrupt(format!("magic {}", header.magic)));
    }
    let computed = crc32c::crc32c(&bytes[CRC_COVERED_FROM..]);
    if computed != header.crc {
        return unreadable(Problem::Corrupt(format!(
            "CRC-32C {computed:#010x} computed, {:#010x} written",
            header.crc
        )));
    }
    let Some(codec) = Codec::from_attributes(header.attributes) else {
        return unreadable(Problem::Corrupt(format!(
            "compression type {}",
            header.attributes & 0x7
        )));
    };
    if !codec.built() {
        return unreadable(Problem::CodecNotBuilt(codec));
    }
    let payload = &bytes[LOG_OVERHEAD + HEADER_AFTER_LENGTH..];
    let records = decompress(codec, payload)
        .map_err(|e| format!("{codec:?} payload: {e}"))
        .and_then(|plain| read_records(&plain, &header));
    match records {
        Ok(records) => Decoded::Batch(RecordBatch {
            base_offset: header.base_offset,
            partition_leader_epoch: header.partition_leader_epoch,
            codec,
            log_append_time: header.attributes & 0x8 != 0,
            transactional: header.attributes & 0x10 != 0,
            control: header.attributes & 0x20 != 0,
            delete_horizon: header.attributes & 0x40 != 0,
            last_offset_delta: header.last_offset_delta,
            base_timestamp: header.base_timestamp,
            max_timestamp: header.max_timestamp,
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            records,
        }),
        Err(why) => unreadable(Problem::Corrupt(why)),
    }
}

/// The records of a batch from its (decompressed) record bytes; all of them must be used.
fn read_records(plain: &[u8], header: &FixedHeader) -> Result<Vec<Record>, String> {
    let count = usize::try_from(header.record_count)
        .map_err(|_| format!("record count {}", header.record_count))?;
    let mut r = Reader::new(plain);
    // A record takes at least 7 bytes: the count cannot reserve more than the bytes allow.
    let mut records = Vec::with_capacity(count.min(plain.len() / 7));
    for i in 0..count {
        let record = read_record(&mut r, header).map_err(|e| format!("record {i}: {e}"))?;
        records.push(record);
    }
    if !r.rest().is_empty() {
        return Err(format!(
            "{} bytes after the {count} records the batch declares",
            r.rest().len()
        ));
    }
    Ok(records)
}

fn read_record(r: &mut Reader<'_>, header: &FixedHeader) -> Result<Record, String> {
    let length = usize::try_from(r.varint()?).map_err(|_| "negative record length")?;
    let mut body = Reader::new(r.take(length)?);
    let _attributes = body.take(1)?;
    let timestamp_delta = body.varlong()?;
    let offset_delta = body.varint()?;
    let key = body.nullable_bytes()?;
    let value = body.nullable_bytes()?;
    let header_count = usize::try_from(body.varint()?).map_err(|_| "negative header count")?;
    let mut headers = Vec::with_capacity(header_count.min(body.rest().len() / 2));
    for _ in 0..header_count {
        let key = body.nullable_bytes()?.ok_or("a header key of length -1")?;
        let value = body.nullable_bytes()?;
        headers.push(Header { key, value });
    }
    if !body.rest().is_empty() {
        return Err(format!(
            "{} bytes left inside the record",
            body.rest().len()
        ));
    }
    Ok(Record {
        offset: header.base_offset.wrapping_add(i64::from(offset_delta)),
        timestamp: header.base_timestamp.wrapping_add(timestamp_delta),
        key,
        value,
        headers,
    })
}

/// Reads big-endian fields and zigzag varints from a slice; running out is an error.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err(format!("{n} bytes wanted, {} left", self.bytes.len()));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// An unsigned LEB128 value of at most `max_bytes` bytes.
    fn unsigned(&mut self, max_bytes: usize) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("a varint longer than {max_bytes} bytes"))
    }

    fn varint(&mut self) -> Result<i32, String> {
        let raw = self.unsigned(5)? as u32;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    fn varlong(&mut self) -> Result<i64, String> {
        let raw = self.unsigned(10)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// Length-prefixed bytes; length -1 is null.
    fn nullable_bytes(&mut self) -> Result<Option<Vec<u8>>, String> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < -1 => Err(format!("length {n}")),
            n => Ok(Some(self.take(n as usize)?.to_vec())),
        }
    }
}

fn put_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_unsigned(out, u64::from(((value << 1) ^ (value >> 31)) as u32));
}

fn put_varlong(out: &mut Vec<u8>, value: i64) {
    put_unsigned(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) -> Result<(), EncodeError> {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(
                out,
                i32::try_from(b.len()).map_err(|_| EncodeError::TooLarge)?,
            );
            out.extend_from_slice(b);
        }
    }
    Ok(())
}

/// Why a batch cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A record's offset is not within an i32 of the batch's base offset.
    #[error("record offset {offset} is not within the batch of base offset {base}")]
    Offset {
        /// The record's offset.
        offset: i64,
        /// The batch's base offset.
        base: i64,
    },
    /// A field does not fit its length prefix.
    #[error("a key, value, header or the batch is larger than Kafka's format allows")]
    TooLarge,
    /// This build cannot compress with the batch's codec.
    #[error("this build has no {0:?} codec")]
    CodecNotBuilt(Codec),
    /// The compressor failed.
    #[error("compressing: {0}")]
    Compress(#[from] std::io::Error),
}

/// The bytes of `batch` as Kafka stores them: the header as given (count and CRC computed), the
/// records compressed with `batch.codec`, offsets and timestamps as deltas to the base.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, EncodeError> {
    let mut plain = Vec::new();
    for record in &batch.records {
        write_record(&mut plain, batch, record)?;
    }
    let payload = compress(batch.codec, &plain)?;
    let count = i32::try_from(batch.records.len()).map_err(|_| EncodeError::TooLarge)?;
    let attributes = batch.codec.bits()
        | (i16::from(batch.log_append_time) << 3)
        | (i16::from(batch.transactional) << 4)
        | (i16::from(batch.control) << 5)
        | (i16::from(batch.delete_horizon) << 6);
    let mut out = Vec::with_capacity(LOG_OVERHEAD + HEADER_AFTER_LENGTH + payload.len());
    out.extend_from_slice(&batch.base_offset.to_be_bytes());
    let length =
        i32::try_from(HEADER_AFTER_LENGTH + payload.len()).map_err(|_| EncodeError::TooLarge)?;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&batch.partition_leader_epoch.to_be_bytes());
    out.push(2);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&batch.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&batch.base_timestamp.to_be_bytes());
    out.extend_from_slice(&batch.max_timestamp.to_be_bytes());
    out.extend_from_slice(&batch.producer_id.to_be_bytes());
    out.extend_from_slice(&batch.producer_epoch.to_be_bytes());
    out.extend_from_slice(&batch.base_sequence.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&out[CRC_COVERED_FROM..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

fn write_record(out: &mut Vec<u8>, batch: &RecordBatch, r: &Record) -> Result<(), EncodeError> {
    let offset_delta = i32::try_from(r.offset.wrapping_sub(batch.base_offset)).map_err(|_| {
        EncodeError::Offset {
            offset: r.offset,
            base: batch.base_offset,
        }
    })?;
    let mut body = vec![0u8];
    put_varlong(&mut body, r.timestamp.wrapping_sub(batch.base_timestamp));
    put_varint(&mut body, offset_delta);
    put_nullable(&mut body, r.key.as_deref())?;
    put_nullable(&mut body, r.value.as_deref())?;
    put_varint(
        &mut body,
        i32::try_from(r.headers.len()).map_err(|_| EncodeError::TooLarge)?,
    );
    for h in &r.headers {
        put_nullable(&mut body, Some(&h.key))?;
        put_nullable(&mut body, h.value.as_deref())?;
    }
    put_varint(
        out,
        i32::try_from(body.len()).map_err(|_| EncodeError::TooLarge)?,
    );
    out.extend_from_slice(&body);
    Ok(())
}

fn compress(codec: Codec, plain: &[u8]) -> Result<Vec<u8>, EncodeError> {
    match codec {
        Codec::None => Ok(plain.to_vec()),
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(plain)?;
            Ok(e.finish()?)
        }
        Codec::Snappy => xerial_compress(plain),
        Codec::Lz4 => lz4_compress(plain),
        Codec::Zstd => zstd_compress(plain),
    }
}

/// Snappy as Java's producer writes it: the xerial header, then length-prefixed raw blocks.
fn xerial_compress(plain: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(XERIAL_HEADER + plain.len());
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for block in plain.chunks(XERIAL_BLOCK) {
        let compressed = encoder
            .compress_vec(block)
            .map_err(|e| EncodeError::Compress(std::io::Error::other(e)))?;
        let length = i32::try_from(compressed.len()).map_err(|_| EncodeError::TooLarge)?;
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    Ok(out)
}

#[cfg(feature = "lz4")]
fn lz4_compress(plain: &[u8]) -> Result<Vec<u8>, EncodeError> {
    // Kafka reads lz4 frames with independent blocks.
    let mut encoder = lz4::EncoderBuilder::new()
        .block_mode(lz4::BlockMode::Independent)
        .build(Vec::new())?;
    encoder.write_all(plain)?;
    let (out, result) = encoder.finish();
    result?;
    Ok(out)
}

#[cfg(not(feature = "lz4"))]
fn lz4_compress(_: &[u8]) -> Result<Vec<u8>, EncodeError> {
    Err(EncodeError::CodecNotBuilt(Codec::Lz4))
}

#[cfg(feature = "zstd")]
fn zstd_compress(plain: &[u8]) -> Result<Vec<u8>, EncodeError> {
    Ok(zstd::stream::encode_all(plain, 0)?)
}

#[cfg(not(feature = "zstd"))]
fn zstd_compress(_: &[u8]) -> Result<Vec<u8>, EncodeError> {
    Err(EncodeError::CodecNotBuilt(Codec::Zstd))
}

/// The record bytes of a batch's payload; `codec` is one this build has.
fn decompress(codec: Codec, payload: &[u8]) -> Result<Vec<u8>, String> {
    match codec {
        Codec::None => Ok(payload.to_vec()),
        Codec::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(payload)),
        Codec::Snappy => snappy_decompress(payload),
        Codec::Lz4 => lz4_decompress(payload),
        Codec::Zstd => zstd_decompress(payload),
    }
}

fn read_bounded(reader: impl Read) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    reader
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(format!("more than {MAX_DECOMPRESSED} bytes decompressed"));
    }
    Ok(out)
}

fn snappy_decompress(payload: &[u8]) -> Result<Vec<u8>, String> {
    let Some(framed) = payload.strip_prefix(&XERIAL_MAGIC[..]) else {
        return snappy_block(payload, 0);
    };
    // Version and compatible version (both 1 from every Java producer; not checked further
    // than being there: what matters is whether the blocks decode).
    let mut r = Reader::new(framed);
    r.take(8)?;
    let mut out = Vec::new();
    while !r.rest().is_empty() {
        let length = i32::from_be_bytes(array(r.take(4)?));
        let length =
            usize::try_from(length).map_err(|_| format!("xerial block length {length}"))?;
        let block = snappy_block(r.take(length)?, out.len())?;
        out.extend_from_slice(&block);
    }
    Ok(out)
}

/// One raw snappy block; `so_far` bytes were decompressed before it.
fn snappy_block(block: &[u8], so_far: usize) -> Result<Vec<u8>, String> {
    let length = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
    if (so_far as u64).saturating_add(length as u64) > MAX_DECOMPRESSED {
        return Err(format!("more than {MAX_DECOMPRESSED} bytes decompressed"));
    }
    snap::raw::Decoder::new()
        .decompress_vec(block)
        .map_err(|e| e.to_string())
}

#[cfg(feature = "lz4")]
fn lz4_decompress(payload: &[u8]) -> Result<Vec<u8>, String> {
    read_bounded(lz4::Decoder::new(payload).map_err(|e| e.to_string())?)
}

#[cfg(not(feature = "lz4"))]
fn lz4_decompress(_: &[u8]) -> Result<Vec<u8>, String> {
    Err("lz4 is not built".into())
}

#[cfg(feature = "zstd")]
fn zstd_decompress(payload: &[u8]) -> Result<Vec<u8>, String> {
    read_bounded(zstd::stream::Decoder::new(payload).map_err(|e| e.to_string())?)
}

#[cfg(not(feature = "zstd"))]
fn zstd_decompress(_: &[u8]) -> Result<Vec<u8>, String> {
    Err("zstd is not built".into())
}

#[cfg(test)]
mod tests;

//! A journaled record body: the record's JSON, LZ4-compressed when that makes it notably
//! smaller.
//!
//! The body is most of what a page writes: every byte of it goes through the write lock,
//! the WAL, the checkpoint into the database file, and back out when a delivery is
//! claimed. Records carry their source's raw payload, whose JSON repeats attribute names
//! item after item and compresses about three to one, so compressing before the lock
//! takes most of that work off the one writer for a few microseconds of the poller's time.
//!
//! Stored forms, told apart by the column's type:
//! * TEXT: the record's JSON (small bodies, and every journal written before compression);
//! * BLOB: [`MAGIC`], then the JSON's length (u32, little endian) and an LZ4 block of it.
//!
//! Decoding checks everything a damaged row could get wrong (prefix, declared length,
//! the block itself, the JSON) and answers a typed error, which the claim turns into a
//! quarantine; a declared length past [`MAX_JSON`] is refused before anything is
//! allocated.

use ml_core::Record;
use rusqlite::ToSql;
use rusqlite::types::{FromSql, FromSqlResult, ToSqlOutput, ValueRef};

use crate::codec;
use crate::error::{StoreError, StoreResult};

/// The first bytes of a compressed body ("MLZ" and format 1).
pub(crate) const MAGIC: [u8; 4] = *b"MLZ\x01";

/// Bodies shorter than this stay JSON text: compressing them saves too little.
pub(crate) const COMPRESS_FROM: usize = 512;

/// The largest JSON a compressed body may declare (a record is far smaller; a damaged
/// length must not allocate gigabytes).
pub(crate) const MAX_JSON: usize = 64 << 20;

/// A record body as journaled (or read back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    /// JSON text.
    Json(Vec<u8>),
    /// [`MAGIC`] + length + LZ4 block.
    Lz4(Vec<u8>),
    /// A column of another SQL type (never written; only a damaged row has one).
    Other(&'static str),
}

impl Body {
    /// Encodes `record`: JSON, compressed when it is at least [`COMPRESS_FROM`] bytes and
    /// compression saves at least a tenth.
    pub(crate) fn encode(record: &Record) -> StoreResult<Self> {
        Ok(Self::from_json(codec::to_json(record)?))
    }

    /// The stored form of a record's JSON.
    pub(crate) fn from_json(json: String) -> Self {
        let json = json.into_bytes();
        if json.len() < COMPRESS_FROM || json.len() > MAX_JSON {
            return Self::Json(json);
        }
        let block = lz4_flex::block::compress_prepend_size(&json);
        if MAGIC.len() + block.len() > json.len() - json.len() / 10 {
            return Self::Json(json);
        }
        let mut stored = Vec::with_capacity(MAGIC.len() + block.len());
        stored.extend_from_slice(&MAGIC);
        stored.extend_from_slice(&block);
        Self::Lz4(stored)
    }

    /// The record, or a typed error naming `what` when the body is damaged.
    pub(crate) fn decode(&self, what: &str) -> StoreResult<Record> {
        match self {
            Self::Json(json) => json_record(json, what),
            Self::Lz4(stored) => json_record(&decompress(stored, what)?, what),
            Self::Other(kind) => Err(StoreError::corrupt(format!(
                "{what}: the body is {kind}, not a journaled record"
            ))),
        }
    }

    /// The stored length in bytes.
    #[cfg(test)]
    pub(crate) fn stored_len(&self) -> usize {
        match self {
            Self::Json(b) | Self::Lz4(b) => b.len(),
            Self::Other(_) => 0,
        }
    }
}

fn json_record(json: &[u8], what: &str) -> StoreResult<Record> {
    serde_json::from_slice(json)
        .map_err(|e| StoreError::corrupt(format!("{what}: invalid JSON: {e}")))
}

fn decompress(stored: &[u8], what: &str) -> StoreResult<Vec<u8>> {
    let damaged = |why: &str| StoreError::corrupt(format!("{what}: compressed body {why}"));
    let rest = stored
        .strip_prefix(&MAGIC)
        .ok_or_else(|| damaged("has an unknown format"))?;
    let (len, block) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| damaged("is truncated"))?;
    let len = usize::try_from(u32::from_le_bytes(*len)).unwrap_or(usize::MAX);
    if len > MAX_JSON {
        return Err(damaged(&format!(
            "declares {len} bytes (at most {MAX_JSON})"
        )));
    }
    let mut json = vec![0; len];
    let n = lz4_flex::block::decompress_into(block, &mut json)
        .map_err(|e| damaged(&format!("cannot be decompressed: {e}")))?;
    if n != len {
        return Err(damaged(&format!(
            "holds {n} bytes, not the {len} it declares"
        )));
    }
    Ok(json)
}

impl ToSql for Body {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Self::Json(json) => ValueRef::Text(json),
            Self::Lz4(stored) => ValueRef::Blob(stored),
            Self::Other(_) => ValueRef::Null,
        }))
    }
}

impl FromSql for Body {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        // Never an error here: a damaged row must reach `decode`, which names it, so that
        // the claim quarantines the record instead of failing as a whole.
        Ok(match value {
            ValueRef::Text(t) => Self::Json(t.to_vec()),
            ValueRef::Blob(b) => Self::Lz4(b.to_vec()),
            ValueRef::Null => Self::Other("NULL"),
            ValueRef::Integer(_) => Self::Other("an integer"),
            ValueRef::Real(_) => Self::Other("a real number"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ml_core::{EntityKind, RawJson};

    fn record(raw_items: usize) -> Record {
        let items: Vec<String> = (0..raw_items)
            .map(|i| {
                format!(
                    r#"{{"LineNumber":{i},"LineAmount":{i}.25,"Description":"Office supplies"}}"#
                )
            })
            .collect();
        Record::new(
            "OracleFusion(t)",
            EntityKind::SupplierInvoice,
            "300100",
            jiff::Timestamp::UNIX_EPOCH,
        )
        .with_raw(
            RawJson::from_text(format!("{{\"lines\":[{}]}}", items.join(","))).expect("test value"),
        )
    }

    #[test]
    fn a_large_body_is_compressed_and_reads_back_the_same() {
        let r = record(40);
        let json = codec::to_json(&r).expect("test value");
        let body = Body::encode(&r).expect("test value");
        assert!(matches!(body, Body::Lz4(_)), "{} bytes of JSON", json.len());
        assert!(
            body.stored_len() * 3 < json.len(),
            "{} -> {}",
            json.len(),
            body.stored_len()
        );
        let back = body.decode("record 1").expect("test value");
        assert_eq!(codec::to_json(&back).expect("test value"), json);
    }

    #[test]
    fn a_small_body_stays_json_text() {
        let r = record(0);
        let body = Body::encode(&r).expect("test value");
        assert_eq!(
            body,
            Body::Json(codec::to_json(&r).expect("test value").into_bytes())
        );
        assert_eq!(body.decode("record 1").expect("test value").key, "300100");
    }

    #[test]
    fn incompressible_json_stays_text() {
        // Distinct hex digits everywhere: LZ4 finds nothing to share.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let noise: String = (0..2_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from_digit((x % 16) as u32, 16).expect("test value")
            })
            .collect();
        let body = Body::from_json(format!("\"{noise}\""));
        assert!(matches!(body, Body::Json(_)));
    }

    #[test]
    fn damaged_compressed_bodies_are_typed_errors() {
        let good = match Body::encode(&record(40)).expect("test value") {
            Body::Lz4(b) => b,
            other => panic!("not compressed: {other:?}"),
        };
        let mut wrong_magic = good.clone();
        wrong_magic[0] = b'X';
        let truncated = good[..good.len() / 2].to_vec();
        let mut bomb = MAGIC.to_vec();
        bomb.extend_from_slice(&u32::MAX.to_le_bytes());
        bomb.extend_from_slice(&[0x1f; 16]);
        let mut longer = good.clone();
        let declared = u32::from_le_bytes(good[4..8].try_into().expect("test value"));
        longer[4..8].copy_from_slice(&(declared + 10).to_le_bytes());
        for (name, stored, expect) in [
            ("wrong magic", wrong_magic, "unknown format"),
            ("truncated", truncated, "compressed body"),
            ("bomb", bomb, "at most"),
            ("longer than it is", longer, "compressed body"),
            ("only the prefix", MAGIC[..3].to_vec(), "unknown format"),
        ] {
            let err = Body::Lz4(stored)
                .decode("record 7")
                .expect_err("damaged")
                .to_string();
            assert!(err.contains(expect), "{name}: {err}");
            assert!(err.contains("record 7"), "{name}: {err}");
        }
        // Any one byte changed: a record or a typed error, never a panic.
        for i in 0..good.len() {
            let mut flipped = good.clone();
            flipped[i] ^= 0x55;
            let _ = Body::Lz4(flipped).decode("record 7");
        }
        let err = Body::Other("an integer")
            .decode("record 7")
            .expect_err("damaged");
        assert!(err.to_string().contains("an integer"), "{err}");
        let err = Body::Json(vec![0xff, 0xfe])
            .decode("record 7")
            .expect_err("damaged");
        assert!(err.to_string().contains("invalid JSON"), "{err}");
    }
}

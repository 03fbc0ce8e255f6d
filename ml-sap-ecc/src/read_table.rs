//! [`RfcReadTable`]: table reads through `RFC_READ_TABLE` that survive its limits.
//!
//! * A `NO_DATA = 'X'` call learns the fields and their output widths once per table.
//! * A field list wider than the row buffer (512 characters) is read in chunks that each
//!   repeat the key columns, with the same WHERE clause, and joined on the key. A chunk
//!   that returns other keys than the first means rows moved between the calls: the read
//!   is repeated.
//! * `ROWCOUNT` is always set (an unbounded read can dump with
//!   `TSV_TNEW_PAGE_ALLOC_FAILED`); a memory dump retries with half the rows.
//! * Rows are parsed by offset and length, never by a delimiter (vendor names contain `|`
//!   and `;`). In a Unicode system widths count UTF-16 code units; in a non-Unicode one
//!   they count bytes of the system code page, so the row is re-encoded with `encoding_rs`
//!   before slicing.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, PoisonError};

use encoding_rs::Encoding;
use rust_decimal::Decimal;

use crate::client::RfcClient;
use crate::error::SapEccError;
use crate::options::Expr;
use crate::rfc::{RfcCall, RfcRow};

/// The function module.
pub const RFC_READ_TABLE: &str = "RFC_READ_TABLE";
/// The width of `DATA-WA`.
pub const ROW_BUFFER: usize = 512;

/// One field of a table as `RFC_READ_TABLE` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldMeta {
    /// `FIELDNAME`.
    pub name: String,
    /// `OFFSET` in the row of the call that returned it.
    pub offset: usize,
    /// `LENGTH`: the output width.
    pub length: usize,
    /// `TYPE` (ABAP type letter: C, N, D, T, P, I, ...).
    pub typ: char,
    /// `FIELDTEXT`.
    pub text: String,
}

/// A table's fields, from a `NO_DATA` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableMeta {
    /// The table.
    pub table: String,
    /// Its fields, in DDIC order.
    pub fields: Vec<FieldMeta>,
}

impl TableMeta {
    /// A field by name.
    pub fn field(&self, name: &str) -> Option<&FieldMeta> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// How the system stores characters: what `OFFSET` and `LENGTH` count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CodePage {
    /// A Unicode system (SAP code pages 4102, 4103, 4110): UTF-16 code units.
    #[default]
    Unicode,
    /// A non-Unicode system: bytes of this encoding.
    Legacy(&'static Encoding),
}

impl CodePage {
    /// The code page of an SAP code page number (`1100`, `8000`, `4103`, ...).
    pub fn from_sap(number: &str) -> Option<Self> {
        let enc = match number.trim() {
            "4102" | "4103" | "4110" | "4105" | "4106" => return Some(Self::Unicode),
            "1100" | "1160" => encoding_rs::WINDOWS_1252,
            "1401" => encoding_rs::ISO_8859_2,
            "1500" => encoding_rs::ISO_8859_5,
            "1600" => encoding_rs::ISO_8859_7,
            "1610" => encoding_rs::WINDOWS_1254,
            "1700" => encoding_rs::ISO_8859_8,
            "1800" => encoding_rs::WINDOWS_1256,
            "8000" => encoding_rs::SHIFT_JIS,
            "8300" => encoding_rs::BIG5,
            "8400" => encoding_rs::GBK,
            "8500" => encoding_rs::EUC_KR,
            "8600" => encoding_rs::WINDOWS_874,
            _ => return None,
        };
        Some(Self::Legacy(enc))
    }

    /// Slices the fields out of one `WA` row.
    pub fn slice(self, wa: &str, fields: &[FieldMeta]) -> Vec<String> {
        match self {
            Self::Unicode => {
                let units: Vec<u16> = wa.encode_utf16().collect();
                fields
                    .iter()
                    .map(|f| {
                        let lo = f.offset.min(units.len());
                        let hi = (f.offset + f.length).min(units.len());
                        clean(&String::from_utf16_lossy(&units[lo..hi]), f.typ)
                    })
                    .collect()
            }
            Self::Legacy(enc) => {
                let (bytes, _, _) = enc.encode(wa);
                fields
                    .iter()
                    .map(|f| {
                        let lo = f.offset.min(bytes.len());
                        let hi = (f.offset + f.length).min(bytes.len());
                        let (text, _) = enc.decode_without_bom_handling(&bytes[lo..hi]);
                        clean(&text, f.typ)
                    })
                    .collect()
            }
        }
    }
}

/// Trims a sliced value: character-like fields lose their trailing blanks (SAP pads
/// them), numbers their alignment blanks on both sides.
fn clean(s: &str, typ: char) -> String {
    match typ {
        'C' | 'N' | 'D' | 'T' | 'g' => s.trim_end().to_owned(),
        _ => s.trim().to_owned(),
    }
}

/// Parses an amount in SAP output format: `123.45`, `123.45-` (trailing minus), `-123.45`;
/// exact decimal, never through a float. Blank is `None`.
pub fn parse_number(s: &str) -> Option<Decimal> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let (neg, digits) = if let Some(d) = s.strip_suffix('-') {
        (true, d.trim())
    } else if let Some(d) = s.strip_prefix('-') {
        (true, d.trim())
    } else {
        (false, s)
    };
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || digits.matches('.').count() > 1
    {
        return None;
    }
    let d = Decimal::from_str(digits).ok()?;
    Some(if neg { -d } else { d })
}

/// `TABLE_WITHOUT_DATA`: some systems raise it for a table with no rows (the notes:
/// unconfirmed; otherwise for a table that is not transparent, pool, cluster or view, which
/// none of the tables read here is). Read as no rows: an empty CDHDR or EKKO on a new
/// system must not pause its stream.
fn without_data(e: &SapEccError) -> bool {
    e.rfc_error().and_then(crate::rfc::RfcError::exception) == Some("TABLE_WITHOUT_DATA")
}

/// The fields read from `table` only to show them (texts, users, transaction codes,
/// payment blocks, vendor address and phone): a system without one (an older release, a
/// tailoring, a field the notes do not list) is read without it. Keys, stamps, amounts,
/// currencies, company codes, references (the dedupe key) and the fields filters name are
/// never optional: their absence is a configuration error that pauses the stream.
pub fn optional_fields(table: &str) -> &'static [&'static str] {
    match table {
        "LFA1" => &["NAME1", "ORT01", "LAND1", "TELF1"],
        "RBKP" => &[
            "BLART", "BLDAT", "BUDAT", "USNAM", "WMWST1", "ZTERM", "ZLSPR",
        ],
        "BKPF" => &[
            "BLART", "BLDAT", "BUDAT", "MONAT", "USNAM", "TCODE", "BKTXT", "AWTYP", "AWKEY",
        ],
        "BSEG" => &["SGTXT", "KOSTL"],
        "RSEG" => &["MATNR", "MENGE"],
        "EKKO" => &["EKGRP"],
        "CDHDR" => &["USERNAME", "TCODE"],
        _ => &[],
    }
}

/// Splits `wanted` fields into chunks whose row width (the sum of `LENGTH`s) stays within
/// `max_width`, every chunk starting with the `key` fields. Fails when a field is unknown
/// or the key alone (plus one field) does not fit.
pub fn chunk_fields(
    meta: &TableMeta,
    wanted: &[&str],
    key: &[&str],
    max_width: usize,
) -> Result<Vec<Vec<String>>, String> {
    let width = |name: &str| {
        meta.field(name)
            .map(|f| f.length)
            .ok_or_else(|| format!("{} has no field {name}", meta.table))
    };
    let mut key_width = 0;
    for k in key {
        key_width += width(k)?;
    }
    if key_width > max_width {
        return Err(format!(
            "the key of {} is {key_width} characters wide, more than {max_width}",
            meta.table
        ));
    }
    let mut chunks: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = key.iter().map(|k| (*k).to_owned()).collect();
    let mut used = key_width;
    for f in wanted {
        if key.contains(f) || current.iter().any(|c| c == f) {
            continue;
        }
        let w = width(f)?;
        if key_width + w > max_width {
            return Err(format!(
                "{}.{f} ({w} characters) does not fit a row beside the key",
                meta.table
            ));
        }
        if used + w > max_width {
            chunks.push(std::mem::replace(
                &mut current,
                key.iter().map(|k| (*k).to_owned()).collect(),
            ));
            used = key_width;
        }
        current.push((*f).to_owned());
        used += w;
    }
    chunks.push(current);
    Ok(chunks)
}

/// Parses a `FIELDS` table (`FIELDNAME`, `OFFSET`, `LENGTH`, `TYPE`, `FIELDTEXT`).
pub fn parse_fields(table: &str, rows: &[RfcRow]) -> Result<Vec<FieldMeta>, String> {
    rows.iter()
        .map(|r| {
            let get = |k: &str| r.get(k).map(|s| s.trim()).unwrap_or_default();
            let num = |k: &str| {
                get(k)
                    .parse::<usize>()
                    .map_err(|_| format!("{table}: FIELDS.{k} `{}` is not a number", get(k)))
            };
            Ok(FieldMeta {
                name: get("FIELDNAME").to_owned(),
                offset: num("OFFSET")?,
                length: num("LENGTH")?,
                typ: get("TYPE").chars().next().unwrap_or('C'),
                text: get("FIELDTEXT").to_owned(),
            })
        })
        .collect()
}

/// One read request.
#[derive(Clone, Debug)]
pub struct ReadRequest<'a> {
    /// `QUERY_TABLE`.
    pub table: &'a str,
    /// The fields wanted (the key is added to every chunk).
    pub fields: &'a [&'a str],
    /// The key columns rows are joined on.
    pub key: &'a [&'a str],
    /// The WHERE clause.
    pub filter: &'a Expr,
    /// `ROWCOUNT` (at least 1; the read is never unbounded).
    pub rowcount: usize,
}

/// What a read returned.
#[derive(Clone, Debug, Default)]
pub struct ReadOutcome {
    /// The rows, field -> trimmed value, in server order (which is no order).
    pub rows: Vec<RfcRow>,
    /// The `ROWCOUNT` applied (smaller than asked after a memory dump).
    pub rowcount: usize,
    /// The most rows any earlier answer of this system held (before this one): a silent
    /// cap, if the system has one, is at least that.
    pub served_before: usize,
    /// Whether a row cap had been learned when the read was made (`ROWCOUNT` was bounded
    /// by it, so [`Self::truncated`] covers the cap).
    pub cap_known: bool,
}

impl ReadOutcome {
    /// Whether the result may have been cut by `ROWCOUNT` (more rows may match).
    pub fn truncated(&self) -> bool {
        self.rows.len() >= self.rowcount
    }

    /// Whether a short answer may still have been cut by a silent cap this system has not
    /// been caught at yet: it held rows, and no fewer than any earlier answer (an answer
    /// smaller than one the system already gave cannot be at its cap). A reader that
    /// cannot tell a cut answer from a complete one (a key lookup) asks again in halves.
    pub fn maybe_capped(&self) -> bool {
        !self.cap_known && !self.rows.is_empty() && self.rows.len() >= self.served_before
    }
}

/// Reads tables through `RFC_READ_TABLE` (see the module docs).
#[derive(Debug)]
pub struct RfcReadTable {
    client: Arc<RfcClient>,
    system: String,
    codepage: CodePage,
    max_width: usize,
    rereads: usize,
    meta: Mutex<HashMap<String, Arc<TableMeta>>>,
    /// Optional fields already warned about (`TABLE-FIELD`).
    missing: Mutex<std::collections::HashSet<String>>,
    /// The most rows the system answers whatever `ROWCOUNT` asks (0: none seen), learned
    /// by the scan when a read came back short; every later read asks for at most that, so
    /// a full answer is seen as cut ([`ReadOutcome::truncated`]) and never as complete.
    row_cap: std::sync::atomic::AtomicUsize,
    /// The most rows one answer has held ([`ReadOutcome::served_before`]).
    max_served: std::sync::atomic::AtomicUsize,
}

impl RfcReadTable {
    /// Reads through `client`; `system` names it in errors (`SapEcc(host, client=100)`).
    pub fn new(client: Arc<RfcClient>, system: impl Into<String>) -> Self {
        Self {
            client,
            system: system.into(),
            codepage: CodePage::Unicode,
            max_width: ROW_BUFFER,
            rereads: 3,
            meta: Mutex::new(HashMap::new()),
            missing: Mutex::new(std::collections::HashSet::new()),
            row_cap: std::sync::atomic::AtomicUsize::new(0),
            max_served: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The system's code page (default Unicode).
    #[must_use]
    pub fn with_codepage(mut self, codepage: CodePage) -> Self {
        self.codepage = codepage;
        self
    }

    /// The widest row one call may select (default 512; some systems fail below it,
    /// viadot keeps under 400).
    #[must_use]
    pub fn with_max_width(mut self, width: usize) -> Self {
        self.max_width = width.clamp(1, ROW_BUFFER);
        self
    }

    /// The system, as errors name it.
    pub fn system(&self) -> &str {
        &self.system
    }

    /// The client.
    pub fn client(&self) -> &Arc<RfcClient> {
        &self.client
    }

    fn rfc_err(&self, e: crate::rfc::RfcError) -> SapEccError {
        SapEccError::rfc(&self.system, RFC_READ_TABLE, e)
    }

    /// The fields of `table` (one `NO_DATA` call, cached).
    pub async fn metadata(&self, table: &str) -> Result<Arc<TableMeta>, SapEccError> {
        if let Some(m) = self.lock().get(table) {
            return Ok(Arc::clone(m));
        }
        self.describe(table).await
    }

    /// Logs on and describes `table` now (one `NO_DATA` call, refreshing the cache).
    pub async fn ping(&self, table: &str) -> Result<(), SapEccError> {
        self.describe(table).await.map(|_| ())
    }

    async fn describe(&self, table: &str) -> Result<Arc<TableMeta>, SapEccError> {
        let mut call = RfcCall::new(RFC_READ_TABLE)
            .with_import("QUERY_TABLE", table)
            .with_import("NO_DATA", "X")
            .with_import("ROWCOUNT", "1")
            .expect_table("FIELDS");
        let r = self
            .client
            .call(&mut call)
            .await
            .map_err(|e| self.rfc_err(e))?;
        let fields = parse_fields(table, r.table("FIELDS"))
            .map_err(|m| SapEccError::decode(&self.system, m))?;
        if fields.is_empty() {
            return Err(SapEccError::decode(
                &self.system,
                format!("{table}: NO_DATA call returned no fields"),
            ));
        }
        let meta = Arc::new(TableMeta {
            table: table.to_owned(),
            fields,
        });
        self.lock().insert(table.to_owned(), Arc::clone(&meta));
        Ok(meta)
    }

    /// `rowcount`, at most the learned row cap.
    fn bounded(&self, rowcount: usize) -> usize {
        match self.row_cap.load(std::sync::atomic::Ordering::Relaxed) {
            0 => rowcount,
            cap => rowcount.min(cap),
        }
    }

    /// The system answered `rows` rows where more were asked and more exist: it caps
    /// answers there without saying so. Later reads ask for at most that.
    pub fn learn_row_cap(&self, rows: usize) {
        let rows = rows.max(1);
        let before = self
            .row_cap
            .fetch_min(rows, std::sync::atomic::Ordering::Relaxed);
        if before == 0 {
            self.row_cap
                .store(rows, std::sync::atomic::Ordering::Relaxed);
        }
        if before == 0 || rows < before {
            tracing::warn!(system = %self.system, rows, "the system answers at most this many rows whatever ROWCOUNT asks: reading in smaller pieces");
        }
    }

    /// The learned row cap (see [`Self::learn_row_cap`]), if any.
    pub fn row_cap(&self) -> Option<usize> {
        match self.row_cap.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            cap => Some(cap),
        }
    }

    /// Warns once per table and field that an optional field is not read.
    fn warn_missing(&self, table: &str, field: &str) {
        let first = self
            .missing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(format!("{table}-{field}"));
        if first {
            tracing::warn!(
                system = %self.system,
                table,
                field,
                "the table has no such field on this system: read without it (the records \
                 lack what it holds)"
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TableMeta>>> {
        self.meta.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads rows (see the module docs): chunked, joined on the key, re-read when rows
    /// moved between chunks. A field of [`optional_fields`] the table does not have on
    /// this system (a release, a tailoring) is left out of the read, with a warning;
    /// any other missing field is a configuration error.
    pub async fn read(&self, req: &ReadRequest<'_>) -> Result<ReadOutcome, SapEccError> {
        let served_before = self.max_served.load(std::sync::atomic::Ordering::Relaxed);
        let cap_known = self.row_cap().is_some();
        let nothing = || ReadOutcome {
            rows: Vec::new(),
            rowcount: req.rowcount.max(1),
            served_before,
            cap_known,
        };
        let meta = match self.metadata(req.table).await {
            Err(e) if without_data(&e) => return Ok(nothing()),
            other => other?,
        };
        let optional = optional_fields(req.table);
        let fields: Vec<&str> = req
            .fields
            .iter()
            .copied()
            .filter(|f| {
                let keep = meta.field(f).is_some() || !optional.contains(f);
                if !keep {
                    self.warn_missing(req.table, f);
                }
                keep
            })
            .collect();
        let chunks = chunk_fields(&meta, &fields, req.key, self.max_width)
            .map_err(|m| SapEccError::config("fields", m))?;
        let options: Vec<RfcRow> = req
            .filter
            .lines()?
            .into_iter()
            .map(|l| RfcRow::from([("TEXT".to_owned(), l)]))
            .collect();
        let mut rowcount = self.bounded(req.rowcount.max(1));
        let mut counts = Vec::new();
        let mut attempt = 0;
        'read: loop {
            let mut joined: Vec<RfcRow> = Vec::new();
            let mut index: BTreeMap<Vec<String>, usize> = BTreeMap::new();
            for (i, chunk) in chunks.iter().enumerate() {
                let (rows, applied) =
                    match self.read_chunk(req.table, chunk, &options, rowcount).await {
                        Err(e) if without_data(&e) => return Ok(nothing()),
                        other => other?,
                    };
                if applied < rowcount {
                    // A memory dump halved the rows: every chunk must use the same count.
                    rowcount = applied;
                    continue 'read;
                }
                let key_of = |r: &RfcRow| -> Vec<String> {
                    req.key
                        .iter()
                        .map(|k| r.get(*k).cloned().unwrap_or_default())
                        .collect()
                };
                if i == 0 {
                    for r in rows {
                        let k = key_of(&r);
                        if index.insert(k, joined.len()).is_some() {
                            return Err(SapEccError::decode(
                                &self.system,
                                format!("{}: duplicate key in one read", req.table),
                            ));
                        }
                        joined.push(r);
                    }
                    counts.push(joined.len());
                    continue;
                }
                let same = rows.len() == joined.len()
                    && rows.iter().all(|r| index.contains_key(&key_of(r)));
                counts.push(rows.len());
                if !same {
                    attempt += 1;
                    tracing::debug!(
                        table = req.table,
                        ?counts,
                        attempt,
                        "rows moved between chunks; reading again"
                    );
                    if attempt > self.rereads {
                        return Err(SapEccError::DataMoved {
                            system: self.system.clone(),
                            table: req.table.to_owned(),
                            message: format!("row counts per chunk {counts:?}"),
                        });
                    }
                    counts.clear();
                    continue 'read;
                }
                for r in rows {
                    let at = index[&key_of(&r)];
                    joined[at].extend(r);
                }
            }
            self.max_served
                .fetch_max(joined.len(), std::sync::atomic::Ordering::Relaxed);
            return Ok(ReadOutcome {
                rows: joined,
                rowcount,
                served_before,
                cap_known,
            });
        }
    }

    async fn read_chunk(
        &self,
        table: &str,
        fields: &[String],
        options: &[RfcRow],
        rowcount: usize,
    ) -> Result<(Vec<RfcRow>, usize), SapEccError> {
        let mut call = RfcCall::new(RFC_READ_TABLE)
            .with_import("QUERY_TABLE", table)
            .with_import("ROWCOUNT", rowcount.to_string())
            .with_table("OPTIONS", options.to_vec())
            .with_table(
                "FIELDS",
                fields
                    .iter()
                    .map(|f| RfcRow::from([("FIELDNAME".to_owned(), f.clone())]))
                    .collect(),
            )
            .expect_table("DATA");
        let r = self
            .client
            .call(&mut call)
            .await
            .map_err(|e| self.rfc_err(e))?;
        let applied = call
            .import("ROWCOUNT")
            .and_then(|v| v.parse().ok())
            .unwrap_or(rowcount);
        let layout = parse_fields(table, r.table("FIELDS"))
            .map_err(|m| SapEccError::decode(&self.system, m))?;
        let layout: Vec<FieldMeta> = fields
            .iter()
            .map(|f| {
                layout
                    .iter()
                    .find(|l| l.name == *f)
                    .cloned()
                    .ok_or_else(|| {
                        SapEccError::decode(
                            &self.system,
                            format!("{table}: the answer's FIELDS lack {f}"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        let data = r.table("DATA");
        if data.len() > applied {
            return Err(SapEccError::decode(
                &self.system,
                format!("{table}: {} rows for ROWCOUNT {applied}", data.len()),
            ));
        }
        let rows = data
            .iter()
            .map(|d| {
                let wa = d.get("WA").map_or("", String::as_str);
                let values = self.codepage.slice(wa, &layout);
                layout
                    .iter()
                    .map(|f| f.name.clone())
                    .zip(values)
                    .collect::<RfcRow>()
            })
            .collect();
        Ok((rows, applied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(fields: &[(&str, usize)]) -> TableMeta {
        let mut offset = 0;
        TableMeta {
            table: "T".into(),
            fields: fields
                .iter()
                .map(|(n, l)| {
                    let f = FieldMeta {
                        name: (*n).into(),
                        offset,
                        length: *l,
                        typ: 'C',
                        text: String::new(),
                    };
                    offset += l;
                    f
                })
                .collect(),
        }
    }

    #[test]
    fn chunks_repeat_the_key_and_stay_under_the_width() {
        let m = meta(&[
            ("BUKRS", 4),
            ("BELNR", 10),
            ("GJAHR", 4),
            ("SGTXT", 50),
            ("A", 200),
            ("B", 200),
            ("C", 100),
            ("D", 300),
        ]);
        let chunks = chunk_fields(
            &m,
            &["SGTXT", "A", "B", "C", "D", "BELNR"],
            &["BUKRS", "BELNR", "GJAHR"],
            512,
        )
        .expect("chunks");
        assert_eq!(chunks.len(), 2);
        for c in &chunks {
            assert_eq!(&c[..3], ["BUKRS", "BELNR", "GJAHR"]);
            let w: usize = c.iter().map(|f| m.field(f).expect("f").length).sum();
            assert!(w <= 512, "{c:?} is {w} wide");
        }
        assert_eq!(chunks[0], ["BUKRS", "BELNR", "GJAHR", "SGTXT", "A", "B"]);
        assert_eq!(chunks[1], ["BUKRS", "BELNR", "GJAHR", "C", "D"]);
        assert!(chunk_fields(&m, &["NOPE"], &["BUKRS"], 512).is_err());
        assert!(chunk_fields(&m, &["D"], &["A"], 400).is_err());
    }

    #[test]
    fn fixed_width_by_utf16_units_and_by_code_page_bytes() {
        let layout = vec![
            FieldMeta {
                name: "LIFNR".into(),
                offset: 0,
                length: 10,
                typ: 'C',
                text: String::new(),
            },
            FieldMeta {
                name: "NAME1".into(),
                offset: 10,
                length: 12,
                typ: 'C',
                text: String::new(),
            },
            FieldMeta {
                name: "RMWWR".into(),
                offset: 22,
                length: 16,
                typ: 'P',
                text: String::new(),
            },
        ];
        // A name with `|`, `;` and a character outside the BMP (two UTF-16 units).
        let wa = format!("0000100001{:<11}{:>16}", "𝔄|b;c", "1234.50-");
        let v = CodePage::Unicode.slice(&wa, &layout);
        assert_eq!(v, ["0000100001", "𝔄|b;c", "1234.50-"]);
        // Trailing blanks cut off by the XML answer.
        let v = CodePage::Unicode.slice("0000100001ACME", &layout);
        assert_eq!(v, ["0000100001", "ACME", ""]);
        // Shift-JIS: a kanji is two bytes.
        let sjis = CodePage::from_sap("8000").expect("8000");
        let wa = format!("0000100002{}{:>16}", "東京商事    ", "99.00");
        let v = sjis.slice(&wa, &layout);
        assert_eq!(v, ["0000100002", "東京商事", "99.00"]);
        assert_eq!(CodePage::from_sap("4103"), Some(CodePage::Unicode));
        assert_eq!(CodePage::from_sap("9999"), None);
    }

    #[test]
    fn sap_numbers() {
        assert_eq!(
            parse_number("  1234.50-"),
            Decimal::from_str("-1234.50").ok()
        );
        assert_eq!(parse_number("-0.01"), Decimal::from_str("-0.01").ok());
        assert_eq!(
            parse_number("98765432109876.54"),
            Decimal::from_str("98765432109876.54").ok()
        );
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("1,234.00"), None);
        assert_eq!(parse_number("1.2.3"), None);
        assert_eq!(parse_number("-"), None);
    }
}

//! [`SapEccSource`]: one category of SAP ECC documents, polled incrementally with the
//! tie-proof cursor over complete key ranges (see [`crate::scan`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt as _;
use jiff::tz::TimeZone;
use ml_core::clock::Clock;
use ml_core::cursor::{Cursor as _, PageRow, Position, WatermarkCursor, fold_page};
use ml_core::error::{Error, Result};
use ml_core::record::EntityKind;
use ml_core::source::{Page, Source};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::client::RfcClient;
use crate::error::SapEccError;
use crate::model::{self, Ctx, IdempotencyKey, InvoiceContext, PoEvent};
use crate::options::Expr;
use crate::read_table::{ReadRequest, RfcReadTable};
use crate::rfc::{RfcCall, RfcResponse, RfcRow};
use crate::scan::{ScanSpec, Scanned, local_to_instant, naive_now, scan};

/// What a source reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// Purchase orders: new EKKO rows (`AEDAT`, day only) and changes in CDHDR
    /// (`OBJECTCLAS = 'EINKBELEG'`, `UDATE` + `UTIME`, one event per `CHANGENR`),
    /// enriched with `BAPI_PO_GETDETAIL1`.
    PurchaseOrders,
    /// Vendor invoices: RBKP by `CPUDT` + `CPUTM`, with RSEG, the PO items (EKPO) and the
    /// vendor (LFA1): matched / mismatch.
    SupplierInvoices,
    /// GL documents: BKPF by `CPUDT` + `CPUTM`, BSEG read by document key.
    GlDocuments,
}

impl Category {
    /// Parses `purchase_orders` / `pos`, `invoices` / `supplier_invoices`, `gl` /
    /// `gl_documents`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "purchase_orders" | "pos" | "po" | "purchase_order" => Some(Self::PurchaseOrders),
            "invoices" | "supplier_invoices" | "vendor_invoices" | "supplier_invoice" => {
                Some(Self::SupplierInvoices)
            }
            "gl" | "gl_documents" | "gl_journal" | "gl_postings" => Some(Self::GlDocuments),
            _ => None,
        }
    }

    /// The label used in `Display`.
    pub fn label(self) -> &'static str {
        match self {
            Self::PurchaseOrders => "purchase_orders",
            Self::SupplierInvoices => "invoices",
            Self::GlDocuments => "gl",
        }
    }

    /// The entity kind of its records.
    pub fn kind(self) -> EntityKind {
        match self {
            Self::PurchaseOrders => EntityKind::PurchaseOrder,
            Self::SupplierInvoices => EntityKind::SupplierInvoice,
            Self::GlDocuments => EntityKind::GlJournal,
        }
    }
}

fn company_filter(field: &str, codes: &[String]) -> Expr {
    if codes.is_empty() {
        Expr::True
    } else {
        Expr::is_in(field, codes.iter().cloned())
    }
}

/// RBKP, read by entry stamp.
pub fn invoice_spec(company_codes: &[String]) -> ScanSpec {
    ScanSpec {
        table: "RBKP",
        date: "CPUDT",
        time: Some("CPUTM"),
        key: &["BELNR", "GJAHR"],
        fields: vec![
            "BELNR", "GJAHR", "BLART", "BLDAT", "BUDAT", "USNAM", "CPUDT", "CPUTM", "XBLNR",
            "BUKRS", "LIFNR", "WAERS", "RMWWR", "WMWST1", "ZTERM", "ZLSPR", "STBLG", "RBSTAT",
        ],
        base: company_filter("BUKRS", company_codes),
    }
}

/// BKPF, read by entry stamp.
pub fn gl_spec(company_codes: &[String]) -> ScanSpec {
    ScanSpec {
        table: "BKPF",
        date: "CPUDT",
        time: Some("CPUTM"),
        key: &["BUKRS", "BELNR", "GJAHR"],
        fields: vec![
            "BUKRS", "BELNR", "GJAHR", "BLART", "BLDAT", "BUDAT", "MONAT", "CPUDT", "CPUTM",
            "USNAM", "TCODE", "XBLNR", "BKTXT", "WAERS", "STBLG", "AWTYP", "AWKEY",
        ],
        base: company_filter("BUKRS", company_codes),
    }
}

/// EKKO, new purchase orders by creation date (`BSTYP = 'F'`: POs, not contracts).
pub fn new_po_spec(company_codes: &[String]) -> ScanSpec {
    ScanSpec {
        table: "EKKO",
        date: "AEDAT",
        time: None,
        key: &["EBELN"],
        fields: vec!["EBELN", "BUKRS", "BSTYP", "AEDAT", "LIFNR", "EKGRP"],
        base: Expr::and([
            Expr::eq("BSTYP", "F"),
            company_filter("BUKRS", company_codes),
        ]),
    }
}

/// CDHDR, PO changes (creations are read from EKKO, so `CHANGE_IND = 'I'` is left out).
pub fn po_change_spec() -> ScanSpec {
    ScanSpec {
        table: "CDHDR",
        date: "UDATE",
        time: Some("UTIME"),
        key: &["OBJECTID", "CHANGENR"],
        fields: vec![
            "OBJECTCLAS",
            "OBJECTID",
            "CHANGENR",
            "USERNAME",
            "UDATE",
            "UTIME",
            "TCODE",
            "CHANGE_IND",
        ],
        base: Expr::and([
            Expr::eq("OBJECTCLAS", "EINKBELEG"),
            Expr::cmp("CHANGE_IND", crate::options::Op::Ne, "I"),
        ]),
    }
}

/// A lookup of rows by one key column (see [`SapEccSource::read_by_keys`]).
#[derive(Clone, Debug)]
pub struct KeyLookup<'a> {
    /// The table.
    pub table: &'static str,
    /// The fields read.
    pub fields: &'a [&'a str],
    /// The key columns rows are joined on (chunked reads).
    pub key: &'a [&'a str],
    /// A fixed restriction (`BUKRS = '1000' AND GJAHR = '2026'`).
    pub fixed: Expr,
    /// The column matched against the values (`BELNR`).
    pub field: &'static str,
    /// Rows expected per value, for `ROWCOUNT`.
    pub per_value: usize,
}

/// The position of a purchase-order stream: two cursors, read one after the other.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct PoPosition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<Position>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<Position>,
    /// `true` while the cycle reads CDHDR.
    #[serde(default)]
    changes: bool,
}

/// Reads one category of SAP ECC documents incrementally (see the crate docs).
pub struct SapEccSource {
    pub(crate) rt: Arc<RfcReadTable>,
    pub(crate) system: String,
    pub(crate) category: Category,
    pub(crate) cursor: WatermarkCursor,
    pub(crate) page_size: usize,
    pub(crate) probe_cap: usize,
    pub(crate) tz: TimeZone,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) company_codes: Vec<String>,
    pub(crate) idempotency: IdempotencyKey,
    pub(crate) tolerance: Decimal,
    pub(crate) key_batch: usize,
}

impl fmt::Debug for SapEccSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SapEccSource")
            .field("system", &self.system)
            .field("category", &self.category)
            .field("client", self.rt.client())
            .field("page_size", &self.page_size)
            .field("tz", &self.tz)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SapEccSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {})",
            self.system.trim_end_matches(')'),
            self.category.label()
        )
    }
}

fn row_get<'a>(r: &'a RfcRow, k: &str) -> &'a str {
    r.get(k).map_or("", String::as_str)
}

impl SapEccSource {
    /// The category read.
    pub fn category(&self) -> Category {
        self.category
    }

    /// The RFC client (call counts, the concurrency cap).
    pub fn client(&self) -> &Arc<RfcClient> {
        self.rt.client()
    }

    /// The table reader.
    pub fn read_table(&self) -> &Arc<RfcReadTable> {
        &self.rt
    }

    /// The system, as records name it (`SapEcc(host:port, client=100)`).
    pub fn system(&self) -> &str {
        &self.system
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            system: &self.system,
            tz: &self.tz,
            idempotency: self.idempotency,
            tolerance: self.tolerance,
        }
    }

    /// Reads rows of `q.table` whose `q.field` is one of `values` (plus `q.fixed`), in
    /// batches of IN lists; a batch whose answer fills `ROWCOUNT`, or may have been cut by
    /// a silent cap not learned yet
    /// ([`ReadOutcome::maybe_capped`](crate::read_table::ReadOutcome::maybe_capped)), is split until none
    /// does.
    pub async fn read_by_keys(
        &self,
        q: &KeyLookup<'_>,
        values: Vec<String>,
    ) -> std::result::Result<Vec<RfcRow>, SapEccError> {
        let KeyLookup {
            table,
            fields,
            key,
            ref fixed,
            field,
            per_value,
        } = *q;
        let values: Vec<String> = values
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut out = Vec::new();
        let mut stack: Vec<Vec<String>> = values
            .chunks(self.key_batch.max(1))
            .map(<[String]>::to_vec)
            .collect();
        stack.reverse();
        while let Some(batch) = stack.pop() {
            let filter = Expr::and([fixed.clone(), Expr::is_in(field, batch.clone())]);
            let rowcount = batch.len() * per_value + 1;
            let r = self
                .rt
                .read(&ReadRequest {
                    table,
                    fields,
                    key,
                    filter: &filter,
                    rowcount,
                })
                .await?;
            if r.truncated() {
                if batch.len() == 1 {
                    // One document with more lines than asked for: ask for more.
                    let bigger = r.rowcount.saturating_mul(4);
                    let filter = Expr::and([fixed.clone(), Expr::eq(field, batch[0].clone())]);
                    let r = self
                        .rt
                        .read(&ReadRequest {
                            table,
                            fields,
                            key,
                            filter: &filter,
                            rowcount: bigger,
                        })
                        .await?;
                    if r.truncated() {
                        return Err(SapEccError::decode(
                            &self.system,
                            format!(
                                "{table}: more than {bigger} rows for {field} = {}",
                                batch[0]
                            ),
                        ));
                    }
                    out.extend(r.rows);
                    continue;
                }
                let (a, b) = batch.split_at(batch.len() / 2);
                stack.push(b.to_vec());
                stack.push(a.to_vec());
                continue;
            }
            if r.maybe_capped() && batch.len() > 1 {
                // Short, but as long as the longest answer yet: it may be a silent cap
                // (GL documents posted with half their lines, or rejected with none). The
                // halves are each shorter unless one holds every row, and a shorter
                // answer proves itself complete; one value alone is taken as it comes.
                tracing::debug!(
                    table,
                    rows = r.rows.len(),
                    values = batch.len(),
                    "a key lookup's answer may be cut by a silent cap: asking in halves"
                );
                let (a, b) = batch.split_at(batch.len() / 2);
                stack.push(b.to_vec());
                stack.push(a.to_vec());
                continue;
            }
            out.extend(r.rows);
        }
        Ok(out)
    }

    async fn vendors(
        &self,
        ids: impl IntoIterator<Item = String>,
    ) -> std::result::Result<HashMap<String, RfcRow>, SapEccError> {
        let ids: Vec<String> = ids.into_iter().filter(|s| !s.trim().is_empty()).collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let read = self
            .read_by_keys(
                &KeyLookup {
                    table: "LFA1",
                    fields: &["LIFNR", "NAME1", "ORT01", "LAND1", "TELF1"],
                    key: &["LIFNR"],
                    fixed: Expr::True,
                    field: "LIFNR",
                    per_value: 1,
                },
                ids,
            )
            .await;
        let rows = match read {
            Ok(rows) => rows,
            // The vendor master only names the supplier: without it (no authorization for
            // LFA1's table group is common) invoices and POs still go out, unnamed. A
            // logon failure or anything retryable still fails the page.
            Err(e) if !e.class().is_retryable() && !is_logon(&e) => {
                tracing::warn!(system = %self.system, error = %e, "vendor master (LFA1) not readable: records go out without the supplier's name");
                return Ok(HashMap::new());
            }
            Err(e) => return Err(e),
        };
        Ok(rows
            .into_iter()
            .map(|r| (row_get(&r, "LIFNR").to_owned(), r))
            .collect())
    }

    async fn invoice_rows(
        &self,
        spec: &ScanSpec,
        rows: &[RfcRow],
    ) -> std::result::Result<Vec<PageRow>, SapEccError> {
        let mut lines: HashMap<String, Vec<RfcRow>> = HashMap::new();
        let mut by_year: HashMap<String, Vec<String>> = HashMap::new();
        for r in rows {
            by_year
                .entry(row_get(r, "GJAHR").to_owned())
                .or_default()
                .push(row_get(r, "BELNR").to_owned());
        }
        for (year, belnrs) in by_year {
            let found = self
                .read_by_keys(
                    &KeyLookup {
                        table: "RSEG",
                        fields: &[
                            "BELNR", "GJAHR", "BUZEI", "EBELN", "EBELP", "MATNR", "WRBTR", "MENGE",
                        ],
                        key: &["BELNR", "GJAHR", "BUZEI"],
                        fixed: Expr::eq("GJAHR", year),
                        field: "BELNR",
                        per_value: 20,
                    },
                    belnrs,
                )
                .await?;
            for l in found {
                let k = format!("{}/{}", row_get(&l, "BELNR"), row_get(&l, "GJAHR"));
                lines.entry(k).or_default().push(l);
            }
        }
        for v in lines.values_mut() {
            v.sort_by(|a, b| row_get(a, "BUZEI").cmp(row_get(b, "BUZEI")));
        }
        let pos: Vec<String> = lines
            .values()
            .flatten()
            .map(|l| row_get(l, "EBELN").trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        let po_items: HashMap<String, RfcRow> = if pos.is_empty() {
            HashMap::new()
        } else {
            self.read_by_keys(
                &KeyLookup {
                    table: "EKPO",
                    fields: &["EBELN", "EBELP", "NETWR", "LOEKZ"],
                    key: &["EBELN", "EBELP"],
                    fixed: Expr::True,
                    field: "EBELN",
                    per_value: 50,
                },
                pos,
            )
            .await?
            .into_iter()
            .map(|r| {
                (
                    format!("{}/{}", row_get(&r, "EBELN"), row_get(&r, "EBELP")),
                    r,
                )
            })
            .collect()
        };
        let vendors = self
            .vendors(rows.iter().map(|r| row_get(r, "LIFNR").to_owned()))
            .await?;
        let with = InvoiceContext {
            lines: &lines,
            po_items: &po_items,
            vendors: &vendors,
        };
        let ctx = self.ctx();
        Ok(rows
            .iter()
            .map(|r| model::invoice(&ctx, spec, r, &with))
            .collect())
    }

    async fn gl_rows(
        &self,
        spec: &ScanSpec,
        rows: &[RfcRow],
    ) -> std::result::Result<Vec<PageRow>, SapEccError> {
        // BSEG is a cluster table in ECC: read by document key only.
        let mut groups: HashMap<(String, String), Vec<String>> = HashMap::new();
        for r in rows {
            groups
                .entry((
                    row_get(r, "BUKRS").to_owned(),
                    row_get(r, "GJAHR").to_owned(),
                ))
                .or_default()
                .push(row_get(r, "BELNR").to_owned());
        }
        let mut lines: HashMap<String, Vec<RfcRow>> = HashMap::new();
        for ((bukrs, gjahr), belnrs) in groups {
            let found = self
                .read_by_keys(
                    &KeyLookup {
                        table: "BSEG",
                        fields: &[
                            "BUKRS", "BELNR", "GJAHR", "BUZEI", "SHKZG", "WRBTR", "HKONT", "KOSTL",
                            "SGTXT",
                        ],
                        key: &["BUKRS", "BELNR", "GJAHR", "BUZEI"],
                        fixed: Expr::and([Expr::eq("BUKRS", bukrs), Expr::eq("GJAHR", gjahr)]),
                        field: "BELNR",
                        per_value: 50,
                    },
                    belnrs,
                )
                .await?;
            for l in found {
                let k = format!(
                    "{}/{}/{}",
                    row_get(&l, "BUKRS"),
                    row_get(&l, "BELNR"),
                    row_get(&l, "GJAHR")
                );
                lines.entry(k).or_default().push(l);
            }
        }
        for v in lines.values_mut() {
            v.sort_by(|a, b| row_get(a, "BUZEI").cmp(row_get(b, "BUZEI")));
        }
        let ctx = self.ctx();
        Ok(rows
            .iter()
            .map(|r| {
                let k = spec.cursor_key(r);
                model::gl(&ctx, spec, r, lines.get(&k).map_or(&[][..], Vec::as_slice))
            })
            .collect())
    }

    /// `BAPI_PO_GETDETAIL1` with account assignment (items come back without a flag:
    /// `ITEMS` is a parameter of the older `BAPI_PO_GETDETAIL`, and a strict system refuses
    /// a parameter the function does not have).
    pub async fn po_detail(&self, ebeln: &str) -> std::result::Result<RfcResponse, SapEccError> {
        let mut call = RfcCall::new("BAPI_PO_GETDETAIL1")
            .with_import("PURCHASEORDER", ebeln)
            .with_import("ACCOUNT_ASSIGNMENT", "X")
            .expect_table("POITEM")
            .expect_table("POACCOUNT")
            .expect_table("RETURN");
        self.rt
            .client()
            .call(&mut call)
            .await
            .map_err(|e| SapEccError::rfc(&self.system, "BAPI_PO_GETDETAIL1", e))
    }

    async fn po_rows(
        &self,
        spec: &ScanSpec,
        rows: &[RfcRow],
        changes: bool,
    ) -> std::result::Result<Vec<PageRow>, SapEccError> {
        let ebelns: Vec<String> = rows
            .iter()
            .map(|r| {
                let id = if changes {
                    row_get(r, "OBJECTID")
                } else {
                    row_get(r, "EBELN")
                };
                id.trim().to_owned()
            })
            .collect();
        let unique: Vec<String> = ebelns
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let parallel = self.rt.client().max_in_flight().unwrap_or(1).max(1);
        let details: Vec<(String, std::result::Result<RfcResponse, SapEccError>)> =
            futures::stream::iter(unique.into_iter().map(|e| async move {
                let d = self.po_detail(&e).await;
                (e, d)
            }))
            .buffered(parallel)
            .collect()
            .await;
        let mut by_po: HashMap<String, std::result::Result<RfcResponse, String>> = HashMap::new();
        for (e, d) in details {
            let d = match d {
                Ok(r) => Ok(r),
                // A permanent failure of this one document (an ABAP exception) is its
                // rejection; anything retryable fails the page.
                Err(err) if !err.class().is_retryable() && !is_logon(&err) => Err(err.to_string()),
                Err(err) => return Err(err),
            };
            by_po.insert(e, d);
        }
        let vendors = self
            .vendors(by_po.values().filter_map(|d| {
                d.as_ref()
                    .ok()
                    .and_then(|r| r.structure("POHEADER"))
                    .map(|h| row_get(h, "VENDOR").trim().to_owned())
            }))
            .await?;
        let ctx = self.ctx();
        Ok(rows
            .iter()
            .zip(&ebelns)
            .map(|(r, e)| {
                let ev = PoEvent {
                    ebeln: e,
                    version: if changes {
                        row_get(r, "CHANGENR").to_owned()
                    } else {
                        "created".to_owned()
                    },
                    change: changes.then_some(r),
                };
                let detail = match by_po.get(e) {
                    Some(Ok(d)) => Ok(d),
                    Some(Err(m)) => Err(m.clone()),
                    None => Err("no BAPI answer".to_owned()),
                };
                model::purchase_order(&ctx, spec, r, &ev, detail, &vendors)
            })
            .collect())
    }

    async fn poll_spec(
        &self,
        from: Option<&Position>,
        spec: &ScanSpec,
        po_changes: Option<bool>,
    ) -> Result<Page> {
        let plan = self.cursor.plan(from)?;
        let Scanned { rows, more } =
            scan(&self.rt, spec, &plan, self.page_size, self.probe_cap).await?;
        let items = match (self.category, po_changes) {
            (Category::SupplierInvoices, _) => self.invoice_rows(spec, &rows).await?,
            (Category::GlDocuments, _) => self.gl_rows(spec, &rows).await?,
            (Category::PurchaseOrders, c) => self.po_rows(spec, &rows, c.unwrap_or(false)).await?,
        };
        let now = naive_now(self.clock.now(), &self.tz);
        let mut page = fold_page(&self.cursor, from, &plan, items, more, None, now)?;
        page.watermark = page.watermark.map(|w| local_to_instant(w, &self.tz));
        Ok(page)
    }

    async fn poll_pos(&self, from: Option<&Position>) -> Result<Page> {
        let mut st: PoPosition = match from {
            None => PoPosition::default(),
            Some(p) => serde_json::from_value(p.as_json().clone()).map_err(|e| {
                Error::InvalidPosition(format!("not a purchase-order position: {e}"))
            })?,
        };
        let (page, more) = if st.changes {
            let page = self
                .poll_spec(st.c.as_ref(), &po_change_spec(), Some(true))
                .await?;
            st.c = Some(page.next.clone());
            if !page.more {
                st.changes = false;
            }
            let more = page.more;
            (page, more)
        } else {
            let page = self
                .poll_spec(
                    st.n.as_ref(),
                    &new_po_spec(&self.company_codes),
                    Some(false),
                )
                .await?;
            st.n = Some(page.next.clone());
            if !page.more {
                st.changes = true;
            }
            (page, true)
        };
        let next = serde_json::to_value(&st)
            .map(Position::from_json)
            .map_err(|e| Error::InvalidPosition(format!("cannot encode position: {e}")))?;
        Ok(Page {
            items: page.items,
            next,
            more,
            watermark: page.watermark,
        })
    }
}

fn is_logon(e: &SapEccError) -> bool {
    e.rfc_error()
        .is_some_and(|r| r.kind == crate::rfc::RfcErrorKind::Logon)
}

#[async_trait]
impl Source for SapEccSource {
    fn kind(&self) -> EntityKind {
        self.category.kind()
    }

    async fn poll(&self, from: Option<&Position>) -> Result<Page> {
        match self.category {
            Category::SupplierInvoices => {
                self.poll_spec(from, &invoice_spec(&self.company_codes), None)
                    .await
            }
            Category::GlDocuments => {
                self.poll_spec(from, &gl_spec(&self.company_codes), None)
                    .await
            }
            Category::PurchaseOrders => self.poll_pos(from).await,
        }
    }

    /// Logs on and describes the category's table (one `NO_DATA` call, not cached).
    async fn healthcheck(&self) -> Result<()> {
        let table = match self.category {
            Category::SupplierInvoices => "RBKP",
            Category::GlDocuments => "BKPF",
            Category::PurchaseOrders => "EKKO",
        };
        self.rt.ping(table).await.map_err(Into::into)
    }
}

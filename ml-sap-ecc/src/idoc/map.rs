//! [`Idoc`] -> record: ORDERS05 and INVOIC02 mapped, anything else rejected with the
//! reason. Money is `Decimal` + currency, read from the exact field text.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use ml_core::money::{Currency, Money};
use ml_core::record::{BusinessFields, EntityKind, Line, RawJson, Record, Rejected, SourceItem};
use rust_decimal::Decimal;

use super::parse::{Idoc, Segment};

/// How IDocs become records.
#[derive(Clone, Debug)]
pub struct IdocMapping {
    /// `Display` of the receiving system, put in every record (`SapEccIdoc(PRD, client=100)`).
    pub system: String,
    /// The zone of `CREDAT`/`CRETIM` (SAP server time, no zone in the IDoc).
    pub time_zone: TimeZone,
    /// Entity kind per basic type. Defaults: `ORDERS05` -> purchase order, `INVOIC02` ->
    /// supplier invoice (an SD billing document sent out is a receivable: map it to
    /// `Customer` here).
    pub kinds: BTreeMap<String, EntityKind>,
}

impl IdocMapping {
    /// The defaults for `system`.
    pub fn new(system: impl Into<String>) -> Self {
        Self {
            system: system.into(),
            time_zone: TimeZone::UTC,
            kinds: BTreeMap::from([
                ("ORDERS05".to_owned(), EntityKind::PurchaseOrder),
                ("INVOIC02".to_owned(), EntityKind::SupplierInvoice),
            ]),
        }
    }
}

/// Reads an IDoc number field: `1234.50`, `  12.3`, `100.00-` (SAP's trailing minus),
/// `-5`. Anything else is `None`.
pub fn sap_number(text: &str) -> Option<Decimal> {
    let t = text.trim();
    let (t, negative) = match t.strip_suffix('-') {
        Some(rest) => (rest.trim(), true),
        None => (t, false),
    };
    if t.is_empty() || t.len() > 40 || t.contains(['e', 'E', ',']) {
        return None;
    }
    let d = Decimal::from_str(t).ok()?;
    Some(if negative { -d } else { d })
}

fn stamp(idoc: &Idoc, tz: &TimeZone, now: Timestamp) -> Timestamp {
    let date = idoc
        .control
        .get("CREDAT")
        .and_then(|d| Date::strptime("%Y%m%d", d).ok());
    let time = idoc
        .control
        .get("CRETIM")
        .and_then(|t| Time::strptime("%H%M%S", t).ok())
        .unwrap_or(Time::midnight());
    date.and_then(|d| DateTime::from_parts(d, time).to_zoned(tz.clone()).ok())
        .map_or(now, |z| z.timestamp())
}

/// The first child of `segs` whose `QUALF` (or another qualifier field) is `value`.
fn qualified<'a>(
    segs: impl Iterator<Item = &'a Segment>,
    qualifier: &str,
    value: &str,
) -> Option<&'a Segment> {
    segs.into_iter().find(|s| s.field(qualifier) == Some(value))
}

fn money(amount: &str, currency: Option<&Currency>, what: &str) -> Result<Money, String> {
    let value = sap_number(amount).ok_or_else(|| format!("{what} `{amount}` is not a number"))?;
    let currency = currency.ok_or_else(|| format!("{what} has no currency (E1EDK01 CURCY)"))?;
    Ok(Money::new(value, *currency))
}

/// Maps an IDoc to a record, or to a rejected item with the reason. The record's key is
/// the business document number (`E1EDK01 BELNR`, else `DOCNUM`); its idempotency key is
/// `DOCNUM` and its version fixed, so a re-sent IDoc is journaled once.
pub fn map_idoc(idoc: &Idoc, mapping: &IdocMapping, now: Timestamp) -> SourceItem {
    let raw = RawJson::from(idoc.to_json());
    let docnum = idoc.control.docnum().map(str::to_owned);
    let modified_at = stamp(idoc, &mapping.time_zone, now);
    let reject = |reason: String| {
        SourceItem::Rejected(Rejected {
            key: docnum.clone().map(|d| format!("IDOC-{d}")),
            reason,
            raw: raw.clone(),
            modified_at: Some(modified_at),
        })
    };
    let Some(docnum) = docnum.clone() else {
        return reject("the control record has no DOCNUM".into());
    };
    let idoc_type = idoc.control.idoc_type().unwrap_or(&idoc.root).to_owned();
    let Some(kind) = mapping.kinds.get(&idoc_type).cloned() else {
        return reject(format!(
            "IDoc type {idoc_type} (message type {}) is not supported",
            idoc.control.message_type().unwrap_or("-")
        ));
    };
    let result = match idoc_type.as_str() {
        "ORDERS05" => orders(idoc),
        "INVOIC02" => invoice(idoc),
        other => Err(format!("IDoc type {other} has no mapping")),
    };
    let fields = match result {
        Ok(f) => f,
        Err(reason) => return reject(format!("{idoc_type} {docnum}: {reason}")),
    };
    let key = fields
        .document_number
        .clone()
        .unwrap_or_else(|| docnum.clone());
    let mut fields = fields;
    fields.extra.insert("idoc_number".into(), docnum.clone());
    fields.extra.insert("idoc_type".into(), idoc_type);
    if let Some(m) = idoc.control.message_type() {
        fields.extra.insert("message_type".into(), m.to_owned());
    }
    if let Some(p) = idoc.control.get("SNDPRN") {
        fields.extra.insert("sender_partner".into(), p.to_owned());
    }
    let record = Record::new(mapping.system.clone(), kind, key, modified_at)
        .with_idempotency_key(format!("IDOC-{docnum}"))
        .with_version("1")
        .with_fields(fields)
        .with_raw(raw);
    SourceItem::Record(Box::new(record))
}

/// Header fields shared by ORDERS05 and INVOIC02: currency, document number, partners,
/// company code, reference.
fn header(
    idoc: &Idoc,
    number_qualifier: &str,
    partner_roles: &[&str],
) -> Result<(BusinessFields, Option<Currency>), String> {
    let k01 = idoc.segment("E1EDK01");
    let currency = match k01.and_then(|s| s.field("CURCY")) {
        Some(c) => {
            Some(Currency::new(c).map_err(|_| format!("currency `{c}` is not an ISO code"))?)
        }
        None => None,
    };
    let k02 = |q: &str| {
        qualified(idoc.segments_named("E1EDK02"), "QUALF", q)
            .and_then(|s| s.field("BELNR"))
            .map(str::to_owned)
    };
    let document_number = k01
        .and_then(|s| s.field("BELNR"))
        .map(str::to_owned)
        .or_else(|| k02(number_qualifier));
    let partner = partner_roles
        .iter()
        .find_map(|role| qualified(idoc.segments_named("E1EDKA1"), "PARVW", role));
    let fields = BusinessFields {
        document_number,
        supplier_id: partner
            .and_then(|p| p.field("PARTN").or_else(|| p.field("LIFNR")))
            .map(str::to_owned),
        supplier: partner.and_then(|p| p.field("NAME1")).map(str::to_owned),
        company_code: qualified(idoc.segments_named("E1EDK14"), "QUALF", "011")
            .and_then(|s| s.field("ORGID"))
            .map(str::to_owned),
        reference: k02("001").filter(|_| number_qualifier != "001"),
        ..BusinessFields::default()
    };
    Ok((fields, currency))
}

fn lines(idoc: &Idoc, currency: Option<&Currency>) -> Result<Vec<Line>, String> {
    let mut out = Vec::new();
    for p in idoc.segments_named("E1EDP01") {
        let number = p.field("POSEX").unwrap_or_default().to_owned();
        let quantity = match p.field("MENGE") {
            Some(m) => Some(
                sap_number(m)
                    .ok_or_else(|| format!("item {number}: MENGE `{m}` is not a number"))?,
            ),
            None => None,
        };
        let amount = match p.field("NETWR") {
            Some(a) => Some(money(a, currency, &format!("item {number} NETWR"))?),
            None => None,
        };
        let p19 = |q: &str| qualified(p.children_named("E1EDP19"), "QUALF", q);
        let material = p19("002")
            .or_else(|| p19("001"))
            .and_then(|s| s.field("IDTNR"))
            .map(str::to_owned);
        let description = p19("002")
            .or_else(|| p19("001"))
            .and_then(|s| s.field("KTEXT"))
            .map(str::to_owned);
        out.push(Line {
            number,
            description,
            quantity,
            amount,
            material,
            ..Line::default()
        });
    }
    Ok(out)
}

/// The total: `E1EDS01` with the first of `sumids` present (`SUMME`, currency `WAERQ` or
/// the header's), else the sum of the items' `NETWR`.
fn total(
    idoc: &Idoc,
    sumids: &[&str],
    currency: Option<&Currency>,
    items: &[Line],
) -> Result<Option<Money>, String> {
    for id in sumids {
        if let Some(s) = qualified(idoc.segments_named("E1EDS01"), "SUMID", id)
            && let Some(sum) = s.field("SUMME")
        {
            let own = match s.field("WAERQ") {
                Some(c) => Some(
                    Currency::new(c)
                        .map_err(|_| format!("E1EDS01 WAERQ `{c}` is not an ISO code"))?,
                ),
                None => None,
            };
            return money(
                sum,
                own.as_ref().or(currency),
                &format!("E1EDS01 SUMID {id} SUMME"),
            )
            .map(Some);
        }
    }
    let amounts: Vec<&Money> = items.iter().filter_map(|l| l.amount.as_ref()).collect();
    if amounts.is_empty() {
        return Ok(None);
    }
    let first = amounts[0].currency;
    let mut sum = Decimal::ZERO;
    for m in amounts {
        if m.currency != first {
            return Err("items in several currencies".into());
        }
        sum = sum
            .checked_add(m.amount)
            .ok_or_else(|| "the item total overflows".to_owned())?;
    }
    Ok(Some(Money::new(sum, first)))
}

fn orders(idoc: &Idoc) -> Result<BusinessFields, String> {
    // LF = vendor (a PO sent out), AG = sold-to (an order received).
    let (mut fields, currency) = header(idoc, "001", &["LF", "AG"])?;
    if fields.document_number.is_none() {
        return Err("no document number (E1EDK01 BELNR or E1EDK02 QUALF 001)".into());
    }
    let items = lines(idoc, currency.as_ref())?;
    fields.amount = total(idoc, &["002"], currency.as_ref(), &items)?;
    fields.lines = items;
    Ok(fields)
}

fn invoice(idoc: &Idoc) -> Result<BusinessFields, String> {
    // RS = invoicing party, LF = vendor.
    let (mut fields, currency) = header(idoc, "009", &["RS", "LF"])?;
    if fields.document_number.is_none() {
        return Err("no invoice number (E1EDK01 BELNR or E1EDK02 QUALF 009)".into());
    }
    let items = lines(idoc, currency.as_ref())?;
    // SUMID 011 (gross), 010, 002 (items): the qualifier meanings are unconfirmed.
    fields.amount = total(idoc, &["011", "010", "002"], currency.as_ref(), &items)?;
    if fields.amount.is_none() {
        return Err("no amount (E1EDS01 SUMME or item NETWR)".into());
    }
    fields.lines = items;
    Ok(fields)
}

//! Ready-made Fusion items (invoices with lines and distributions) and the trap-laden backfill.

use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};

use super::OracleEmulator;

/// Formats an instant as Fusion does: `2026-03-20T14:53:51.123+00:00`.
pub fn oracle_ts(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string()
}

/// A payables invoice as JSON text (`amount` is written verbatim, so it stays exact),
/// validated, with 1–3 `invoiceLines` of 1–2 `invoiceDistributions` each whose amounts sum
/// exactly to `amount` (see [`invoice_lines_json`]).
pub fn invoice_json(id: i64, updated: Timestamp, amount: &str, supplier: &str) -> String {
    invoice_json_with(id, updated, amount, supplier, true)
}

/// An invoice that is not validated yet: `ValidationStatus` `Not Validated`, and its lines
/// have no distributions (Payables generates them at validation).
pub fn unvalidated_invoice_json(
    id: i64,
    updated: Timestamp,
    amount: &str,
    supplier: &str,
) -> String {
    invoice_json_with(id, updated, amount, supplier, false).replacen(
        r#""ValidationStatus":"Validated""#,
        r#""ValidationStatus":"Not Validated""#,
        1,
    )
}

/// Department segments of the generated account combinations.
const DEPARTMENTS: [&str; 4] = ["110", "520", "610", "740"];
/// Natural-account segments of the generated account combinations.
const ACCOUNTS: [&str; 4] = ["7640", "7699", "5110", "6420"];
/// Line descriptions of generated invoices.
const LINE_TEXTS: [&str; 3] = ["Office supplies", "Laptops", "Freight"];

/// An exact decimal as `(minor units, scale)`: `-310.40` is `(-31040, 2)`. `None` for
/// exponent forms and anything with more than 30 digits.
fn minor_units(amount: &str) -> Option<(i128, u32)> {
    let t = amount.trim();
    let (neg, t) = t.strip_prefix('-').map_or((false, t), |r| (true, r));
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty()
        || int.len() + frac.len() > 30
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut units: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        units = units * 10 + i128::from(b - b'0');
    }
    let scale = u32::try_from(frac.len()).ok()?;
    Some((if neg { -units } else { units }, scale))
}

/// Writes `units` at `scale` as a JSON number (`-310.40`).
fn write_units(out: &mut String, units: i128, scale: u32) {
    if units < 0 {
        out.push('-');
    }
    let abs = units.unsigned_abs();
    if scale == 0 {
        let _ = write!(out, "{abs}");
    } else {
        let p = 10u128.pow(scale);
        let _ = write!(out, "{}.{:0w$}", abs / p, abs % p, w = scale as usize);
    }
}

/// `units` split by `weights` (truncating, the remainder on the last part): the parts sum
/// exactly to `units` and keep its sign.
fn split_units(units: i128, weights: &[i128]) -> [i128; 3] {
    let total: i128 = weights.iter().sum();
    let mut parts = [0i128; 3];
    let mut rest = units;
    for (i, w) in weights.iter().enumerate() {
        parts[i] = if i + 1 == weights.len() {
            rest
        } else {
            units * w / total
        };
        rest -= parts[i];
    }
    parts
}

/// The `invoiceLines` array of a generated invoice, deterministic from `id`: 1–3 lines of
/// 1–2 distributions each (or none, when `distributed` is false), whose amounts sum exactly
/// to `amount` (credit memos: all negative), on combinations such as
/// `01-520-7640-0000-000`. An amount in exponent form (or too long to split) gets one line
/// and one distribution carrying it verbatim.
pub fn invoice_lines_json(id: i64, amount: &str, distributed: bool) -> String {
    let split = minor_units(amount).filter(|(u, _)| u.unsigned_abs() >= 100);
    let n_lines = if split.is_some() {
        1 + id.rem_euclid(3) as usize
    } else {
        1
    };
    let line_weights: &[i128] = &[5, 3, 2][..n_lines];
    let (units, scale) = split.unwrap_or((0, 0));
    let line_parts = split_units(units, line_weights);
    let mut out = String::with_capacity(280 * n_lines);
    out.push('[');
    let mut amount_text = String::with_capacity(amount.len() + 2);
    for (k, line_units) in line_parts.iter().take(n_lines).enumerate() {
        if k > 0 {
            out.push(',');
        }
        let freight = n_lines == 3 && k == 2;
        let (kind, text) = if freight {
            ("Freight", LINE_TEXTS[2])
        } else {
            ("Item", LINE_TEXTS[(id.rem_euclid(2) as usize + k) % 2])
        };
        let account = ACCOUNTS[(id.rem_euclid(7) as usize + k) % ACCOUNTS.len()];
        amount_text.clear();
        if split.is_some() {
            write_units(&mut amount_text, *line_units, scale);
        } else {
            amount_text.push_str(amount.trim());
        }
        let _ = write!(
            out,
            concat!(
                r#"{{"LineNumber":{n},"LineAmount":{a},"LineType":"{kind}","Description":"{text}","#,
                r#""DistributionCombination":"01-000-{account}-0000-000","AccountingDate":"2026-01-15","#,
                r#""invoiceDistributions":["#
            ),
            n = k + 1,
            a = amount_text,
            kind = kind,
            text = text,
            account = account,
        );
        if distributed {
            let n_dists = if split.is_some() && line_units.unsigned_abs() >= 100 {
                1 + (id.rem_euclid(2) as usize + k) % 2
            } else {
                1
            };
            let dist_parts = split_units(*line_units, &[7, 3][..n_dists]);
            for (j, dist_units) in dist_parts.iter().take(n_dists).enumerate() {
                if j > 0 {
                    out.push(',');
                }
                let dept = DEPARTMENTS[(id.rem_euclid(4) as usize + k + j) % DEPARTMENTS.len()];
                amount_text.clear();
                if split.is_some() {
                    write_units(&mut amount_text, *dist_units, scale);
                } else {
                    amount_text.push_str(amount.trim());
                }
                let _ = write!(
                    out,
                    concat!(
                        r#"{{"InvoiceDistributionId":{did},"DistributionLineNumber":{n},"#,
                        r#""DistributionLineType":"{kind}","DistributionAmount":{a},"#,
                        r#""DistributionCombination":"01-{dept}-{account}-0000-000","#,
                        r#""AccountingDate":"2026-01-15","Description":"{text}"}}"#
                    ),
                    did = id
                        .saturating_mul(100)
                        .saturating_add((k as i64 + 1) * 10 + j as i64 + 1),
                    n = j + 1,
                    kind = kind,
                    a = amount_text,
                    dept = dept,
                    account = account,
                    text = text,
                );
            }
        }
        out.push_str("]}");
    }
    out.push(']');
    out
}

fn invoice_json_with(
    id: i64,
    updated: Timestamp,
    amount: &str,
    supplier: &str,
    distributed: bool,
) -> String {
    let ts = oracle_ts(updated);
    let supplier = serde_json::to_string(supplier).unwrap_or_else(|_| "\"?\"".into());
    format!(
        concat!(
            r#"{{"InvoiceId":{id},"InvoiceNumber":"INV-{id}","InvoiceAmount":{amount},"#,
            r#""InvoiceCurrency":"USD","PaymentCurrency":"USD","InvoiceDate":"2026-01-15","#,
            r#""BusinessUnit":"US1 Business Unit","Supplier":{supplier},"SupplierNumber":"S{sn}","#,
            r#""InvoiceType":"Standard","ValidationStatus":"Validated","ApprovalStatus":"Approved","#,
            r#""Description":"Office supplies","CreationDate":"{ts}","LastUpdateDate":"{ts}","#,
            r#""invoiceLines":{lines}}}"#
        ),
        id = id,
        amount = amount,
        supplier = supplier,
        sn = 1000 + id % 97,
        ts = ts,
        lines = invoice_lines_json(id, amount, distributed),
    )
}

impl OracleEmulator {
    /// Loads `n` invoices (keys `1..=n`) into `invoices`, from `start`, with the traps:
    /// * ten invoices per second, except one run of 1,200 invoices sharing one
    ///   timestamp (crossing several page boundaries) starting at invoice 2,001;
    /// * unicode supplier names (`Müller GmbH`, `株式会社テスト`, `Ørsted A/S`, emoji);
    /// * every 50th invoice is a credit memo (negative amount, `InvoiceType` Credit Memo);
    /// * amounts with many decimals and a very large one (exact only without floats);
    /// * invoice 777 has no `InvoiceAmount`, invoice 778 an unparseable `InvoiceDate`;
    /// * every invoice has 1–3 lines with 1–2 GL distributions each, summing exactly to its
    ///   amount ([`invoice_lines_json`]), except every 101st invoice, which is
    ///   `Not Validated` and whose lines have no distributions yet.
    ///
    /// Returns the keys of the malformed invoices.
    pub fn load_invoice_traps(&self, n: i64, start: Timestamp) -> Vec<String> {
        let suppliers = [
            "Müller GmbH",
            "株式会社テスト",
            "Ørsted A/S",
            "Acme 🚀 Supplies",
            "Plain Supplier Inc",
        ];
        let mut bad = Vec::new();
        for id in 1..=n {
            let secs = if (2001..=3200).contains(&id) {
                200
            } else if id > 3200 {
                (id - 1200) / 10
            } else {
                (id - 1) / 10
            };
            let t = start + SignedDuration::from_secs(secs);
            let amount = if id % 50 == 0 {
                format!("-{}.10", id % 900 + 1)
            } else if id == 4242 {
                "98765432109876.54".to_owned()
            } else if id % 7 == 0 {
                "0.30000000000000004".to_owned()
            } else {
                format!("{}.{:02}", 100 + id % 19_000, id % 100)
            };
            let supplier = suppliers[(id % 5) as usize];
            let mut text = if id % 101 == 0 {
                unvalidated_invoice_json(id, t, &amount, supplier)
            } else {
                invoice_json(id, t, &amount, supplier)
            };
            if id % 50 == 0 {
                text = text.replace(
                    r#""InvoiceType":"Standard""#,
                    r#""InvoiceType":"Credit Memo""#,
                );
            }
            if id == 777 {
                text = text.replace(&format!(r#""InvoiceAmount":{amount},"#), "");
                bad.push(id.to_string());
            }
            if id == 778 {
                text = text.replace(
                    r#""InvoiceDate":"2026-01-15""#,
                    r#""InvoiceDate":"31/02/2026""#,
                );
                bad.push(id.to_string());
            }
            if id % 13 == 0 {
                text = text.replace(
                    r#""ValidationStatus":"Validated""#,
                    r#""ValidationStatus":"Needs Revalidation""#,
                );
            }
            self.upsert_raw("invoices", &text);
        }
        bad
    }
}

//! Business data for the emulator: vendors, purchase orders (EKKO/EKPO/EKKN, changes in
//! CDHDR), vendor invoices (RBKP/RSEG), GL documents (BKPF/BSEG), and a set of traps.

use jiff::civil::DateTime;
use jiff::{SignedDuration, ToSpan as _};

use super::SapEccEmulator;

/// A vendor (LFA1).
#[derive(Clone, Debug, Default)]
pub struct Vendor {
    /// `LIFNR`, ALPHA format (`0000100001`).
    pub lifnr: String,
    /// `NAME1` (may contain `|` and `;`).
    pub name: String,
    /// `ORT01`.
    pub city: String,
    /// `LAND1`.
    pub country: String,
    /// `TELF1`.
    pub phone: String,
}

/// A purchase order item with its account assignment.
#[derive(Clone, Debug, Default)]
pub struct PoItem {
    /// `TXZ01`.
    pub text: String,
    /// `MATNR`.
    pub material: String,
    /// `MENGE` (`10.000`).
    pub quantity: String,
    /// `NETWR` (`1250.00`).
    pub net_value: String,
    /// `EKKN-KOSTL`.
    pub cost_center: String,
    /// `EKKN-SAKTO`.
    pub gl_account: String,
}

/// A purchase order (EKKO + EKPO + EKKN).
#[derive(Clone, Debug, Default)]
pub struct PurchaseOrder {
    /// `EBELN` (10 digits).
    pub ebeln: String,
    /// `BUKRS`.
    pub bukrs: String,
    /// `LIFNR`.
    pub vendor: String,
    /// `EKGRP` (purchasing group: who the buyer is).
    pub purch_group: String,
    /// `WAERS`.
    pub currency: String,
    /// `AEDAT` (creation date `YYYYMMDD`); `None`: today, server-local.
    pub created: Option<String>,
    /// `FRGKE = 'B'`: blocked for release (the BAPI adds a W row).
    pub release_blocked: bool,
    /// Items.
    pub items: Vec<PoItem>,
}

/// A vendor invoice (RBKP + one RSEG line).
#[derive(Clone, Debug, Default)]
pub struct Invoice {
    /// `BELNR`.
    pub belnr: String,
    /// `GJAHR`.
    pub gjahr: String,
    /// `BUKRS`.
    pub bukrs: String,
    /// `LIFNR`.
    pub vendor: String,
    /// `XBLNR`: the supplier's reference.
    pub reference: String,
    /// `WAERS`.
    pub currency: String,
    /// `RMWWR`: gross amount (`-` for credit memos).
    pub gross: String,
    /// `WMWST1`.
    pub tax: String,
    /// `RBSTAT` (`5` posted, `3` errors in background verification, `D` held, `A` parked).
    pub status: String,
    /// `RSEG-EBELN`.
    pub po: String,
    /// `RSEG-WRBTR` (net amount of the PO line invoiced).
    pub net: String,
    /// `CPUDT`/`CPUTM` server-local; `None`: now.
    pub entered: Option<(String, String)>,
}

/// One GL line (BSEG).
#[derive(Clone, Debug, Default)]
pub struct GlLine {
    /// `HKONT`.
    pub account: String,
    /// `KOSTL`.
    pub cost_center: String,
    /// `SHKZG = 'S'` (debit) else `H`.
    pub debit: bool,
    /// `DMBTR`/`WRBTR`.
    pub amount: String,
    /// `SGTXT`.
    pub text: String,
}

/// A GL document (BKPF + BSEG).
#[derive(Clone, Debug, Default)]
pub struct GlDocument {
    /// `BUKRS`.
    pub bukrs: String,
    /// `BELNR`.
    pub belnr: String,
    /// `GJAHR`.
    pub gjahr: String,
    /// `BLART`.
    pub blart: String,
    /// `BUDAT`.
    pub posting_date: String,
    /// `MONAT`.
    pub period: String,
    /// `WAERS`.
    pub currency: String,
    /// `BKTXT`.
    pub header_text: String,
    /// `XBLNR`.
    pub reference: String,
    /// Lines.
    pub lines: Vec<GlLine>,
    /// `CPUDT`/`CPUTM` server-local; `None`: now.
    pub entered: Option<(String, String)>,
}

/// What [`SapEccEmulator::load_traps`] loaded.
#[derive(Clone, Debug, Default)]
pub struct TrapSummary {
    /// POs created today (EKKO rows).
    pub new_pos: Vec<String>,
    /// CDHDR change numbers of PO changes (one PO changed only through CDHDR).
    pub po_changes: Vec<String>,
    /// The PO created long ago whose only trace today is a CDHDR row.
    pub cdhdr_only_po: String,
    /// The PO whose BAPI call returns a `RETURN` row of type E.
    pub bapi_error_po: String,
    /// Invoice keys `BELNR/GJAHR`, in entry order.
    pub invoices: Vec<String>,
    /// Invoices whose status or amounts do not match their PO.
    pub mismatched_invoices: Vec<String>,
    /// The invoice added late with an earlier entry time (add it with
    /// [`SapEccEmulator::add_late_invoice`]).
    pub late_invoice: Invoice,
    /// GL document keys `BUKRS/BELNR/GJAHR`.
    pub gl_documents: Vec<String>,
    /// The vendor whose phone number cannot receive SMS.
    pub undeliverable_phone: String,
}

fn n(v: &str) -> &str {
    v
}

impl SapEccEmulator {
    /// Adds a vendor.
    pub fn add_vendor(&self, v: &Vendor) {
        let (today, _) = self.local_now();
        self.upsert(
            "LFA1",
            &[
                ("LIFNR", &v.lifnr),
                ("NAME1", &v.name),
                ("ORT01", &v.city),
                ("LAND1", &v.country),
                ("TELF1", &v.phone),
                ("ERDAT", &today),
                ("KTOKK", "KRED"),
            ],
        );
    }

    /// Adds a purchase order. Creation writes EKKO/EKPO/EKKN and no CDHDR row.
    pub fn add_purchase_order(&self, po: &PurchaseOrder) {
        let (today, _) = self.local_now();
        let created = po.created.clone().unwrap_or(today);
        self.upsert(
            "EKKO",
            &[
                ("EBELN", &po.ebeln),
                ("BUKRS", &po.bukrs),
                ("BSTYP", "F"),
                ("BSART", "NB"),
                ("STATU", "9"),
                ("AEDAT", &created),
                ("ERNAM", "BUYER01"),
                ("LIFNR", &po.vendor),
                ("ZTERM", "0001"),
                ("EKORG", "1000"),
                ("EKGRP", &po.purch_group),
                ("WAERS", &po.currency),
                ("WKURS", "1.00000"),
                ("BEDAT", &created),
                ("FRGKE", if po.release_blocked { "B" } else { "" }),
            ],
        );
        for (i, item) in po.items.iter().enumerate() {
            let ebelp = format!("{:05}", (i + 1) * 10);
            self.upsert(
                "EKPO",
                &[
                    ("EBELN", &po.ebeln),
                    ("EBELP", &ebelp),
                    ("TXZ01", &item.text),
                    ("MATNR", &item.material),
                    ("WERKS", "1000"),
                    ("MATKL", "001"),
                    ("MENGE", n(&item.quantity)),
                    ("MEINS", "EA"),
                    ("NETPR", n(&item.net_value)),
                    ("PEINH", "1"),
                    ("NETWR", n(&item.net_value)),
                    ("KNTTP", "K"),
                    ("AFNAM", "REQUESTER"),
                ],
            );
            self.upsert(
                "EKKN",
                &[
                    ("EBELN", &po.ebeln),
                    ("EBELP", &ebelp),
                    ("ZEKKN", "01"),
                    ("SAKTO", &item.gl_account),
                    ("KOSTL", &item.cost_center),
                    ("NETWR", n(&item.net_value)),
                    ("MENGE", n(&item.quantity)),
                ],
            );
        }
    }

    /// Changes a purchase order: item 10's net value becomes `net_value` (when given)
    /// and a CDHDR row (`EINKBELEG`, `U`) is written at the server-local now. Returns the
    /// change number.
    pub fn change_purchase_order(&self, ebeln: &str, net_value: Option<&str>) -> String {
        if let Some(v) = net_value {
            let mut items = self.rows("EKPO");
            items.retain(|r| r.get("EBELN").is_some_and(|e| e == ebeln));
            if let Some(first) = items.first() {
                let mut pairs: Vec<(String, String)> =
                    first.iter().map(|(k, x)| (k.clone(), x.clone())).collect();
                for p in &mut pairs {
                    if p.0 == "NETWR" || p.0 == "NETPR" {
                        v.clone_into(&mut p.1);
                    }
                }
                let refs: Vec<(&str, &str)> = pairs
                    .iter()
                    .map(|(k, x)| (k.as_str(), x.as_str()))
                    .collect();
                self.upsert("EKPO", &refs);
            }
        }
        let (d, t) = self.local_now();
        self.add_change(ebeln, &d, &t)
    }

    /// Writes a CDHDR row for a PO at a given server-local time.
    pub fn add_change(&self, ebeln: &str, udate: &str, utime: &str) -> String {
        let nr = self.next_changenr();
        self.upsert(
            "CDHDR",
            &[
                ("OBJECTCLAS", "EINKBELEG"),
                ("OBJECTID", ebeln),
                ("CHANGENR", &nr),
                ("USERNAME", "BUYER02"),
                ("UDATE", udate),
                ("UTIME", utime),
                ("TCODE", "ME22N"),
                ("CHANGE_IND", "U"),
                ("LANGU", "E"),
            ],
        );
        nr
    }

    /// Adds a vendor invoice.
    pub fn add_invoice(&self, inv: &Invoice) {
        let (d, t) = inv.entered.clone().unwrap_or_else(|| self.local_now());
        self.upsert(
            "RBKP",
            &[
                ("BELNR", &inv.belnr),
                ("GJAHR", &inv.gjahr),
                ("BLART", "RE"),
                ("BLDAT", &d),
                ("BUDAT", &d),
                ("USNAM", "AP_CLERK"),
                ("CPUDT", &d),
                ("CPUTM", &t),
                ("XBLNR", &inv.reference),
                ("BUKRS", &inv.bukrs),
                ("LIFNR", &inv.vendor),
                ("WAERS", &inv.currency),
                ("RMWWR", n(&inv.gross)),
                ("WMWST1", n(&inv.tax)),
                ("ZTERM", "0001"),
                ("RBSTAT", &inv.status),
                ("STJAH", "0000"),
            ],
        );
        if !inv.po.is_empty() {
            self.upsert(
                "RSEG",
                &[
                    ("BELNR", &inv.belnr),
                    ("GJAHR", &inv.gjahr),
                    ("BUZEI", "000001"),
                    ("EBELN", &inv.po),
                    ("EBELP", "00010"),
                    ("BUKRS", &inv.bukrs),
                    ("WRBTR", n(&inv.net)),
                    ("MENGE", "1.000"),
                    ("MEINS", "EA"),
                ],
            );
        }
    }

    /// Adds the trap set's late invoice: entered (stamped) earlier than invoices already
    /// served, committed now.
    pub fn add_late_invoice(&self, inv: &Invoice) {
        self.add_invoice(inv);
    }

    /// Adds a GL document.
    pub fn add_gl_document(&self, doc: &GlDocument) {
        let (d, t) = doc.entered.clone().unwrap_or_else(|| self.local_now());
        self.upsert(
            "BKPF",
            &[
                ("BUKRS", &doc.bukrs),
                ("BELNR", &doc.belnr),
                ("GJAHR", &doc.gjahr),
                ("BLART", &doc.blart),
                ("BLDAT", &doc.posting_date),
                ("BUDAT", &doc.posting_date),
                ("MONAT", &doc.period),
                ("CPUDT", &d),
                ("CPUTM", &t),
                ("USNAM", "GL_ACCT"),
                ("TCODE", "FB50"),
                ("XBLNR", &doc.reference),
                ("BKTXT", &doc.header_text),
                ("WAERS", &doc.currency),
                ("AWTYP", "BKPF"),
            ],
        );
        for (i, l) in doc.lines.iter().enumerate() {
            let buzei = format!("{:03}", i + 1);
            self.upsert(
                "BSEG",
                &[
                    ("BUKRS", &doc.bukrs),
                    ("BELNR", &doc.belnr),
                    ("GJAHR", &doc.gjahr),
                    ("BUZEI", &buzei),
                    ("BSCHL", if l.debit { "40" } else { "50" }),
                    ("KOART", "S"),
                    ("SHKZG", if l.debit { "S" } else { "H" }),
                    ("DMBTR", n(&l.amount)),
                    ("WRBTR", n(&l.amount)),
                    ("SGTXT", &l.text),
                    ("KOSTL", &l.cost_center),
                    ("HKONT", &l.account),
                    ("SAKNR", &l.account),
                ],
            );
        }
    }

    /// `n` invoices entered from `from` (server-local), three per second (ties across
    /// pages), each with its PO line; vendors with `|` and `;` in their names.
    pub fn load_invoice_backfill(&self, count: usize, from: DateTime) {
        for v in 0..5 {
            self.add_vendor(&Vendor {
                lifnr: format!("{:010}", 100_001 + v),
                name: format!("Lieferant {v} | Teile; GmbH"),
                city: "Köln".into(),
                country: "DE".into(),
                phone: format!("+4922155501{v:02}"),
            });
        }
        for i in 0..count {
            let at = from
                .checked_add(SignedDuration::from_secs((i / 3) as i64))
                .unwrap_or(from);
            let belnr = format!("{:010}", 5_100_000_000_u64 + i as u64);
            self.add_invoice(&Invoice {
                belnr,
                gjahr: at.year().to_string(),
                bukrs: "1000".into(),
                vendor: format!("{:010}", 100_001 + (i % 5)),
                reference: format!("RE-{i:06}"),
                currency: "EUR".into(),
                gross: format!("{}.{:02}", 100 + i % 900, i % 100),
                tax: "0.00".into(),
                status: "5".into(),
                po: String::new(),
                net: String::new(),
                entered: Some((
                    at.strftime("%Y%m%d").to_string(),
                    at.strftime("%H%M%S").to_string(),
                )),
            });
        }
    }

    /// Loads the traps a reader must survive, all stamped in the server's zone within the
    /// last hours before the emulator's now:
    /// * POs created today, one of them blocked for release (BAPI W row), one whose BAPI
    ///   call returns an E row, and one created months ago whose only change today is a
    ///   CDHDR row;
    /// * invoices sharing one `CPUDT`/`CPUTM` (7 at the same second), matched ones,
    ///   mismatched ones (status `3`, or amounts off their PO), a credit memo with a
    ///   trailing-minus amount, and a late invoice to add later;
    /// * vendors with `|`, `;` and characters outside the BMP in their names, one with a
    ///   phone that cannot receive SMS;
    /// * GL documents with cost-center lines, debit and credit.
    pub fn load_traps(&self) -> TrapSummary {
        let now = self
            .shared
            .clock
            .now()
            .to_zoned(self.shared.tz.clone())
            .datetime();
        let at = |mins: i64| {
            let t = now.checked_sub(mins.minutes()).unwrap_or(now);
            (
                t.strftime("%Y%m%d").to_string(),
                t.strftime("%H%M%S").to_string(),
            )
        };
        let mut s = TrapSummary {
            undeliverable_phone: "+15005550009".into(),
            ..TrapSummary::default()
        };
        let vendors = [
            ("0000100001", "Müller | Söhne; Werkzeuge", "+4922155501"),
            ("0000100002", "𝔄cme Industrial; Parts | EU", "+4930555020"),
            ("0000100003", "Nordic Supplies AB", "+15005550009"),
        ];
        for (lifnr, name, phone) in vendors {
            self.add_vendor(&Vendor {
                lifnr: lifnr.into(),
                name: name.into(),
                city: "Hamburg".into(),
                country: "DE".into(),
                phone: phone.into(),
            });
        }
        let item = |text: &str, net: &str, kostl: &str| PoItem {
            text: text.into(),
            material: "MAT-100".into(),
            quantity: "10.000".into(),
            net_value: net.into(),
            cost_center: kostl.into(),
            gl_account: "0000400000".into(),
        };
        let pos = [
            ("4500000101", "0000100001", "001", "12500.00", false),
            ("4500000102", "0000100002", "002", "480.00", true),
            ("4500000103", "0000100003", "003", "75000.00", false),
            ("4500000104", "0000100001", "001", "2300.50", false),
        ];
        for (ebeln, vendor, grp, net, blocked) in pos {
            self.add_purchase_order(&PurchaseOrder {
                ebeln: ebeln.into(),
                bukrs: "1000".into(),
                vendor: vendor.into(),
                purch_group: grp.into(),
                currency: "EUR".into(),
                created: None,
                release_blocked: blocked,
                items: vec![
                    item("Drill bits | HSS; 10 mm", net, "0000004711"),
                    item("Freight", "0.00", "0000004712"),
                ],
            });
            s.new_pos.push(ebeln.into());
        }
        self.fail_bapi_for("4500000104", "No authorization for purchasing group 001");
        s.bapi_error_po = "4500000104".into();
        // Created months ago: only its CDHDR row shows it changed today.
        self.add_purchase_order(&PurchaseOrder {
            ebeln: "4500000007".into(),
            bukrs: "1000".into(),
            vendor: "0000100002".into(),
            purch_group: "002".into(),
            currency: "EUR".into(),
            created: Some("20250915".into()),
            release_blocked: false,
            items: vec![item("Valves", "900.00", "0000004711")],
        });
        s.cdhdr_only_po = "4500000007".into();
        let (d, t) = at(90);
        s.po_changes.push(self.add_change("4500000007", &d, &t));
        let (d, t) = at(30);
        s.po_changes.push(self.add_change("4500000101", &d, &t));
        // Invoices: seven share one second.
        let tie = at(60);
        for i in 0..7 {
            let belnr = format!("51000001{i:02}");
            let (po, net, status) = match i {
                1 => ("4500000102", "500.00", "5"),
                2 => ("4500000103", "75000.00", "3"),
                _ => ("4500000101", "12500.00", "5"),
            };
            let inv = Invoice {
                belnr: belnr.clone(),
                gjahr: tie.0[..4].to_owned(),
                bukrs: "1000".into(),
                vendor: "0000100001".into(),
                reference: format!("INV-2026-{i:03}"),
                currency: "EUR".into(),
                gross: if i == 6 { "-125.00".into() } else { net.into() },
                tax: "0.00".into(),
                status: status.into(),
                po: po.into(),
                net: if i == 6 { "-125.00".into() } else { net.into() },
                entered: Some(tie.clone()),
            };
            self.add_invoice(&inv);
            let key = format!("{belnr}/{}", inv.gjahr);
            if i == 1 || i == 2 {
                s.mismatched_invoices.push(key.clone());
            }
            s.invoices.push(key);
        }
        // Stamped before the newest invoices (the tie), inside a 10-minute overlap.
        let late = at(63);
        s.late_invoice = Invoice {
            belnr: "5100000200".into(),
            gjahr: late.0[..4].to_owned(),
            bukrs: "1000".into(),
            vendor: "0000100002".into(),
            reference: "LATE-0001".into(),
            currency: "EUR".into(),
            gross: "480.00".into(),
            tax: "0.00".into(),
            status: "5".into(),
            po: "4500000102".into(),
            net: "480.00".into(),
            entered: Some(late),
        };
        // GL documents.
        for i in 0..3 {
            let e = at(40 - i * 5);
            let doc = GlDocument {
                bukrs: "1000".into(),
                belnr: format!("01000000{i:02}"),
                gjahr: e.0[..4].to_owned(),
                blart: "SA".into(),
                posting_date: e.0.clone(),
                period: e.0[4..6].to_owned(),
                currency: "EUR".into(),
                header_text: "Accrual | month-end".into(),
                reference: format!("ACR-{i}"),
                lines: vec![
                    GlLine {
                        account: "0000400000".into(),
                        cost_center: "0000004711".into(),
                        debit: true,
                        amount: "1000.00".into(),
                        text: "Tools".into(),
                    },
                    GlLine {
                        account: "0000400000".into(),
                        cost_center: "0000004712".into(),
                        debit: true,
                        amount: "250.50".into(),
                        text: "Freight".into(),
                    },
                    GlLine {
                        account: "0000160000".into(),
                        cost_center: String::new(),
                        debit: false,
                        amount: "1250.50".into(),
                        text: "Accrued liabilities".into(),
                    },
                ],
                entered: Some(e),
            };
            s.gl_documents
                .push(format!("{}/{}/{}", doc.bukrs, doc.belnr, doc.gjahr));
            self.add_gl_document(&doc);
        }
        s
    }
}

//! `BAPI_PO_GETDETAIL1`: errors come back as `RETURN` rows (BAPIRET2), not exceptions.

use std::collections::BTreeMap;

use super::soap::Param;
use super::{Answer, Inner, Shared};

type Row = BTreeMap<String, String>;

fn row(pairs: &[(&str, &str)]) -> Row {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn ret(typ: &str, id: &str, number: &str, message: &str, v1: &str) -> Row {
    row(&[
        ("TYPE", typ),
        ("ID", id),
        ("NUMBER", number),
        ("MESSAGE", message),
        ("LOG_NO", ""),
        ("LOG_MSG_NO", "000000"),
        ("MESSAGE_V1", v1),
        ("MESSAGE_V2", ""),
        ("MESSAGE_V3", ""),
        ("MESSAGE_V4", ""),
        ("PARAMETER", ""),
        ("ROW", "0"),
        ("FIELD", ""),
        ("SYSTEM", "ECCCLNT100"),
    ])
}

fn get<'a>(r: &'a Row, k: &str) -> &'a str {
    r.get(k).map_or("", String::as_str)
}

/// The parameters `BAPI_PO_GETDETAIL1` has: imports, then tables and exports a caller may
/// name to receive them.
const PARAMETERS: &[&str] = &[
    "PURCHASEORDER",
    "ACCOUNT_ASSIGNMENT",
    "ITEM_TEXT",
    "HEADER_TEXT",
    "DELIVERY_ADDRESS",
    "VERSION",
    "SERVICES",
    "SERIALNUMBERS",
    "INVOICEPLAN",
    "POHEADER",
    "POEXPIMPHEADER",
    "RETURN",
    "POITEM",
    "POADDRDELIVERY",
    "POSCHEDULE",
    "POACCOUNT",
    "POCONDHEADER",
    "POCOND",
    "POLIMITS",
    "POCONTRACTLIMITS",
    "POSERVICES",
    "POSRVACCESSVALUES",
    "POTEXTHEADER",
    "POTEXTITEM",
    "POEXPIMPITEM",
    "POCOMPONENTS",
    "POSHIPPINGEXP",
    "POHISTORY",
    "POHISTORY_TOTALS",
    "POCONFIRMATION",
    "ALLVERSIONS",
    "POPARTNER",
    "EXTENSIONOUT",
    "SERIALNUMBER",
    "INVPLANHEADER",
    "INVPLANITEM",
    "POHISTORY_MA",
];

/// Answers one call.
pub(crate) fn call(shared: &Shared, inner: &Inner, params: &BTreeMap<String, Param>) -> Answer {
    const FM: &str = "BAPI_PO_GETDETAIL1";
    // A parameter the function does not have (`ITEMS` of the older BAPI_PO_GETDETAIL) is
    // refused, as the RFC runtime refuses it.
    if let Some(unknown) = params.keys().find(|k| !PARAMETERS.contains(&k.as_str())) {
        return Answer::Exception(
            "PARAMETER_UNKNOWN".into(),
            format!("Function module {FM} has no parameter {unknown}"),
        );
    }
    let po = params
        .get("PURCHASEORDER")
        .map_or("", Param::text)
        .to_owned();
    let flag = |n: &str| params.get(n).map_or("", Param::text).trim() == "X";
    let sent = |n: &str| params.contains_key(n);
    // The number must be in internal format (CHAR10, ALPHA: leading zeros kept); an
    // external `4500000001` works, a stripped `123` does not find `0000000123`.
    let header = inner.tables.get("EKKO").and_then(|t| {
        t.values()
            .find(|r| get(r, "EBELN") == po && get(r, "MANDT") == shared.client)
    });
    let mut out: Vec<(&str, Param)> = Vec::new();
    let Some(h) = header else {
        let msg = format!("Purchase order {po} does not exist");
        out.push(("POHEADER", Param::Structure(Row::new())));
        if sent("POITEM") {
            out.push(("POITEM", Param::Table(Vec::new())));
        }
        out.push((
            "RETURN",
            Param::Table(vec![ret("E", "MEPO", "001", &msg, &po)]),
        ));
        return Answer::Ok(FM, out);
    };
    if let Some(msg) = inner.bapi_errors.get(&po) {
        out.push(("POHEADER", Param::Structure(Row::new())));
        out.push((
            "RETURN",
            Param::Table(vec![ret("E", "ME", "045", msg, &po)]),
        ));
        return Answer::Ok(FM, out);
    }
    let mut header = row(&[
        ("PO_NUMBER", get(h, "EBELN")),
        ("COMP_CODE", get(h, "BUKRS")),
        ("DOC_TYPE", get(h, "BSART")),
        ("DELETE_IND", get(h, "LOEKZ")),
        ("STATUS", get(h, "STATU")),
        ("CREAT_DATE", get(h, "AEDAT")),
        ("CREATED_BY", get(h, "ERNAM")),
        ("VENDOR", get(h, "LIFNR")),
        ("PMNTTRMS", get(h, "ZTERM")),
        ("PURCH_ORG", get(h, "EKORG")),
        ("PUR_GROUP", get(h, "EKGRP")),
        ("CURRENCY", get(h, "WAERS")),
        ("DOC_DATE", get(h, "BEDAT")),
        ("REL_IND", get(h, "FRGKE")),
    ]);
    header.retain(|k, _| !shared.po_header_omits.contains(k));
    out.push(("POHEADER", Param::Structure(header)));
    let items: Vec<&Row> = inner
        .tables
        .get("EKPO")
        .map(|t| t.values().filter(|r| get(r, "EBELN") == po).collect())
        .unwrap_or_default();
    if sent("POITEM") {
        out.push((
            "POITEM",
            Param::Table(
                items
                    .iter()
                    .map(|i| {
                        row(&[
                            ("PO_ITEM", get(i, "EBELP")),
                            ("DELETE_IND", get(i, "LOEKZ")),
                            ("SHORT_TEXT", get(i, "TXZ01")),
                            ("MATERIAL", get(i, "MATNR")),
                            ("PLANT", get(i, "WERKS")),
                            ("MATL_GROUP", get(i, "MATKL")),
                            ("QUANTITY", get(i, "MENGE")),
                            ("PO_UNIT", get(i, "MEINS")),
                            ("NET_PRICE", get(i, "NETPR")),
                            ("PRICE_UNIT", get(i, "PEINH")),
                            ("ACCTASSCAT", get(i, "KNTTP")),
                            ("PREQ_NAME", get(i, "AFNAM")),
                        ])
                    })
                    .collect(),
            ),
        ));
    }
    if sent("POACCOUNT") {
        let rows = if flag("ACCOUNT_ASSIGNMENT") {
            inner
                .tables
                .get("EKKN")
                .map(|t| {
                    t.values()
                        .filter(|r| get(r, "EBELN") == po)
                        .map(|a| {
                            row(&[
                                ("PO_ITEM", get(a, "EBELP")),
                                ("SERIAL_NO", get(a, "ZEKKN")),
                                ("GL_ACCOUNT", get(a, "SAKTO")),
                                ("COSTCENTER", get(a, "KOSTL")),
                                ("NET_VALUE", get(a, "NETWR")),
                                ("QUANTITY", get(a, "MENGE")),
                            ])
                        })
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        out.push(("POACCOUNT", Param::Table(rows)));
    }
    let mut returns = Vec::new();
    if get(h, "FRGKE") == "B" {
        // Informational rows do not fail the call.
        returns.push(ret(
            "W",
            "ME",
            "390",
            "Purchase order is blocked for release",
            &po,
        ));
    }
    out.push(("RETURN", Param::Table(returns)));
    Answer::Ok(FM, out)
}

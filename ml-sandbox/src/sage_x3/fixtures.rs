//! The classes the emulator serves and the demo data with its traps.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::state::Class;

/// The four classes and their representations' query-facet properties.
pub(super) fn classes() -> BTreeMap<String, Class> {
    let mut m = BTreeMap::new();
    m.insert(
        "PORDER".into(),
        Class::new(
            "PORDER",
            &["POHNUM"],
            &[
                "POHNUM",
                "POHFCY",
                "BPSNUM",
                "BPSNAM",
                "ORDDAT",
                "CUR",
                "TOTLINAMT",
                "APPFLG",
                "CLEFLG",
                "BUY",
                "CREDATTIM",
                "UPDDATTIM",
                "CREUSR",
                "UPDUSR",
            ],
        ),
    );
    m.insert(
        "PINVOICE".into(),
        Class::new(
            "PINVOICE",
            &["NUM"],
            &[
                "NUM",
                "FCY",
                "BPR",
                "BPRNAM",
                "BPRVCR",
                "ACCDAT",
                "CUR",
                "AMTATI",
                "AMTNOT",
                "INVTYP",
                "STA",
                "ACC",
                "CREDATTIM",
                "UPDDATTIM",
            ],
        ),
    );
    m.insert(
        "GACCENTRY".into(),
        Class::new(
            "GACCENTRY",
            &["TYP", "NUM"],
            &[
                "TYP",
                "NUM",
                "CPY",
                "FCY",
                "JOU",
                "ACCDAT",
                "CUR",
                "DESVCR",
                "STA",
                "GACCENTRYD",
                "CREDATTIM",
                "UPDDATTIM",
            ],
        ),
    );
    m.insert(
        "BPSUPPLIER".into(),
        Class::new(
            "BPSUPPLIER",
            &["BPSNUM"],
            &["BPSNUM", "BPSNAM", "CRY", "CUR", "CREDATTIM", "UPDDATTIM"],
        ),
    );
    m
}

fn ago(now: Timestamp, mins: i64) -> Timestamp {
    now - SignedDuration::from_mins(mins)
}

/// Demo rows per class with the stamp each gets.
pub(super) fn demo(now: Timestamp) -> Vec<(&'static str, Vec<(serde_json::Value, Timestamp)>)> {
    // Three purchase orders share one stamp (a page of 2 splits them); PO-0001, the lowest
    // key, was updated last.
    let tie = ago(now, 90);
    let po = |n: &str, s: &str, name: &str, amount: serde_json::Value, cur: &str, appflg: &str| {
        json!({"POHNUM": n, "POHFCY": "FR011", "BPSNUM": s, "BPSNAM": name, "ORDDAT": "2026-03-02",
               "CUR": cur, "TOTLINAMT": amount, "APPFLG": appflg, "CLEFLG": "1", "BUY": "JDUPONT"})
    };
    let porder = vec![
        (
            po(
                "PO-0001",
                "S001",
                "Société Générale d'Équipement",
                json!(1250.5),
                "EUR",
                "3",
            ),
            ago(now, 5),
        ),
        (
            po(
                "PO-0002",
                "S002",
                "Müller & Söhne GmbH",
                json!(18900),
                "EUR",
                "3",
            ),
            tie,
        ),
        (
            po(
                "PO-0003",
                "S003",
                "株式会社サンプル商事",
                json!(7300.25),
                "JPY",
                "2",
            ),
            tie,
        ),
        (
            po(
                "PO-0004",
                "S004",
                "Łódź Dostawy Sp. z o.o.",
                json!(420.10),
                "PLN",
                "1",
            ),
            tie,
        ),
        (
            po(
                "PO-0005",
                "S005",
                "Acme Industrial Supply",
                json!(56000),
                "USD",
                "3",
            ),
            ago(now, 120),
        ),
        (
            po(
                "PO-0006",
                "S001",
                "Société Générale d'Équipement",
                json!(999.99),
                "EUR",
                "3",
            ),
            ago(now, 60),
        ),
        (
            po(
                "PO-0007",
                "S006",
                "Ørsted Components A/S",
                json!(15000),
                "DKK",
                "3",
            ),
            ago(now, 30),
        ),
    ];
    let inv = |n: &str,
               s: &str,
               name: &str,
               amount: serde_json::Value,
               cur: &str,
               typ: i64,
               acc: &str| {
        json!({"NUM": n, "FCY": "FR011", "BPR": s, "BPRNAM": name, "BPRVCR": format!("V-{n}"),
               "ACCDAT": "2026-03-05", "CUR": cur, "AMTATI": amount, "AMTNOT": amount, "INVTYP": typ,
               "STA": "2", "ACC": acc})
    };
    let pinvoice = vec![
        (
            inv(
                "FAC-0001",
                "S002",
                "Müller & Söhne GmbH",
                json!(18900.00),
                "EUR",
                1,
                "401100",
            ),
            ago(now, 80),
        ),
        (
            inv(
                "FAC-0002",
                "S005",
                "Acme Industrial Supply",
                json!(56000),
                "USD",
                1,
                "401000",
            ),
            ago(now, 70),
        ),
        // A credit note: X3 keeps the amount positive, the type says credit.
        (
            inv(
                "FAC-0003",
                "S001",
                "Société Générale d'Équipement",
                json!(250.10),
                "EUR",
                2,
                "401100",
            ),
            ago(now, 50),
        ),
        (
            inv(
                "FAC-0004",
                "S003",
                "株式会社サンプル商事",
                json!(7300.25),
                "JPY",
                1,
                "401200",
            ),
            ago(now, 40),
        ),
        (
            inv(
                "FAC-0005",
                "S006",
                "Ørsted Components A/S",
                json!(1500),
                "DKK",
                1,
                "401000",
            ),
            ago(now, 20),
        ),
        // Malformed: an amount that is not a number.
        (
            inv(
                "FAC-0006",
                "S004",
                "Łódź Dostawy Sp. z o.o.",
                json!("n/a"),
                "PLN",
                1,
                "401000",
            ),
            ago(now, 10),
        ),
    ];
    let line = |lin: i64, acc: &str, sns: i64, amt: serde_json::Value, des: &str| json!({"LIN": lin, "ACC": acc, "SNS": sns, "AMTCUR": amt, "DES": des});
    let gl = |typ: &str, num: &str, cur: &str, des: &str, lines: Vec<serde_json::Value>| {
        json!({"TYP": typ, "NUM": num, "CPY": "FR10", "FCY": "FR011", "JOU": typ, "ACCDAT": "2026-03-05",
               "CUR": cur, "DESVCR": des, "STA": "2", "GACCENTRYD": lines})
    };
    let gaccentry = vec![
        (
            gl(
                "ACH",
                "000101",
                "EUR",
                "Facture Müller",
                vec![
                    line(1, "601000", 1, json!(15750.00), "Achats"),
                    line(2, "445660", 1, json!(3150.00), "TVA déductible"),
                    line(3, "401100", -1, json!(18900.00), "Müller & Söhne GmbH"),
                ],
            ),
            ago(now, 75),
        ),
        (
            gl(
                "ACH",
                "000102",
                "EUR",
                "Avoir SGE",
                vec![
                    line(
                        1,
                        "401100",
                        1,
                        json!(250.10),
                        "Société Générale d'Équipement",
                    ),
                    line(2, "601000", -1, json!(250.10), "Achats"),
                ],
            ),
            ago(now, 45),
        ),
        (
            gl(
                "OD",
                "000007",
                "USD",
                "Accrual Acme",
                vec![
                    line(1, "681100", 1, json!(12000), "Accrued services"),
                    line(2, "408000", -1, json!(12000), "Acme Industrial Supply"),
                ],
            ),
            ago(now, 15),
        ),
    ];
    let sup = |n: &str, name: &str, cry: &str, cur: &str| json!({"BPSNUM": n, "BPSNAM": name, "CRY": cry, "CUR": cur});
    let bpsupplier = vec![
        (
            sup("S001", "Société Générale d'Équipement", "FR", "EUR"),
            ago(now, 300),
        ),
        (
            sup("S002", "Müller & Söhne GmbH", "DE", "EUR"),
            ago(now, 300),
        ),
        (
            sup("S003", "株式会社サンプル商事", "JP", "JPY"),
            ago(now, 200),
        ),
        (
            sup("S006", "Ørsted Components A/S", "DK", "DKK"),
            ago(now, 25),
        ),
    ];
    vec![
        ("PORDER", porder),
        ("PINVOICE", pinvoice),
        ("GACCENTRY", gaccentry),
        ("BPSUPPLIER", bpsupplier),
    ]
}

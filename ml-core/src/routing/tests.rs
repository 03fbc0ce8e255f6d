use super::*;
use crate::record::{BusinessFields, Line};

fn invoice(amount: &str, cur: &str) -> Record {
    Record::new(
        "Oracle(pod)",
        EntityKind::SupplierInvoice,
        "1",
        jiff::Timestamp::UNIX_EPOCH,
    )
    .with_fields(BusinessFields {
        amount: Some(Money::parse(amount, cur).expect("m")),
        cost_center: Some("CC-10".into()),
        status: Some("Needs Revalidation".into()),
        lines: vec![Line {
            number: "1".into(),
            gl_account: Some("6100-200".into()),
            ..Line::default()
        }],
        ..BusinessFields::default()
    })
}

fn rule(name: &str, when: Vec<Condition>, to: &[&str]) -> Rule {
    Rule {
        name: name.into(),
        when,
        to: to.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn usd(a: &str) -> Money {
    Money::parse(a, "USD").expect("m")
}

fn router(mode: MatchMode) -> Router {
    Router::new(
        mode,
        vec![
            rule(
                "all invoices",
                vec![Condition::Kind(vec![EntityKind::SupplierInvoice])],
                &["slack:#procurement"],
            ),
            rule(
                "large",
                vec![
                    Condition::Kind(vec![EntityKind::SupplierInvoice]),
                    Condition::AmountAtLeast(usd("10000")),
                ],
                &["slack:#finance", "slack:#procurement"],
            ),
            rule(
                "failed validation",
                vec![Condition::Status(vec!["needs revalidation".into()])],
                &["slack:#finance"],
            ),
            rule(
                "opex",
                vec![Condition::GlAccountPrefix(vec!["61".into()])],
                &["email:ap@example.com"],
            ),
        ],
    )
    .expect("router")
}

#[test]
fn all_match_collects_deduplicated_destinations() {
    let r = router(MatchMode::AllMatch);
    let d: Vec<String> = r
        .route(&invoice("25000", "USD"))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        d,
        [
            "slack:#procurement",
            "slack:#finance",
            "email:ap@example.com"
        ]
    );
}

#[test]
fn first_match_stops_at_the_first() {
    let r = router(MatchMode::FirstMatch);
    let d = r.route(&invoice("25000", "USD"));
    assert_eq!(d, vec![Destination::new("slack", "#procurement")]);
    let e = r.explain(&invoice("25000", "USD"));
    assert!(e.rules[0].applied);
    assert!(e.rules[1].matched && !e.rules[1].applied);
}

#[test]
fn amounts_compare_only_in_their_currency() {
    let r = router(MatchMode::AllMatch);
    let e = r.explain(&invoice("25000", "EUR"));
    let large = &e.rules[1];
    assert!(!large.matched);
    assert!(
        large.reasons[1].contains("is not in USD"),
        "{:?}",
        large.reasons
    );
    let e = r.explain(&invoice("9999.99", "USD"));
    assert!(
        e.rules[1].reasons[1].contains("< 10,000.00 USD"),
        "{:?}",
        e.rules[1].reasons
    );
    // A credit memo is below any positive threshold.
    assert!(!r.explain(&invoice("-50000", "USD")).rules[1].matched);
}

#[test]
fn explain_agrees_with_route() {
    for mode in [MatchMode::AllMatch, MatchMode::FirstMatch] {
        let r = router(mode);
        for rec in [
            invoice("1", "USD"),
            invoice("20000", "USD"),
            invoice("5", "GBP"),
        ] {
            assert_eq!(r.explain(&rec).destinations, r.route(&rec));
        }
    }
    let text = router(MatchMode::AllMatch)
        .explain(&invoice("1", "USD"))
        .to_string();
    assert!(text.contains("MATCH   all invoices"), "{text}");
    assert!(text.contains("=> slack:#procurement"), "{text}");
}

#[test]
fn invalid_rules_are_clear_errors() {
    let cases = vec![
        (rule("", vec![], &["slack:#a"]), "needs a name"),
        (rule("x", vec![], &[]), "at least one destination"),
        (rule("x", vec![], &["nocolon"]), "sink:address"),
        (
            rule("x", vec![Condition::CostCenter(vec![])], &["slack:#a"]),
            "empty value",
        ),
        (
            rule(
                "x",
                vec![Condition::Field {
                    field: " ".into(),
                    values: vec!["a".into()],
                }],
                &["slack:#a"],
            ),
            "empty",
        ),
    ];
    for (r, want) in cases {
        let e = Router::new(MatchMode::AllMatch, vec![r]).expect_err(want);
        assert!(matches!(e, Error::InvalidRule { .. }), "{e}");
        assert!(e.to_string().contains(want), "{e} should say {want}");
    }
    let dup = Router::new(
        MatchMode::AllMatch,
        vec![
            rule("a", vec![], &["slack:#x"]),
            rule("a", vec![], &["slack:#y"]),
        ],
    )
    .expect_err("dup");
    assert!(dup.to_string().contains("same name"));
    // Invalid money in configuration is a deserialisation error, not a panic.
    let bad: std::result::Result<RouterSpec, _> = serde_json::from_str(
        r#"{"rules":[{"name":"a","when":[{"amount_at_least":{"amount":"1e","currency":"USD"}}],"to":["slack:#a"]}]}"#,
    );
    assert!(bad.is_err());
}

#[test]
fn conditions_on_lines_and_fields() {
    let mut rec = invoice("1", "USD");
    rec.fields
        .extra
        .insert("material_group".into(), "IT".into());
    rec.fields.lines.push(Line {
        number: "2".into(),
        cost_center: Some("CC-99".into()),
        ..Line::default()
    });
    let (ok, why) = Condition::CostCenter(vec!["CC-99".into()]).check(&rec);
    assert!(ok);
    // Says which value matched: a line's, not "(none)" for the header.
    assert_eq!(why, "cost center `CC-99` (a line's) in [CC-99]");
    let (ok, why) = Condition::CostCenter(vec!["CC-01".into()]).check(&rec);
    assert!(!ok);
    assert!(why.contains("(lines: `CC-99`)"), "{why}");
    let (ok, why) = Condition::GlAccountPrefix(vec!["6100".into()]).check(&rec);
    assert!(ok);
    assert!(why.contains("`6100-200` (a line's)"), "{why}");
    assert!(
        Condition::Field {
            field: "material_group".into(),
            values: vec!["IT".into()]
        }
        .check(&rec)
        .0
    );
    assert!(!Condition::Supplier(vec!["S1".into()]).check(&rec).0);
    assert!(Condition::System(vec!["Oracle(pod)".into()]).check(&rec).0);
    assert!(!Condition::CompanyCode(vec!["1000".into()]).check(&rec).0);
}

#[test]
fn all_digit_cost_centers_match_with_or_without_leading_zeros() {
    let mut rec = invoice("1", "USD");
    rec.fields.cost_center = Some("0000004711".into());
    let router = |cc: &str| {
        Router::new(
            MatchMode::AllMatch,
            vec![rule(
                "x",
                vec![Condition::CostCenter(vec![cc.into()])],
                &["slack:#a"],
            )],
        )
        .expect("router")
    };
    for (written, matches) in [
        ("4711", true),
        ("0000004711", true),
        ("04711", true),
        ("47110", false),
        ("711", false),
        ("CC-4711", false),
    ] {
        assert_eq!(
            router(written).route(&rec).len(),
            usize::from(matches),
            "{written}"
        );
        let (ok, _) = Condition::CostCenter(vec![written.into()]).check(&rec);
        assert_eq!(ok, matches, "{written} (explained)");
    }
    rec.fields.cost_center = Some("CC-0042".into());
    assert!(!Condition::CostCenter(vec!["CC-42".into()]).check(&rec).0);
}

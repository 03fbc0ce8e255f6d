//! The IFS history log: `HistoryLogHandling.svc/HistoryLogOverviewSet`, served like any
//! entity set (filters, `$orderby`, offset paging), written by the emulator itself: every
//! insert and update of an entity whose LU (the entity type name, e.g. `ManSuppInvoice`)
//! has history logging enabled ([`IfsEmulator::enable_history_log`]) appends an entry
//! `{LogId, LuName, TableName, Keys: "COMPANY=10^INVOICE_ID=7^", HistoryType, Username,
//! TimeStamp}` stamped like the row (whole seconds: ties). LUs without logging get no
//! entries, as in IFS. [`IfsEmulator::set_history_access`] makes the projection answer 403
//! (not granted to the integration user) or 404 (not installed).
//!
//! Guesses (the API notes confirm only the set, `LogId`, `LuName` and `TimeStamp`): the
//! attributes `TableName`, `Keys`, `HistoryType`, `Username` and the `Keys` format.
//!
//! [`IfsEmulator::enable_history_log`]: super::IfsEmulator::enable_history_log
//! [`IfsEmulator::set_history_access`]: super::IfsEmulator::set_history_access

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::Inner;
use super::data::{EntitySetDef, PropType, Row, Val};

/// The history log projection.
pub const HISTORY_PROJECTION: &str = "HistoryLogHandling";
/// The history log entity set.
pub const HISTORY_SET: &str = "HistoryLogOverviewSet";
/// The IFS user the emulator's own changes are logged as.
pub const HISTORY_USER: &str = "IFSAPP";

/// Whether the integration user may read the history log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HistoryAccess {
    /// Readable (default).
    #[default]
    Granted,
    /// 403: the projection is not granted to the user's permission sets.
    Forbidden,
    /// 404: the projection is not there.
    NotInstalled,
}

/// The history log's state.
#[derive(Debug, Default)]
pub(super) struct HistoryLog {
    pub(super) enabled: BTreeSet<String>,
    pub(super) next_id: u64,
    pub(super) access: HistoryAccess,
}

/// The entity set definition of the overview.
pub(super) fn history_def() -> EntitySetDef {
    let p = |n: &str, t: PropType| (n.to_owned(), t);
    EntitySetDef {
        projection: HISTORY_PROJECTION.into(),
        set: HISTORY_SET.into(),
        entity: "HistoryLogOverview".into(),
        keys: vec!["LogId".into()],
        props: vec![
            p("LogId", PropType::Int),
            p("LuName", PropType::String),
            p("TableName", PropType::String),
            p("Keys", PropType::String),
            p("HistoryType", PropType::String),
            p("Username", PropType::String),
            p("TimeStamp", PropType::DateTimeOffset),
        ],
        stamp: "TimeStamp".into(),
        state: None,
        actions: Vec::new(),
    }
}

/// `InvoiceId` -> `INVOICE_ID`.
pub(super) fn column(attribute: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in attribute.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The `Keys` text of a row: `COMPANY=10^INVOICE_ID=7^`.
pub(super) fn keys_text<S: AsRef<str>>(keys: &[String], values: &[S]) -> String {
    use std::fmt::Write as _;
    keys.iter()
        .zip(values)
        .fold(String::new(), |mut out, (k, v)| {
            let _ = write!(out, "{}={}^", column(k), v.as_ref());
            out
        })
}

fn history_path() -> String {
    format!("{HISTORY_PROJECTION}.svc/{HISTORY_SET}")
}

/// Logs a change of the row `key` of the set at `set_path` (when its LU is logged).
pub(super) fn log_change(
    inner: &mut Inner,
    set_path: &str,
    key: &[String],
    history_type: &str,
    at: Timestamp,
) {
    let Some(def) = inner.sets.get(set_path).map(|d| d.def.clone()) else {
        return;
    };
    if !inner.history.enabled.contains(&def.entity) {
        return;
    }
    let keys = keys_text(&def.keys, key);
    append(inner, &def.entity, &keys, history_type, at);
}

/// Appends an entry (also used for late entries with an earlier `at`).
pub(super) fn append(inner: &mut Inner, lu: &str, keys: &str, history_type: &str, at: Timestamp) {
    inner.history.next_id += 1;
    let id = inner.history.next_id;
    let Some(data) = inner.sets.get_mut(&history_path()) else {
        return;
    };
    let mut values = BTreeMap::new();
    values.insert(
        "LogId".to_owned(),
        Val::Int(i64::try_from(id).unwrap_or(i64::MAX)),
    );
    values.insert("LuName".to_owned(), Val::Str(lu.to_owned()));
    values.insert(
        "TableName".to_owned(),
        Val::Str(format!("{}_TAB", column(lu))),
    );
    values.insert("Keys".to_owned(), Val::Str(keys.to_owned()));
    values.insert("HistoryType".to_owned(), Val::Str(history_type.to_owned()));
    values.insert("Username".to_owned(), Val::Str(HISTORY_USER.to_owned()));
    values.insert("TimeStamp".to_owned(), Val::Dto(at));
    data.rows.insert(
        vec![id.to_string()],
        Row {
            values,
            version: 1,
            rowid: (1 << 40) + id,
        },
    );
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::{IfsEmulator, invoice};
    use super::*;

    async fn get(e: &IfsEmulator, http: &reqwest::Client, path_and_query: &str) -> (u16, Value) {
        let token = super::super::tests::token(e, http).await;
        let r = http
            .get(format!("{}/{path_and_query}", e.service_root()))
            .bearer_auth(&token)
            .header("x-ifs-time-zone-aware-request", "true")
            .send()
            .await
            .expect("get");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn only_logged_lus_get_entries_and_the_log_is_guarded() {
        let e = IfsEmulator::start().await.expect("emulator");
        let http = ml_core::http::ClientOptions::default()
            .client()
            .expect("http");
        e.insert(
            "ManSuppInvoiceSet",
            &invoice("10", 1, "1.00", "AwaitingApproval", None),
        )
        .expect("unlogged");
        e.enable_history_log("ManSuppInvoice");
        e.update(
            "ManSuppInvoiceSet",
            &["10", "1"],
            &json!({"GrossAmount": "2.00"}),
        )
        .expect("update");
        e.update_unstamped(
            "ManSuppInvoiceSet",
            &["10", "1"],
            &json!({"GrossAmount": "3.00"}),
        )
        .expect("update");
        e.insert(
            "SupplierInfoGeneralSet",
            &json!({"VendorNo": "S1", "VendorName": "x", "Country": "SE"}),
        )
        .expect("supplier, not logged");
        let path = format!(
            "{HISTORY_PROJECTION}.svc/{HISTORY_SET}?$filter=LuName%20eq%20'ManSuppInvoice'&$orderby=TimeStamp,LogId"
        );
        let (status, body) = get(&e, &http, &path).await;
        assert_eq!(status, 200, "{body}");
        let entries = body["value"].as_array().expect("value");
        assert_eq!(
            entries.len(),
            2,
            "two updates, the insert was before logging: {body}"
        );
        assert_eq!(entries[0]["Keys"], "COMPANY=10^INVOICE_ID=1^");
        assert_eq!(entries[0]["HistoryType"], "Update");
        assert_eq!(entries[0]["TableName"], "MAN_SUPP_INVOICE_TAB");
        assert_eq!(entries[0]["Username"], HISTORY_USER);
        assert_eq!(
            e.history_entries(),
            2,
            "no entry for the unlogged supplier LU"
        );
        // Read-only.
        let token = super::super::tests::token(&e, &http).await;
        let post = http
            .post(format!(
                "{}/{HISTORY_PROJECTION}.svc/{HISTORY_SET}",
                e.service_root()
            ))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(r#"{"LogId":99}"#)
            .send()
            .await
            .expect("post");
        assert_eq!(post.status().as_u16(), 405);
        for (access, want, code) in [
            (HistoryAccess::Forbidden, 403, "ODP_FORBIDDEN"),
            (HistoryAccess::NotInstalled, 404, "ODP_RESOURCE_NOTFOUND"),
        ] {
            e.set_history_access(access);
            let (status, body) = get(&e, &http, &path).await;
            assert_eq!(status, want, "{body}");
            assert_eq!(body["error"]["code"], code, "{body}");
        }
    }
}

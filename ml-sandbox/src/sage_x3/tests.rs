//! The emulator's strictness, checked over HTTP.

use super::*;

async fn started() -> (SageX3Emulator, reqwest::Client) {
    let e = SageX3Emulator::start().await.expect("start");
    e.load_demo();
    let client = ml_core::http::ClientOptions::default()
        .client()
        .expect("client");
    (e, client)
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let r = c
        .get(url)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("get");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn api1_is_strict_and_pages_by_key() {
    let (e, c) = started().await;
    let base = format!("{}api1/x3/erp/SEED/PORDER", e.base_url());
    let (s, _) = get(&c, &base).await;
    assert_eq!(s, 400, "representation is required");
    let r = c
        .get(format!("{base}?representation=PORDER.$query"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 401);
    let (s, _) = get(
        &c,
        &format!(
            "{}api1/x3/erp/OTHER/PORDER?representation=PORDER.$query",
            e.base_url()
        ),
    )
    .await;
    assert_eq!(s, 404);
    let (s, body) = get(
        &c,
        &format!("{base}?representation=PORDER.$query&where=NOPE%20eq%20'x'"),
    )
    .await;
    assert_eq!(s, 500, "an unknown property is a 500");
    assert!(
        body["$diagnoses"][0]["$message"]
            .as_str()
            .expect("msg")
            .contains("NOPE")
    );
    let (s, body) = get(
        &c,
        &format!("{base}?representation=PORDER.$query&count=2&orderBy=UPDDATTIM%20desc"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["$itemsPerPage"], 2);
    let first = body["$resources"][0]["POHNUM"]
        .as_str()
        .expect("key")
        .to_owned();
    assert_eq!(first, "PO-0001", "latest first");
    let next = body["$links"]["$next"]["$url"].as_str().expect("next");
    assert!(next.contains("key=gt."), "{next}");
    // The trap: the next page continues after the last KEY, whatever the order.
    let (_, page2) = get(&c, next).await;
    for r in page2["$resources"].as_array().expect("r") {
        assert!(r["POHNUM"].as_str().expect("k") > "PO-0002", "{r}");
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_and_refuse_reuse() {
    let (e, c) = started().await;
    let token = e.pair();
    let form = |t: &str| {
        format!(
            "grant_type=refresh_token&refresh_token={t}&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"
        )
    };
    let post = |body: String| {
        c.post(e.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = post(form(&token)).await.expect("post");
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["expires_in"], 300);
    assert!(
        v.get("refresh_token_expires_in").is_none(),
        "not said unless asked"
    );
    let next = v["refresh_token"].as_str().expect("rotated").to_owned();
    assert_ne!(next, token);
    // Asked to, the answer says how long the rotated token has left: the pairing's expiry.
    e.set_reports_refresh_expiry(true);
    let short = e.pair_expiring_in(std::time::Duration::from_secs(3 * 86_400));
    let v: serde_json::Value = post(form(&short))
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let left = v["refresh_token_expires_in"].as_u64().expect("expiry said");
    assert!((3 * 86_400 - 5..=3 * 86_400).contains(&left), "{left}");
    e.set_reports_refresh_expiry(false);
    let r = post(form(&token)).await.expect("reuse");
    assert_eq!(r.status().as_u16(), 400);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["error"], "invalid_grant");
    assert!(e.is_live_refresh_token(&next) && !e.is_live_refresh_token(&token));
    let r = post(form(&next).replace(CLIENT_SECRET, "wrong"))
        .await
        .expect("bad client");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!((e.renewals(), e.refused_renewals()), (2, 1));
}

#[tokio::test]
async fn graphql_needs_the_endpoint_header_and_a_valid_token() {
    let (e, c) = started().await;
    let q = serde_json::json!({"query": "{ x3Purchasing { purchaseOrder { query(first: 2) { edges { node { id } } pageInfo { hasNextPage endCursor } } } } }"});
    let r = c
        .post(e.graphql_url())
        .basic_auth(USER, Some(PASSWORD))
        .json(&q)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400, "no endpoint header");
    let r = c
        .post(e.graphql_url())
        .header("x-xtrem-endpoint", FOLDER)
        .bearer_auth("forged")
        .json(&q)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .post(e.graphql_url())
        .basic_auth(USER, Some(PASSWORD))
        .header("x-xtrem-endpoint", FOLDER)
        .json(&q)
        .send()
        .await
        .expect("post");
    let v: serde_json::Value = r.json().await.expect("json");
    let conn = &v["data"]["x3Purchasing"]["purchaseOrder"]["query"];
    assert_eq!(conn["edges"].as_array().expect("edges").len(), 2);
    assert_eq!(conn["pageInfo"]["hasNextPage"], true);
    let bad = serde_json::json!({"query": "{ x3Purchasing { purchaseOrder { query { edges { node { nope } } } } } }"});
    let r = c
        .post(e.graphql_url())
        .basic_auth(USER, Some(PASSWORD))
        .header("x-xtrem-endpoint", FOLDER)
        .json(&bad)
        .send()
        .await
        .expect("post");
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .expect("m")
            .contains("\"nope\""),
        "{v}"
    );
}

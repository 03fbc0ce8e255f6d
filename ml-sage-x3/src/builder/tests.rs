use ml_core::config::MapEnv;

use super::*;

fn key_of(r: ml_core::Result<SageX3Source>) -> String {
    match r {
        Err(ml_core::Error::Config { key, message }) => {
            assert!(!message.contains("hunter2"), "{message}");
            key
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn config_plumbing_and_errors_name_the_key() {
    let err = SageX3Builder::new()
        .with_config_str("SAGE_X3_PAGESIZE", "10")
        .expect_err("unknown key");
    assert!(
        matches!(&err, ml_core::Error::Config { key, .. } if key == "SAGE_X3_PAGESIZE"),
        "{err}"
    );
    let env = MapEnv::from([
        ("SAGE_X3_USER", "admin"),
        ("SAGE_X3_PASSWORD", "hunter2"),
        ("SAGE_X3_PAGE_SIZE", ""),
    ]);
    let b = SageX3Builder::from_env_with(&env);
    assert!(!format!("{b:?}").contains("hunter2"));
    assert_eq!(key_of(b.clone().build()), "SAGE_X3_URL");
    let b = b
        .with_config_str("url", "http://127.0.0.1:9")
        .expect("short name");
    assert_eq!(key_of(b.clone().build()), "SAGE_X3_FOLDER");
    let b = b.with_config_str("folder", "SEED").expect("folder");
    let s = b.clone().build().expect("basic api1");
    assert_eq!(s.to_string(), "SageX3(127.0.0.1:9, SEED, PORDER)");
    assert!(!format!("{s:?}").contains("hunter2"));
    for (k, v, want) in [
        ("api", "soap", "SAGE_X3_API"),
        ("page_size", "1", "SAGE_X3_PAGE_SIZE"),
        ("time_zone", "Mars/Olympus", "SAGE_X3_TIME_ZONE"),
        ("class", "PAYMENTH", "SAGE_X3_CLASS"),
        ("stamp", "UPD) or (1 eq 1", "SAGE_X3_STAMP"),
        ("fields", "colour=red", "SAGE_X3_FIELDS"),
        ("currency", "EURO", "SAGE_X3_CURRENCY"),
        (
            "token_url",
            "http://idp.example.com/token",
            "SAGE_X3_TOKEN_URL",
        ),
        ("folder", "SEED/../X", "SAGE_X3_FOLDER"),
        ("status_labels", "1=Not approved,3", "SAGE_X3_STATUS_LABELS"),
        ("status_labels", "1=A,1=B", "SAGE_X3_STATUS_LABELS"),
    ] {
        let b = b.clone().with_config_str(k, v).expect("key");
        assert_eq!(key_of(b.build()), want, "{k}={v}");
    }
    // A token URL needs the client and a refresh token (or a durable store).
    let cloud = b
        .clone()
        .with_config_str("token_url", "http://127.0.0.1:9/v1/token")
        .and_then(|b| b.with_config_str("client_id", "c"))
        .and_then(|b| b.with_config_str("client_secret", "hunter2"))
        .expect("keys");
    assert_eq!(key_of(cloud.clone().build()), "SAGE_X3_REFRESH_TOKEN");
    let cloud = cloud
        .with_config_str("refresh_token", "hunter2-refresh")
        .expect("rt");
    let s = cloud.build().expect("cloud");
    assert!(!format!("{s:?}").contains("hunter2"));
    // GraphQL with a client and no token URL: the self-signed JWT.
    let g = b
        .with_config_str("api", "graphql")
        .and_then(|b| b.with_config_str("client_id", "c"))
        .and_then(|b| b.with_config_str("client_secret", "hunter2"))
        .expect("keys")
        .build()
        .expect("graphql");
    assert!(
        g.to_string().contains("graphql x3Purchasing.purchaseOrder"),
        "{g}"
    );
}

#[test]
fn status_labels_replace_the_built_in_ones_for_the_api_in_use() {
    let b = SageX3Builder::new()
        .with_url("http://127.0.0.1:9", "SEED")
        .with_basic("admin", "pw".to_owned());
    let built_in = b.clone().build().expect("default");
    assert_eq!(built_in.spec().fields.status_labels.label("3"), "Approved");
    assert_eq!(built_in.spec().fields.status_labels.label("7"), "7");
    let s = b
        .clone()
        .with_config(SageX3ConfigKey::StatusLabels, "1=Open, 3=Signed off")
        .build()
        .expect("labels");
    let labels = &s.spec().fields.status_labels;
    assert_eq!(labels.label("3"), "Signed off");
    // Replaced, not merged: a code the site did not label is shown as served.
    assert_eq!(labels.label("2"), "2");
    let g = b
        .with_config(SageX3ConfigKey::Api, "graphql")
        .with_client("c", "hunter2".to_owned())
        .with_config(SageX3ConfigKey::StatusLabels, "pending=Pending approval")
        .build()
        .expect("graphql");
    assert_eq!(
        g.spec().graphql.fields.status_labels.label("pending"),
        "Pending approval"
    );
    assert_eq!(g.spec().fields.status_labels.label("3"), "Approved");
}

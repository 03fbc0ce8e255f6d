//! The [`CredentialStore`] conformance suite.

use secrecy::{ExposeSecret, SecretString};

use crate::credential::{CredentialName, CredentialStore};

fn name(s: &str) -> CredentialName {
    CredentialName::new(s).expect("valid name")
}

/// Checks the [`CredentialStore`] contract on an empty store: round trips, atomic replace
/// with increasing versions, listing without values, deletion, unicode and long values,
/// and that `Debug` of the store never shows a value.
pub async fn credential_store_conformance(store: &dyn CredentialStore) {
    let a = name("conformance.a");
    let b = name("conformance/b:2");
    assert!(
        store.get(&a).await.expect("get unknown").is_none(),
        "unknown name -> None"
    );
    assert!(
        !store.delete(&a).await.expect("delete unknown"),
        "deleting nothing -> false"
    );

    let info = store
        .put(&a, &SecretString::from("first-secret-value"))
        .await
        .expect("put");
    assert_eq!((info.name.clone(), info.version), (a.clone(), 1));
    assert_eq!(
        store
            .get(&a)
            .await
            .expect("get")
            .expect("stored")
            .expose_secret(),
        "first-secret-value"
    );

    let info = store
        .put(&a, &SecretString::from("second-secret-value"))
        .await
        .expect("replace");
    assert_eq!(info.version, 2, "versions go up by one");
    assert_eq!(
        store
            .get(&a)
            .await
            .expect("get")
            .expect("stored")
            .expose_secret(),
        "second-secret-value"
    );

    let long: String = "ü€𝄞x".repeat(2_000);
    store
        .put(&b, &SecretString::from(long.clone()))
        .await
        .expect("put b");
    assert_eq!(
        store
            .get(&b)
            .await
            .expect("get b")
            .expect("b")
            .expose_secret(),
        long
    );
    store
        .put(&b, &SecretString::from(String::new()))
        .await
        .expect("empty value");
    assert_eq!(
        store
            .get(&b)
            .await
            .expect("get b")
            .expect("b")
            .expose_secret(),
        ""
    );

    let listed = store.list().await.expect("list");
    let names: Vec<&str> = listed.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["conformance.a", "conformance/b:2"],
        "sorted by name"
    );
    assert_eq!(listed[0].version, 2);
    let shown = format!("{listed:?} {store:?}");
    assert!(
        !shown.contains("secret-value") && !shown.contains("𝄞"),
        "values never shown: {shown}"
    );

    assert!(
        store.delete(&a).await.expect("delete"),
        "deleting a stored name -> true"
    );
    assert!(store.get(&a).await.expect("get deleted").is_none());
    assert_eq!(store.list().await.expect("list").len(), 1);
    let again = store
        .put(&a, &SecretString::from("third"))
        .await
        .expect("put again");
    assert!(again.version >= 1);
    assert!(store.delete(&a).await.expect("cleanup a"));
    assert!(store.delete(&b).await.expect("cleanup b"));
    assert!(store.list().await.expect("list").is_empty());
}

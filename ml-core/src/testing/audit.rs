pub async fn audit_store_conformance() {}

//! Shared by the PostgreSQL tests: a schema per test, and the differential history
//! (the same one `differential.rs` runs against the memory store).
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};

use ml_store::{PostgresAuditStore, PostgresBuilder};

/// The test database, or `None` (and a line saying the test skipped) when
/// `ML_TEST_POSTGRES_URL` is unset.
pub fn pg_url(test: &str) -> Option<String> {
    match std::env::var("ML_TEST_POSTGRES_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            // Straight to stderr: the test harness captures `eprintln!`, not this.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "SKIPPED {test}: ML_TEST_POSTGRES_URL is not set \
                     (e.g. postgres://postgres@127.0.0.1:5432/test)\n"
                )
                .as_bytes(),
            );
            None
        }
    }
}

/// A schema of its own for one test; dropped by [`TestSchema::drop_schema`].
pub struct TestSchema {
    pub url: String,
    pub name: String,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl TestSchema {
    pub fn new(url: &str, tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let rnd: u32 = rand_u32();
        let name = format!("t_{tag}_{}_{n}_{rnd:08x}", std::process::id());
        Self {
            url: url.to_owned(),
            name,
        }
    }

    pub fn builder(&self) -> PostgresBuilder {
        PostgresBuilder::new()
            .with_url(&self.url)
            .with_schema(&self.name)
            .with_pool_size(4)
    }

    pub async fn try_store(&self) -> ml_core::Result<PostgresAuditStore> {
        self.builder().build().await
    }

    pub async fn store(&self) -> PostgresAuditStore {
        self.try_store().await.expect("open the PostgreSQL journal")
    }

    async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(async move { drop(conn.await) });
        client
            .batch_execute(&format!("SET search_path = {}", self.name))
            .await
            .expect("search_path");
        client
    }

    /// Runs SQL in the schema (setting it up or damaging it on purpose).
    pub async fn exec(&self, sql: &str) {
        let c = self.client().await;
        c.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}; {sql}", self.name))
            .await
            .expect("exec");
    }

    /// The first column of every row, concatenated.
    pub async fn query_text(&self, sql: &str) -> String {
        let c = self.client().await;
        c.query(sql, &[])
            .await
            .expect("query")
            .iter()
            .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
            .collect()
    }

    pub async fn drop_schema(self) {
        let c = self.client().await;
        let _ = c
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .await;
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}

pub use super::history::differential;

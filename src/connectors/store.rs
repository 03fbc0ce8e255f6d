//! `sqlite = "…"` journals; `url = "postgres://…"` journals (feature `postgres`); the
//! `[limiter] url = "redis://…"` shared limiter (feature `redis`).

use std::sync::Arc;

use async_trait::async_trait;
use ml_core::AuditStore;
use ml_core::Result;
use ml_core::config::interpolate::interpolate;
use ml_core::config::pipeline::JournalConfig;
use ml_core::config::{Env, assemble::JournalFactory};
use ml_store::SqliteBuilder;

pub(crate) struct SqliteJournal;

#[async_trait]
impl JournalFactory for SqliteJournal {
    async fn open(
        &self,
        journal: &JournalConfig,
        env: &dyn Env,
    ) -> Result<Option<Arc<dyn AuditStore>>> {
        let Some(raw) = &journal.sqlite else {
            return Ok(None);
        };
        let path = interpolate("journal.sqlite", raw, env)?;
        let store = SqliteBuilder::new().with_path(&path).build()?;
        Ok(Some(Arc::new(store)))
    }
}

/// `[journal] url = "postgres://…"`: one journal shared by several replicas. The pool size
/// and schema come from `ML_POSTGRES_POOL_SIZE` / `ML_POSTGRES_SCHEMA` (see
/// [`ml_store::postgres::PostgresConfigKey`]); the URL in the file wins over
/// `ML_POSTGRES_URL`.
#[cfg(feature = "postgres")]
pub(crate) struct PostgresJournal;

#[cfg(feature = "postgres")]
#[async_trait]
impl JournalFactory for PostgresJournal {
    async fn open(
        &self,
        journal: &JournalConfig,
        env: &dyn Env,
    ) -> Result<Option<Arc<dyn AuditStore>>> {
        Ok(open_postgres(journal, env)
            .await?
            .map(|s| Arc::new(s) as Arc<dyn AuditStore>))
    }
}

/// The PostgreSQL journal of `[journal] url = "postgres://…"` (created or migrated), on a
/// pool of its own; `None` for any other journal.
#[cfg(feature = "postgres")]
pub(crate) async fn open_postgres(
    journal: &JournalConfig,
    env: &dyn Env,
) -> Result<Option<ml_store::PostgresAuditStore>> {
    let Some(raw) = &journal.url else {
        return Ok(None);
    };
    let url = interpolate("journal.url", raw, env)?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok(None);
    }
    let store = ml_store::postgres::PostgresBuilder::from_env_with(&EnvRef(env))
        .with_url(url)
        .build()
        .await
        .map_err(|e| match e {
            ml_core::Error::Config { key, message } if key == "ML_POSTGRES_URL" => {
                ml_core::Error::config("journal.url", message)
            }
            other => other,
        })?;
    Ok(Some(store))
}

/// The webhook replay cache that goes with the journal, so that a replayed request is
/// refused after a restart and by every process on the journal: the PostgreSQL journal's
/// (shared by every replica), or a SQLite file's. `None` (each receiver keeps its own
/// in-memory cache) for an in-memory journal.
#[cfg(feature = "cli")]
pub(crate) async fn replay_cache(
    journal: &JournalConfig,
    env: &dyn Env,
) -> Result<Option<Arc<dyn ml_core::webhook::ReplayCache>>> {
    #[cfg(feature = "postgres")]
    if let Some(store) = open_postgres(journal, env).await? {
        return Ok(Some(Arc::new(ml_store::PostgresReplayCache::new(&store))));
    }
    let Some(raw) = &journal.sqlite else {
        return Ok(None);
    };
    let path = interpolate("journal.sqlite", raw, env)?;
    if path == ":memory:" {
        return Ok(None);
    }
    let store = ml_store::SqliteAuditStore::open(&path)?;
    Ok(Some(Arc::new(ml_store::SqliteReplayCache::new(&store))))
}

/// `[limiter] url = "redis://…"`: the sinks' quotas in Redis, shared by every replica;
/// `settings` are the limiter's own keys (`fallback = "local:3"`, `namespace`,
/// `timeout_ms`), after the `ML_REDIS_*` environment variables.
#[cfg(feature = "redis")]
pub(crate) struct RedisLimiter;

#[cfg(feature = "redis")]
#[async_trait]
impl ml_core::config::LimiterFactory for RedisLimiter {
    async fn open(
        &self,
        limiter: &ml_core::config::pipeline::LimiterConfig,
        quotas: &[(String, ml_core::limiter::Quota)],
        env: &dyn Env,
    ) -> Result<Option<Arc<dyn ml_core::limiter::RateLimiter>>> {
        let url = interpolate("limiter.url", &limiter.url, env)?;
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Ok(None);
        }
        let mut b = ml_store::redis::RedisLimiterBuilder::from_env_with(&EnvRef(env)).with_url(url);
        for (key, value) in &limiter.settings {
            let path = format!("limiter.settings.{key}");
            let value = interpolate(&path, value, env)?;
            b = b
                .with_config_str(key, value)
                .map_err(|e| ml_core::Error::config(&path, e.to_string()))?;
        }
        for (prefix, quota) in quotas {
            b = b.prefix(prefix.clone(), *quota);
        }
        let l = b.build().map_err(|e| match e {
            ml_core::Error::Config { key, message } => {
                ml_core::Error::config(format!("limiter ({key})"), message)
            }
            other => other,
        })?;
        Ok(Some(Arc::new(l)))
    }
}

/// A `&dyn Env` as an `impl Env` (the builders take the latter).
#[cfg(any(feature = "postgres", feature = "redis"))]
struct EnvRef<'a>(&'a dyn Env);

#[cfg(any(feature = "postgres", feature = "redis"))]
impl Env for EnvRef<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.0.var(name)
    }
}

#[cfg(all(test, feature = "postgres", feature = "redis"))]
mod tests {
    use ml_core::config::{MapEnv, PipelineConfig};

    fn url(var: &str) -> Option<String> {
        let v = std::env::var(var).ok().filter(|v| !v.trim().is_empty());
        if v.is_none() {
            // Straight to stderr: the test harness captures `eprintln!`, not this.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("SKIPPED facade replica selection: {var} is not set\n").as_bytes(),
            );
        }
        v
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pipeline_file_selects_the_postgres_journal_and_the_redis_limiter() {
        let (Some(pg), Some(redis)) = (url("ML_TEST_POSTGRES_URL"), url("ML_TEST_REDIS_URL"))
        else {
            return;
        };
        let schema = "t_facade_selection".to_owned();
        let config = PipelineConfig::from_toml_str(&format!(
            r#"
            [journal]
            url = "${{PG_URL}}"
            [limiter]
            url = "{redis}"
            settings = {{ fallback = "local:3", namespace = "mltest:facade:{schema}" }}
            [sinks.chat]
            connector = "memory"
            "#
        ))
        .expect("config");
        let env = MapEnv::from([
            ("PG_URL", pg.as_str()),
            ("ML_POSTGRES_SCHEMA", schema.as_str()),
        ]);
        let a = super::super::assemble(&config, &env)
            .await
            .expect("assemble");
        let store = format!("{:?}", a.pipeline.store());
        assert!(store.starts_with("PostgresAuditStore("), "{store}");
        assert!(store.contains(&schema), "{store}");
        // The `[limiter]` was handled (no "no shared limiter backend" error), and by the
        // Redis factory: its own settings are checked below.

        // Unknown limiter settings are refused, naming the key.
        let bad = PipelineConfig::from_toml_str(&format!(
            r#"
            [journal]
            url = "memory:"
            [limiter]
            url = "{redis}"
            settings = {{ burst = "9" }}
            "#
        ))
        .expect("config");
        let e = super::super::assemble(&bad, &MapEnv::new())
            .await
            .expect_err("unknown setting");
        assert!(e.to_string().contains("limiter.settings.burst"), "{e}");
    }
}

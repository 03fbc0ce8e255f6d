//! `sqlite = "…"` journals.

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

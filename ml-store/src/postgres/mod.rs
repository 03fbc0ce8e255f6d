//! [`PostgresAuditStore`] (feature `postgres`): one journal shared by several replicas.
//!
//! The same data model and the same contract as [`crate::SqliteAuditStore`], on a
//! PostgreSQL database that every replica reaches:
//!
//! * **Claims.** `claim_due` selects the heads of line (per destination, the oldest
//!   delivery not yet terminal) and locks the claimable ones with
//!   `FOR UPDATE OF d SKIP LOCKED`: two replicas claiming at once never get the same
//!   delivery, and never wait for each other. A claim records its owner (one per process
//!   run) and a lease (`claimed_by`, `lease_until`), renewed while the send runs.
//! * **Recovery.** `requeue_in_flight` takes over only the caller's own claims and those
//!   whose lease ran out: a replica that starts never requeues the in-flight deliveries of
//!   a live sibling. A dead replica's deliveries are taken over after their lease, in
//!   doubt, so they go through `Sink::reconcile` first, exactly as after a crash of a
//!   single process.
//! * **One poller per stream.** `acquire_stream` is a lease row per stream (an upsert that
//!   only succeeds for the holder or after the lease ran out), so a page is read and
//!   journaled by one replica; when the holder dies another takes the stream over once the
//!   lease ran out.
//! * **Order.** `commit_page` holds a transaction-level advisory lock while it takes
//!   delivery ids from their sequence, so ids follow commit order across replicas (a
//!   destination never sees a later page's message before an earlier page's).
//! * **Webhook replays.** [`PostgresReplayCache`] keeps the keys of webhook requests
//!   already received in the schema (table `webhook_seen`), on the journal's pool: a
//!   request replayed to another replica is refused as it is by the one that saw it.
//! * **Time.** Leases compare the times the callers pass (the pipeline's clock), as in
//!   SQLite: replicas on several hosts need clocks kept in sync (NTP); a skew eats into
//!   the lease (60 s by default), nothing else.
//!
//! Every call takes a connection from a deadpool pool; transport errors and pool
//! time-outs are retryable [`ml_core::Error::Store`] errors, so a database fail-over only
//! pauses the pipeline.

mod builder;
mod credentials;
mod deliver;
mod error;
mod lock;
mod query;
mod replay;
mod schema;
mod write;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use jiff::Timestamp;
use ml_core::audit::{
    AttemptOutcome, AttemptView, AuditQuery, AuditWrite, CallbackApplied, CallbackUpdate, Claimant,
    ClaimedDelivery, CycleEnd, CycleId, CycleView, DeliveryFilter, DeliveryId, DeliveryView,
    JournalStats, PageCommit, PageCommitted, RecordHistory, RejectedView,
};
use ml_core::{Destination, Error, Position, Result};

pub use builder::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_SIZE, DEFAULT_SCHEMA, PostgresBuilder, PostgresConfigKey,
};
pub use credentials::{PostgresCredentialStore, PostgresRotation};
pub use lock::{LockedRefreshTokenStore, PostgresRenewalLock, RenewalGuard};
pub use replay::{DEFAULT_CHECK_EVERY, PostgresReplayCache};

use error::Db;

/// The journal schema version this ml-store writes in PostgreSQL.
pub const POSTGRES_SCHEMA_VERSION: i64 = schema::SCHEMA_VERSION;

/// The durable [`AuditStore`](ml_core::AuditStore) shared by several replicas: a
/// PostgreSQL schema (see the [module documentation](self)).
///
/// Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct PostgresAuditStore {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) label: String,
    pub(crate) pool: Pool,
}

impl fmt::Display for PostgresAuditStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresAuditStore({})", self.shared.label)
    }
}

impl fmt::Debug for PostgresAuditStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// rustls on *ring*, verifying the server against the platform's roots.
fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(BuilderVerifierExt::with_platform_verifier)
        .map_err(|e| Error::config("ML_POSTGRES_URL", format!("cannot set up TLS: {e}")))?
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A pool on `b`'s database, with `search_path` set to its schema; and the label.
pub(crate) fn pool(b: &PostgresBuilder) -> Result<(Pool, String)> {
    let (config, tls, url) = b.config()?;
    let label = format!("{url}, schema {}", b.schema);
    let mc = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if tls {
        Manager::from_config(config, tls_connector()?, mc)
    } else {
        Manager::from_config(config, tokio_postgres::NoTls, mc)
    };
    let pool = Pool::builder(manager)
        .max_size(b.pool_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(b.connect_timeout))
        .create_timeout(Some(b.connect_timeout))
        .build()
        .map_err(|e| Error::config("ML_POSTGRES_POOL_SIZE", e.to_string()))?;
    Ok((pool, label))
}

impl PostgresAuditStore {
    /// A builder with the defaults.
    pub fn builder() -> PostgresBuilder {
        PostgresBuilder::new()
    }

    /// Opens the journal at `url` (schema `ml_connector`), creating or migrating it.
    pub async fn connect(url: &str) -> Result<Self> {
        PostgresBuilder::new().with_url(url).build().await
    }

    pub(crate) async fn open_with(b: &PostgresBuilder) -> Result<Self> {
        let (pool, label) = pool(b)?;
        let mut client = pool.get().await.db(&format!("{label}: connecting"))?;
        schema::migrate(&mut client, &b.schema, &label).await?;
        drop(client);
        tracing::debug!(journal = %label, "PostgreSQL journal opened");
        Ok(Self {
            shared: Arc::new(Shared { label, pool }),
        })
    }

    /// Where the journal is: the URL without its password, and the schema.
    pub fn label(&self) -> &str {
        &self.shared.label
    }

    /// The schema version stored in the database.
    pub async fn schema_version(&self) -> Result<i64> {
        let client = self.client("schema_version").await?;
        schema::version(&client).await
    }

    pub(crate) async fn client(&self, op: &str) -> Result<deadpool_postgres::Object> {
        self.shared
            .pool
            .get()
            .await
            .db(&format!("{}: {op}", self.shared.label))
    }

    pub(crate) fn ctx(&self, op: &str) -> String {
        format!("{}: {op}", self.shared.label)
    }
}

#[async_trait]
impl AuditWrite for PostgresAuditStore {
    async fn load_position(&self, stream: &str) -> Result<Option<Position>> {
        query::load_position(self, stream).await
    }

    async fn begin_cycle(&self, stream: &str, at: Timestamp) -> Result<CycleId> {
        write::begin_cycle(self, stream, at).await
    }

    async fn commit_page(&self, page: PageCommit) -> Result<PageCommitted> {
        for p in &page.records {
            p.record.validate()?;
        }
        write::commit_page(self, page).await
    }

    async fn end_cycle(&self, cycle: CycleId, end: CycleEnd) -> Result<()> {
        write::end_cycle(self, cycle, &end).await
    }

    async fn claim_due(
        &self,
        by: &Claimant,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        deliver::claim_due(self, by, now, limit).await
    }

    async fn renew_claims(&self, by: &Claimant, ids: &[DeliveryId], now: Timestamp) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        deliver::renew_claims(self, by, ids, now).await
    }

    async fn finish_attempt(
        &self,
        id: DeliveryId,
        outcome: AttemptOutcome,
        at: Timestamp,
    ) -> Result<()> {
        deliver::finish_attempt(self, id, &outcome, at).await
    }

    async fn requeue_in_flight(&self, by: &Claimant, now: Timestamp) -> Result<u64> {
        deliver::requeue_in_flight(self, by, now).await
    }

    async fn acquire_stream(&self, stream: &str, by: &Claimant, now: Timestamp) -> Result<bool> {
        deliver::acquire_stream(self, stream, by, now).await
    }

    async fn release_stream(&self, stream: &str, by: &Claimant) -> Result<()> {
        deliver::release_stream(self, stream, by).await
    }

    async fn rename_stream(&self, from: &str, to: &str) -> Result<bool> {
        deliver::rename_stream(self, from, to).await
    }

    async fn record_send_ends(&self, ends: &[(Destination, Timestamp)]) -> Result<()> {
        deliver::record_send_ends(self, ends).await
    }

    async fn last_send_end(&self, destination: &Destination) -> Result<Option<Timestamp>> {
        query::last_send_end(self, destination).await
    }

    async fn retry_held_now(&self, now: Timestamp) -> Result<u64> {
        deliver::retry_held_now(self, now).await
    }

    async fn replay(&self, id: DeliveryId, now: Timestamp) -> Result<()> {
        deliver::replay(self, id, now).await
    }

    async fn replay_failed_to(
        &self,
        filter: &DeliveryFilter,
        to: &Destination,
        now: Timestamp,
    ) -> Result<u64> {
        deliver::replay_failed(self, filter, Some(to), now).await
    }

    async fn replay_failed(&self, filter: &DeliveryFilter, now: Timestamp) -> Result<u64> {
        deliver::replay_failed(self, filter, None, now).await
    }

    async fn apply_callback(&self, update: &CallbackUpdate) -> Result<CallbackApplied> {
        deliver::apply_callback(self, update).await
    }

    async fn next_due_at(&self) -> Result<Option<Timestamp>> {
        query::next_due_at(self).await
    }

    async fn note(&self, note: ml_core::audit::JournalNote) -> Result<bool> {
        note.validate()?;
        write::note(self, &note).await
    }
}

#[async_trait]
impl AuditQuery for PostgresAuditStore {
    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryView>> {
        query::deliveries(self, filter).await
    }

    async fn attempts(&self, id: DeliveryId) -> Result<Vec<AttemptView>> {
        query::attempts(self, id).await
    }

    async fn record_history(&self, stream: &str, key: &str) -> Result<RecordHistory> {
        query::record_history(self, stream, key).await
    }

    async fn cycles(&self, stream: &str, limit: usize) -> Result<Vec<CycleView>> {
        query::cycles(self, stream, limit).await
    }

    async fn destination_scope(
        &self,
        destination: &ml_core::sink::Destination,
    ) -> Result<Option<String>> {
        query::destination_scope(self, destination).await
    }

    async fn rejected(&self, stream: Option<&str>, limit: usize) -> Result<Vec<RejectedView>> {
        query::rejected(self, stream, limit).await
    }

    async fn stats(&self) -> Result<JournalStats> {
        query::stats(self).await
    }

    async fn streams(&self) -> Result<Vec<String>> {
        query::streams(self).await
    }

    async fn notes(
        &self,
        filter: &ml_core::audit::NoteFilter,
    ) -> Result<Vec<ml_core::audit::JournalNote>> {
        query::notes(self, filter).await
    }
}

//! The `Source` trait: one stream of one entity kind, read incrementally.

use std::fmt::{Debug, Display};

use async_trait::async_trait;
use jiff::Timestamp;

use crate::cursor::Position;
use crate::error::Result;
use crate::record::{EntityKind, SourceItem};

/// One page of a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The items of the page, in the source's order: records and rejected items.
    pub items: Vec<SourceItem>,
    /// The position after this page. It is saved with the page's records in one journal
    /// transaction, never before.
    pub next: Position,
    /// Whether the cycle should read another page now.
    pub more: bool,
    /// The highest modification time the stream has seen (for the lag gauge).
    pub watermark: Option<Timestamp>,
}

/// Reads one stream of one entity kind from a source system, incrementally.
///
/// Contract (every implementation, checked by `testing::source_conformance`):
/// * `poll(from)` reads ONE page starting at `from` (`None`: the stream's beginning or its
///   configured start) and returns it with the position after it. It holds at most one page
///   in memory: a backfill of a million records is a million / page-size calls.
/// * `poll` has no side effect on the source and no hidden state: polling twice from the
///   same position returns the same records (unless the source data changed), which is what
///   makes a crash between `poll` and the journal's commit harmless.
/// * A source paged by a [`crate::cursor::WatermarkCursor`] honours every field of the
///   cursor's [`crate::cursor::ReadPlan`] (`since`, `offset` or `after_key`, `within`,
///   `token`) and folds what it read with [`crate::cursor::fold_page`].
/// * An item that cannot be turned into a [`crate::Record`] is returned as
///   [`SourceItem::Rejected`] with its reason; it never fails the page.
/// * Errors are classified: a source that is down is `Retryable` (the stream pauses with
///   backoff and resumes from its saved position); bad credentials are `Permanent`. A
///   malformed `from` is [`crate::Error::InvalidPosition`].
/// * `Display` names the system and instance (`OracleFusion(acme.fa.us2)`); `Debug` never
///   shows a secret.
#[async_trait]
pub trait Source: Send + Sync + Debug + Display {
    /// The entity kind this stream reads.
    fn kind(&self) -> EntityKind;

    /// Reads one page from `from`.
    async fn poll(&self, from: Option<&Position>) -> Result<Page>;

    /// Does real work to prove the source is reachable and the credentials work (one cheap
    /// authenticated call). The default polls nothing and succeeds.
    async fn healthcheck(&self) -> Result<()> {
        Ok(())
    }
}

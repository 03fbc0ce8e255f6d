//! SAP Gateway OData v2: [`SapODataSource`] reads one entity set incrementally.
//!
//! ```no_run
//! use ml_core::source::Source as _;
//! use ml_sap_ecc::odata::SapODataBuilder;
//!
//! # async fn demo() -> ml_core::Result<()> {
//! // SAP_ECC_URL, SAP_ECC_CLIENT, SAP_ECC_USER, SAP_ECC_PASSWORD, SAP_ECC_ODATA_SERVICE,
//! // and optionally SAP_ECC_ODATA_ENTITY_SET / _KEY_PROPERTY / _STAMP_PROPERTY / ...
//! let source = SapODataBuilder::from_env().build()?;
//! source.healthcheck().await?;
//! let page = source.poll(None).await?;
//! println!("{} items, more: {}", page.items.len(), page.more);
//! # Ok(()) }
//! ```
//!
//! # What it does
//! * `GET <SAP_ECC_URL>/sap/opu/odata/sap/<SERVICE>/<Set>?sap-client=NNN&$format=json`
//!   with HTTP Basic, `$filter` on the stamp property (`ChangedAt ge
//!   datetime'2024-01-01T00:00:00'`; `datetimeoffset'...Z'` with `SAP_ECC_ODATA_STAMP_TYPE
//!   =datetimeoffset`), `$orderby=<Stamp> asc,<Key> asc`, `$top=<page size>`.
//! * Reads `d.results` (and the v1-style bare `d` array), `__count` (a string) when the
//!   service sends it, and `__next`: in [`SapODataPaging::NextLink`] mode the link is
//!   followed as it is, kept in the position as its path and query on the configured
//!   origin (a Gateway behind a reverse proxy names its internal host in `__next`; the
//!   credentials never go to another host) with `sap-client` and `$format=json` added
//!   when the link lacks them; a link outside the service is refused. In the other modes
//!   `__next` says "more" and the cursor continues with its own filter.
//! * `/Date(ms)/` and `/Date(ms±NNNN)/`: the offset is in **minutes**; for `Edm.DateTime`
//!   it is added to the instant (as pyodata does), for `Edm.DateTimeOffset` the
//!   milliseconds are the instant. `Edm.Decimal` and `Edm.Int64` arrive as JSON strings:
//!   amounts become `Decimal` + the currency property, parsed from the exact text, never
//!   `f64`. An entity without its key, with a stamp that is not `/Date(...)/`, with an
//!   amount that is not a decimal or without a currency is rejected with the reason.
//! * Errors: the v2 error JSON (`error.code`, `error.message.value`) and the `sap-message`
//!   header map to [`ODataError`]: 408/425/429/5xx retryable (honouring `Retry-After`),
//!   the rest permanent (a 400 for a `$filter` the service cannot evaluate pauses the
//!   stream, it does not loop). `sap-message` on a successful read is logged.
//! * The tie-proof [`ml_core::cursor::WatermarkCursor`]: `fold_page`, `ReadPlan::within`
//!   sweep windows written as `((Stamp ge a and Stamp le b) or (...))`, keyset filters
//!   `(Stamp gt T or (Stamp eq T and Key gt 'K'))` in [`SapODataPaging::Keyset`] mode.
//! * Writes: [`SapODataSource::write`] fetches a CSRF token (`GET` of the service document
//!   with `X-CSRF-Token: Fetch`), keeps it **and** the session cookies, sends both with
//!   `POST`/`PUT`/`MERGE`/`DELETE`, and on 403 `x-csrf-token: Required` fetches a fresh
//!   token once.
//!
//! # Paging modes and their limits
//! * `offset` (default): `Stamp ge T` + `$skip`, re-reading the previous page's last row
//!   to detect shifts (rewinds to the rows at `T` when it moved). Needs only `ge`,
//!   `$orderby`, `$top`, `$skip`; works under server-driven paging (a capped answer with
//!   `__next` continues by `$skip`). One re-read row per continuation page.
//! * `keyset`: `(Stamp gt T or (Stamp eq T and Key gt 'K'))`, shift-proof, `ceil(N / page)`
//!   requests; needs a service that evaluates `or`.
//! * `next`: follows `__next` opaquely. Safe against ties and late commits (the cursor's
//!   overlap and sweeps), but it trusts the service's `$skiptoken`: with a skiptoken that
//!   is a row offset (common in hand-written DPCs) a row already served that changes while
//!   the chain is read shifts the rest, and one row is skipped for good (shown by the
//!   emulator, whose skiptoken is an offset). Use it only for services whose skiptoken is
//!   stable, or that ignore `$skip`.
//!
//! # Unconfirmed
//! * How a given service caps pages and what its `$skiptoken` encodes (implementation
//!   defined per DPC); whether it honours `$orderby` and `or` in `$filter`.
//! * The `/Date(ms±NNNN)/` reading for `Edm.DateTime` follows pyodata; the service's
//!   `$metadata` (not read) says which type the stamp has.
//! * Whether ICF decodes `+` in a query as a space (the source always sends `%20`).
//! * The exact status and body of a Gateway logon failure (HTML in practice).

mod builder;
mod error;
mod model;
mod source;
pub mod value;

pub use builder::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, SapODataBuilder, SapODataConfigKey};
pub use error::{ODataError, SapMessage, parse_error, sap_message};
pub use model::{EntitySpec, Mapped, map_entity};
pub use source::{CSRF_HEADER, SapODataPaging, SapODataSource, WriteMethod, WriteOutcome};
pub use value::{DateKind, ODataDate};

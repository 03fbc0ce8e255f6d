//! [`MemoryAuditStore`]: the in-memory journal (tests, dry runs, hosts that accept losing
//! the journal on restart).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use jiff::Timestamp;

use crate::audit::{
    AttemptOutcome, AttemptView, AuditQuery, AuditWrite, CallbackApplied, CallbackUpdate, Claimant,
    ClaimedDelivery, CycleEnd, CycleId, CycleView, DeliveryFilter, DeliveryId, DeliveryStatus,
    DeliveryView, JournalStats, OwnerId, PageCommit, PageCommitted, RecordHistory, RecordVersion,
    RejectedView, RunLengths,
};
use crate::audit::{JournalNote, NoteFilter};
use crate::cursor::Position;
use crate::error::{Error, Result};
use crate::record::Record;
use crate::sink::{Destination, Receipt};

#[derive(Debug, Default)]
struct Inner {
    positions: HashMap<String, Position>,
    cycles: Vec<CycleView>,
    /// (stream, dedupe key, dedupe version)
    record_ids: HashSet<(String, String, String)>,
    /// (stream, source key) -> versions
    records: HashMap<(String, String), Vec<RecordVersion>>,
    record_count: u64,
    rejected_ids: HashSet<(String, String)>,
    rejected: Vec<RejectedView>,
    deliveries: BTreeMap<i64, Delivery>,
    /// Every delivery below this id is delivered or failed: claims scan from here, so a
    /// long-lived journal does not rescan its whole history on every claim.
    live_from: i64,
    attempts: HashMap<i64, Vec<AttemptView>>,
    by_remote: HashMap<String, i64>,
    next_delivery: i64,
    /// stream -> (owner, lease until)
    stream_leases: HashMap<String, (OwnerId, Timestamp)>,
    /// Journal notes in the order written.
    notes: Vec<JournalNote>,
    /// destination -> when its latest send ended
    send_ends: HashMap<Destination, Timestamp>,
}

impl Inner {
    fn send_ended(&mut self, destination: &Destination, at: Timestamp) {
        let end = self.send_ends.entry(destination.clone()).or_insert(at);
        *end = (*end).max(at);
    }
}

#[derive(Debug, Clone)]
struct Delivery {
    view: DeliveryView,
    record: Record,
    /// `attempts` when the current retry round began (the last replay).
    round_base: u32,
    /// The current round's first attempt.
    round_started: Option<Timestamp>,
    /// While in flight: who holds it, and until when.
    claim: Option<(OwnerId, Timestamp)>,
}

/// The in-memory [`AuditStore`](crate::audit::AuditStore). Same semantics as the durable stores (it runs the same
/// conformance suite), but nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryAuditStore {
    inner: Mutex<Inner>,
}

impl MemoryAuditStore {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn cycle_mut(inner: &mut Inner, id: CycleId) -> Result<&mut CycleView> {
    inner
        .cycles
        .iter_mut()
        .find(|c| c.id == id)
        .ok_or_else(|| Error::NotFound(format!("cycle {}", id.0)))
}

#[async_trait]
impl AuditWrite for MemoryAuditStore {
    async fn load_position(&self, stream: &str) -> Result<Option<Position>> {
        Ok(self.lock().positions.get(stream).cloned())
    }

    async fn begin_cycle(&self, stream: &str, at: Timestamp) -> Result<CycleId> {
        let mut g = self.lock();
        let id = CycleId(g.cycles.len() as i64 + 1);
        g.cycles.push(CycleView {
            id,
            stream: stream.to_owned(),
            started_at: at,
            finished_at: None,
            pages: 0,
            counts: PageCommitted::default(),
            error: None,
            position: None,
            watermark: None,
        });
        Ok(id)
    }

    async fn commit_page(&self, page: PageCommit) -> Result<PageCommitted> {
        for p in &page.records {
            p.record.validate()?;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        // Check before writing anything: the commit is all or nothing.
        cycle_mut(inner, page.cycle)?;
        let mut out = PageCommitted::default();
        for planned in page.records {
            let rec = planned.record;
            let id = (
                page.stream.clone(),
                rec.dedupe_key().to_owned(),
                rec.dedupe_version(),
            );
            if !inner.record_ids.insert(id) {
                out.duplicates += 1;
                continue;
            }
            out.inserted += 1;
            inner.record_count += 1;
            let mut seen_dest = HashSet::new();
            for dest in planned.destinations {
                if !seen_dest.insert(dest.clone()) {
                    continue;
                }
                inner.next_delivery += 1;
                let id = inner.next_delivery;
                inner.deliveries.insert(
                    id,
                    Delivery {
                        view: DeliveryView {
                            id: DeliveryId(id),
                            stream: page.stream.clone(),
                            record_key: rec.key.clone(),
                            record_version: rec.dedupe_version(),
                            destination: dest,
                            status: DeliveryStatus::Pending,
                            attempts: 0,
                            in_doubt: false,
                            resent_after_doubt: 0,
                            remote_id: None,
                            remote_scope: None,
                            remote_status: None,
                            last_error: None,
                            created_at: page.at,
                            updated_at: page.at,
                            next_attempt_at: Some(page.at),
                        },
                        record: rec.clone(),
                        round_base: 0,
                        round_started: None,
                        claim: None,
                    },
                );
                out.deliveries += 1;
            }
            inner
                .records
                .entry((page.stream.clone(), rec.key.clone()))
                .or_default()
                .push(RecordVersion {
                    record: rec,
                    journaled_at: page.at,
                });
        }
        for item in page.rejected {
            if inner
                .rejected_ids
                .insert((page.stream.clone(), item.identity()))
            {
                out.rejected += 1;
                inner.rejected.push(RejectedView {
                    stream: page.stream.clone(),
                    item,
                    at: page.at,
                });
            }
        }
        inner
            .positions
            .insert(page.stream.clone(), page.position.clone());
        let c = cycle_mut(inner, page.cycle)?;
        c.pages += 1;
        c.counts.inserted += out.inserted;
        c.counts.duplicates += out.duplicates;
        c.counts.rejected += out.rejected;
        c.counts.deliveries += out.deliveries;
        c.position = Some(page.position);
        Ok(out)
    }

    async fn end_cycle(&self, cycle: CycleId, end: CycleEnd) -> Result<()> {
        let mut g = self.lock();
        let c = cycle_mut(&mut g, cycle)?;
        c.finished_at = Some(end.at);
        c.error = end.error;
        c.watermark = end.watermark;
        Ok(())
    }

    async fn claim_due(
        &self,
        by: &Claimant,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>> {
        let runs = self.claim_runs(by, now, limit, &RunLengths::new()).await?;
        Ok(runs.into_iter().flatten().collect())
    }

    async fn claim_runs(
        &self,
        by: &Claimant,
        now: Timestamp,
        limit: usize,
        lengths: &RunLengths,
    ) -> Result<Vec<Vec<ClaimedDelivery>>> {
        let mut g = self.lock();
        let inner = &mut *g;
        // Per destination: `Some(i)` while its run (runs[i]) may still grow, `None` once
        // its head was seen and the run is closed (or never started).
        while let Some((&id, d)) = inner.deliveries.range(inner.live_from..).next() {
            if !d.view.status.is_terminal() {
                break;
            }
            inner.live_from = id + 1;
        }
        let mut open: HashMap<&Destination, Option<usize>> = HashMap::new();
        let mut runs: Vec<Vec<i64>> = Vec::new();
        for (id, d) in inner.deliveries.range(inner.live_from..) {
            if d.view.status.is_terminal() {
                continue;
            }
            let due = match d.view.status {
                DeliveryStatus::Pending => true,
                DeliveryStatus::Retrying => d.view.next_attempt_at.is_none_or(|t| t <= now),
                _ => false,
            };
            match open.get(&d.view.destination).copied() {
                None => {
                    let start = due && runs.len() < limit;
                    open.insert(&d.view.destination, start.then_some(runs.len()));
                    if start {
                        runs.push(vec![*id]);
                    }
                }
                Some(Some(i)) => {
                    let run = &runs[i];
                    // A later version of a record already in the run threads on its
                    // first delivery's receipt, known only once that one is delivered.
                    let same_record = run.iter().any(|r| {
                        inner.deliveries.get(r).is_some_and(|x| {
                            x.view.stream == d.view.stream && x.view.record_key == d.view.record_key
                        })
                    });
                    if due && !same_record && run.len() < lengths.get(&d.view.destination) {
                        runs[i].push(*id);
                    } else {
                        open.insert(&d.view.destination, None);
                    }
                }
                Some(None) => {}
            }
        }
        runs.into_iter()
            .map(|run| {
                run.into_iter()
                    .map(|id| claim_one(inner, id, by, now))
                    .collect()
            })
            .collect()
    }

    async fn finish_attempt(
        &self,
        id: DeliveryId,
        outcome: AttemptOutcome,
        at: Timestamp,
    ) -> Result<()> {
        let mut g = self.lock();
        let inner = &mut *g;
        let d = inner
            .deliveries
            .get_mut(&id.0)
            .ok_or_else(|| Error::NotFound(format!("delivery {id}")))?;
        if d.view.status != DeliveryStatus::InFlight {
            return Err(Error::InvalidState(format!(
                "delivery {id} is {}, not in flight",
                d.view.status
            )));
        }
        let label = outcome.label().to_owned();
        let (remote_id, error) = match outcome {
            AttemptOutcome::Delivered {
                receipt,
                after_doubt,
            } => {
                if after_doubt {
                    d.view.resent_after_doubt += 1;
                }
                apply_receipt(d, &receipt, &mut inner.by_remote);
                (Some(receipt.remote_id), None)
            }
            AttemptOutcome::Reconciled(receipt) => {
                apply_receipt(d, &receipt, &mut inner.by_remote);
                (Some(receipt.remote_id), None)
            }
            AttemptOutcome::Retry {
                error,
                next_at,
                in_doubt,
            } => {
                d.view.status = DeliveryStatus::Retrying;
                d.view.next_attempt_at = Some(next_at);
                d.view.in_doubt = in_doubt;
                d.view.last_error = Some(error.clone());
                (None, Some(error))
            }
            AttemptOutcome::Failed(error) => {
                d.view.status = DeliveryStatus::Failed;
                d.view.last_error = Some(error.clone());
                (None, Some(error))
            }
        };
        d.view.updated_at = at;
        d.claim = None;
        if let Some(a) = inner.attempts.get_mut(&id.0).and_then(|v| v.last_mut()) {
            a.finished_at = Some(at);
            a.outcome = Some(label);
            a.remote_id = remote_id;
            a.error = error;
        }
        Ok(())
    }

    async fn release_claims(
        &self,
        by: &Claimant,
        unsent: &[ClaimedDelivery],
        now: Timestamp,
    ) -> Result<u64> {
        let mut g = self.lock();
        let inner = &mut *g;
        let mut n = 0;
        for id in unsent.iter().map(|c| c.id) {
            let Some(d) = inner.deliveries.get_mut(&id.0) else {
                continue;
            };
            let mine = d
                .claim
                .as_ref()
                .is_some_and(|(owner, _)| *owner == by.owner);
            if d.view.status != DeliveryStatus::InFlight || !mine {
                continue;
            }
            // Undo the claim: its attempt never happened.
            d.view.attempts -= 1;
            let fresh = d.view.attempts == d.round_base && !d.view.in_doubt;
            d.view.status = if fresh {
                DeliveryStatus::Pending
            } else {
                DeliveryStatus::Retrying
            };
            if d.view.attempts == d.round_base {
                d.round_started = None;
            }
            d.view.next_attempt_at = Some(now);
            d.view.updated_at = now;
            d.claim = None;
            if let Some(a) = inner.attempts.get_mut(&id.0) {
                a.pop();
            }
            n += 1;
        }
        Ok(n)
    }

    async fn renew_claims(&self, by: &Claimant, ids: &[DeliveryId], now: Timestamp) -> Result<u64> {
        let mut g = self.lock();
        let until = by.lease_until(now);
        let mut n = 0;
        for id in ids {
            if let Some(d) = g.deliveries.get_mut(&id.0)
                && d.view.status == DeliveryStatus::InFlight
                && let Some((owner, lease)) = &mut d.claim
                && *owner == by.owner
            {
                *lease = until;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn rename_stream(&self, from: &str, to: &str) -> Result<bool> {
        let mut g = self.lock();
        let inner = &mut *g;
        let named = |s: &str| {
            inner.positions.contains_key(s)
                || inner.records.keys().any(|(st, _)| st == s)
                || inner.rejected.iter().any(|r| r.stream == s)
        };
        if named(to) {
            return Err(Error::InvalidState(format!(
                "cannot rename stream `{from}` to `{to}`: the journal already has a stream `{to}`"
            )));
        }
        if !named(from) {
            return Ok(false);
        }
        if let Some(p) = inner.positions.remove(from) {
            inner.positions.insert(to.to_owned(), p);
        }
        for c in inner.cycles.iter_mut().filter(|c| c.stream == from) {
            to.clone_into(&mut c.stream);
        }
        inner.record_ids = std::mem::take(&mut inner.record_ids)
            .into_iter()
            .map(|(s, k, v)| (if s == from { to.to_owned() } else { s }, k, v))
            .collect();
        inner.records = std::mem::take(&mut inner.records)
            .into_iter()
            .map(|((s, k), v)| ((if s == from { to.to_owned() } else { s }, k), v))
            .collect();
        inner.rejected_ids = std::mem::take(&mut inner.rejected_ids)
            .into_iter()
            .map(|(s, k)| (if s == from { to.to_owned() } else { s }, k))
            .collect();
        for r in inner.rejected.iter_mut().filter(|r| r.stream == from) {
            to.clone_into(&mut r.stream);
        }
        for d in inner
            .deliveries
            .values_mut()
            .filter(|d| d.view.stream == from)
        {
            to.clone_into(&mut d.view.stream);
        }
        for n in inner
            .notes
            .iter_mut()
            .filter(|n| n.stream.as_deref() == Some(from))
        {
            n.stream = Some(to.to_owned());
        }
        inner.stream_leases.remove(from);
        Ok(true)
    }

    async fn retry_held_now(&self, now: Timestamp) -> Result<u64> {
        let mut g = self.lock();
        let mut n = 0;
        for d in g.deliveries.values_mut() {
            let held = d.view.status == DeliveryStatus::Retrying
                && d.view.next_attempt_at.is_some_and(|t| t > now)
                && d.view
                    .last_error
                    .as_ref()
                    .is_some_and(|e| e.class == crate::ErrorClass::Permanent.as_str());
            if held {
                d.view.next_attempt_at = Some(now);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn requeue_in_flight(&self, by: &Claimant, now: Timestamp) -> Result<u64> {
        let mut g = self.lock();
        let inner = &mut *g;
        let mut n = 0;
        for (id, d) in &mut inner.deliveries {
            let takeable = d
                .claim
                .as_ref()
                .is_none_or(|(owner, until)| *owner == by.owner || *until <= now);
            if d.view.status == DeliveryStatus::InFlight && takeable {
                d.view.status = DeliveryStatus::Retrying;
                d.view.in_doubt = true;
                d.view.next_attempt_at = Some(now);
                d.view.updated_at = now;
                d.claim = None;
                if let Some(a) = inner.attempts.get_mut(id).and_then(|v| v.last_mut()) {
                    a.finished_at = Some(now);
                    a.outcome = Some("interrupted".into());
                }
                let end = inner
                    .send_ends
                    .entry(d.view.destination.clone())
                    .or_insert(now);
                *end = (*end).max(now);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn record_send_ends(&self, ends: &[(Destination, Timestamp)]) -> Result<()> {
        let mut g = self.lock();
        for (destination, at) in ends {
            g.send_ended(destination, *at);
        }
        Ok(())
    }

    async fn last_send_end(&self, destination: &Destination) -> Result<Option<Timestamp>> {
        Ok(self.lock().send_ends.get(destination).copied())
    }

    async fn acquire_stream(&self, stream: &str, by: &Claimant, now: Timestamp) -> Result<bool> {
        let mut g = self.lock();
        let held = g
            .stream_leases
            .get(stream)
            .is_some_and(|(owner, until)| *owner != by.owner && *until > now);
        if held {
            return Ok(false);
        }
        g.stream_leases
            .insert(stream.to_owned(), (by.owner.clone(), by.lease_until(now)));
        Ok(true)
    }

    async fn release_stream(&self, stream: &str, by: &Claimant) -> Result<()> {
        let mut g = self.lock();
        if g.stream_leases
            .get(stream)
            .is_some_and(|(owner, _)| *owner == by.owner)
        {
            g.stream_leases.remove(stream);
        }
        Ok(())
    }

    async fn replay(&self, id: DeliveryId, now: Timestamp) -> Result<()> {
        let mut g = self.lock();
        let d = g
            .deliveries
            .get_mut(&id.0)
            .ok_or_else(|| Error::NotFound(format!("delivery {id}")))?;
        if d.view.status != DeliveryStatus::Failed {
            return Err(Error::InvalidState(format!(
                "delivery {id} is {}; only failed deliveries can be replayed",
                d.view.status
            )));
        }
        requeue(d, now);
        g.live_from = g.live_from.min(id.0);
        Ok(())
    }

    async fn replay_failed(&self, filter: &DeliveryFilter, now: Timestamp) -> Result<u64> {
        let mut g = self.lock();
        let inner = &mut *g;
        let mut n = 0u64;
        for (id, d) in &mut inner.deliveries {
            if d.view.status == DeliveryStatus::Failed && filter.matches(&d.view) {
                if filter.limit.is_some_and(|l| n as usize >= l) {
                    break;
                }
                requeue(d, now);
                inner.live_from = inner.live_from.min(*id);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn replay_failed_to(
        &self,
        filter: &DeliveryFilter,
        to: &Destination,
        now: Timestamp,
    ) -> Result<u64> {
        let mut g = self.lock();
        let inner = &mut *g;
        // Records (stream, key, version) that already have a live or sent delivery to `to`.
        let there: HashSet<(String, String, String)> = inner
            .deliveries
            .values()
            .filter(|d| &d.view.destination == to && d.view.status != DeliveryStatus::Failed)
            .map(|d| {
                (
                    d.view.stream.clone(),
                    d.view.record_key.clone(),
                    d.view.record_version.clone(),
                )
            })
            .collect();
        let mut n = 0u64;
        for (id, d) in &mut inner.deliveries {
            let v = &d.view;
            let already = there.contains(&(
                v.stream.clone(),
                v.record_key.clone(),
                v.record_version.clone(),
            ));
            if v.status == DeliveryStatus::Failed && filter.matches(v) && !already {
                if filter.limit.is_some_and(|l| n as usize >= l) {
                    break;
                }
                requeue(d, now);
                d.view.destination = to.clone();
                d.view.remote_scope = None;
                inner.live_from = inner.live_from.min(*id);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn apply_callback(&self, update: &CallbackUpdate) -> Result<CallbackApplied> {
        let mut g = self.lock();
        let inner = &mut *g;
        let Some(&id) = inner.by_remote.get(&update.remote_id) else {
            // Ahead of its send's answer: kept on the delivery while it is in flight.
            let named = update.delivery.and_then(|n| {
                inner
                    .deliveries
                    .get_mut(&n.0)
                    .filter(|d| d.view.status == DeliveryStatus::InFlight)
            });
            let Some(d) = named else {
                return Ok(CallbackApplied::UnknownRemoteId);
            };
            if let Some(old) = d.view.remote_id.replace(update.remote_id.clone()) {
                inner.by_remote.remove(&old);
            }
            inner
                .by_remote
                .insert(update.remote_id.clone(), d.view.id.0);
            d.view.remote_status = Some(update.status);
            d.view.updated_at = d.view.updated_at.max(update.at);
            if update.status.is_failure() {
                d.view.last_error = Some(update.failure_info());
            }
            return Ok(CallbackApplied::Applied(d.view.id));
        };
        let Some(d) = inner.deliveries.get_mut(&id) else {
            return Ok(CallbackApplied::UnknownRemoteId);
        };
        if d.view
            .remote_status
            .is_some_and(|cur| !update.status.supersedes(cur))
        {
            return Ok(CallbackApplied::Stale(DeliveryId(id)));
        }
        d.view.remote_status = Some(update.status);
        d.view.updated_at = d.view.updated_at.max(update.at);
        if update.status.is_failure() && d.view.status == DeliveryStatus::Delivered {
            d.view.status = DeliveryStatus::Failed;
            d.view.last_error = Some(update.failure_info());
        }
        Ok(CallbackApplied::Applied(DeliveryId(id)))
    }

    async fn next_due_at(&self) -> Result<Option<Timestamp>> {
        let g = self.lock();
        // Per destination only its head of line counts: what waits behind it is not due
        // before the head is done, however old its own due time.
        let mut seen = HashSet::new();
        Ok(g.deliveries
            .range(g.live_from..)
            .map(|(_, d)| d)
            .filter(|d| !d.view.status.is_terminal() && seen.insert(&d.view.destination))
            .filter(|d| {
                matches!(
                    d.view.status,
                    DeliveryStatus::Pending | DeliveryStatus::Retrying
                )
            })
            .map(|d| d.view.next_attempt_at.unwrap_or(Timestamp::UNIX_EPOCH))
            .min())
    }

    async fn note(&self, note: JournalNote) -> Result<bool> {
        note.validate()?;
        let mut g = self.lock();
        if g.notes
            .iter()
            .any(|n| n.kind == note.kind && n.dedupe == note.dedupe)
        {
            return Ok(false);
        }
        g.notes.push(note);
        Ok(true)
    }
}

#[async_trait]
impl AuditQuery for MemoryAuditStore {
    async fn notes(&self, filter: &NoteFilter) -> Result<Vec<JournalNote>> {
        let g = self.lock();
        // Newest first; among equal times the latest written first.
        let mut found: Vec<(usize, &JournalNote)> = g
            .notes
            .iter()
            .enumerate()
            .filter(|(_, n)| filter.matches(n))
            .collect();
        found.sort_by(|a, b| b.1.at.cmp(&a.1.at).then(b.0.cmp(&a.0)));
        Ok(found
            .into_iter()
            .take(filter.limit.unwrap_or(usize::MAX))
            .map(|(_, n)| n.clone())
            .collect())
    }

    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryView>> {
        let g = self.lock();
        Ok(g.deliveries
            .values()
            .filter(|d| filter.matches(&d.view))
            .take(filter.limit.unwrap_or(usize::MAX))
            .map(|d| d.view.clone())
            .collect())
    }

    async fn attempts(&self, id: DeliveryId) -> Result<Vec<AttemptView>> {
        Ok(self.lock().attempts.get(&id.0).cloned().unwrap_or_default())
    }

    async fn record_history(&self, stream: &str, key: &str) -> Result<RecordHistory> {
        let g = self.lock();
        let versions = g
            .records
            .get(&(stream.to_owned(), key.to_owned()))
            .cloned()
            .unwrap_or_default();
        let deliveries = g
            .deliveries
            .values()
            .filter(|d| d.view.stream == stream && d.view.record_key == key)
            .map(|d| d.view.clone())
            .collect();
        Ok(RecordHistory {
            versions,
            deliveries,
        })
    }

    async fn cycles(&self, stream: &str, limit: usize) -> Result<Vec<CycleView>> {
        let g = self.lock();
        Ok(g.cycles
            .iter()
            .rev()
            .filter(|c| c.stream == stream)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn rejected(&self, stream: Option<&str>, limit: usize) -> Result<Vec<RejectedView>> {
        let g = self.lock();
        Ok(g.rejected
            .iter()
            .rev()
            .filter(|r| stream.is_none_or(|s| r.stream == s))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn streams(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.lock().positions.keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    async fn stats(&self) -> Result<JournalStats> {
        let g = self.lock();
        let mut s = JournalStats {
            records: g.record_count,
            rejected: g.rejected.len() as u64,
            ..JournalStats::default()
        };
        for d in g.deliveries.values() {
            s.resent_after_doubt += u64::from(d.view.resent_after_doubt);
            match d.view.status {
                DeliveryStatus::Pending => s.pending += 1,
                DeliveryStatus::InFlight => s.in_flight += 1,
                DeliveryStatus::Retrying => s.retrying += 1,
                DeliveryStatus::Delivered => s.delivered += 1,
                DeliveryStatus::Failed => s.failed += 1,
            }
        }
        Ok(s)
    }
}

/// A new remote message (a replay's) starts with no remote status and no error; the old
/// message id is unlinked, so its late callbacks no longer match.
fn apply_receipt(d: &mut Delivery, receipt: &Receipt, by_remote: &mut HashMap<String, i64>) {
    if d.view.remote_id.as_deref() != Some(receipt.remote_id.as_str()) {
        if let Some(old) = d.view.remote_id.take() {
            by_remote.remove(&old);
        }
        d.view.remote_status = None;
    }
    by_remote.insert(receipt.remote_id.clone(), d.view.id.0);
    // A failure a callback reported for this very message before the answer came.
    if d.view
        .remote_status
        .is_some_and(crate::audit::RemoteStatus::is_failure)
    {
        d.view.status = DeliveryStatus::Failed;
    } else {
        d.view.last_error = None;
        d.view.status = DeliveryStatus::Delivered;
    }
    d.view.in_doubt = false;
    d.view.remote_id = Some(receipt.remote_id.clone());
    d.view.remote_scope.clone_from(&receipt.remote_scope);
    d.view.next_attempt_at = None;
}

/// Marks delivery `id` in flight for `by` and opens its attempt.
fn claim_one(inner: &mut Inner, id: i64, by: &Claimant, now: Timestamp) -> Result<ClaimedDelivery> {
    let thread = thread_of(inner, id);
    let d = inner.deliveries.get_mut(&id).ok_or_else(|| {
        Error::store(
            crate::ErrorClass::Permanent,
            "claimed delivery vanished",
            None,
        )
    })?;
    d.view.status = DeliveryStatus::InFlight;
    d.view.attempts += 1;
    d.view.updated_at = now;
    d.view.next_attempt_at = None;
    d.claim = Some((by.owner.clone(), by.lease_until(now)));
    inner.attempts.entry(id).or_default().push(AttemptView {
        delivery_id: DeliveryId(id),
        number: d.view.attempts,
        started_at: now,
        finished_at: None,
        outcome: None,
        remote_id: None,
        error: None,
    });
    let first_attempt_at = *d.round_started.get_or_insert(now);
    Ok(ClaimedDelivery {
        id: DeliveryId(id),
        stream: d.view.stream.clone(),
        destination: d.view.destination.clone(),
        record: d.record.clone(),
        attempt: d.view.attempts,
        round_attempt: d.view.attempts - d.round_base,
        in_doubt: d.view.in_doubt,
        thread,
        created_at: d.view.created_at,
        first_attempt_at,
    })
}

fn requeue(d: &mut Delivery, now: Timestamp) {
    d.round_base = d.view.attempts;
    d.round_started = None;
    d.view.status = DeliveryStatus::Pending;
    d.view.next_attempt_at = Some(now);
    d.view.updated_at = now;
}

fn thread_of(inner: &Inner, id: i64) -> Option<Receipt> {
    let me = &inner.deliveries.get(&id)?.view;
    inner
        .deliveries
        .range(..id)
        .map(|(_, d)| d)
        .find(|d| {
            d.view.stream == me.stream
                && d.view.record_key == me.record_key
                && d.view.destination == me.destination
                && d.view.remote_id.is_some()
        })
        .and_then(|d| {
            Some(Receipt {
                remote_id: d.view.remote_id.clone()?,
                remote_scope: d.view.remote_scope.clone(),
                status: None,
            })
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use jiff::Timestamp;

    use super::MemoryAuditStore;
    use crate::audit::{
        AttemptOutcome, AttemptView, AuditQuery, AuditStore, AuditWrite, CallbackApplied,
        CallbackUpdate, Claimant, ClaimedDelivery, CycleEnd, CycleId, CycleView, DeliveryFilter,
        DeliveryId, DeliveryView, JournalNote, JournalStats, NoteFilter, PageCommit, PageCommitted,
        RecordHistory, RejectedView,
    };
    use crate::cursor::Position;
    use crate::error::Result;

    /// Delegates only the required methods (and the notes, whose defaults refuse notes):
    /// the conformance suite then checks the trait's default `claim_runs`,
    /// `finish_attempts` and `release_claims` (what a backend that implements none of them
    /// gets).
    #[derive(Debug, Default)]
    struct DefaultsOnly(MemoryAuditStore);

    #[async_trait::async_trait]
    impl AuditWrite for DefaultsOnly {
        async fn load_position(&self, s: &str) -> Result<Option<Position>> {
            self.0.load_position(s).await
        }
        async fn begin_cycle(&self, s: &str, at: Timestamp) -> Result<CycleId> {
            self.0.begin_cycle(s, at).await
        }
        async fn commit_page(&self, p: PageCommit) -> Result<PageCommitted> {
            self.0.commit_page(p).await
        }
        async fn end_cycle(&self, c: CycleId, e: CycleEnd) -> Result<()> {
            self.0.end_cycle(c, e).await
        }
        async fn claim_due(
            &self,
            by: &Claimant,
            now: Timestamp,
            limit: usize,
        ) -> Result<Vec<ClaimedDelivery>> {
            self.0.claim_due(by, now, limit).await
        }
        async fn renew_claims(
            &self,
            by: &Claimant,
            ids: &[DeliveryId],
            now: Timestamp,
        ) -> Result<u64> {
            self.0.renew_claims(by, ids, now).await
        }
        async fn finish_attempt(
            &self,
            id: DeliveryId,
            o: AttemptOutcome,
            at: Timestamp,
        ) -> Result<()> {
            self.0.finish_attempt(id, o, at).await
        }
        async fn requeue_in_flight(&self, by: &Claimant, now: Timestamp) -> Result<u64> {
            self.0.requeue_in_flight(by, now).await
        }
        async fn retry_held_now(&self, now: Timestamp) -> Result<u64> {
            self.0.retry_held_now(now).await
        }
        async fn rename_stream(&self, from: &str, to: &str) -> Result<bool> {
            self.0.rename_stream(from, to).await
        }
        async fn acquire_stream(&self, s: &str, by: &Claimant, now: Timestamp) -> Result<bool> {
            self.0.acquire_stream(s, by, now).await
        }
        async fn release_stream(&self, s: &str, by: &Claimant) -> Result<()> {
            self.0.release_stream(s, by).await
        }
        async fn replay(&self, id: DeliveryId, now: Timestamp) -> Result<()> {
            self.0.replay(id, now).await
        }
        async fn replay_failed(&self, f: &DeliveryFilter, now: Timestamp) -> Result<u64> {
            self.0.replay_failed(f, now).await
        }
        // Delegated: its default refuses, which the suite does not accept.
        async fn replay_failed_to(
            &self,
            f: &DeliveryFilter,
            to: &crate::sink::Destination,
            now: Timestamp,
        ) -> Result<u64> {
            self.0.replay_failed_to(f, to, now).await
        }
        async fn apply_callback(&self, u: &CallbackUpdate) -> Result<CallbackApplied> {
            self.0.apply_callback(u).await
        }
        async fn next_due_at(&self) -> Result<Option<Timestamp>> {
            self.0.next_due_at().await
        }
        // Notes are not what this double checks (their defaults refuse them).
        async fn note(&self, n: JournalNote) -> Result<bool> {
            self.0.note(n).await
        }
        // Nor are send ends (their defaults keep nothing).
        async fn record_send_ends(
            &self,
            ends: &[(crate::sink::Destination, Timestamp)],
        ) -> Result<()> {
            self.0.record_send_ends(ends).await
        }
        async fn last_send_end(&self, d: &crate::sink::Destination) -> Result<Option<Timestamp>> {
            self.0.last_send_end(d).await
        }
    }

    #[async_trait::async_trait]
    impl AuditQuery for DefaultsOnly {
        async fn deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryView>> {
            self.0.deliveries(f).await
        }
        async fn attempts(&self, id: DeliveryId) -> Result<Vec<AttemptView>> {
            self.0.attempts(id).await
        }
        async fn record_history(&self, s: &str, k: &str) -> Result<RecordHistory> {
            self.0.record_history(s, k).await
        }
        async fn cycles(&self, s: &str, n: usize) -> Result<Vec<CycleView>> {
            self.0.cycles(s, n).await
        }
        async fn rejected(&self, s: Option<&str>, n: usize) -> Result<Vec<RejectedView>> {
            self.0.rejected(s, n).await
        }
        async fn stats(&self) -> Result<JournalStats> {
            self.0.stats().await
        }
        async fn streams(&self) -> Result<Vec<String>> {
            self.0.streams().await
        }
        async fn notes(&self, f: &NoteFilter) -> Result<Vec<JournalNote>> {
            self.0.notes(f).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_default_run_and_group_methods_conform() {
        crate::testing::audit_store_conformance(|| async {
            Arc::new(DefaultsOnly::default()) as Arc<dyn AuditStore>
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_store_conforms() {
        crate::testing::audit_store_conformance(|| async {
            Arc::new(MemoryAuditStore::new()) as Arc<dyn AuditStore>
        })
        .await;
    }
}

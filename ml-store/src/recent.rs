//! The records this handle journaled last, kept decoded: a delivery claimed soon after its
//! page was committed (the usual case: delivering overlaps polling) takes its record from
//! here instead of decoding the journaled JSON again.
//!
//! The journal stays the source of truth: an entry is used only when the row's body is
//! byte for byte what this handle wrote, so a row changed behind our back (damaged,
//! restored) is decoded (or quarantined) as if nothing were kept. Bounded: the oldest
//! entries go first.

use std::collections::{HashMap, VecDeque};

use ml_core::Record;

use crate::body::Body;

/// Records kept, at most: about a run of deliveries (~1-2 MB).
pub(crate) const RECENT_RECORDS: usize = 256;

/// Decoded records by journal row id, oldest first out.
#[derive(Debug)]
pub(crate) struct Recent {
    /// The record and the body it was journaled as.
    by_id: HashMap<i64, (Record, Body)>,
    order: VecDeque<i64>,
    cap: usize,
}

impl Recent {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            by_id: HashMap::with_capacity(cap.min(RECENT_RECORDS)),
            order: VecDeque::with_capacity(cap.min(RECENT_RECORDS)),
            cap,
        }
    }

    /// Keeps the record journaled as row `id` with `body`.
    pub(crate) fn put(&mut self, id: i64, record: Record, body: Body) {
        if self.cap == 0 {
            return;
        }
        if self.by_id.insert(id, (record, body)).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }

    /// The record journaled as row `id`, when it is still kept and the row's body is still
    /// `body`.
    pub(crate) fn get(&self, id: i64, body: &Body) -> Option<Record> {
        self.by_id
            .get(&id)
            .filter(|(_, b)| b == body)
            .map(|(r, _)| r.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ml_core::EntityKind;

    fn rec(key: &str) -> Record {
        Record::new(
            "T(x)",
            EntityKind::SupplierInvoice,
            key,
            jiff::Timestamp::UNIX_EPOCH,
        )
    }

    fn body(s: &str) -> Body {
        Body::Json(s.as_bytes().to_vec())
    }

    #[test]
    fn keeps_the_newest_records_up_to_its_bound() {
        let mut r = Recent::new(2);
        r.put(1, rec("a"), body("A"));
        r.put(2, rec("b"), body("B"));
        r.put(3, rec("c"), body("C"));
        assert!(r.get(1, &body("A")).is_none(), "the oldest goes first");
        assert_eq!(r.get(2, &body("B")).map(|x| x.key), Some("b".to_owned()));
        assert_eq!(r.get(3, &body("C")).map(|x| x.key), Some("c".to_owned()));
        assert!(
            r.get(3, &body("C'")).is_none(),
            "a changed row is not ours any more"
        );
        let mut none = Recent::new(0);
        none.put(1, rec("a"), body("A"));
        assert!(none.get(1, &body("A")).is_none());
    }
}

use std::fmt;

/// What one poll cycle of one stream did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CycleSummary {
    /// The stream.
    pub stream: String,
    /// Pages read and committed.
    pub pages: u64,
    /// Items read from the source (records and rejected items).
    pub polled: u64,
    /// Records journaled for the first time.
    pub journaled: u64,
    /// Records already journaled (overlap, re-poll).
    pub duplicates: u64,
    /// Items rejected (journaled with their reason).
    pub rejected: u64,
    /// Deliveries planned.
    pub planned: u64,
    /// Why the cycle ended early, if it did.
    pub error: Option<String>,
    /// Whether the cycle was skipped (the stream was already being polled, or is paused).
    pub skipped: bool,
}

/// What a delivery pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliverySummary {
    /// Attempts made.
    pub attempts: u64,
    /// Delivered.
    pub delivered: u64,
    /// Found already delivered by reconcile (nothing sent).
    pub reconciled: u64,
    /// Scheduled for a retry.
    pub retried: u64,
    /// Of those, in doubt.
    pub in_doubt: u64,
    /// Of those, held: the sink refused the credentials for good, so the destination waits
    /// (outside the retry budget) until someone fixes them.
    pub held: u64,
    /// Failed (replayable).
    pub failed: u64,
    /// Sent again after a doubt that could not be reconciled (possible duplicates).
    pub resent_after_doubt: u64,
}

impl DeliverySummary {
    /// Adds another pass's counts to these.
    pub fn merge(&mut self, o: &Self) {
        self.attempts += o.attempts;
        self.delivered += o.delivered;
        self.reconciled += o.reconciled;
        self.retried += o.retried;
        self.in_doubt += o.in_doubt;
        self.held += o.held;
        self.failed += o.failed;
        self.resent_after_doubt += o.resent_after_doubt;
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// In-flight deliveries recovered at start-up.
    pub recovered: u64,
    /// Poll cycles run.
    pub cycles: u64,
    /// Items read.
    pub polled: u64,
    /// Records journaled for the first time.
    pub journaled: u64,
    /// Records already journaled.
    pub duplicates: u64,
    /// Items rejected.
    pub rejected: u64,
    /// Deliveries planned.
    pub planned: u64,
    /// Cycle errors, as `stream: error`.
    pub cycle_errors: Vec<String>,
    /// Deliveries.
    pub deliveries: DeliverySummary,
}

impl RunSummary {
    pub(crate) fn add_cycle(&mut self, c: CycleSummary) {
        if c.skipped {
            return;
        }
        self.cycles += 1;
        self.polled += c.polled;
        self.journaled += c.journaled;
        self.duplicates += c.duplicates;
        self.rejected += c.rejected;
        self.planned += c.planned;
        if let Some(e) = c.error {
            self.cycle_errors.push(format!("{}: {e}", c.stream));
        }
    }

    pub(crate) fn merge(&mut self, o: Self) {
        self.recovered += o.recovered;
        self.cycles += o.cycles;
        self.polled += o.polled;
        self.journaled += o.journaled;
        self.duplicates += o.duplicates;
        self.rejected += o.rejected;
        self.planned += o.planned;
        self.cycle_errors.extend(o.cycle_errors);
        self.deliveries.merge(&o.deliveries);
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.deliveries;
        write!(
            f,
            "polled {}, journaled {}, duplicates {}, rejected {}, delivered {}, reconciled {}, retrying {}, held {}, failed {}",
            self.polled,
            self.journaled,
            self.duplicates,
            self.rejected,
            d.delivered,
            d.reconciled,
            d.retried,
            d.held,
            d.failed
        )?;
        if !self.cycle_errors.is_empty() {
            write!(f, "; cycle errors: {}", self.cycle_errors.join("; "))?;
        }
        Ok(())
    }
}

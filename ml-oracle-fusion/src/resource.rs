//! The REST resources the source reads, and which attributes feed a notification.

use ml_core::record::EntityKind;

/// A built-in resource (each maps to a [`ResourceSpec`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OracleResource {
    /// Payables invoices (`invoices`).
    Invoices,
    /// Purchase orders (`purchaseOrders`).
    PurchaseOrders,
    /// Payables payments (`payablesPayments`).
    PayablesPayments,
    /// Journal batches (`journalBatches`).
    JournalBatches,
    /// Suppliers (`suppliers`).
    Suppliers,
    /// Receivables invoices (`receivablesInvoices`).
    ReceivablesInvoices,
}

impl OracleResource {
    /// Every built-in resource.
    pub const ALL: [Self; 6] = [
        Self::Invoices,
        Self::PurchaseOrders,
        Self::PayablesPayments,
        Self::JournalBatches,
        Self::Suppliers,
        Self::ReceivablesInvoices,
    ];

    /// Parses a resource path name (`invoices`, `purchaseOrders`, ...).
    pub fn from_path(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.spec().path == s)
    }

    /// The default description of this resource.
    pub fn spec(self) -> ResourceSpec {
        let s = |v: &str| Some(v.to_owned());
        match self {
            Self::Invoices => ResourceSpec {
                path: "invoices".into(),
                kind: EntityKind::SupplierInvoice,
                key: "InvoiceId".into(),
                key_is_number: true,
                timestamp: "LastUpdateDate".into(),
                document_number: s("InvoiceNumber"),
                amount: s("InvoiceAmount"),
                currency: s("InvoiceCurrency"),
                amount_required: true,
                supplier: s("Supplier"),
                supplier_id: s("SupplierNumber"),
                status: s("ValidationStatus"),
                company: s("BusinessUnit"),
                date: s("InvoiceDate"),
                extra: vec![
                    "ApprovalStatus".into(),
                    "InvoiceType".into(),
                    "Description".into(),
                    "SupplierSite".into(),
                    "PaymentTerms".into(),
                ],
                lines: Some(LineSpec::default()),
            },
            Self::PurchaseOrders => ResourceSpec {
                path: "purchaseOrders".into(),
                kind: EntityKind::PurchaseOrder,
                key: "POHeaderId".into(),
                key_is_number: true,
                timestamp: "LastUpdateDate".into(),
                document_number: s("OrderNumber"),
                amount: s("Ordered"),
                currency: s("Currency"),
                amount_required: true,
                supplier: s("Supplier"),
                supplier_id: s("SupplierId"),
                status: s("Status"),
                company: s("ProcurementBU"),
                date: None,
                extra: vec!["Buyer".into(), "Description".into(), "SupplierSite".into()],
                lines: None,
            },
            Self::PayablesPayments => ResourceSpec {
                path: "payablesPayments".into(),
                kind: EntityKind::Payment,
                key: "CheckId".into(),
                key_is_number: true,
                timestamp: "LastUpdateDate".into(),
                document_number: s("PaymentNumber"),
                amount: s("PaymentAmount"),
                currency: s("PaymentCurrency"),
                amount_required: true,
                supplier: s("Payee"),
                supplier_id: None,
                status: s("PaymentStatus"),
                company: s("BusinessUnit"),
                date: s("PaymentDate"),
                extra: vec![],
                lines: None,
            },
            Self::JournalBatches => ResourceSpec {
                path: "journalBatches".into(),
                kind: EntityKind::GlJournal,
                key: "JeBatchId".into(),
                key_is_number: true,
                timestamp: "LastUpdateDate".into(),
                document_number: s("BatchName"),
                amount: s("RunningTotalAccountedDr"),
                currency: s("CurrencyCode"),
                amount_required: false,
                supplier: None,
                supplier_id: None,
                status: s("Status"),
                company: s("LedgerName"),
                date: None,
                extra: vec![
                    "AccountingPeriodName".into(),
                    "Description".into(),
                    "ApprovalStatus".into(),
                ],
                lines: None,
            },
            Self::Suppliers => ResourceSpec {
                path: "suppliers".into(),
                kind: EntityKind::Supplier,
                key: "SupplierId".into(),
                key_is_number: true,
                timestamp: "LastUpdateDate".into(),
                document_number: s("SupplierNumber"),
                amount: None,
                currency: None,
                amount_required: false,
                supplier: s("Supplier"),
                supplier_id: s("SupplierId"),
                status: s("Status"),
                company: None,
                date: None,
                extra: vec!["TaxpayerCountry".into()],
                lines: None,
            },
            Self::ReceivablesInvoices => ResourceSpec {
                path: "receivablesInvoices".into(),
                kind: EntityKind::Customer,
                key: "CustomerTransactionId".into(),
                key_is_number: true,
                timestamp: "LastUpdateDate".into(),
                document_number: s("TransactionNumber"),
                amount: s("EnteredAmount"),
                currency: s("InvoiceCurrencyCode"),
                amount_required: false,
                supplier: None,
                supplier_id: None,
                status: s("TransactionStatus"),
                company: s("BusinessUnit"),
                date: s("TransactionDate"),
                extra: vec!["BillToCustomerName".into()],
                lines: None,
            },
        }
    }
}

/// How one resource is read and mapped. Every attribute name is configurable because
/// several are unconfirmed per pod (check `GET .../<resource>/describe`). Which attributes
/// are required and which optional (dropped when the pod lacks them):
/// [`ResourceSpec::required_fields`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSpec {
    /// The resource path segment (`invoices`).
    pub path: String,
    /// The entity kind of its records.
    pub kind: EntityKind,
    /// The key attribute (`InvoiceId`).
    pub key: String,
    /// Whether the key is a number (Fusion's `...Id` keys are): keyset paging then writes it
    /// as a bare literal (`InvoiceId > 300100`) so the server compares numerically, in the
    /// order it sorts by.
    pub key_is_number: bool,
    /// The timestamp the cursor polls on (`LastUpdateDate`, or `CreationDate`).
    pub timestamp: String,
    /// The document number attribute.
    pub document_number: Option<String>,
    /// The amount attribute.
    pub amount: Option<String>,
    /// The currency attribute of the amount.
    pub currency: Option<String>,
    /// Whether an item without an amount is rejected.
    pub amount_required: bool,
    /// The supplier (or payee) name attribute.
    pub supplier: Option<String>,
    /// The supplier id / number attribute.
    pub supplier_id: Option<String>,
    /// The status attribute.
    pub status: Option<String>,
    /// The business unit / ledger attribute (the record's company code).
    pub company: Option<String>,
    /// A document date attribute that must parse (`YYYY-MM-DD`) when present.
    pub date: Option<String>,
    /// Further attributes copied into `fields.extra` (snake_case names) when present.
    pub extra: Vec<String>,
    /// The document lines read in the same request as the header (child groups of
    /// `fields`), or `None` to read the header only.
    pub lines: Option<LineSpec>,
}

impl ResourceSpec {
    /// The attributes requested with `fields=` (everything the mapping reads).
    pub fn fields(&self) -> Vec<String> {
        let mut v = vec![self.key.clone(), self.timestamp.clone()];
        if self.timestamp != "LastUpdateDate" {
            v.push("LastUpdateDate".into());
        }
        for a in [
            &self.document_number,
            &self.amount,
            &self.currency,
            &self.supplier,
            &self.supplier_id,
            &self.status,
            &self.company,
            &self.date,
        ]
        .into_iter()
        .flatten()
        {
            v.push(a.clone());
        }
        v.extend(self.extra.iter().cloned());
        // Once each, in first-seen order (`dedup` only drops neighbours: suppliers listed
        // `SupplierId` twice, as key and as supplier id).
        let mut seen = std::collections::HashSet::new();
        v.retain(|a| seen.insert(a.clone()));
        v
    }

    /// The attributes a read cannot do without: the key and the cursor's timestamp (and
    /// `LastUpdateDate`), plus, when [`Self::amount_required`], the amount and its
    /// currency (a money resource whose amount is missing would reject every record). A
    /// pod lacking one of these is a configuration error; every other attribute of
    /// [`Self::fields`] is optional and is dropped (with a warning) from `fields` when the
    /// pod does not have it (pods differ by release: `SupplierId` on `purchaseOrders`,
    /// `CurrencyCode` / `LedgerName` on `journalBatches` are missing on some).
    pub fn required_fields(&self) -> Vec<String> {
        let mut v = vec![self.key.clone(), self.timestamp.clone()];
        if self.timestamp != "LastUpdateDate" {
            v.push("LastUpdateDate".into());
        }
        if self.amount_required {
            v.extend(self.amount.iter().cloned());
            v.extend(self.currency.iter().cloned());
        }
        v
    }

    /// Whether `attr` is one of [`Self::required_fields`].
    pub fn is_required(&self, attr: &str) -> bool {
        self.required_fields().iter().any(|a| a == attr)
    }

    /// [`Self::fields_param`] without the header attributes in `dropped` and the child
    /// attributes in `dropped_children` (those the pod lacks). A child group left with no
    /// attribute is left out.
    pub fn fields_param_without(&self, dropped: &[String], dropped_children: &[String]) -> String {
        let mut out = self
            .fields()
            .into_iter()
            .filter(|a| !dropped.contains(a))
            .collect::<Vec<_>>()
            .join(",");
        if let Some(lines) = &self.lines {
            for (path, attrs) in lines.child_groups() {
                let attrs: Vec<String> = attrs
                    .into_iter()
                    .filter(|a| !dropped_children.contains(a))
                    .collect();
                if attrs.is_empty() {
                    continue;
                }
                out.push(';');
                out.push_str(&path);
                out.push(':');
                out.push_str(&attrs.join(","));
            }
        }
        out
    }

    /// This description without the optional attributes in `dropped` (the pod lacks
    /// them): they are neither requested nor mapped. Required attributes are kept.
    #[must_use]
    pub fn without(&self, dropped: &[String]) -> Self {
        let mut s = self.clone();
        let gone = |a: &Option<String>| a.as_ref().is_some_and(|a| dropped.contains(a));
        for attr in [
            &mut s.document_number,
            &mut s.supplier,
            &mut s.supplier_id,
            &mut s.status,
            &mut s.company,
            &mut s.date,
        ] {
            if gone(attr) {
                *attr = None;
            }
        }
        if !self.amount_required {
            for attr in [&mut s.amount, &mut s.currency] {
                if gone(attr) {
                    *attr = None;
                }
            }
        }
        s.extra.retain(|a| !dropped.contains(a));
        s
    }

    /// The value of the `expand` query parameter that brings the lines (and their
    /// distributions) when `fields` is not sent; `None` for a resource read without lines.
    pub fn expand_param(&self) -> Option<String> {
        let l = self.lines.as_ref()?;
        Some(match &l.distributions {
            Some(d) => format!("{0},{0}.{d}", l.lines),
            None => l.lines.clone(),
        })
    }

    /// The value of the `fields` query parameter: the header attributes of
    /// [`Self::fields`], then, when [`Self::lines`] is set, one child group per level
    /// (`;invoiceLines:LineNumber,...;invoiceLines.invoiceDistributions:...`).
    pub fn fields_param(&self) -> String {
        self.fields_param_without(&[], &[])
    }

    /// Sets (or, with `None`, turns off) the document lines read with the header.
    #[must_use]
    pub fn with_lines(mut self, lines: Option<LineSpec>) -> Self {
        self.lines = lines;
        self
    }

    /// Reads the cost center of each line from segment `index` (0-based) of its account
    /// combination split on `separator` (a no-op when the resource reads no lines).
    #[must_use]
    pub fn with_cost_center_segment(mut self, separator: char, index: usize) -> Self {
        if let Some(l) = &mut self.lines {
            l.accounts = AccountSegments {
                separator,
                cost_center: Some(index),
            };
        }
        self
    }
}

/// How an account combination string (`01-520-7640-0000-000`) splits into segments. The
/// layout is specific to each chart of accounts, so which segment is the cost center is
/// configuration: by default none is (the whole string is still the line's GL account).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSegments {
    /// The segment separator (`-` by default; it is set per chart of accounts).
    pub separator: char,
    /// The 0-based index of the cost center segment, if any.
    pub cost_center: Option<usize>,
}

impl Default for AccountSegments {
    fn default() -> Self {
        Self {
            separator: '-',
            cost_center: None,
        }
    }
}

impl AccountSegments {
    /// The cost center segment of `combination`, when configured and present (non-empty).
    pub fn cost_center_of(&self, combination: &str) -> Option<String> {
        let i = self.cost_center?;
        combination
            .split(self.separator)
            .nth(i)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }
}

/// Which child collections hold a document's lines and their GL distributions, and which
/// of their attributes are read. Defaults are the payables `invoices` children:
/// `invoiceLines` (`LineNumber`, `LineAmount`, `LineType`, `Description`,
/// `DistributionCombination`) and `invoiceLines.invoiceDistributions`
/// (`DistributionLineNumber`, `DistributionAmount`, `DistributionLineType`,
/// `DistributionCombination`, `Description`). The distribution attribute names come from
/// Oracle's examples: check them with `GET .../invoices/{id}/child/invoiceLines/{id}/child/invoiceDistributions/describe`.
///
/// Mapping: one [`Line`](ml_core::record::Line) per distribution (number `LINE.DIST`); a
/// line without distributions (not generated yet, e.g. an unvalidated invoice) becomes
/// one `Line` of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineSpec {
    /// The child accessor of the lines (`invoiceLines`).
    pub lines: String,
    /// The line number attribute (`LineNumber`).
    pub line_number: String,
    /// The line amount attribute (`LineAmount`).
    pub line_amount: String,
    /// The line type attribute (`LineType`: Item, Freight, Miscellaneous, ...).
    pub line_type: Option<String>,
    /// The line description attribute (`Description`).
    pub line_description: Option<String>,
    /// The line's default account combination (`DistributionCombination`).
    pub line_account: Option<String>,
    /// A quantity attribute of the line (none by default; e.g. `Quantity`, unconfirmed).
    pub line_quantity: Option<String>,
    /// An item / material attribute of the line (none by default).
    pub line_item: Option<String>,
    /// The child accessor of the distributions under a line (`invoiceDistributions`), or
    /// `None` to read lines only.
    pub distributions: Option<String>,
    /// The distribution number attribute (`DistributionLineNumber`).
    pub distribution_number: String,
    /// The distribution amount attribute (`DistributionAmount`).
    pub distribution_amount: String,
    /// The distribution type attribute (`DistributionLineType`).
    pub distribution_type: Option<String>,
    /// The distribution's account combination (`DistributionCombination`).
    pub distribution_account: Option<String>,
    /// The distribution description attribute (`Description`).
    pub distribution_description: Option<String>,
    /// How account combinations split into segments (which one is the cost center).
    pub accounts: AccountSegments,
}

impl Default for LineSpec {
    fn default() -> Self {
        let s = |v: &str| Some(v.to_owned());
        Self {
            lines: "invoiceLines".into(),
            line_number: "LineNumber".into(),
            line_amount: "LineAmount".into(),
            line_type: s("LineType"),
            line_description: s("Description"),
            line_account: s("DistributionCombination"),
            line_quantity: None,
            line_item: None,
            distributions: s("invoiceDistributions"),
            distribution_number: "DistributionLineNumber".into(),
            distribution_amount: "DistributionAmount".into(),
            distribution_type: s("DistributionLineType"),
            distribution_account: s("DistributionCombination"),
            distribution_description: s("Description"),
            accounts: AccountSegments::default(),
        }
    }
}

impl LineSpec {
    /// The attributes read from each line.
    pub fn line_fields(&self) -> Vec<String> {
        let mut v = vec![self.line_number.clone(), self.line_amount.clone()];
        for a in [
            &self.line_type,
            &self.line_description,
            &self.line_account,
            &self.line_quantity,
            &self.line_item,
        ]
        .into_iter()
        .flatten()
        {
            if !v.contains(a) {
                v.push(a.clone());
            }
        }
        v
    }

    /// The attributes read from each distribution.
    pub fn distribution_fields(&self) -> Vec<String> {
        let mut v = vec![
            self.distribution_number.clone(),
            self.distribution_amount.clone(),
        ];
        for a in [
            &self.distribution_type,
            &self.distribution_account,
            &self.distribution_description,
        ]
        .into_iter()
        .flatten()
        {
            if !v.contains(a) {
                v.push(a.clone());
            }
        }
        v
    }

    /// The `fields` child groups: `(accessor path, attributes)`, the lines first, then
    /// `lines.distributions` when distributions are read.
    pub fn child_groups(&self) -> Vec<(String, Vec<String>)> {
        let mut v = vec![(self.lines.clone(), self.line_fields())];
        if let Some(d) = &self.distributions {
            v.push((format!("{}.{d}", self.lines), self.distribution_fields()));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attribute_is_asked_for_once() {
        for r in OracleResource::ALL {
            let fields = r.spec().fields();
            let unique: std::collections::HashSet<&String> = fields.iter().collect();
            assert_eq!(unique.len(), fields.len(), "{r:?}: {fields:?}");
        }
    }
}

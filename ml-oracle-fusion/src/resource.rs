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
            },
            Self::PurchaseOrders => ResourceSpec {
                path: "purchaseOrders".into(),
                kind: EntityKind::PurchaseOrder,
                key: "POHeaderId".into(),
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
            },
            Self::PayablesPayments => ResourceSpec {
                path: "payablesPayments".into(),
                kind: EntityKind::Payment,
                key: "CheckId".into(),
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
            },
            Self::JournalBatches => ResourceSpec {
                path: "journalBatches".into(),
                kind: EntityKind::GlJournal,
                key: "JeBatchId".into(),
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
            },
            Self::Suppliers => ResourceSpec {
                path: "suppliers".into(),
                kind: EntityKind::Supplier,
                key: "SupplierId".into(),
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
            },
            Self::ReceivablesInvoices => ResourceSpec {
                path: "receivablesInvoices".into(),
                kind: EntityKind::Customer,
                key: "CustomerTransactionId".into(),
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
            },
        }
    }
}

/// How one resource is read and mapped. Every attribute name is configurable because
/// several are unconfirmed per pod (check `GET .../<resource>/describe`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSpec {
    /// The resource path segment (`invoices`).
    pub path: String,
    /// The entity kind of its records.
    pub kind: EntityKind,
    /// The key attribute (`InvoiceId`).
    pub key: String,
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
        v.dedup();
        v
    }
}

//! The demo data of the Oracle Fusion sandbox: a few records of each of the six resources,
//! at fixed times (run twice and the second run delivers nothing new: the journal
//! remembers what it saw).

use ml_sandbox::oracle::{OracleEmulator, invoice_json, oracle_ts, unvalidated_invoice_json};
use serde_json::json;

/// Seeds `oracle`: invoices with lines and GL distributions (one large, one failing
/// validation, one not validated yet, a credit memo, one malformed), two purchase orders, a
/// journal batch, two payments (one large), a supplier and a receivables invoice.
pub fn seed(oracle: &OracleEmulator) {
    let t = jiff::Timestamp::from_second(1_767_600_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let at = |m: i64| oracle_ts(t + jiff::SignedDuration::from_mins(m));
    let ts = |m: i64| t + jiff::SignedDuration::from_mins(m);
    oracle.upsert_raw(
        "invoices",
        &invoice_json(300_100, ts(1), "1250.00", "Müller Präzisionsteile GmbH"),
    );
    oracle.upsert_raw(
        "invoices",
        &invoice_json(300_101, ts(2), "48200.00", "Acme Industrial Supply"),
    );
    oracle.upsert_raw(
        "invoices",
        &invoice_json(300_102, ts(3), "9100.00", "Acme Industrial Supply")
            .replace("\"Validated\"", "\"Needs Revalidation\""),
    );
    oracle.upsert_raw(
        "invoices",
        &invoice_json(300_103, ts(4), "-310.40", "Nordic Freight AB"),
    );
    oracle.upsert_raw(
        "invoices",
        &unvalidated_invoice_json(300_105, ts(4), "2750.00", "Nordic Freight AB"),
    );
    // Malformed: no amount (journaled as rejected, the stream goes on).
    oracle.upsert(
        "invoices",
        &json!({"InvoiceId": 300_104, "InvoiceNumber": "INV-300104", "InvoiceCurrency": "USD",
            "LastUpdateDate": at(5)}),
    );
    for (id, n) in [(400_001, "PO-1001"), (400_002, "PO-1002")] {
        oracle.upsert(
            "purchaseOrders",
            &json!({"POHeaderId": id, "OrderNumber": n, "Ordered": 15_000.5, "Currency": "USD",
                "Supplier": "Acme Industrial Supply", "Status": "Open", "ProcurementBU": "US1 Business Unit",
                "LastUpdateDate": at(6)}),
        );
    }
    oracle.upsert(
        "journalBatches",
        &json!({"JeBatchId": 500_001, "BatchName": "Accrual March", "RunningTotalAccountedDr": 250_000,
            "CurrencyCode": "USD", "Status": "Unposted", "LedgerName": "US Primary Ledger",
            "LastUpdateDate": at(7)}),
    );
    for (id, n, amount, payee) in [
        (
            600_001,
            "PAY-7001",
            "1250.00",
            "Müller Präzisionsteile GmbH",
        ),
        (600_002, "PAY-7002", "48200.00", "Acme Industrial Supply"),
    ] {
        oracle.upsert(
            "payablesPayments",
            &json!({"CheckId": id, "PaymentNumber": n, "PaymentAmount": amount,
                "PaymentCurrency": "USD", "Payee": payee, "PaymentStatus": "Negotiable",
                "LastUpdateDate": at(8)}),
        );
    }
    oracle.upsert(
        "suppliers",
        &json!({"SupplierId": 700_001, "SupplierNumber": "SUP-1042", "Supplier": "Nordic Freight AB",
            "Status": "ACTIVE", "LastUpdateDate": at(9)}),
    );
    oracle.upsert(
        "receivablesInvoices",
        &json!({"CustomerTransactionId": 800_001, "TransactionNumber": "AR-5001",
            "EnteredAmount": "12500.00", "InvoiceCurrencyCode": "USD", "TransactionStatus": "Complete",
            "BillToCustomerName": "Globex Corporation", "LastUpdateDate": at(10)}),
    );
}

//! Shared helpers of the ml-twilio integration tests (against ml-sandbox on 127.0.0.1).
#![allow(dead_code, unreachable_pub)]

use jiff::Timestamp;
use ml_core::money::Money;
use ml_core::record::{BusinessFields, EntityKind, Record};
use ml_core::sink::{Destination, Outbound, Sink};
use ml_sandbox::sendgrid::SendGridEmulator;
use ml_sandbox::twilio::TwilioEmulator;
use ml_twilio::TwilioBuilder;

/// A builder pointed at both emulators.
pub fn builder(tw: &TwilioEmulator, sg: Option<&SendGridEmulator>) -> TwilioBuilder {
    let mut b = TwilioBuilder::new()
        .with_account_sid(tw.account_sid())
        .with_auth_token(tw.auth_token())
        .with_from("+15005550006")
        .with_api_url(tw.base_url());
    if let Some(sg) = sg {
        b = b
            .with_sendgrid_api_key(sg.api_key())
            .with_sendgrid_api_url(sg.base_url())
            .with_sendgrid_from("erp@example.com");
    }
    b
}

/// A purchase order record.
pub fn po(key: &str, modified_secs: i64) -> Record {
    Record::new(
        "Sandbox(erp)",
        EntityKind::PurchaseOrder,
        key,
        Timestamp::from_second(1_700_000_000 + modified_secs).expect("ts"),
    )
    .with_fields(BusinessFields {
        document_number: Some(format!("PO-{key}")),
        supplier: Some("Müller GmbH".into()),
        supplier_id: Some("V100".into()),
        amount: Some(Money::parse("1200.50", "EUR").expect("money")),
        cost_center: Some("CC-10".into()),
        ..BusinessFields::default()
    })
}

/// An outbound message as the pipeline builds it.
pub fn outbound(sink: &dyn Sink, id: i64, dest: Destination, record: &Record) -> Outbound {
    Outbound {
        delivery_id: ml_core::audit::DeliveryId(id),
        stream: "pos".into(),
        record_key: record.key.clone(),
        rendered: sink.render(record, &dest),
        destination: dest,
        thread: None,
        attempt: 1,
        planned_at: Timestamp::now(),
    }
}

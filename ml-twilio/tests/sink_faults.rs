//! The sink fault conformance suite (`ml_core::testing::sink_fault_conformance`) for the
//! Twilio SMS sink and the SendGrid email sink against their emulators.

mod common;

use ml_core::sink::Destination;
use ml_core::testing::{InjectedFault, SinkFaultInjector, sink_fault_conformance};
use ml_sandbox::fault::{Fault, FaultRule, Faults};
use ml_sandbox::sendgrid::SendGridEmulator;
use ml_sandbox::twilio::TwilioEmulator;

use common::builder;

/// The emulator fault for a suite fault.
fn fault(injected: InjectedFault) -> Fault {
    match injected {
        InjectedFault::TooManyRequests { retry_after } => Fault::TooManyRequests {
            retry_after: retry_after.as_secs(),
        },
        InjectedFault::ServiceUnavailable => Fault::Status(503),
        InjectedFault::AppliedThenDropped => Fault::AppliedThenDropped,
        other => panic!("no emulator fault for {other:?}"),
    }
}

/// Injects into one endpoint of an emulator; counts what it accepted.
struct Injector<'a> {
    faults: &'a Faults,
    endpoint: &'static str,
    applied: Box<dyn Fn() -> usize + Send + Sync + 'a>,
}

impl SinkFaultInjector for Injector<'_> {
    fn inject(&self, injected: InjectedFault) {
        self.faults
            .push(FaultRule::on(self.endpoint, fault(injected)));
    }

    fn applied(&self) -> usize {
        (self.applied)()
    }
}

#[tokio::test]
async fn twilio_sms_sink_passes_the_fault_suite() {
    let tw = TwilioEmulator::start().await.expect("twilio");
    let sms = builder(&tw, None).build_sms().expect("sms");
    let injector = Injector {
        faults: tw.faults(),
        endpoint: "Messages.json",
        applied: Box::new(|| tw.messages().len()),
    };
    sink_fault_conformance(
        &sms,
        &Destination::new("sms", "+4915112345678"),
        1,
        &injector,
    )
    .await;
    assert_eq!(tw.faults().pending_rules(), 0, "every fault fired");
    assert_eq!(tw.messages().len(), 2);
}

#[tokio::test]
async fn sendgrid_email_sink_passes_the_fault_suite() {
    let tw = TwilioEmulator::start().await.expect("twilio");
    let sg = SendGridEmulator::start().await.expect("sendgrid");
    let email = builder(&tw, Some(&sg)).build_email().expect("email");
    let injector = Injector {
        faults: sg.faults(),
        endpoint: "send",
        applied: Box::new(|| sg.mails().len()),
    };
    sink_fault_conformance(
        &email,
        &Destination::new("email", "ap@example.com"),
        1,
        &injector,
    )
    .await;
    assert_eq!(sg.faults().pending_rules(), 0, "every fault fired");
    assert_eq!(sg.mails().len(), 2);
}

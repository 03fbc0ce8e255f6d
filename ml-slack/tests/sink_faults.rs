//! The sink fault conformance suite (`ml_core::testing::sink_fault_conformance`) for
//! `SlackSink` against the Slack emulator: 429 + Retry-After, 503, applied-then-dropped
//! then reconcile, by channel id and by name.

mod common;

use ml_core::sink::Destination;
use ml_core::testing::{InjectedFault, SinkFaultInjector, sink_fault_conformance};
use ml_sandbox::fault::{Fault, FaultRule};
use ml_sandbox::slack::{Channel, SlackEmulator};

/// Injects into `chat.postMessage` and counts the channel's messages.
struct SlackFaults<'a> {
    slack: &'a SlackEmulator,
    channel: String,
}

impl SinkFaultInjector for SlackFaults<'_> {
    fn inject(&self, fault: InjectedFault) {
        let fault = match fault {
            InjectedFault::TooManyRequests { retry_after } => Fault::TooManyRequests {
                retry_after: retry_after.as_secs(),
            },
            InjectedFault::ServiceUnavailable => Fault::Status(503),
            InjectedFault::AppliedThenDropped => Fault::AppliedThenDropped,
            other => panic!("no emulator fault for {other:?}"),
        };
        self.slack
            .faults()
            .push(FaultRule::on("chat.postMessage", fault));
    }

    fn applied(&self) -> usize {
        self.slack.messages(&self.channel).len()
    }
}

#[tokio::test]
async fn slack_sink_passes_the_fault_suite() {
    let slack = SlackEmulator::builder()
        .post_message_interval(None)
        .start()
        .await
        .expect("emulator");
    let id = slack.add_channel(Channel::public("procurement"));
    let faults = SlackFaults {
        slack: &slack,
        channel: id.clone(),
    };
    let sink = common::sink(&slack);
    sink_fault_conformance(&sink, &Destination::new("slack", &id), 1, &faults).await;
    // By name, on a fresh sink: the in-doubt post never taught it the id, so reconcile
    // resolves the name itself.
    let fresh = common::sink(&slack);
    sink_fault_conformance(
        &fresh,
        &Destination::new("slack", "#procurement"),
        100,
        &faults,
    )
    .await;
    assert_eq!(slack.faults().pending_rules(), 0, "every fault fired");
    assert_eq!(slack.messages(&id).len(), 4);
}

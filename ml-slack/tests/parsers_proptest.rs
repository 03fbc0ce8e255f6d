//! Property tests of the receiver: whatever arrives (signed or not), the answer is a
//! status with a refusal label or a success, never a panic.

use jiff::Timestamp;
use ml_slack::receiver::SlackReceiver;
use ml_slack::signature::SignatureVerifier;
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

proptest! {
    #[test]
    fn signature_headers_verify_or_refuse(ts in ".{0,16}", sig in ".{0,80}", body in prop::collection::vec(any::<u8>(), 0..64)) {
        let v = SignatureVerifier::new(&"secret".into());
        let now = Timestamp::from_second(1_800_000_000).expect("now");
        let _ = v.verify_at(&ts, &body, &sig, now);
        let signed = v.sign(&ts, &body);
        let r = v.verify_at(&ts, &body, &signed, now);
        if ts.trim() == "1800000000" {
            prop_assert!(r.is_ok());
        }
    }

    #[test]
    fn signed_bodies_are_handled_or_refused(
        body in prop::collection::vec(any::<u8>(), 0..300),
        content_type in prop::sample::select(vec!["application/json", "application/x-www-form-urlencoded", "", "text/plain"]),
    ) {
        let v = SignatureVerifier::new(&"secret".into());
        let (receiver, _inbox) = SlackReceiver::new(v.clone()).with_channel(4);
        let now = Timestamp::from_second(1_800_000_000).expect("now");
        let ts = "1800000000";
        let mut b = http::Request::post("/slack")
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", v.sign(ts, &body));
        if !content_type.is_empty() {
            b = b.header("content-type", content_type);
        }
        let req = b.body(body).expect("req");
        let resp = runtime().block_on(receiver.handle_at(req, now));
        prop_assert!(matches!(resp.status().as_u16(), 200 | 400 | 415), "{}", resp.status());
    }
}

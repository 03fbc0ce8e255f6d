//! `Emulator::env()`: the variables a connector reads point at the emulator and its
//! credentials work there.

use std::collections::HashMap;

use ml_sandbox::Emulator;
use ml_sandbox::oracle::OracleEmulator;
use ml_sandbox::sendgrid::SendGridEmulator;
use ml_sandbox::slack::SlackEmulator;
use ml_sandbox::twilio::TwilioEmulator;

fn client() -> reqwest::Client {
    ml_core::http::ClientOptions::default().client().unwrap()
}

fn env(e: &dyn Emulator) -> HashMap<&'static str, String> {
    e.env().into_iter().collect()
}

#[tokio::test]
async fn env_points_each_connector_at_its_emulator() {
    let slack = SlackEmulator::start().await.unwrap();
    let vars = env(&slack);
    assert_eq!(vars["SLACK_API_URL"], slack.base_url());
    assert!(slack.base_url().ends_with("/api/"));
    let answer: serde_json::Value = client()
        .post(format!("{}auth.test", vars["SLACK_API_URL"]))
        .bearer_auth(&vars["SLACK_BOT_TOKEN"])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["ok"], true, "{answer}");

    let twilio = TwilioEmulator::start().await.unwrap();
    let vars = env(&twilio);
    assert_eq!(vars["TWILIO_API_URL"], twilio.base_url());
    let status = client()
        .get(format!(
            "{}/2010-04-01/Accounts/{}.json",
            vars["TWILIO_API_URL"], vars["TWILIO_ACCOUNT_SID"]
        ))
        .basic_auth(
            &vars["TWILIO_ACCOUNT_SID"],
            Some(&vars["TWILIO_AUTH_TOKEN"]),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);

    let sendgrid = SendGridEmulator::start().await.unwrap();
    let vars = env(&sendgrid);
    assert_eq!(vars["SENDGRID_API_URL"], sendgrid.base_url());
    let status = client()
        .get(format!("{}/v3/scopes", vars["SENDGRID_API_URL"]))
        .bearer_auth(&vars["SENDGRID_API_KEY"])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);

    let oracle = OracleEmulator::start().await.unwrap();
    let vars = env(&oracle);
    assert_eq!(vars["ORACLE_FUSION_URL"], oracle.base_url());
    assert_eq!(vars["ORACLE_FUSION_TOKEN_URL"], oracle.token_url());
    let token: serde_json::Value = client()
        .post(&vars["ORACLE_FUSION_TOKEN_URL"])
        .basic_auth(
            &vars["ORACLE_FUSION_CLIENT_ID"],
            Some(&vars["ORACLE_FUSION_CLIENT_SECRET"]),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["access_token"].as_str().expect("a token");
    let status = client()
        .get(format!(
            "{}fscmRestApi/resources/latest/invoices",
            vars["ORACLE_FUSION_URL"]
        ))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    assert_eq!(oracle.tokens_issued(), 1);
}

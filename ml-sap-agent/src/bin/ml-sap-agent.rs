//! `ml-sap-agent`: the relay agent. Runs beside SAP ECC on the customer network, connects
//! out to the ml-connector host (`ML_RELAY_URL`, `ML_RELAY_AGENT_ID`, `ML_RELAY_KEY`) and
//! runs the host's RFC calls over SOAP-RFC (`SAP_ECC_URL`, `SAP_ECC_CLIENT`,
//! `SAP_ECC_USER`, `SAP_ECC_PASSWORD`, `SAP_ECC_MAX_CONCURRENT_RFC`). It never listens.
//! Ctrl-C or SIGTERM (systemd, `docker stop`) stops it.

use std::process::ExitCode;

use ml_sap_agent::Agent;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!(
            "ml-sap-agent {}\n\nConfigured by environment variables only:\n  ML_RELAY_URL, ML_RELAY_AGENT_ID, ML_RELAY_KEY\n  SAP_ECC_URL, SAP_ECC_CLIENT, SAP_ECC_USER, SAP_ECC_PASSWORD [, SAP_ECC_LANGUAGE, SAP_ECC_MAX_CONCURRENT_RFC]",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt().with_target(false).init();
    let agent = match Agent::from_env() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ml-sap-agent: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(agent = agent.id(), url = %agent.url(), "ml-sap-agent starting");
    agent.run(ml_core::shutdown::signal()).await;
    tracing::info!("ml-sap-agent stopped");
    ExitCode::SUCCESS
}

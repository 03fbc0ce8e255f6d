//! Child process of the credential crash test (`tests/credential_crash.rs`): writes or
//! rotates credentials in a journal until it is SIGKILLed, printing its progress.
//!
//! `credential-child <journal> put <first-index>`: puts `rt` = `value-<i>` for i = first..,
//! printing `BEGIN i` before and `END i` after each put.
//! `credential-child <journal> rotate <count>`: puts `c0..c<count>` once if missing, then
//! rotates the master key back and forth between the two test keys, printing `ROTATED n`.
//!
//! The two master keys are fixed test keys (never used elsewhere).

use std::io::Write;

use ml_core::credential::envelope::{KeyRing, MasterKey};
use ml_core::credential::{CredentialName, CredentialStore};
use ml_store::SqliteCredentialStore;
use secrecy::SecretString;

/// The test keys: the crash test opens the journal with both.
fn keys() -> (MasterKey, MasterKey) {
    (
        MasterKey::from_bytes([7; 32]),
        MasterKey::from_bytes([9; 32]),
    )
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ml_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, journal, mode, n] = args.as_slice() else {
        eprintln!("usage: credential-child <journal> put|rotate <n>");
        std::process::exit(2);
    };
    let n: u64 = n.parse().unwrap_or(0);
    let (a, b) = keys();
    let name = |s: String| CredentialName::new(s);
    if mode == "put" {
        {
            let store =
                SqliteCredentialStore::open(journal, Some(KeyRing::new(a).with_previous(b)))?;
            let rt = name("rt".into())?;
            for i in n.. {
                say(&format!("BEGIN {i}"));
                store
                    .put(&rt, &SecretString::from(format!("value-{i}")))
                    .await?;
                say(&format!("END {i}"));
            }
        }
    } else {
        {
            let mut forward = true;
            let ring = |forward: bool| {
                let (a, b) = keys();
                if forward {
                    KeyRing::new(b).with_previous(a)
                } else {
                    KeyRing::new(a).with_previous(b)
                }
            };
            let store = SqliteCredentialStore::open(journal, Some(ring(false)))?;
            for i in 0..n {
                let c = name(format!("c{i}"))?;
                if store.get(&c).await?.is_none() {
                    store
                        .put(&c, &SecretString::from(format!("value-{i}")))
                        .await?;
                }
            }
            drop(store);
            say("READY");
            for round in 0u64.. {
                let store = SqliteCredentialStore::open(journal, Some(ring(forward)))?;
                let r = store.rotate().await?;
                say(&format!("ROTATED {round} {}", r.rewrapped));
                forward = !forward;
            }
        }
    }
    Ok(())
}

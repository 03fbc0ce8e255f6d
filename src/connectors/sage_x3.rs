//! `connector = "sage-x3"` sources: one `[sources.<name>]` per X3 server and folder (one
//! token for all its streams), one source per stream (`resource = "PORDER"`, `PINVOICE`,
//! `GACCENTRY`, `BPSUPPLIER`).
//!
//! Settings are the `SAGE_X3_*` keys by their short names (`url`, `folder`, `api`,
//! `token_url`, `client_id`, `client_secret`, `refresh_token`, `user`, `password`,
//! `time_zone`, `fields`, …), plus `refresh_token_credential`: the name under which the
//! rotating X3 Cloud refresh token is kept in the journal's encrypted credential table
//! (default `sage_x3.<source name>.refresh_token`; needs a SQLite journal and the master
//! key). The refresh token's expiry warnings (`refresh_warn_days` ahead) and a needed
//! pairing are written into the pipeline's journal as notes, once each
//! (`ml-connector audit notes`). Status codes are shown with labels (`status_labels` on a
//! stream: `1=Not approved,2=Partly approved,3=Approved`); the code as served stays in the
//! extra field `status_code` for routing. With `sandbox = "auto"` and no credentials set,
//! the in-process emulator runs with demo data (api1, Basic).

use super::rekey;
use super::streams::configure;
use std::sync::Arc;

use async_trait::async_trait;
use ml_core::config::ConfigKey as _;
use ml_core::config::Env;
use ml_core::config::Registry;
use ml_core::config::assemble::{SandboxReport, Section, SourceConnection, SourceFactory};
use ml_core::config::pipeline::StreamConfig;
use ml_core::{Error, Result, Source};
use ml_sage_x3::{JournalNotes, SageX3Builder, SageX3ConfigKey, X3Class};

use super::under_applied;

/// Adds this crate's factories to `r`.
pub(crate) fn register(r: Registry) -> Registry {
    r.with_source(Arc::new(SageX3Factory))
}

struct SageX3Factory;

struct SageX3Connection {
    builder: SageX3Builder,
    #[cfg(feature = "sandbox")]
    emulator: Option<SageX3Sandbox>,
}

#[cfg(feature = "sandbox")]
struct SageX3Sandbox(ml_sandbox::sage_x3::SageX3Emulator);

#[cfg(feature = "sandbox")]
impl SandboxReport for SageX3Sandbox {
    fn banner(&self) -> String {
        let base = self.0.base_url();
        format!(
            "no credentials set: using the in-process Sage X3 sandbox at {base} (folder {}) with demo data \
             (change records while it runs: PUT {base}sandbox/x3/PORDER with a JSON row)",
            ml_sandbox::sage_x3::FOLDER
        )
    }
}

const CREDENTIAL_SETTING: &str = "refresh_token_credential";

/// The durable store of the rotating refresh token: the journal's credential table.
#[cfg(feature = "store")]
fn refresh_store(
    section: &Section<'_>,
    name: &str,
) -> Result<Arc<dyn ml_core::auth::RefreshTokenStore>> {
    let at = format!("{}.settings.{CREDENTIAL_SETTING}", section.path);
    let Some(raw) = &section.config.journal.sqlite else {
        return Err(Error::config(
            at,
            "X3 Cloud refresh tokens rotate: they must be kept durably, in a SQLite journal's credential table (set [journal] sqlite)",
        ));
    };
    let path = ml_core::config::interpolate::interpolate("journal.sqlite", raw, section.env)?;
    let keys = ml_core::credential::envelope::KeyRing::from_env_with(|n| section.env.var(n))?
        .ok_or_else(|| {
            Error::config(
                &at,
                "the rotating refresh token is kept encrypted in the journal: set ML_MASTER_KEY (base64, 32 bytes) or ML_MASTER_KEY_FILE",
            )
        })?;
    let store = ml_store::SqliteCredentialStore::open(&path, Some(keys))?;
    let name = ml_core::credential::CredentialName::new(name).map_err(rekey(&at))?;
    Ok(Arc::new(
        ml_core::credential::CredentialRefreshTokenStore::new(Arc::new(store), name),
    ))
}

#[async_trait]
impl SourceFactory for SageX3Factory {
    fn connector(&self) -> &'static str {
        "sage-x3"
    }

    async fn open(&self, section: Section<'_>) -> Result<Box<dyn SourceConnection>> {
        #[allow(unused_mut)]
        let mut builder = SageX3Builder::new();
        #[cfg(feature = "sandbox")]
        let emulator = if section.sandbox {
            let e = ml_sandbox::sage_x3::SageX3Emulator::start()
                .await
                .map_err(|e| Error::config(format!("{}.sandbox", section.path), e.to_string()))?;
            e.load_demo();
            builder = builder
                .with_url(e.base_url(), ml_sandbox::sage_x3::FOLDER)
                .with_basic(
                    ml_sandbox::sage_x3::USER,
                    ml_sandbox::sage_x3::PASSWORD.to_owned(),
                );
            Some(SageX3Sandbox(e))
        } else {
            None
        };
        #[cfg(not(feature = "sandbox"))]
        if section.sandbox {
            return Err(super::no_sandbox(&section.path));
        }
        let mut applied = Vec::new();
        let mut credential = None;
        for s in section.resolved()? {
            // `${NAME:-}` left empty: not set.
            if s.value.trim().is_empty() {
                continue;
            }
            if s.key == CREDENTIAL_SETTING {
                credential = Some(s.value);
                continue;
            }
            if let Some(k) = SageX3ConfigKey::from_name(&s.key) {
                applied.push((k.env_name(), s.path.clone()));
            }
            builder = builder
                .with_config_str(&s.key, s.value)
                .map_err(rekey(&s.path))?;
        }
        let cloud = section.resolved()?.iter().any(|s| {
            SageX3ConfigKey::from_name(&s.key) == Some(SageX3ConfigKey::TokenUrl)
                && !s.value.trim().is_empty()
        });
        if cloud {
            let name =
                credential.unwrap_or_else(|| format!("sage_x3.{}.refresh_token", section.name));
            // Expiry warnings and a needed pairing go into the pipeline's journal as notes
            // (`ml-connector audit notes`), named after the credential, never its value.
            builder = builder.with_journal_notes(Arc::new(JournalNotes::new(
                Arc::clone(section.journal),
                name.clone(),
            )));
            #[cfg(feature = "store")]
            {
                builder = builder.with_refresh_token_store(refresh_store(&section, &name)?);
            }
            #[cfg(not(feature = "store"))]
            {
                let _ = name;
                tracing::warn!(
                    source = %section.path,
                    "built without the `store` feature: the rotating Sage X3 refresh token is kept in memory only"
                );
            }
        }
        // Checks the URL and every value now, before any stream is built.
        builder
            .clone()
            .build()
            .map_err(under_applied(&section.path, &applied))?;
        let builder = builder
            .with_shared_auth()
            .map_err(under_applied(&section.path, &applied))?;
        Ok(Box::new(SageX3Connection {
            builder,
            #[cfg(feature = "sandbox")]
            emulator,
        }))
    }
}

impl SourceConnection for SageX3Connection {
    fn stream(&self, st: &StreamConfig, path: &str, env: &dyn Env) -> Result<Arc<dyn Source>> {
        let resource = st.resource.as_deref().unwrap_or(&st.name);
        let class = X3Class::from_name(resource).ok_or_else(|| {
            Error::config(
                format!("{path}.resource"),
                format!(
                    "unknown Sage X3 class `{resource}` (known: PORDER, PINVOICE, GACCENTRY, BPSUPPLIER)"
                ),
            )
        })?;
        #[cfg(feature = "sandbox")]
        let sandbox = self.emulator.is_some();
        #[cfg(not(feature = "sandbox"))]
        let sandbox = false;
        let (b, applied) = configure(
            self.builder.clone().with_class(class),
            st,
            path,
            env,
            sandbox,
        )?;
        Ok(Arc::new(b.build().map_err(under_applied(path, &applied))?))
    }

    fn sandbox(&self) -> Option<&dyn SandboxReport> {
        #[cfg(feature = "sandbox")]
        {
            self.emulator.as_ref().map(|e| e as &dyn SandboxReport)
        }
        #[cfg(not(feature = "sandbox"))]
        {
            None
        }
    }
}

super::streams::stream_options!(SageX3Builder, SageX3ConfigKey);

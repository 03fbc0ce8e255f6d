//! `connector = "sap-ecc"` sources: one `[sources.<name>]` per SAP system and client (one
//! concurrency cap), one source per stream (`resource = "purchase_orders"`, `"invoices"`
//! or `"gl"`).

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
use ml_sap_ecc::{Category, SapEccBuilder, SapEccConfigKey};

use super::under_applied;

/// Adds this crate's factories to `r`.
pub(crate) fn register(r: Registry) -> Registry {
    r.with_source(Arc::new(SapEccFactory))
}

pub(crate) struct SapEccFactory;

struct SapEccConnection {
    builder: SapEccBuilder,
    #[cfg(feature = "sandbox")]
    emulator: Option<SapSandbox>,
}

#[cfg(feature = "sandbox")]
struct SapSandbox(ml_sandbox::sap_ecc::SapEccEmulator);

#[cfg(feature = "sandbox")]
impl SandboxReport for SapSandbox {
    fn banner(&self) -> String {
        format!(
            "no credentials set: using the in-process SAP ECC sandbox (SOAP-RFC) at {}/sap/bc/soap/rfc?sap-client={} \
             with demo purchase orders, invoices and GL documents (server time zone {})",
            self.0.base_url(),
            self.0.client(),
            self.0.timezone()
        )
    }
}

#[async_trait]
impl SourceFactory for SapEccFactory {
    fn connector(&self) -> &'static str {
        "sap-ecc"
    }

    async fn open(&self, section: Section<'_>) -> Result<Box<dyn SourceConnection>> {
        #[allow(unused_mut)]
        let mut builder = SapEccBuilder::new();
        #[cfg(feature = "sandbox")]
        let emulator = if section.sandbox {
            let e = ml_sandbox::sap_ecc::SapEccEmulator::start()
                .await
                .map_err(|e| Error::config(format!("{}.sandbox", section.path), e.to_string()))?;
            e.load_traps();
            builder = builder
                .with_url(e.base_url())
                .with_client(e.client())
                .with_credentials(e.user(), e.password().to_owned())
                .with_timezone(e.timezone());
            Some(SapSandbox(e))
        } else {
            None
        };
        #[cfg(not(feature = "sandbox"))]
        if section.sandbox {
            return Err(super::no_sandbox(&section.path));
        }
        let mut applied = Vec::new();
        for s in section.resolved()? {
            if let Some(k) = SapEccConfigKey::from_name(&s.key) {
                applied.push((k.env_name(), s.path.clone()));
            }
            builder = builder
                .with_config_str(&s.key, s.value)
                .map_err(rekey(&s.path))?;
        }
        // Checks the URL and every value now, before any stream is built.
        builder
            .clone()
            .build()
            .map_err(under_applied(&section.path, &applied))?;
        Ok(Box::new(SapEccConnection {
            builder,
            #[cfg(feature = "sandbox")]
            emulator,
        }))
    }
}

impl SourceConnection for SapEccConnection {
    fn stream(&self, st: &StreamConfig, path: &str, env: &dyn Env) -> Result<Arc<dyn Source>> {
        let resource = st.resource.as_deref().unwrap_or(&st.name);
        let category = Category::parse(resource).ok_or_else(|| {
            Error::config(
                format!("{path}.resource"),
                format!(
                    "unknown SAP ECC category `{resource}` (known: purchase_orders, invoices, gl)"
                ),
            )
        })?;
        #[cfg(feature = "sandbox")]
        let sandbox = self.emulator.is_some();
        #[cfg(not(feature = "sandbox"))]
        let sandbox = false;
        let (b, applied) = configure(
            self.builder.clone().with_category(category),
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

super::streams::stream_options!(SapEccBuilder, SapEccConfigKey);

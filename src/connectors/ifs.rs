//! `connector = "ifs"` sources: one `[sources.<name>]` per IFS Cloud environment (one
//! IAM token), one source per stream (`resource = "supplier_invoices"`, ...).

use std::sync::Arc;

use async_trait::async_trait;
use ml_core::config::assemble::{
    SandboxReport, Section, SourceConnection, SourceFactory, resolve_settings,
};
use ml_core::config::pipeline::StreamConfig;
use ml_core::config::{ConfigKey as _, Env, Registry};
use ml_core::{Error, Result, Source};
use ml_ifs::{IfsBuilder, IfsConfigKey, IfsResource};

use super::{under, under_applied};

/// Adds this crate's factories to `r`.
pub(crate) fn register(r: Registry) -> Registry {
    r.with_source(Arc::new(IfsFactory))
}

pub(crate) struct IfsFactory;

struct IfsConnection {
    builder: IfsBuilder,
    #[cfg(feature = "sandbox")]
    emulator: Option<IfsSandbox>,
}

#[cfg(feature = "sandbox")]
struct IfsSandbox(ml_sandbox::ifs::IfsEmulator);

#[cfg(feature = "sandbox")]
impl SandboxReport for IfsSandbox {
    fn banner(&self) -> String {
        format!(
            "no credentials set: using the in-process IFS Cloud sandbox at {} (realm {}) with demo data \
             (suppliers, purchase orders, invoices awaiting approval in company 10)",
            self.0.base_url(),
            self.0.realm()
        )
    }
}

fn rekey(path: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Config { message, .. } => Error::config(path, message),
        other => other,
    }
}

#[async_trait]
impl SourceFactory for IfsFactory {
    fn connector(&self) -> &'static str {
        "ifs"
    }

    async fn open(&self, section: Section<'_>) -> Result<Box<dyn SourceConnection>> {
        #[allow(unused_mut)]
        let mut builder = IfsBuilder::new();
        #[cfg(feature = "sandbox")]
        let emulator = if section.sandbox {
            let e = ml_sandbox::ifs::IfsEmulator::start()
                .await
                .map_err(|e| Error::config(format!("{}.sandbox", section.path), e.to_string()))?;
            e.seed_demo()
                .map_err(|e| Error::config(format!("{}.sandbox", section.path), e.to_string()))?;
            builder = builder
                .with_url(e.base_url())
                .with_realm(e.realm())
                .with_client_credentials(e.client_id(), e.client_secret().to_owned())
                .with_company("10");
            Some(IfsSandbox(e))
        } else {
            None
        };
        #[cfg(not(feature = "sandbox"))]
        if section.sandbox {
            return Err(super::no_sandbox(&section.path));
        }
        let mut applied = Vec::new();
        // An empty value means unset: it must not clear what the sandbox set
        // (`realm = "${IFS_REALM:-}"`).
        for s in section
            .resolved()?
            .into_iter()
            .filter(|s| !s.value.trim().is_empty())
        {
            if let Some(k) = IfsConfigKey::from_name(&s.key) {
                applied.push((k.env_name(), s.path.clone()));
            }
            builder = builder
                .with_config_str(&s.key, s.value)
                .map_err(rekey(&s.path))?;
        }
        // Checks the URL, the credentials and every value now, before any stream is built.
        builder
            .clone()
            .build()
            .map_err(under_applied(&section.path, &applied))?;
        let builder = builder
            .with_shared_token_cache()
            .map_err(under_applied(&section.path, &applied))?;
        Ok(Box::new(IfsConnection {
            builder,
            #[cfg(feature = "sandbox")]
            emulator,
        }))
    }
}

impl SourceConnection for IfsConnection {
    fn stream(&self, st: &StreamConfig, path: &str, env: &dyn Env) -> Result<Arc<dyn Source>> {
        let resource = st.resource.as_deref().unwrap_or(&st.name);
        let r = IfsResource::from_name(resource).ok_or_else(|| {
            let known: Vec<&str> = IfsResource::ALL.iter().map(|r| r.name()).collect();
            Error::config(
                format!("{path}.resource"),
                format!(
                    "unknown IFS resource `{resource}` (known: {})",
                    known.join(", ")
                ),
            )
        })?;
        let mut b = self.builder.clone().with_resource(r);
        if let Some(t) = st.start_at {
            b = b.with_start_at(t);
        }
        if let Some(o) = st.overlap {
            b = b.with_overlap(o);
        }
        #[cfg(feature = "sandbox")]
        let sandbox = self.emulator.is_some();
        #[cfg(not(feature = "sandbox"))]
        let sandbox = false;
        for s in resolve_settings(path, &st.settings, env, sandbox)?
            .into_iter()
            .filter(|s| !s.value.trim().is_empty())
        {
            b = b.with_config_str(&s.key, s.value).map_err(rekey(&s.path))?;
        }
        Ok(Arc::new(b.build().map_err(under(path))?))
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

//! `connector = "oracle-fusion"` sources: one `[sources.<name>]` per pod (one token),
//! one source per stream (`resource = "invoices"`, ...).

use super::rekey;
use super::streams::configure;
use std::sync::Arc;

use async_trait::async_trait;
use ml_core::config::ConfigKey as _;
use ml_core::config::Env;
use ml_core::config::assemble::{SandboxReport, Section, SourceConnection, SourceFactory};
use ml_core::config::pipeline::StreamConfig;
use ml_core::{Error, Result, Source};
use ml_oracle_fusion::{OracleFusionBuilder, OracleFusionConfigKey, OracleResource};

use super::under_applied;

pub(crate) struct OracleFactory;

struct OracleConnection {
    builder: OracleFusionBuilder,
    #[cfg(feature = "sandbox")]
    emulator: Option<OracleSandbox>,
}

#[cfg(feature = "sandbox")]
struct OracleSandbox(ml_sandbox::oracle::OracleEmulator);

#[cfg(feature = "sandbox")]
impl SandboxReport for OracleSandbox {
    fn banner(&self) -> String {
        let base = self.0.base_url();
        format!(
            "no credentials set: using the in-process Oracle Fusion sandbox at {base} with demo data \
             (add or change records while it runs: POST/PATCH {base}fscmRestApi/resources/{}/invoices)",
            self.0.version()
        )
    }
}

#[async_trait]
impl SourceFactory for OracleFactory {
    fn connector(&self) -> &'static str {
        "oracle-fusion"
    }

    async fn open(&self, section: Section<'_>) -> Result<Box<dyn SourceConnection>> {
        #[allow(unused_mut)]
        let mut builder = OracleFusionBuilder::new();
        #[cfg(feature = "sandbox")]
        let emulator = if section.sandbox {
            let e = ml_sandbox::oracle::OracleEmulator::start()
                .await
                .map_err(|e| Error::config(format!("{}.sandbox", section.path), e.to_string()))?;
            super::demo::seed(&e);
            builder = builder
                .with_url(e.base_url())
                .with_client_credentials(e.token_url(), e.client_id(), e.client_secret().to_owned())
                // The demo chart of accounts: `01-520-7640-…`, cost center in segment 1.
                .with_cost_center_segment('-', 1);
            Some(OracleSandbox(e))
        } else {
            None
        };
        #[cfg(not(feature = "sandbox"))]
        if section.sandbox {
            return Err(super::no_sandbox(&section.path));
        }
        let mut applied = Vec::new();
        for s in section.resolved()? {
            if let Some(k) = OracleFusionConfigKey::from_name(&s.key) {
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
        let builder = builder
            .with_shared_token_cache()
            .map_err(under_applied(&section.path, &applied))?;
        Ok(Box::new(OracleConnection {
            builder,
            #[cfg(feature = "sandbox")]
            emulator,
        }))
    }
}

impl SourceConnection for OracleConnection {
    fn stream(&self, st: &StreamConfig, path: &str, env: &dyn Env) -> Result<Arc<dyn Source>> {
        let resource = st.resource.as_deref().unwrap_or(&st.name);
        let r = OracleResource::from_path(resource).ok_or_else(|| {
            let known: Vec<String> = OracleResource::ALL.iter().map(|r| r.spec().path).collect();
            Error::config(
                format!("{path}.resource"),
                format!(
                    "unknown Oracle Fusion resource `{resource}` (known: {})",
                    known.join(", ")
                ),
            )
        })?;
        #[cfg(feature = "sandbox")]
        let sandbox = self.emulator.is_some();
        #[cfg(not(feature = "sandbox"))]
        let sandbox = false;
        let (b, applied) = configure(
            self.builder.clone().with_resource(r),
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

super::streams::stream_options!(OracleFusionBuilder, OracleFusionConfigKey);

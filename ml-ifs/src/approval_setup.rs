//! Approvals described by configuration (`IFS_APPROVERS`, `IFS_APPROVAL_*`), so a host
//! such as `ml-connector run` can mount them without Rust: the connection that reads IFS
//! also performs the actions, on the entity set of `IFS_APPROVAL_RESOURCE`.

use std::collections::BTreeMap;
use std::sync::Arc;

use ml_core::AuditStore;
use ml_slack::responder::Responder;

use crate::approval::{Approvals, Approver, DEFAULT_COMMAND, DEFAULT_STREAM};
use crate::builder::{IfsBuilder, IfsConfigKey};
use crate::resource::IfsResource;

/// The approval settings of one IFS connection, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// Slack user id -> approver.
    pub approvers: BTreeMap<String, Approver>,
    /// The slash command (`/approve-invoice`).
    pub command: String,
    /// The resource acted on.
    pub resource: IfsResource,
    /// The journal stream of decisions.
    pub stream: String,
    /// One more allowed `response_url` base, if any.
    pub response_base: Option<String>,
}

fn config_error(key: IfsConfigKey, message: impl Into<String>) -> ml_core::Error {
    ml_core::Error::config(key.as_env(), message)
}

impl IfsBuilder {
    /// Whether approvals from Slack are configured (`IFS_APPROVERS` is set, even to
    /// nobody).
    pub fn approvals_configured(&self) -> bool {
        self.val(IfsConfigKey::Approvers).is_some()
    }

    /// The approval settings, checked (errors name the key); `None` when `IFS_APPROVERS`
    /// is not set.
    pub fn approval_settings(&self) -> ml_core::Result<Option<ApprovalSettings>> {
        use IfsConfigKey as K;
        let Some(raw) = self.val(K::Approvers) else {
            return Ok(None);
        };
        let approvers = Approver::parse_map(raw).map_err(|e| match e {
            ml_core::Error::Config { message, .. } => config_error(K::Approvers, message),
            other => other,
        })?;
        let command = self
            .val(K::ApprovalCommand)
            .unwrap_or(DEFAULT_COMMAND)
            .trim()
            .to_owned();
        if !command.starts_with('/')
            || command.len() < 2
            || command.chars().any(char::is_whitespace)
        {
            return Err(config_error(
                K::ApprovalCommand,
                format!("`{command}` is not a slash command (`/approve-invoice`)"),
            ));
        }
        let resource = match self.val(K::ApprovalResource) {
            None => IfsResource::SupplierInvoices,
            Some(r) => IfsResource::from_name(r).ok_or_else(|| {
                let known: Vec<&str> = IfsResource::ALL.iter().map(|r| r.name()).collect();
                config_error(
                    K::ApprovalResource,
                    format!("unknown resource `{r}` (known: {})", known.join(", ")),
                )
            })?,
        };
        let stream = self
            .val(K::ApprovalStream)
            .unwrap_or(DEFAULT_STREAM)
            .trim()
            .to_owned();
        if stream.is_empty() {
            return Err(config_error(K::ApprovalStream, "must not be empty"));
        }
        let response_base = match self.val(K::ApprovalResponseBase) {
            None => None,
            Some(b) => {
                ml_core::config::check_url(K::ApprovalResponseBase.as_env(), b)?;
                Some(b.to_owned())
            }
        };
        Ok(Some(ApprovalSettings {
            approvers,
            command,
            resource,
            stream,
            response_base,
        }))
    }

    /// The Approve / Reject buttons for Slack messages of the invoices these approvals
    /// act on, wrapping `inner` (Slack's Block Kit renderer); `None` when `IFS_APPROVERS`
    /// is not set.
    pub fn approval_buttons(
        &self,
        inner: Arc<dyn ml_core::render::Renderer>,
    ) -> ml_core::Result<Option<crate::ApprovalButtons>> {
        let Some(settings) = self.approval_settings()? else {
            return Ok(None);
        };
        let source = self.clone().with_resource(settings.resource).build()?;
        Ok(Some(crate::ApprovalButtons::new(inner).for_source(&source)))
    }

    /// The approvals handler these settings describe, journaling on `journal`, answering
    /// through `response_url`s; `None` when approvals are not configured. The entity set
    /// acted on is `IFS_APPROVAL_RESOURCE`'s, with this connection's credentials (one
    /// token cache), company and name overrides.
    pub fn build_approvals(
        &self,
        journal: Arc<dyn AuditStore>,
    ) -> ml_core::Result<Option<Approvals>> {
        let Some(settings) = self.approval_settings()? else {
            return Ok(None);
        };
        let source = self.clone().with_resource(settings.resource).build()?;
        let http = self
            .client_options()
            .client()
            .map_err(|e| ml_core::Error::config("ClientOptions", e.to_string()))?;
        let mut responder = Responder::new(http);
        if let Some(base) = &settings.response_base {
            responder = responder
                .with_allowed_base(base)
                .map_err(|e| config_error(IfsConfigKey::ApprovalResponseBase, e.to_string()))?;
        }
        Ok(Some(
            Approvals::for_source(&source)
                .with_approvers(settings.approvers)
                .with_command(settings.command)
                .with_journal(journal, settings.stream)
                .with_responder(responder),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(r: ml_core::Result<Option<ApprovalSettings>>) -> String {
        match r {
            Err(ml_core::Error::Config { key, .. }) => key,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn settings_are_checked_and_name_their_key() {
        let b = IfsBuilder::new();
        assert!(!b.approvals_configured());
        assert_eq!(b.approval_settings().expect("none"), None);
        let b = b
            .with_config_str("approvers", "U1=ALICE:approve+reject")
            .expect("key");
        let s = b.approval_settings().expect("ok").expect("some");
        assert_eq!(s.command, "/approve-invoice");
        assert_eq!(s.stream, "ifs.approvals");
        assert_eq!(s.resource, IfsResource::SupplierInvoices);
        assert_eq!(s.approvers["U1"].ifs_identity, "ALICE");
        for (k, v, want) in [
            ("approvers", "nobody", "IFS_APPROVERS"),
            ("approval_command", "approve", "IFS_APPROVAL_COMMAND"),
            ("approval_resource", "widgets", "IFS_APPROVAL_RESOURCE"),
            (
                "approval_response_base",
                "http://evil.example/",
                "IFS_APPROVAL_RESPONSE_BASE",
            ),
        ] {
            let bad = b.clone().with_config_str(k, v).expect("key");
            assert_eq!(key(bad.approval_settings()), want, "{k}={v}");
        }
    }
}

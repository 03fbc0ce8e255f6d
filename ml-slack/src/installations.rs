//! [`CredentialInstallationStore`]: Slack installations (bot token, rotating refresh token)
//! kept in an encrypted [`CredentialStore`], so an OAuth install survives a restart and its
//! tokens are never stored in clear.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use ml_core::credential::{CredentialName, CredentialStore};
use ml_core::{Error, Result};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::oauth::{Installation, InstallationStore};

/// An [`InstallationStore`] over a [`CredentialStore`]: one credential per installation,
/// named `<prefix>.<team id>` (`<prefix>.enterprise.<enterprise id>` for an org-wide
/// install), holding the whole installation (tokens included) as the encrypted value.
///
/// With token rotation, saving the refreshed installation is one atomic `put`, so the new
/// refresh token is durable before the new bot token is used.
#[derive(Clone)]
pub struct CredentialInstallationStore {
    store: Arc<dyn CredentialStore>,
    prefix: String,
}

impl fmt::Debug for CredentialInstallationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialInstallationStore")
            .field("store", &self.store)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The stored form (inside the encrypted value).
#[derive(Serialize, Deserialize)]
struct Stored {
    team_id: Option<String>,
    team_name: Option<String>,
    enterprise_id: Option<String>,
    is_enterprise_install: bool,
    app_id: Option<String>,
    bot_user_id: Option<String>,
    scopes: Vec<String>,
    bot_token: String,
    expires_at: Option<Timestamp>,
    refresh_token: Option<String>,
    authed_user_id: Option<String>,
}

impl CredentialInstallationStore {
    /// Installations under credential names starting with `slack.installation`.
    pub fn new(store: Arc<dyn CredentialStore>) -> Self {
        Self::with_prefix(store, "slack.installation")
    }

    /// Installations under credential names starting with `prefix` (several apps in one
    /// store).
    pub fn with_prefix(store: Arc<dyn CredentialStore>, prefix: impl Into<String>) -> Self {
        Self {
            store,
            prefix: prefix.into(),
        }
    }

    fn name(&self, team_id: Option<&str>, enterprise_id: Option<&str>) -> Result<CredentialName> {
        let suffix = match (team_id, enterprise_id) {
            (Some(t), _) => t.to_owned(),
            (None, Some(e)) => format!("enterprise.{e}"),
            (None, None) => {
                return Err(Error::InvalidState(
                    "a Slack installation without team or enterprise id".into(),
                ));
            }
        };
        CredentialName::new(format!("{}.{suffix}", self.prefix))
    }
}

#[async_trait]
impl InstallationStore for CredentialInstallationStore {
    async fn save(&self, i: &Installation) -> Result<()> {
        let team = if i.is_enterprise_install {
            None
        } else {
            i.team_id.as_deref()
        };
        let name = self.name(team, i.enterprise_id.as_deref())?;
        let json = serde_json::to_string(&Stored {
            team_id: i.team_id.clone(),
            team_name: i.team_name.clone(),
            enterprise_id: i.enterprise_id.clone(),
            is_enterprise_install: i.is_enterprise_install,
            app_id: i.app_id.clone(),
            bot_user_id: i.bot_user_id.clone(),
            scopes: i.scopes.clone(),
            bot_token: i.bot_token.expose_secret().to_owned(),
            expires_at: i.expires_at,
            refresh_token: i
                .refresh_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            authed_user_id: i.authed_user_id.clone(),
        })
        .map_err(|e| Error::Credential {
            name: name.to_string(),
            message: format!("could not encode the installation: {e}"),
        })?;
        self.store
            .put(&name, &SecretString::from(json))
            .await
            .map(|_| ())
    }

    async fn find(
        &self,
        team_id: Option<&str>,
        enterprise_id: Option<&str>,
    ) -> Result<Option<Installation>> {
        let mut candidates = Vec::new();
        if team_id.is_some() {
            candidates.push(self.name(team_id, enterprise_id)?);
        }
        if enterprise_id.is_some() {
            candidates.push(self.name(None, enterprise_id)?);
        }
        for name in candidates {
            let Some(value) = self.store.get(&name).await? else {
                continue;
            };
            let s: Stored =
                serde_json::from_str(value.expose_secret()).map_err(|_| Error::Credential {
                    name: name.to_string(),
                    message: "does not hold a Slack installation".into(),
                })?;
            return Ok(Some(Installation {
                team_id: s.team_id,
                team_name: s.team_name,
                enterprise_id: s.enterprise_id,
                is_enterprise_install: s.is_enterprise_install,
                app_id: s.app_id,
                bot_user_id: s.bot_user_id,
                scopes: s.scopes,
                bot_token: SecretString::from(s.bot_token),
                expires_at: s.expires_at,
                refresh_token: s.refresh_token.map(SecretString::from),
                authed_user_id: s.authed_user_id,
            }));
        }
        Ok(None)
    }

    async fn delete(&self, team_id: Option<&str>, enterprise_id: Option<&str>) -> Result<()> {
        self.store
            .delete(&self.name(team_id, enterprise_id)?)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use ml_core::credential::MemoryCredentialStore;

    use super::*;

    fn install(team: Option<&str>, enterprise: Option<&str>, token: &str) -> Installation {
        Installation {
            team_id: team.map(str::to_owned),
            team_name: Some("Acme".into()),
            enterprise_id: enterprise.map(str::to_owned),
            is_enterprise_install: team.is_none(),
            app_id: Some("A1".into()),
            bot_user_id: Some("U1".into()),
            scopes: vec!["chat:write".into()],
            bot_token: SecretString::from(token.to_owned()),
            expires_at: None,
            refresh_token: Some(SecretString::from(format!("{token}-refresh"))),
            authed_user_id: None,
        }
    }

    #[tokio::test]
    async fn installations_round_trip_and_org_installs_are_found_by_enterprise() {
        let creds: Arc<dyn CredentialStore> = Arc::new(MemoryCredentialStore::new());
        let store = CredentialInstallationStore::new(Arc::clone(&creds));
        store
            .save(&install(Some("T1"), None, "xoxb-team"))
            .await
            .expect("save");
        store
            .save(&install(None, Some("E9"), "xoxb-org"))
            .await
            .expect("save");
        let found = store
            .find(Some("T1"), None)
            .await
            .expect("find")
            .expect("T1");
        assert_eq!(found.bot_token.expose_secret(), "xoxb-team");
        assert_eq!(
            found
                .refresh_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned())
                .as_deref(),
            Some("xoxb-team-refresh")
        );
        let org = store
            .find(Some("T7"), Some("E9"))
            .await
            .expect("find")
            .expect("org");
        assert_eq!(org.bot_token.expose_secret(), "xoxb-org");
        let names: Vec<String> = creds
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|i| i.name.to_string())
            .collect();
        assert_eq!(
            names,
            ["slack.installation.T1", "slack.installation.enterprise.E9"]
        );
        store.delete(Some("T1"), None).await.expect("delete");
        assert!(store.find(Some("T1"), None).await.expect("find").is_none());
    }
}

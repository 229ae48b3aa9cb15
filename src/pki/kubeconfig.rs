//! kubeconfig files (`admin.conf` …) as typed serde structs in clientcmd's shape: one
//! cluster named after the cluster, one user named after the client CN, one context
//! `<user>@<cluster>` made current; CA, client certificate and key embedded as base64 PEM.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// A kubeconfig (`apiVersion: v1`, `kind: Config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kubeconfig {
    /// `v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `Config`.
    pub kind: String,
    /// Clusters.
    pub clusters: Vec<NamedCluster>,
    /// Contexts.
    pub contexts: Vec<NamedContext>,
    /// The current context.
    #[serde(rename = "current-context")]
    pub current_context: String,
    /// Users.
    pub users: Vec<NamedUser>,
}

/// `clusters[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    /// Name.
    pub name: String,
    /// Entry.
    pub cluster: ClusterEntry,
}

/// `clusters[].cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterEntry {
    /// base64 of the CA PEM.
    #[serde(default)]
    pub certificate_authority_data: String,
    /// `https://host:port`.
    pub server: String,
}

/// `contexts[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    /// Name.
    pub name: String,
    /// Entry.
    pub context: ContextEntry,
}

/// `contexts[].context`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextEntry {
    /// Cluster name.
    pub cluster: String,
    /// User name.
    pub user: String,
}

/// `users[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedUser {
    /// Name.
    pub name: String,
    /// Entry.
    pub user: UserEntry,
}

/// `users[].user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UserEntry {
    /// base64 of the client certificate PEM.
    #[serde(default)]
    pub client_certificate_data: String,
    /// base64 of the client key PEM.
    #[serde(default)]
    pub client_key_data: String,
}

/// What a kubeconfig holds for its current context, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// CA PEM.
    pub ca_pem: String,
    /// Server URL.
    pub server: String,
    /// Client certificate PEM.
    pub cert_pem: String,
    /// Client key PEM.
    pub key_pem: String,
}

impl Kubeconfig {
    /// Build one the way kubeadm's `CreateWithCerts` does.
    pub fn new(
        cluster: &str,
        server: &str,
        user: &str,
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Kubeconfig {
        let context = format!("{user}@{cluster}");
        Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![NamedCluster {
                name: cluster.into(),
                cluster: ClusterEntry {
                    certificate_authority_data: STANDARD.encode(ca_pem),
                    server: server.into(),
                },
            }],
            contexts: vec![NamedContext {
                name: context.clone(),
                context: ContextEntry {
                    cluster: cluster.into(),
                    user: user.into(),
                },
            }],
            current_context: context,
            users: vec![NamedUser {
                name: user.into(),
                user: UserEntry {
                    client_certificate_data: STANDARD.encode(cert_pem),
                    client_key_data: STANDARD.encode(key_pem),
                },
            }],
        }
    }

    /// YAML text.
    pub fn to_yaml(&self) -> Result<String, String> {
        serde_yaml::to_string(self).map_err(|e| format!("cannot serialize kubeconfig: {e}"))
    }

    /// Parse YAML text (unknown keys tolerated: kubectl may add some).
    pub fn from_yaml(text: &str) -> Result<Kubeconfig, String> {
        serde_yaml::from_str(text).map_err(|e| format!("not a valid kubeconfig: {e}"))
    }

    /// The current context's cluster and user, decoded.
    pub fn decode(&self) -> Result<Decoded, String> {
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .ok_or_else(|| format!("current-context {:?} is not defined", self.current_context))?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| format!("cluster {:?} is not defined", ctx.context.cluster))?;
        let user = self
            .users
            .iter()
            .find(|u| u.name == ctx.context.user)
            .ok_or_else(|| format!("user {:?} is not defined", ctx.context.user))?;
        let text = |field: &str, b64: &str| -> Result<String, String> {
            let bytes = STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("{field} is not valid base64: {e}"))?;
            String::from_utf8(bytes).map_err(|_| format!("{field} is not PEM text"))
        };
        Ok(Decoded {
            ca_pem: text(
                "certificate-authority-data",
                &cluster.cluster.certificate_authority_data,
            )?,
            server: cluster.cluster.server.clone(),
            cert_pem: text(
                "client-certificate-data",
                &user.user.client_certificate_data,
            )?,
            key_pem: text("client-key-data", &user.user.client_key_data)?,
        })
    }
}

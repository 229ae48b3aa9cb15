//! kubeconfig files (`admin.conf` …) as typed serde structs in clientcmd's shape: one
//! cluster named after the cluster, one user named after the client CN, one context
//! `<user>@<cluster>` made current; CA, client certificate and key embedded as base64 PEM.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// A kubeconfig that cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// YAML serialization failed.
    #[error("cannot serialize kubeconfig: {0}")]
    Serialize(String),
    /// Not YAML of a kubeconfig's shape.
    #[error("not a valid kubeconfig: {0}")]
    Parse(String),
    /// `current-context` names no context.
    #[error("current-context {0:?} is not defined")]
    NoContext(String),
    /// The context names no cluster.
    #[error("cluster {0:?} is not defined")]
    NoCluster(String),
    /// The context names no user.
    #[error("user {0:?} is not defined")]
    NoUser(String),
    /// An embedded `*-data` field is not base64.
    #[error("{field} is not valid base64: {detail}")]
    Base64 {
        /// The field.
        field: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// An embedded `*-data` field is not text.
    #[error("{field} is not PEM text")]
    NotText {
        /// The field.
        field: &'static str,
    },
}

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
    pub fn to_yaml(&self) -> Result<String, KubeconfigError> {
        serde_yaml::to_string(self).map_err(|e| KubeconfigError::Serialize(e.to_string()))
    }

    /// Parse YAML text (unknown keys tolerated: kubectl may add some).
    pub fn from_yaml(text: &str) -> Result<Kubeconfig, KubeconfigError> {
        serde_yaml::from_str(text).map_err(|e| KubeconfigError::Parse(e.to_string()))
    }

    /// The current context's cluster and user, decoded.
    pub fn decode(&self) -> Result<Decoded, KubeconfigError> {
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .ok_or_else(|| KubeconfigError::NoContext(self.current_context.clone()))?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| KubeconfigError::NoCluster(ctx.context.cluster.clone()))?;
        let user = self
            .users
            .iter()
            .find(|u| u.name == ctx.context.user)
            .ok_or_else(|| KubeconfigError::NoUser(ctx.context.user.clone()))?;
        let text = |field: &'static str, b64: &str| -> Result<String, KubeconfigError> {
            let bytes = STANDARD
                .decode(b64.trim())
                .map_err(|e| KubeconfigError::Base64 {
                    field,
                    detail: e.to_string(),
                })?;
            String::from_utf8(bytes).map_err(|_| KubeconfigError::NotText { field })
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

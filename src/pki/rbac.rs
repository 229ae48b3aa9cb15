//! `rbac/apilb-health.yaml`: a ClusterRole allowing `get` on `/readyz`, `/livez` and
//! `/healthz`, bound to the `apilb-health` user of the LB hosts' client certificates.
//! Typed serde structs, written as a two-document YAML stream.

use serde::{Deserialize, Serialize};

use super::spec::HEALTH_CLIENT_CN;

/// Name of the ClusterRole and the ClusterRoleBinding.
pub const NAME: &str = "apilb-health";
/// Health endpoints the LB probes.
pub const HEALTH_PATHS: [&str; 3] = ["/readyz", "/livez", "/healthz"];

/// `rbac.authorization.k8s.io/v1` ClusterRole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterRole {
    /// `rbac.authorization.k8s.io/v1`.
    pub api_version: String,
    /// `ClusterRole`.
    pub kind: String,
    /// Name.
    pub metadata: Metadata,
    /// Rules.
    pub rules: Vec<PolicyRule>,
}

/// `metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Name.
    pub name: String,
}

/// A rule on non-resource URLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    /// URL paths.
    #[serde(rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    /// Verbs.
    pub verbs: Vec<String>,
}

/// `rbac.authorization.k8s.io/v1` ClusterRoleBinding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterRoleBinding {
    /// `rbac.authorization.k8s.io/v1`.
    pub api_version: String,
    /// `ClusterRoleBinding`.
    pub kind: String,
    /// Name.
    pub metadata: Metadata,
    /// The role.
    pub role_ref: RoleRef,
    /// Who.
    pub subjects: Vec<Subject>,
}

/// `roleRef`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleRef {
    /// `rbac.authorization.k8s.io`.
    pub api_group: String,
    /// `ClusterRole`.
    pub kind: String,
    /// Name.
    pub name: String,
}

/// `subjects[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subject {
    /// `rbac.authorization.k8s.io`.
    pub api_group: String,
    /// `User`.
    pub kind: String,
    /// The certificate CN.
    pub name: String,
}

const RBAC_V1: &str = "rbac.authorization.k8s.io/v1";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The two objects.
pub fn objects() -> (ClusterRole, ClusterRoleBinding) {
    let meta = Metadata { name: NAME.into() };
    (
        ClusterRole {
            api_version: RBAC_V1.into(),
            kind: "ClusterRole".into(),
            metadata: meta.clone(),
            rules: vec![PolicyRule {
                non_resource_urls: HEALTH_PATHS.iter().map(|p| (*p).to_owned()).collect(),
                verbs: vec!["get".into()],
            }],
        },
        ClusterRoleBinding {
            api_version: RBAC_V1.into(),
            kind: "ClusterRoleBinding".into(),
            metadata: meta,
            role_ref: RoleRef {
                api_group: RBAC_GROUP.into(),
                kind: "ClusterRole".into(),
                name: NAME.into(),
            },
            subjects: vec![Subject {
                api_group: RBAC_GROUP.into(),
                kind: "User".into(),
                name: HEALTH_CLIENT_CN.into(),
            }],
        },
    )
}

/// The RBAC objects could not be serialized.
#[derive(Debug, thiserror::Error)]
#[error("cannot serialize RBAC objects: {0}")]
pub struct SerializeError(String);

/// The file: both objects, `---` separated.
pub fn manifest() -> Result<String, SerializeError> {
    let (role, binding) = objects();
    let err = |e: serde_yaml::Error| SerializeError(e.to_string());
    Ok(format!(
        "# Lets the apilb LB hosts' health-check client (CN {HEALTH_CLIENT_CN}) probe the apiservers.\n---\n{}---\n{}",
        serde_yaml::to_string(&role).map_err(err)?,
        serde_yaml::to_string(&binding).map_err(err)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_reparses_strictly() {
        let text = manifest().unwrap();
        let docs: Vec<&str> = text.split("---\n").skip(1).collect();
        assert_eq!(docs.len(), 2);
        let role: ClusterRole = serde_yaml::from_str(docs[0]).unwrap();
        let binding: ClusterRoleBinding = serde_yaml::from_str(docs[1]).unwrap();
        assert_eq!((role, binding), objects());
        assert!(
            text.contains("nonResourceURLs:\n  - /readyz\n  - /livez\n  - /healthz\n"),
            "{text}"
        );
    }
}

//! The kubeadm control-plane PKI (`apilb issue`): CAs, leaf certificates, the SA key pair,
//! kubeconfigs and the LB hosts' health-check client, for every master of a
//! [`Cluster`](crate::cluster::Cluster), with the LB address in the apiserver SANs.
//!
//! - [`key`]: key generation and kubeadm's PEM encodings.
//! - [`cert`]: CAs and leaves; a leaf can only be signed by a [`Ca`] (certificate + key).
//! - [`spec`]: the certificate table (names, CN/O, usages, SAN rules). Pure.
//! - [`issue`](mod@issue): plan against the existing tree (reuse, renew, external CA), then write.
//! - [`store`]: reading and atomic, no-clobber writing of the output tree.
//! - [`kubeconfig`], [`rbac`]: typed serde documents.
//! - [`report`]: the summary and `certs check-expiration` tables; `ca-cert-hash`.
//! - [`pem`](mod@pem): the crate's one PEM/X.509 file reader (also used by the admin
//!   endpoint and the health probes).
//!
//! Runs synchronously in the calling thread, except that new keys are generated on scoped
//! threads, one per available core, and joined before `plan` returns. No global state (the
//! aws-lc-rs primitives are called directly, no rustls provider is installed).

pub mod cert;
pub mod issue;
pub mod key;
pub mod kubeconfig;
pub mod pem;
pub mod rbac;
pub mod report;
pub mod spec;
pub mod store;

use std::path::PathBuf;

pub use self::cert::{Ca, CaCert, CaKind, CertInfo, Profile, Usage};
pub use self::issue::{Action, Options, Plan, Report, issue, plan};
pub use self::key::{KeyAlgorithm, PrivateKey};
pub use self::report::{ExpirationReport, ca_cert_hash, check_expiration};

/// Errors of the PKI commands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plan found problems; nothing was written.
    #[error("nothing written to {} ({} problem{}):{}", out.display(), problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.iter().map(|p| format!("\n  {p}")).collect::<String>())]
    Plan {
        /// The output directory.
        out: PathBuf,
        /// `file: problem`, one per line.
        problems: Vec<String>,
    },
    /// The output directory cannot be created or written; nothing was written.
    #[error("cannot write to the output directory {}", path.display())]
    Output {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file failed after staging (rare: disk full, races).
    #[error("failed to write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An input file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file that is not what it should be.
    #[error(transparent)]
    File(#[from] pem::FileError),
    /// A kubeconfig that cannot be read.
    #[error("{}: {problem}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: kubeconfig::KubeconfigError,
    },
    /// `check-expiration` was given something other than a directory.
    #[error("{}: is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// `check-expiration` found nothing to check.
    #[error("{}: holds no kubeadm certificates or kubeconfigs (expected pki/ and *.conf)", path.display())]
    NothingToCheck {
        /// The directory.
        path: PathBuf,
    },
}

impl Error {
    /// Whether the operator's input is at fault (exit 64) rather than the run (exit 1).
    pub fn is_input(&self) -> bool {
        !matches!(self, Error::Write { .. })
    }
}

//! `apilb check-config`: everything `serve` would refuse before binding, as one report.
//!
//! The text is checked as [`Config::from_yaml`] does (every problem at once); then every
//! file that health checks need (`health.tls.ca`, `cert`, `key`, also per backend) must be
//! readable, and the TLS material is loaded as `serve` loads it
//! ([`crate::health::task::load_tls`]). Each TLS problem is placed at the key that names the
//! file: a backend that inherits `health.tls.ca` gets its problem at `health.tls.ca`. The
//! admin endpoint's `metrics.tls` files are loaded as `serve` loads them too.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{Balance, CheckKind, Config, Error};
use crate::input::{Locations, Problem, Problems};

/// What `check-config` found.
#[derive(Debug)]
pub enum Report {
    /// Nothing wrong.
    Ok {
        /// The file.
        path: PathBuf,
        /// What it sets up.
        summary: Summary,
    },
    /// Every problem, with its place.
    Invalid(Problems),
    /// The file could not be read.
    Unreadable(Error),
}

/// The one-line summary of a valid config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// How many `listen` addresses.
    pub listeners: usize,
    /// How many backends.
    pub backends: usize,
    /// `balance`.
    pub balance: Balance,
}

impl Report {
    /// Whether the config can be served.
    pub fn is_ok(&self) -> bool {
        matches!(self, Report::Ok { .. })
    }
}

/// `FILE: ok (1 listener(s), 3 backend(s), balance least-connections)`, or one line per
/// problem.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Ok { path, summary } => write!(
                f,
                "{}: ok ({} listener(s), {} backend(s), balance {})",
                path.display(),
                summary.listeners,
                summary.backends,
                summary.balance
            ),
            Report::Invalid(problems) => write!(f, "{problems}"),
            Report::Unreadable(e) => write!(f, "{e}"),
        }
    }
}

/// Check the LB config at `path` as `serve` would before binding.
pub fn check(path: &Path) -> Report {
    let origin = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(error) => {
            return Report::Unreadable(Error::Read {
                path: path.to_owned(),
                error,
            });
        }
    };
    let (config, locations) = match Config::parse(&text, &origin) {
        Ok(parsed) => parsed,
        Err(Error::Invalid(problems)) => return Report::Invalid(problems),
        Err(e) => return Report::Unreadable(e),
    };
    let problems = tls_problems(&config, &locations);
    if !problems.is_empty() {
        return Report::Invalid(Problems::new(&origin, problems));
    }
    Report::Ok {
        path: path.to_owned(),
        summary: Summary {
            listeners: config.listen.len(),
            backends: config.backends.len(),
            balance: config.balance,
        },
    }
}

/// Every TLS file that cannot be read, then what loading the TLS material finds, each at the
/// key that names it and reported once.
fn tls_problems(config: &Config, locations: &Locations) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut reported = HashSet::new();
    let mut report = |key: String, message: String, problems: &mut Vec<Problem>| {
        if reported.insert(key.clone()) {
            problems.push(Problem {
                position: locations.find(&key),
                key,
                message,
            });
        }
    };
    for (i, b) in config.backends.iter().enumerate() {
        let Some(tls) = &b.health.tls else { continue };
        if !matches!(b.health.kind, CheckKind::Tls | CheckKind::Https) {
            continue;
        }
        let files = [
            ("ca", Some(&tls.ca)),
            ("cert", tls.cert.as_ref()),
            ("key", tls.key.as_ref()),
        ];
        for (field, file) in files {
            let Some(file) = file else { continue };
            if let Err(e) = std::fs::File::open(file) {
                let key = written_key(&format!("backends[{i}].health.tls.{field}"), locations);
                report(key, format!("{}: {e}", file.display()), &mut problems);
            }
        }
    }
    if let Err(errors) = crate::health::task::load_tls(config) {
        for e in errors {
            // Every TLS error reads `key: what`; the key is where it is placed.
            let text = e.to_string();
            let (key, message) = match text.split_once(": ") {
                Some((key, message)) if !key.contains(' ') => {
                    (written_key(key, locations), message.to_owned())
                }
                _ => ("health.tls".to_owned(), text.clone()),
            };
            report(key, message, &mut problems);
        }
    }
    if let Some(tls) = config.metrics.as_ref().and_then(|m| m.tls.as_ref())
        && let Err(e) = crate::admin::tls::AdminTls::load(tls)
    {
        // Every admin TLS error reads `metrics.tls.X: what`.
        let text = e.to_string();
        let (key, message) = text
            .split_once(": ")
            .map_or(("metrics.tls".to_owned(), text.clone()), |(k, m)| {
                (k.to_owned(), m.to_owned())
            });
        let key = if locations.has_key(&key) {
            key
        } else {
            "metrics.tls".to_owned()
        };
        report(key, message, &mut problems);
    }
    problems
}

/// The key a backend's effective TLS setting `backends[i].health.tls.X` was written at: the
/// backend's own key if it has one, else the global `health.tls.X`.
fn written_key(key: &str, locations: &Locations) -> String {
    if locations.has_key(key) {
        return key.to_owned();
    }
    match key.split_once("].health.") {
        Some((backend, rest)) if backend.starts_with("backends[") => {
            let global = format!("health.{rest}");
            if locations.has_key(&global) {
                global
            } else {
                key.to_owned()
            }
        }
        _ => key.to_owned(),
    }
}

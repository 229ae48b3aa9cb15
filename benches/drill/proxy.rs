//! The proxies under test, their generated configs, and readiness.
//!
//! Both listen on 127.0.0.1 and balance over the same 3 stand-ins; each event gets a fresh
//! proxy process so every event starts from the same state (all backends up, even shares).

use std::fmt;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::ClientConfig;
use tokio::time::{Instant, sleep};

use crate::load;
use crate::pki::Pki;
use crate::process::ChildGuard;

/// How long a proxy gets to start proxying.
const READY_LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ProxyKind {
    Apilb,
    Haproxy,
}

impl ProxyKind {
    pub(crate) const ALL: [ProxyKind; 2] = [ProxyKind::Apilb, ProxyKind::Haproxy];

    pub(crate) fn label(self) -> &'static str {
        match self {
            ProxyKind::Apilb => "apilb",
            ProxyKind::Haproxy => "haproxy",
        }
    }
}

impl fmt::Display for ProxyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for ProxyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProxyKind::ALL
            .into_iter()
            .find(|k| k.label() == s)
            .ok_or_else(|| format!("unknown proxy {s:?} (apilb or haproxy)"))
    }
}

/// Binaries and settings shared by every start.
pub(crate) struct Setup {
    pub(crate) apilb: PathBuf,
    pub(crate) haproxy: PathBuf,
    /// `RUST_LOG` for apilb.
    pub(crate) apilb_log: String,
}

/// Starts `kind` on 127.0.0.1:`port` in front of `backends`, with its config and output in
/// `dir`, and waits until an HTTPS request through it is answered.
pub(crate) async fn start(
    kind: ProxyKind,
    setup: &Setup,
    pki: &Pki,
    backends: &[SocketAddr],
    listen: SocketAddr,
    dir: &Path,
    tls: &Arc<ClientConfig>,
) -> anyhow::Result<ChildGuard> {
    let mut cmd;
    match kind {
        ProxyKind::Apilb => {
            let cfg = dir.join("apilb.yaml");
            std::fs::write(&cfg, apilb_config(listen, backends, pki))?;
            cmd = Command::new(&setup.apilb);
            cmd.arg("serve")
                .arg("--config")
                .arg(&cfg)
                .env("RUST_LOG", &setup.apilb_log);
        }
        ProxyKind::Haproxy => {
            let cfg = dir.join("haproxy.cfg");
            std::fs::write(&cfg, haproxy_config(listen, backends))?;
            cmd = Command::new(&setup.haproxy);
            cmd.arg("-db").arg("-f").arg(&cfg);
        }
    }
    cmd.stdin(std::process::Stdio::null());
    let log = dir.join(format!("{kind}.log"));
    // One drill's log per run directory, not every drill's appended.
    let _absent = std::fs::remove_file(&log);
    let mut guard = ChildGuard::spawn(kind.label(), cmd, &log)?;
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        if let Some(status) = guard.exited() {
            bail!(
                "{kind} exited ({status}) before it was ready; its output:\n{}",
                guard.output_tail()
            );
        }
        let err = match load::request_once(listen, tls).await {
            Ok(_) => return Ok(guard),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            bail!(
                "{kind} not proxying on {listen} after {READY_LIMIT:?} (last error: {err}); its output:\n{}",
                guard.output_tail()
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// apilb with the health settings issue 3 recommends: https checks of /readyz with
/// livePath /livez and mutual TLS; everything else at apilb's defaults.
pub(crate) fn apilb_config(listen: SocketAddr, backends: &[SocketAddr], pki: &Pki) -> String {
    let mut s = format!("listen: [\"{listen}\"]\nbackends:\n");
    for (i, b) in backends.iter().enumerate() {
        let _infallible = writeln!(s, "  - {{name: b{}, address: \"{b}\"}}", i + 1);
    }
    let _infallible = write!(
        s,
        "health:\n  kind: https\n  path: /readyz\n  livePath: /livez\n  interval: 2s\n\
         \x20 fastInterval: 500ms\n  timeout: 1s\n  rise: 2\n  fall: 2\n  onDown: close\n\
         \x20 tls:\n    ca: \"{}\"\n    cert: \"{}\"\n    key: \"{}\"\n",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    s
}

/// HAProxy the usual way for kubeadm HA: TCP mode, round robin, `/readyz` over TLS without
/// verification, inter 2s fall 2 rise 2.
pub(crate) fn haproxy_config(listen: SocketAddr, backends: &[SocketAddr]) -> String {
    let mut s = format!(
        "global\n    maxconn 4096\n\n\
         defaults\n    mode tcp\n    retries 1\n    timeout connect 5s\n\
         \x20   timeout client 1h\n    timeout server 1h\n\n\
         frontend apiserver\n    bind {listen}\n    default_backend apiservers\n\n\
         backend apiservers\n    balance roundrobin\n    option httpchk GET /readyz\n\
         \x20   http-check expect status 200\n"
    );
    for (i, b) in backends.iter().enumerate() {
        let _infallible = writeln!(
            s,
            "    server b{} {b} check check-ssl verify none inter 2s fall 2 rise 2",
            i + 1
        );
    }
    s
}

/// Context for errors about a proxy's directory.
pub(crate) fn mkdir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))
}

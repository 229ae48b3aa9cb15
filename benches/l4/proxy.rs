//! The proxies under test: generated configs, process supervision and readiness.
//!
//! Every proxy listens on 127.0.0.1 and balances round-robin over the same 3 loopback
//! backends. Each sample starts a fresh proxy process and stops it afterwards.

use std::fmt;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid as NixPid;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

use crate::backend::MODE_ECHO;
use crate::procfs::{self, Pid};

/// How long a proxy gets to start accepting and proxying.
const READY_LIMIT: Duration = Duration::from_secs(10);
/// How long a proxy gets to exit after SIGTERM before SIGKILL.
const STOP_LIMIT_STEPS: u32 = 60;
const STOP_STEP: Duration = Duration::from_millis(50);

/// A proxy (or the lack of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ProxyKind {
    /// No proxy: the generator spreads connections over the backends itself. Shows what
    /// the generator and backends can do on their own.
    Direct,
    Haproxy,
    Nginx,
    /// apilb with its default `forwarding: auto`.
    Apilb,
    ApilbSplice,
    ApilbCopy,
}

impl ProxyKind {
    pub(crate) const ALL: [ProxyKind; 6] = [
        ProxyKind::Direct,
        ProxyKind::Haproxy,
        ProxyKind::Nginx,
        ProxyKind::Apilb,
        ProxyKind::ApilbSplice,
        ProxyKind::ApilbCopy,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            ProxyKind::Direct => "direct",
            ProxyKind::Haproxy => "haproxy",
            ProxyKind::Nginx => "nginx",
            ProxyKind::Apilb => "apilb",
            ProxyKind::ApilbSplice => "apilb-splice",
            ProxyKind::ApilbCopy => "apilb-copy",
        }
    }

    pub(crate) fn is_apilb(self) -> bool {
        matches!(
            self,
            ProxyKind::Apilb | ProxyKind::ApilbSplice | ProxyKind::ApilbCopy
        )
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
            .ok_or_else(|| {
                let names: Vec<_> = ProxyKind::ALL.iter().map(|k| k.label()).collect();
                format!("unknown proxy {s:?} (one of {})", names.join(", "))
            })
    }
}

/// Where the binaries are and how apilb is configured beyond the generated keys.
pub(crate) struct Bins {
    pub(crate) haproxy: PathBuf,
    pub(crate) nginx: PathBuf,
    /// Loaded with `load_module` when the file exists (Debian builds stream as a module).
    pub(crate) nginx_stream_module: PathBuf,
    pub(crate) apilb: PathBuf,
    /// YAML appended verbatim at the top level of apilb's generated config.
    pub(crate) apilb_extra: Option<String>,
    /// RLIMIT_NOFILE the proxies inherit; their connection limits are sized to fit it.
    pub(crate) nofile: u64,
    /// HAProxy's `nbthread` and nginx's `worker_processes`.
    pub(crate) threads: usize,
    /// apilb's `workers:` value, or `None` to leave the key out (binaries older than the
    /// per-core data plane do not know it).
    pub(crate) apilb_workers: Option<String>,
}

impl Bins {
    /// The binary of `kind`, resolved through PATH; `Err` says why it cannot run.
    pub(crate) fn resolve(&self, kind: ProxyKind) -> Result<Option<PathBuf>, String> {
        let bin = match kind {
            ProxyKind::Direct => return Ok(None),
            ProxyKind::Haproxy => &self.haproxy,
            ProxyKind::Nginx => &self.nginx,
            ProxyKind::Apilb | ProxyKind::ApilbSplice | ProxyKind::ApilbCopy => &self.apilb,
        };
        crate::common::find_executable(bin)
            .map(Some)
            .ok_or_else(|| format!("binary {} not found", bin.display()))
    }
}

/// Addresses connections go to: the proxy's listener, or the backends in turn (direct).
pub(crate) struct Targets {
    addrs: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Targets {
    pub(crate) fn new(addrs: Vec<SocketAddr>) -> Self {
        Self {
            addrs,
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn pick(&self) -> SocketAddr {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.addrs[i % self.addrs.len()]
    }
}

/// A started proxy. Dropping it stops the process and then removes its directory.
pub(crate) struct Running {
    // Field order matters: the process stops before its directory goes.
    guard: Option<ChildGuard>,
    _dir: Option<TempDir>,
    pub(crate) targets: Arc<Targets>,
}

impl Running {
    /// `Some(status)` if the proxy process has exited (it should not, until dropped).
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.guard.as_mut().and_then(ChildGuard::exited)
    }

    /// The proxy's recent output, for error reports.
    pub(crate) fn output_tail(&self) -> String {
        self.guard
            .as_ref()
            .map_or_else(String::new, ChildGuard::output_tail)
    }

    /// The proxy's processes: the main one and its descendants (nginx workers).
    pub(crate) fn pids(&self) -> Vec<Pid> {
        match &self.guard {
            Some(g) => {
                let mut v = vec![g.pid()];
                v.extend(procfs::descendants(g.pid()));
                v
            }
            None => Vec::new(),
        }
    }
}

/// Starts `kind` in front of `backends`, listening on 127.0.0.1:`port`, and waits until a
/// connection through it reaches a backend.
pub(crate) async fn start(
    kind: ProxyKind,
    bins: &Bins,
    backends: &[SocketAddr],
    port: u16,
) -> anyhow::Result<Running> {
    let Some(bin) = bins.resolve(kind).map_err(anyhow::Error::msg)? else {
        return Ok(Running {
            guard: None,
            _dir: None,
            targets: Arc::new(Targets::new(backends.to_vec())),
        });
    };
    let dir = tempfile::Builder::new()
        .prefix(&format!("apilb-l4-{}-", kind.label()))
        .tempdir()
        .context("temp dir")?;
    let d = dir.path();
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cmd = Command::new(&bin);
    match kind {
        ProxyKind::Direct => unreachable!("handled above"),
        ProxyKind::Haproxy => {
            let cfg = d.join("haproxy.cfg");
            fs::write(
                &cfg,
                haproxy_config(listen, backends, bins.nofile, bins.threads),
            )?;
            cmd.arg("-db").arg("-f").arg(&cfg);
        }
        ProxyKind::Nginx => {
            let cfg = d.join("nginx.conf");
            let module = bins
                .nginx_stream_module
                .is_file()
                .then_some(&*bins.nginx_stream_module);
            fs::write(
                &cfg,
                nginx_config(listen, backends, d, module, bins.nofile, bins.threads),
            )?;
            cmd.arg("-p")
                .arg(d)
                .arg("-c")
                .arg(&cfg)
                .arg("-e")
                .arg(d.join("error.log"));
        }
        ProxyKind::Apilb | ProxyKind::ApilbSplice | ProxyKind::ApilbCopy => {
            let forwarding = match kind {
                ProxyKind::ApilbSplice => "splice",
                ProxyKind::ApilbCopy => "copy",
                _ => "auto",
            };
            let cfg = d.join("apilb.yaml");
            fs::write(
                &cfg,
                apilb_config(
                    listen,
                    backends,
                    forwarding,
                    bins.apilb_workers.as_deref(),
                    bins.apilb_extra.as_deref(),
                ),
            )?;
            cmd.arg("serve").arg("--config").arg(&cfg);
            if std::env::var_os("RUST_LOG").is_none() {
                cmd.env("RUST_LOG", "warn");
            }
        }
    }
    let mut guard = ChildGuard::spawn(kind.label(), cmd, &d.join("output.log"))?;
    wait_ready(&mut guard, listen).await?;
    Ok(Running {
        guard: Some(guard),
        _dir: Some(dir),
        targets: Arc::new(Targets::new(vec![listen])),
    })
}

/// HAProxy refuses to start if it cannot raise its fd limit to about 2 x maxconn, so
/// maxconn follows the limit it inherits (never above 100,000).
fn haproxy_config(
    listen: SocketAddr,
    backends: &[SocketAddr],
    nofile: u64,
    threads: usize,
) -> String {
    let maxconn = (nofile.saturating_sub(200) / 2).clamp(1_000, 100_000);
    let mut s = format!(
        "global\n    nbthread {threads}\n    maxconn {maxconn}\n\n\
         defaults\n    mode tcp\n    balance roundrobin\n    timeout connect 3s\n\
         \x20   timeout client 1h\n    timeout server 1h\n\n\
         frontend fe\n    bind {listen}\n    default_backend be\n\n\
         backend be\n"
    );
    for (i, b) in backends.iter().enumerate() {
        s.push_str(&format!("    server b{} {b}\n", i + 1));
    }
    s
}

fn nginx_config(
    listen: SocketAddr,
    backends: &[SocketAddr],
    dir: &Path,
    stream_module: Option<&Path>,
    nofile: u64,
    threads: usize,
) -> String {
    let nofile = nofile.clamp(1_024, 200_000);
    let mut s = String::new();
    if let Some(m) = stream_module {
        s.push_str(&format!("load_module {};\n", m.display()));
    }
    s.push_str(&format!(
        "daemon off;\nmaster_process on;\nworker_processes {threads};\nworker_rlimit_nofile {nofile};\n\
         pid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
         events {{\n    worker_connections {nofile};\n}}\n\
         stream {{\n    upstream be {{\n",
        dir = dir.display()
    ));
    for b in backends {
        s.push_str(&format!("        server {b};\n"));
    }
    s.push_str(&format!(
        "    }}\n    server {{\n        listen {listen};\n        proxy_pass be;\n\
         \x20       proxy_connect_timeout 3s;\n        proxy_timeout 1h;\n    }}\n}}\n"
    ));
    s
}

fn apilb_config(
    listen: SocketAddr,
    backends: &[SocketAddr],
    forwarding: &str,
    workers: Option<&str>,
    extra: Option<&str>,
) -> String {
    let mut s = format!("listen: [\"{listen}\"]\nbackends:\n");
    if let Some(w) = workers {
        s.insert_str(0, &format!("workers: {w}\n"));
    }
    for (i, b) in backends.iter().enumerate() {
        s.push_str(&format!("  - {{name: b{}, address: \"{b}\"}}\n", i + 1));
    }
    s.push_str(&format!(
        "balance: round-robin\nmaxConnections: 100000\nforwarding: {forwarding}\n\
         timeouts: {{connect: 3s, idle: 1h, drain: 5s}}\n"
    ));
    if let Some(extra) = extra {
        s.push_str(extra);
        if !extra.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

/// Polls until a connection through `listen` is echoed by a backend, the process exits,
/// or READY_LIMIT passes.
async fn wait_ready(guard: &mut ChildGuard, listen: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        if let Some(status) = guard.exited() {
            bail!(
                "{} exited ({status}) before it was ready; its output:\n{}",
                guard.name,
                guard.output_tail()
            );
        }
        let last_err = match probe(listen).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            bail!(
                "{} not proxying on {listen} after {READY_LIMIT:?} (last error: {last_err}); its output:\n{}",
                guard.name,
                guard.output_tail()
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// One echo round trip through `addr`.
pub(crate) async fn probe(addr: SocketAddr) -> std::io::Result<()> {
    let msg = [MODE_ECHO; 16];
    let attempt = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(&msg).await?;
        let mut back = [0u8; 16];
        s.read_exact(&mut back).await?;
        if back != msg {
            return Err(std::io::Error::other("echo mismatch"));
        }
        Ok(())
    };
    match timeout(Duration::from_secs(1), attempt).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "timed out",
        )),
    }
}

/// A child process that is stopped when dropped: SIGTERM, a bounded wait, then SIGKILL
/// for it and every descendant it had (nginx workers).
pub(crate) struct ChildGuard {
    pub(crate) name: String,
    child: Child,
    output: Option<PathBuf>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed and stdout/stderr going to `output`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, output: &Path) -> anyhow::Result<Self> {
        let out = File::create(output).with_context(|| format!("create {}", output.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {name} ({:?})", cmd.get_program()))?;
        Ok(Self {
            name: name.to_string(),
            child,
            output: Some(output.to_path_buf()),
        })
    }

    /// Wraps an already spawned child (whose stdio the caller set up).
    pub(crate) fn adopt(name: &str, child: Child) -> Self {
        Self {
            name: name.to_string(),
            child,
            output: None,
        }
    }

    pub(crate) fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    pub(crate) fn pid(&self) -> Pid {
        self.child.id() as Pid
    }

    /// `Some(status)` once the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines of the process's output file.
    pub(crate) fn output_tail(&self) -> String {
        let Some(path) = &self.output else {
            return String::from("(not captured)");
        };
        match fs::read_to_string(path) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(20)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", path.display()),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let pid = self.pid();
        let kids = procfs::descendants(pid);
        if let Err(e) = kill(NixPid::from_raw(pid), Signal::SIGTERM) {
            eprintln!("warning: SIGTERM to {} ({pid}): {e}", self.name);
        }
        for _ in 0..STOP_LIMIT_STEPS {
            if self.exited().is_some() {
                break;
            }
            std::thread::sleep(STOP_STEP);
        }
        if self.exited().is_none() {
            eprintln!("warning: {} ({pid}) ignored SIGTERM; killing it", self.name);
            if let Err(e) = self.child.kill() {
                eprintln!("warning: SIGKILL to {} ({pid}): {e}", self.name);
            }
            if let Err(e) = self.child.wait() {
                eprintln!("warning: wait for {} ({pid}): {e}", self.name);
            }
        }
        for k in kids {
            // Gone already is the normal case (ESRCH).
            let _gone = kill(NixPid::from_raw(k), Signal::SIGKILL);
        }
    }
}

//! What the bench harnesses (`l4`, `drill`) share: running a harness on a tokio runtime until
//! it ends or a stop signal arrives, finding and naming the peers' binaries, and picking
//! listen ports.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// Run `harness` on a two-worker runtime. SIGINT or SIGTERM drops it (and with it every
/// process guard it holds) and exits 130; an error is printed and exits 1.
pub(crate) fn run_until_interrupted(harness: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = harness => r.map_err(|e| (e, ExitCode::FAILURE)),
            sig = interrupted() => Err((anyhow::anyhow!("interrupted by {sig}"), ExitCode::from(130))),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((e, code)) => {
            eprintln!("error: {e:#}");
            code
        }
    }
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ignored = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// `bin` itself if it is a path, else the first match on PATH.
pub(crate) fn find_executable(bin: &Path) -> Option<PathBuf> {
    if bin.components().count() > 1 {
        return bin.is_file().then(|| bin.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(bin))
        .find(|p| p.is_file())
}

/// First line of `bin`'s version output (`flag` is `-v`, `--version`...).
pub(crate) fn version(bin: &Path, flag: &str) -> String {
    match Command::new(bin).arg(flag).stdin(Stdio::null()).output() {
        Ok(o) => {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("?")
                .trim()
                .to_owned()
        }
        Err(e) => format!("{} ({e})", bin.display()),
    }
}

/// Hands out listen ports below the ephemeral range (32768+), so that no client socket
/// can hold one.
pub(crate) struct PortPicker {
    next: u16,
}

impl PortPicker {
    pub(crate) fn new() -> Self {
        Self {
            next: 20_000 + (std::process::id() % 5_000) as u16,
        }
    }

    pub(crate) fn pick(&mut self) -> anyhow::Result<u16> {
        for _ in 0..2_000 {
            let port = self.next;
            self.next = if self.next >= 31_000 {
                20_000
            } else {
                self.next + 1
            };
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
        anyhow::bail!("no free port in 20000-31000 on 127.0.0.1")
    }
}

/// The commit of the tree the harness runs in, with `-dirty` when it has uncommitted
/// changes, for the report header (results carry the commit they were measured at).
pub(crate) fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{c}-dirty") } else { c }
        }
        None => "unknown".to_owned(),
    }
}

//! Child processes of the drill: a guard that stops a process when dropped (also on error
//! and on SIGINT, since dropping the run future drops every guard), and the stand-in
//! apiserver processes with the signals the events send them.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::{Instant, sleep};

use crate::pki::Pki;

/// How long a process gets to exit after SIGTERM before SIGKILL.
const STOP_LIMIT: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(1);

/// A child process stopped when dropped: SIGCONT (in case it is stopped), SIGTERM, a
/// bounded wait, then SIGKILL. Only this process is signalled, by its pid.
pub(crate) struct ChildGuard {
    pub(crate) name: String,
    child: Child,
    output: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr appended to `output`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, output: &Path) -> anyhow::Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(output)
            .with_context(|| format!("open {}", output.display()))?;
        cmd.stdout(out.try_clone()?).stderr(out);
        if cmd.get_program().is_empty() {
            bail!("{name}: empty program");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start {name} ({:?})", cmd.get_program()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            output: output.to_path_buf(),
        })
    }

    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub(crate) fn signal(&self, sig: Signal) -> anyhow::Result<()> {
        kill(self.pid(), sig).with_context(|| format!("{sig} to {} ({})", self.name, self.pid()))
    }

    /// `Some(status)` once the process has exited (and is reaped).
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits (polling, bounded) until the process has exited and is reaped.
    pub(crate) async fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.exited() {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                bail!("{} did not exit within {limit:?}", self.name);
            }
            sleep(POLL).await;
        }
    }

    /// The last lines of the process's output.
    pub(crate) fn output_tail(&self) -> String {
        match std::fs::read_to_string(&self.output) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(20)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.output.display()),
        }
    }

    pub(crate) fn output_path(&self) -> &Path {
        &self.output
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let pid = self.pid();
        // A stopped process would sit on SIGTERM: wake it first. Errors mean it is gone.
        let _cont = kill(pid, Signal::SIGCONT);
        let _term = kill(pid, Signal::SIGTERM);
        let deadline = std::time::Instant::now() + STOP_LIMIT;
        while std::time::Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("warning: {} ({pid}) ignored SIGTERM; killing it", self.name);
        if let Err(e) = self.child.kill() {
            eprintln!("warning: SIGKILL to {} ({pid}): {e}", self.name);
        }
        if let Err(e) = self.child.wait() {
            eprintln!("warning: wait for {} ({pid}): {e}", self.name);
        }
    }
}

/// How to start a stand-in apiserver.
pub(crate) struct StandInSpec {
    pub(crate) exe: PathBuf,
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    pub(crate) shutdown_delay: Duration,
    pub(crate) log: PathBuf,
}

/// A running stand-in apiserver process. Its stdin is a pipe the drill holds: closing it
/// (drop) makes the stand-in exit; the guard then reaps it or kills it.
pub(crate) struct StandIn {
    // Field order: stdin closes first, then the guard stops what is left.
    stdin: Option<ChildStdin>,
    guard: ChildGuard,
}

impl StandIn {
    /// Starts it and waits (bounded) until it listens.
    pub(crate) fn start(spec: &StandInSpec, pki: &Pki) -> anyhow::Result<Self> {
        let mut cmd = Command::new(&spec.exe);
        cmd.arg("apiserver")
            .arg("--name")
            .arg(&spec.name)
            .arg("--listen")
            .arg(spec.addr.to_string())
            .arg("--cert")
            .arg(&pki.server_cert)
            .arg("--key")
            .arg(&pki.server_key)
            .arg("--ca")
            .arg(&pki.ca)
            .arg("--shutdown-delay")
            .arg(humantime::format_duration(spec.shutdown_delay).to_string())
            .stdin(Stdio::piped());
        // stdout is the readiness pipe; stderr goes to the log.
        let log = File::options()
            .create(true)
            .append(true)
            .open(&spec.log)
            .with_context(|| format!("open {}", spec.log.display()))?;
        cmd.stdout(Stdio::piped()).stderr(log);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start stand-in {}", spec.name))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let guard = ChildGuard {
            name: spec.name.clone(),
            child,
            output: spec.log.clone(),
        };
        let s = Self { stdin, guard };
        let mut line = String::new();
        // Bounded: the child prints one line once bound, or exits (EOF).
        if let Some(out) = stdout {
            BufReader::new(out).read_line(&mut line)?;
        }
        if line.trim() != "ready" {
            bail!(
                "stand-in {} did not start; its log:\n{}",
                spec.name,
                s.guard.output_tail()
            );
        }
        Ok(s)
    }

    pub(crate) fn guard(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }

    /// SIGKILL, then wait until the process is gone (its sockets are closed by then).
    pub(crate) async fn kill(&mut self) -> anyhow::Result<()> {
        self.guard.signal(Signal::SIGKILL)?;
        self.guard.wait_exit(Duration::from_secs(5)).await?;
        Ok(())
    }

    /// SIGSTOP, then wait until the kernel reports it stopped.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        self.guard.signal(Signal::SIGSTOP)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if process_state(self.guard.pid()) == Some('T') {
                return Ok(());
            }
            sleep(POLL).await;
        }
        bail!("{} not stopped 5 s after SIGSTOP", self.guard.name)
    }

    pub(crate) fn resume(&mut self) -> anyhow::Result<()> {
        self.guard.signal(Signal::SIGCONT)
    }

    pub(crate) fn drain(&mut self) -> anyhow::Result<()> {
        self.guard.signal(Signal::SIGUSR1)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        drop(self.stdin.take());
    }
}

/// The state letter of /proc/PID/stat (R, S, T, Z, ...).
fn process_state(pid: Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces or ')': the state follows the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

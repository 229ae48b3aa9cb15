//! Test support: stand-in backends on 127.0.0.1, LB configs, a spawned `apilb` process, and
//! bounded waiting on conditions (no blind sleeps).

#![allow(dead_code, unreachable_pub)]

pub mod apiserver;
pub mod dns;
pub mod netns;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Poll `cond` every 20 ms until it holds; panic with `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind ephemeral");
    l.local_addr().expect("local addr").port()
}

/// An address nothing listens on (bound and closed at once).
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A stand-in backend: on each connection it sends `"<name>\n"`, then echoes every byte,
/// and passes EOF on (shutdown of its write side) when the client's side ends.
pub struct EchoBackend {
    pub name: String,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EchoBackend {
    pub async fn start(name: &str) -> Self {
        Self::start_on(name, "127.0.0.1:0".parse().expect("addr")).await
    }

    pub async fn start_on(name: &str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().expect("local addr");
        let tag = format!("{name}\n");
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let tag = tag.clone();
                tokio::spawn(async move {
                    if s.write_all(tag.as_bytes()).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = s.split();
                    if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                        let _ = w.shutdown().await;
                    }
                });
            }
        });
        Self {
            name: name.to_owned(),
            addr,
            task,
        }
    }

    /// Stop accepting (the listening socket closes; open connections go on).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connect through the LB and read the backend's name line.
pub async fn connect_tagged(lb: SocketAddr) -> (TcpStream, String) {
    let s = TcpStream::connect(lb).await.expect("connect to LB");
    let mut r = tokio::io::BufReader::new(s);
    let mut line = String::new();
    tokio::time::timeout(WAIT, r.read_line(&mut line))
        .await
        .expect("backend name within the wait")
        .expect("read backend name");
    assert!(r.buffer().is_empty(), "nothing but the name before echo");
    (r.into_inner(), line.trim_end().to_owned())
}

/// Which backend a new connection through `lb` lands on.
pub async fn which_backend(lb: SocketAddr) -> String {
    connect_tagged(lb).await.1
}

/// Send `msg` and read it back (the echo backend's answer).
pub async fn roundtrip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.expect("write");
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(WAIT, s.read_exact(&mut back))
        .await
        .expect("echo within the wait")
        .expect("read echo");
    assert_eq!(back, msg);
}

/// Read until EOF or error; true if the connection ended within `limit`.
pub async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let end = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, end).await.is_ok()
}

/// An LB config text.
pub fn lb_yaml(listen: &[SocketAddr], backends: &[(&str, SocketAddr)], extra: &str) -> String {
    let listen: Vec<String> = listen.iter().map(|a| format!("\"{a}\"")).collect();
    let mut s = format!("listen: [{}]\nbackends:\n", listen.join(", "));
    for (name, addr) in backends {
        s.push_str(&format!("  - name: {name}\n    address: \"{addr}\"\n"));
    }
    s.push_str(extra);
    s
}

/// A running `apilb` process; killed on drop. Its stderr is collected for assertions.
pub struct LbProcess {
    pub child: Child,
    pub config: PathBuf,
    log: Arc<Mutex<String>>,
    /// Reads stderr until EOF.
    reader: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl LbProcess {
    /// Write `yaml` to a file and run `apilb serve` on it.
    pub fn spawn(yaml: &str) -> Self {
        Self::spawn_with(yaml, |_| {})
    }

    /// As [`spawn`](Self::spawn), with a hook to adjust the command (e.g. a wrapper).
    pub fn spawn_with(yaml: &str, adjust: impl FnOnce(&mut Command)) -> Self {
        Self::spawn_base(yaml, Command::new(env!("CARGO_BIN_EXE_apilb")), adjust)
    }

    /// As [`spawn`](Self::spawn), under `prlimit` with both the soft and the hard
    /// open-file limit at `n`, so apilb cannot raise it (util-linux).
    pub fn spawn_with_nofile(yaml: &str, n: u32) -> Self {
        Self::spawn_with(yaml, |cmd| {
            let program = cmd.get_program().to_owned();
            let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg(program).args(args);
            c.env("RUST_LOG", "info")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            *cmd = c;
        })
    }

    /// As [`spawn`](Self::spawn), inside network namespace `ns` (`ip netns exec` execs, so
    /// the child's pid is apilb's).
    pub fn spawn_in_netns(ns: &str, yaml: &str) -> Self {
        Self::spawn_in_netns_with(ns, yaml, |_| {})
    }

    /// As [`spawn_in_netns`](Self::spawn_in_netns), with a hook to adjust the command.
    pub fn spawn_in_netns_with(ns: &str, yaml: &str, adjust: impl FnOnce(&mut Command)) -> Self {
        let mut base = Command::new("ip");
        base.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_apilb")]);
        Self::spawn_base(yaml, base, adjust)
    }

    fn spawn_base(yaml: &str, mut cmd: Command, adjust: impl FnOnce(&mut Command)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("apilb.yaml");
        std::fs::write(&config, yaml).expect("write config");
        cmd.args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        adjust(&mut cmd);
        let mut child = cmd.spawn().expect("spawn apilb");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr piped");
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[apilb] {line}");
                sink.lock().expect("log lock").push_str(&(line + "\n"));
            }
        });
        Self {
            child,
            config,
            log,
            reader: Some(reader),
            _dir: dir,
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Wait until its log contains `needle` (bounded).
    pub async fn wait_for_log(&self, needle: &str) {
        wait_until(WAIT, &format!("log line {needle:?}"), || async {
            self.log().contains(needle)
        })
        .await;
    }

    /// How many times `needle` occurs in the log.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Replace its config file (atomically, as an operator's tooling would).
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, yaml).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("send signal");
    }

    /// Wait for the process to exit (bounded); its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Its last lines may still be in the pipe: read them all before returning,
                // so the log is complete (stderr reaches EOF once the process is gone).
                if let Some(reader) = self.reader.take() {
                    reader.join().expect("stderr reader");
                }
                return status.code();
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("apilb did not exit within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for LbProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until `addr` accepts TCP connections.
pub async fn wait_listening(addr: SocketAddr) {
    wait_until(WAIT, &format!("{addr} accepting"), || async {
        TcpStream::connect(addr).await.is_ok()
    })
    .await;
}

/// `promtool check metrics` finds nothing to say about `body` (skips without promtool,
/// through [`have_tool`]).
pub fn promtool_clean(body: &str) {
    if !have_tool("promtool", "prometheus") {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), body.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool output");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}"
    );
}

/// A path inside the repository.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Whether an external tool is on PATH. When it is not, the calling test skips (or fails
/// under APILB_REQUIRE_PRIVILEGED=1) through [`skip_or_fail`].
pub fn have_tool(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    if !found {
        skip_or_fail(&format!("{tool} not found (apt-get install {package})"));
    }
    found
}

/// The one way a test skips: with `APILB_REQUIRE_PRIVILEGED=1` (set by `.ci/run`) it panics
/// instead, naming the test and `reason`; otherwise it prints the reason and appends it to
/// [`skip_log`], which `.ci/run` prints at the end (cargo hides a passing test's stderr).
/// Returns only when skipping; the caller then returns without asserting.
pub fn skip_or_fail(reason: &str) {
    let current = std::thread::current();
    // libtest names each test's thread after the test.
    let test = current.name().unwrap_or("<unnamed test thread>");
    if std::env::var("APILB_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{test}: {reason} (APILB_REQUIRE_PRIVILEGED=1 turns this skip into a failure)");
    }
    let line = format!("skipped {test}: {reason}\n");
    eprint!("{line}");
    let path = skip_log();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = written {
        eprintln!("{}: cannot record the skip: {e}", path.display());
    }
}

/// Where skips are recorded: `$APILB_SKIP_LOG`, else `skipped-tests.log` in cargo's
/// per-target temporary directory (`target/tmp`).
pub fn skip_log() -> PathBuf {
    std::env::var_os("APILB_SKIP_LOG").map_or_else(
        || Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.log"),
        PathBuf::from,
    )
}

/// Run the apilb binary with `args` to completion.
pub fn apilb_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_apilb"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run apilb")
}

/// A plain HTTP/1.1 GET against the metrics endpoint: status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, "GET", path).await
}

/// A plain HTTP/1.1 request with an empty body: status and body.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let s = TcpStream::connect(addr).await.expect("connect");
    http_on(s, method, path).await
}

/// As [`http`], over a stream the caller connected (e.g. from a chosen local address).
pub async fn http_on(mut s: TcpStream, method: &str, path: &str) -> (u16, String) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut resp = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut resp))
        .await
        .expect("answer within the wait")
        .expect("read");
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_owned())
}

//! `apilb demo`: the README's run command, driven as a user would: read its banner, talk
//! through the load balancer with kubectl and the issued admin.conf, type commands, Ctrl-C.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;

use crate::support::*;

struct Demo {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Demo {
    fn out(&self) -> String {
        self.out.lock().expect("lock").clone()
    }

    async fn wait_out(&self, needle: &str) {
        wait_until(WAIT, &format!("demo output {needle:?}"), || async {
            self.out().contains(needle)
        })
        .await;
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write command");
        stdin.flush().expect("flush");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubectl(dir: &std::path::Path, path: &str) -> std::process::Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.join("master-1/admin.conf"))
        .args(["get", "--raw", path])
        .output()
        .expect("run kubectl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_kubectl_and_reacts_to_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_apilb"))
        .arg("demo")
        .arg("--dir")
        .arg(dir.path())
        .args(["--listen", &listen.to_string()])
        .args(["--metrics-address", &metrics.to_string()])
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn demo");
    let out = Arc::new(Mutex::new(String::new()));
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let sink = Arc::clone(&out);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                eprintln!("[demo] {line}");
                sink.lock().expect("lock").push_str(&(line + "\n"));
            }
        });
    }
    let mut demo = Demo { child, out };
    demo.wait_out("demo ready").await;
    let banner = demo.out();
    assert!(
        banner.contains(&format!("load balancer   https://{listen}")),
        "{banner}"
    );
    assert!(dir.path().join("master-1/pki/apiserver.crt").is_file());
    assert!(dir.path().join("lb/apilb.yaml").is_file());
    let m = metrics.to_string();
    let status = || async {
        let out = apilb_cmd(&["status", "--json", "--metrics-address", &m]);
        serde_json::from_slice::<apilb::admin::Status>(&out.stdout).expect("status JSON")
    };
    let state_of = |s: &apilb::admin::Status, n: &str| {
        s.backends
            .iter()
            .find(|b| b.name == n)
            .map(|b| b.state.clone())
            .expect("backend")
    };

    // Through the LB with the issued admin.conf: Go's TLS stack accepts the issued chain and
    // the LB address in the apiserver certificate's SANs.
    if have_tool("kubectl", "kubernetes-client") {
        let out = kubectl(dir.path(), "/readyz");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok", "{out:?}");
        let out = kubectl(dir.path(), "/version");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("v1.31.2-apilb-demo"),
            "{out:?}"
        );
    }
    wait_until(WAIT, "every stand-in up", || async {
        let s = status().await;
        ["master-1", "master-2", "master-3"]
            .iter()
            .all(|n| state_of(&s, n) == "up")
    })
    .await;

    // The banner's `apilb status` hint works as printed: apilb is not on the test's PATH,
    // so it names the running binary by its full path.
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_apilb")).expect("canonical binary path");
    let hint = format!("  {} status --metrics-address {metrics}", exe.display());
    assert!(
        banner.lines().any(|l| l == hint),
        "{hint:?} not in\n{banner}"
    );
    let words: Vec<&str> = hint.split_whitespace().collect();
    let out = Command::new(words[0])
        .args(&words[1..])
        .output()
        .expect("run the hint");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("master-3"),
        "{out:?}"
    );

    demo.send("drain 1");
    demo.wait_out("master-1: shutting down gracefully").await;
    wait_until(WAIT, "master-1 drains", || async {
        state_of(&status().await, "master-1") == "drain"
    })
    .await;
    demo.send("stop 2");
    wait_until(WAIT, "master-2 down", || async {
        state_of(&status().await, "master-2") == "down"
    })
    .await;
    if have_tool("kubectl", "kubernetes-client") {
        // master-3 alone still answers through the LB.
        let out = kubectl(dir.path(), "/version");
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"servedBy\": \"master-3\""));
    }
    demo.send("start 2");
    wait_until(WAIT, "master-2 up again", || async {
        state_of(&status().await, "master-2") == "up"
    })
    .await;
    // hang 3, with the LB's checks and a client held by the hung stand-in, then start 3:
    // it starts the first time.
    demo.send("hang 3");
    demo.wait_out("master-3: hung").await;
    let _held = tokio::net::TcpStream::connect("127.0.0.13:6443")
        .await
        .expect("connect to the hung stand-in");
    wait_until(WAIT, "master-3 down (checks get no answer)", || async {
        state_of(&status().await, "master-3") == "down"
    })
    .await;
    demo.send("start 3");
    demo.wait_out("master-3: started").await;
    wait_until(WAIT, "master-3 up again", || async {
        state_of(&status().await, "master-3") == "up"
    })
    .await;
    assert!(!demo.out().contains("cannot listen"), "{}", demo.out());

    demo.send("status");
    demo.wait_out("stand-ins: master-1").await;
    demo.send("bogus");
    demo.wait_out("unknown command \"bogus\"").await;

    // Ctrl-C: a clean stop.
    let pid = nix::unistd::Pid::from_raw(demo.child.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGINT).expect("SIGINT");
    let deadline = tokio::time::Instant::now() + WAIT;
    let code = loop {
        if let Some(status) = demo.child.try_wait().expect("try_wait") {
            break status.code();
        }
        assert!(tokio::time::Instant::now() < deadline, "demo did not stop");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(code, Some(0), "{}", demo.out());
    demo.wait_out("stopped (").await;
}

/// `hang N` then `start N`: restarting a hung stand-in works the first time, even with a
/// client connection held by the hung one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_standin_with_a_held_connection_starts_again_at_once() {
    use apilb::demo::standin::{Mode, Standin};

    use crate::support::apiserver::{HttpsConn, TestPki};

    let pki = TestPki::new();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let standin = Arc::new(Standin::new("master-1", addr, &pki.master_pki_dir()).expect("new"));
    standin.start().await.expect("first start");
    for round in 1..=5 {
        let mut conn = HttpsConn::open(addr, &pki).await;
        assert_eq!(
            conn.get("/readyz").await,
            Ok((200, "ok".to_owned())),
            "round {round}"
        );
        drop(conn);
        wait_until(WAIT, "no connection left", || async {
            standin.open_connections() == 0
        })
        .await;
        standin.hang();
        // A client reaches the hung stand-in: its TLS handshake is never answered.
        let client = tokio::spawn({
            let client_config = pki.client_config();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let name = rustls::pki_types::ServerName::try_from("kubernetes").expect("name");
                tokio_rustls::TlsConnector::from(client_config)
                    .connect(name, tcp)
                    .await
                    .map(|_| ())
            }
        });
        wait_until(WAIT, "the hung stand-in holds the client", || async {
            standin.open_connections() == 1
        })
        .await;
        assert_eq!(standin.mode(), Mode::Hung);

        standin
            .start()
            .await
            .unwrap_or_else(|e| panic!("round {round}: start after hang: {e}"));
        assert_eq!(standin.mode(), Mode::Serving, "round {round}");
        let mut conn = HttpsConn::open(addr, &pki).await;
        assert_eq!(
            conn.get("/readyz").await,
            Ok((200, "ok".to_owned())),
            "round {round}: serving again"
        );
        drop(conn);
        // The restart closed the hung connection.
        let held = tokio::time::timeout(WAIT, client)
            .await
            .expect("the held client sees its connection end")
            .expect("join");
        assert!(held.is_err(), "round {round}: {held:?}");
    }
}

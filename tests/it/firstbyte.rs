//! Hung backends judged by their first byte (`timeouts.firstByte`): a client whose TLS
//! handshake a backend leaves unanswered, or answers by closing, is replayed to the next
//! backend with the same bytes; plain-text bytes and anything after a backend's first byte
//! are never replayed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use apilb::config::Config;
use apilb::control::Server;
use apilb::health::state::State;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use crate::support::*;

/// How a stand-in backend behaves once a client connected.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Accepts and never reads or writes (a SIGSTOPped apiserver, seen from the network).
    Hung,
    /// Closes at once.
    Closes,
    /// Echoes what it reads, prefixed with its name, after the client spoke.
    Answers(&'static str),
    /// Sends one byte, then hangs.
    OneByteThenHangs,
}

/// A backend that records every byte it received, per connection.
struct Backend {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Backend {
    async fn start(behaviour: Behaviour) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = Arc::clone(&received);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let rec = Arc::clone(&rec);
                match behaviour {
                    Behaviour::Hung => held.push(s),
                    Behaviour::Closes => drop(s),
                    Behaviour::OneByteThenHangs => {
                        let _ = s.write_all(b"!").await;
                        held.push(s);
                    }
                    Behaviour::Answers(name) => {
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 4096];
                            let i = {
                                let mut r = rec.lock().await;
                                r.push(Vec::new());
                                r.len() - 1
                            };
                            while let Ok(n) = s.read(&mut buf).await {
                                if n == 0 {
                                    return;
                                }
                                rec.lock().await[i].extend_from_slice(&buf[..n]);
                                let mut reply = format!("{name}:").into_bytes();
                                reply.extend_from_slice(&buf[..n]);
                                if s.write_all(&reply).await.is_err() {
                                    return;
                                }
                            }
                        });
                    }
                }
            }
        });
        Self {
            addr,
            received,
            _task: task,
        }
    }
}

/// A TLS handshake record as a client's first flight (content type 22, TLS 1.0 record
/// version, as real ClientHellos carry).
fn client_hello() -> Vec<u8> {
    let body: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    let mut r = vec![0x16, 0x03, 0x01];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(&body);
    r
}

/// An LB whose first pick (round-robin) is `first`, then `second`.
async fn lb(first: SocketAddr, second: SocketAddr, first_byte: &str) -> Server {
    let yaml = format!(
        "listen: [\"127.0.0.1:0\"]\nbackends:\n  - {{name: first, address: \"{first}\"}}\n  - {{name: second, address: \"{second}\"}}\n\
         balance: round-robin\nhealth: {{kind: none}}\ntimeouts: {{firstByte: {first_byte}}}\n"
    );
    let config = Config::from_yaml(&yaml, "test.yaml").expect("valid");
    Server::start(config, std::path::Path::new("test.yaml"))
        .await
        .expect("server starts")
}

/// Read exactly `n` bytes or fail after `limit`.
async fn read_n(s: &mut TcpStream, n: usize, limit: Duration) -> Result<Vec<u8>, String> {
    let mut got = vec![0u8; n];
    match tokio::time::timeout(limit, s.read_exact(&mut got)).await {
        Ok(Ok(_)) => Ok(got),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

fn failures(lb: &Server, backend: &str, reason: &str) -> u64 {
    lb.metrics()
        .connect_failures
        .with_label_values(&[backend, reason])
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_handshake_is_replayed_to_the_next_backend() {
    let hung = Backend::start(Behaviour::Hung).await;
    let good = Backend::start(Behaviour::Answers("good")).await;
    let lb = lb(hung.addr, good.addr, "300ms").await;
    let mut c = TcpStream::connect(lb.local_addrs()[0])
        .await
        .expect("connect");
    let hello = client_hello();
    let started = tokio::time::Instant::now();
    c.write_all(&hello).await.expect("write");
    let want = [b"good:".as_slice(), &hello].concat();
    let got = read_n(&mut c, want.len(), WAIT).await.expect("answer");
    assert_eq!(got, want, "the good backend got the very same bytes");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "replayed only after firstByte"
    );
    assert_eq!(*good.received.lock().await, vec![hello.clone()]);
    assert_eq!(failures(&lb, "first", "no_first_byte"), 1);
    // passiveFall 1 (the default): the silent backend is down at once.
    assert_eq!(
        lb.backends().find("first").map(|b| b.state()),
        Some(State::Down)
    );
    // The connection goes on with the good backend.
    c.write_all(b"more").await.expect("write");
    assert_eq!(read_n(&mut c, 9, WAIT).await.expect("answer"), b"good:more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_closes_before_answering_is_replayed_too() {
    let closes = Backend::start(Behaviour::Closes).await;
    let good = Backend::start(Behaviour::Answers("good")).await;
    let lb = lb(closes.addr, good.addr, "5s").await;
    let mut c = TcpStream::connect(lb.local_addrs()[0])
        .await
        .expect("connect");
    let hello = client_hello();
    c.write_all(&hello).await.expect("write");
    let want = [b"good:".as_slice(), &hello].concat();
    let started = tokio::time::Instant::now();
    assert_eq!(
        read_n(&mut c, want.len(), WAIT).await.expect("answer"),
        want
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no wait for firstByte when the backend closed"
    );
    assert_eq!(failures(&lb, "first", "closed_early"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_is_never_replayed() {
    let hung = Backend::start(Behaviour::Hung).await;
    let good = Backend::start(Behaviour::Answers("good")).await;
    let lb = lb(hung.addr, good.addr, "200ms").await;
    let mut c = TcpStream::connect(lb.local_addrs()[0])
        .await
        .expect("connect");
    c.write_all(b"POST /api/v1/namespaces HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(
        read_n(&mut c, 1, Duration::from_secs(1)).await,
        Err("timed out".into()),
        "the request stays with the backend it was sent to"
    );
    assert!(good.received.lock().await.is_empty());
    assert_eq!(failures(&lb, "first", "no_first_byte"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_replayed_once_the_backend_spoke() {
    let speaks = Backend::start(Behaviour::OneByteThenHangs).await;
    let good = Backend::start(Behaviour::Answers("good")).await;
    let lb = lb(speaks.addr, good.addr, "200ms").await;
    let mut c = TcpStream::connect(lb.local_addrs()[0])
        .await
        .expect("connect");
    c.write_all(&client_hello()).await.expect("write");
    assert_eq!(
        read_n(&mut c, 1, WAIT).await.expect("first byte"),
        b"!",
        "the backend's byte reaches the client"
    );
    assert_eq!(
        read_n(&mut c, 1, Duration::from_secs(1)).await,
        Err("timed out".into())
    );
    assert!(good.received.lock().await.is_empty());
    assert_eq!(failures(&lb, "first", "no_first_byte"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_byte_zero_turns_the_judgement_off() {
    let hung = Backend::start(Behaviour::Hung).await;
    let good = Backend::start(Behaviour::Answers("good")).await;
    let lb = lb(hung.addr, good.addr, "0s").await;
    let mut c = TcpStream::connect(lb.local_addrs()[0])
        .await
        .expect("connect");
    c.write_all(&client_hello()).await.expect("write");
    assert_eq!(
        read_n(&mut c, 1, Duration::from_secs(1)).await,
        Err("timed out".into())
    );
    assert!(good.received.lock().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_without_a_byte_releases_its_backend_at_once() {
    // A port probe (connect, close) used to hold its backend leg for all of firstByte.
    let first = Backend::start(Behaviour::Answers("first")).await;
    let second = Backend::start(Behaviour::Answers("second")).await;
    let lb = lb(first.addr, second.addr, "30s").await;
    let c = TcpStream::connect(lb.local_addrs()[0])
        .await
        .expect("connect");
    wait_until(WAIT, "the probe is proxied", || async {
        lb.backends().find("first").map(|b| b.active()) == Some(1)
    })
    .await;
    drop(c);
    // WAIT (10 s) is well under the 30 s firstByte the leg was held for before.
    wait_until(WAIT, "the probe's backend leg is closed", || async {
        lb.active_connections() == 0 && lb.backends().find("first").map(|b| b.active()) == Some(0)
    })
    .await;
    assert_eq!(failures(&lb, "first", "no_first_byte"), 0);
    assert_eq!(failures(&lb, "first", "closed_early"), 0);
}

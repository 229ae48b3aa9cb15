//! The status page (`GET /` on the admin listener) in a real browser: headless Chromium
//! loads it from a running `apilb serve` and the test reads the DOM its script built.
//!
//! Run: `cargo test --test it statuspage` (needs `chromium`: `apt-get install chromium`;
//! without it the browser test skips, or fails under `APILB_REQUIRE_PRIVILEGED=1`).
//! `APILB_STATUS_SCREENSHOT=docs/status-page.png` also writes the README's screenshot.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::support::apiserver::*;
use crate::support::*;

/// The longest a browser run may take (start-up on a busy machine included).
const BROWSER: Duration = Duration::from_secs(90);

/// A watched certificate whose file name is markup: the page must show it as text.
const HOSTILE: &str = "<img src=x onerror=\"document.body.dataset.pwned=1\">&amp;.pem";

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

struct Setup {
    _pki: TestPki,
    _servers: Vec<FakeApiserver>,
    _dir: tempfile::TempDir,
    lb: LbProcess,
    metrics: SocketAddr,
    hostile: PathBuf,
}

async fn setup() -> Setup {
    let pki = TestPki::new();
    let servers = vec![
        FakeApiserver::start("master-1", &pki, true).await,
        FakeApiserver::start("master-2", &pki, true).await,
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let hostile = dir.path().join(HOSTILE);
    std::fs::copy(&pki.client_cert, &hostile).expect("copy certificate");
    let listen = addr();
    let metrics = addr();
    let backends: Vec<(&str, SocketAddr)> =
        servers.iter().map(|s| (s.name.as_str(), s.addr)).collect();
    // YAML single quotes: the path holds double quotes and no single one.
    let extra = format!(
        "{}metrics:\n  listen: \"{metrics}\"\n  watchCertificates: ['{}']\n",
        pki.health_yaml("  interval: 200ms\n  fastInterval: 100ms\n"),
        hostile.display()
    );
    let lb = LbProcess::spawn(&lb_yaml(&[listen], &backends, &extra));
    wait_listening(listen).await;
    wait_listening(metrics).await;
    wait_until(WAIT, "both backends up", || async {
        let (_, body) = http_get(metrics, "/status").await;
        body.matches("\"state\": \"up\"").count() == 2
    })
    .await;
    Setup {
        _pki: pki,
        _servers: servers,
        _dir: dir,
        lb,
        metrics,
        hostile,
    }
}

/// A TCP relay in front of the admin listener that counts `GET /status` requests and holds
/// the `hold_at`-th one until released. A fetch in flight stops Chromium's virtual clock, so
/// the test can change state between two refreshes of one page load, deterministically.
struct Relay {
    addr: SocketAddr,
    status_requests: Arc<AtomicUsize>,
    reached: watch::Receiver<bool>,
    release: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: SocketAddr, hold_at: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let status_requests = Arc::new(AtomicUsize::new(0));
        let (reached_tx, reached) = watch::channel(false);
        let reached_tx = Arc::new(reached_tx);
        let release = Arc::new(watch::channel(false).0);
        let (count, rel) = (Arc::clone(&status_requests), Arc::clone(&release));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (count, reached_tx, rel) = (
                    Arc::clone(&count),
                    Arc::clone(&reached_tx),
                    Arc::clone(&rel),
                );
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                        let _ = cw.shutdown().await;
                    });
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let text = String::from_utf8_lossy(&buf[..n]);
                        for _ in text.matches("GET /status ") {
                            let seen = count.fetch_add(1, Ordering::SeqCst) + 1;
                            if seen == hold_at {
                                reached_tx.send_replace(true);
                                let mut r = rel.subscribe();
                                let _ = r.wait_for(|go| *go).await;
                            }
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                    let _ = down.await;
                });
            }
        });
        Self {
            addr,
            status_requests,
            reached,
            release,
            task,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Chromium on PATH, or a skip (a failure under `APILB_REQUIRE_PRIVILEGED=1`).
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            std::env::var_os("PATH")
                .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(c).is_file()))
        })
        .or_else(|| {
            skip_or_fail("chromium not found (apt-get install chromium)");
            None
        })
}

/// Headless Chromium with `args` and then `url`, bounded by [`BROWSER`]: its stdout.
async fn run_chromium(
    bin: &'static str,
    profile: PathBuf,
    args: Vec<String>,
    url: String,
) -> String {
    run_browser(Command::new(bin), profile, args, url).await
}

/// [`run_chromium`] with `cmd` as the browser command (e.g. `ip netns exec NS chromium`).
async fn run_browser(mut cmd: Command, profile: PathBuf, args: Vec<String>, url: String) -> String {
    let run = tokio::task::spawn_blocking(move || {
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium")
    });
    let out = tokio::time::timeout(BROWSER, run)
        .await
        .unwrap_or_else(|_| panic!("chromium did not finish within {BROWSER:?}"))
        .expect("chromium task");
    assert!(
        out.status.success(),
        "chromium failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The start tag of the element carrying `attr` (e.g. `data-backend="master-1"`).
fn start_tag<'a>(dom: &'a str, tag: &str, attr: &str) -> &'a str {
    dom.match_indices(&format!("<{tag} "))
        .map(|(i, _)| &dom[i..i + dom[i..].find('>').expect("tag end")])
        .find(|t| t.contains(attr))
        .unwrap_or_else(|| panic!("no <{tag}> with {attr} in:\n{dom}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_is_self_contained_html_and_builds_its_dom_as_text() {
    let s = setup().await;
    let mut stream = TcpStream::connect(s.metrics).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    // Only the page's own script and style, by hash; the browser tests show they still run.
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'sha256-"),
        "{head}"
    );
    assert!(head.contains("; style-src 'sha256-"), "{head}");
    assert!(!head.contains("unsafe-inline"), "{head}");
    assert!(body.starts_with("<!doctype html>"), "{body}");
    // No external assets: nothing is fetched from anywhere but this origin.
    for external in ["http://", "https://", "<link", "@import", "src=\""] {
        assert!(!body.contains(external), "page references {external:?}");
    }
    // Data is never parsed as markup.
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
    ] {
        assert!(!body.contains(sink), "page uses {sink}");
    }
    let (status, _) = http(s.metrics, "POST", "/").await;
    assert_eq!(status, 405);
    drop(s.lb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_backends_and_shows_a_drain_after_a_refresh() {
    let Some(bin) = chromium() else { return };
    let s = setup().await;
    let relay = Relay::start(s.metrics, 2).await;
    let profile = tempfile::tempdir().expect("profile dir");

    // Refresh every virtual second for ten virtual seconds; the second /status request is
    // held until master-1 is drained, so the first answer shows it up and a later one drained.
    let mut browser = tokio::spawn(run_chromium(
        bin,
        profile.path().to_owned(),
        vec!["--virtual-time-budget=10000".into(), "--dump-dom".into()],
        format!("http://{}/?every=1", relay.addr),
    ));
    let mut reached = relay.reached.clone();
    // run_chromium bounds the browser by BROWSER; a page whose script never ran ends it early.
    tokio::select! {
        r = reached.wait_for(|r| *r) => { r.expect("relay"); }
        done = &mut browser => panic!(
            "the page did not refresh /status twice; its DOM:\n{}",
            done.expect("browser task")
        ),
    }
    let (status, body) = http(s.metrics, "POST", "/backends/master-1/drain").await;
    assert_eq!(status, 200, "{body}");
    relay.release.send_replace(true);
    let dom = browser.await.expect("browser task");

    assert!(
        relay.status_requests.load(Ordering::SeqCst) >= 3,
        "the page stopped refreshing"
    );
    // Every backend with its state, as attributes the script set and as text.
    let m1 = start_tag(&dom, "article", "data-backend=\"master-1\"");
    assert!(m1.contains("data-state=\"drain\""), "{m1}");
    let m2 = start_tag(&dom, "article", "data-backend=\"master-2\"");
    assert!(m2.contains("data-state=\"up\""), "{m2}");
    assert!(
        dom.contains("<span class=\"name\">master-1</span>"),
        "{dom}"
    );
    assert!(
        dom.contains("drained by operator"),
        "reason missing:\n{dom}"
    );
    assert!(dom.contains("1 of 2 backends up"), "{dom}");
    assert!(dom.contains("https, "), "check kind missing:\n{dom}");
    // The change was seen between two refreshes of the same page.
    let change = start_tag(&dom, "li", "class=\"change\"");
    assert!(change.contains("data-backend=\"master-1\""), "{change}");
    assert!(dom.contains("master-1: up \u{2192} drain"), "{dom}");
    let refreshes: usize = start_tag(&dom, "body", "data-refreshes")
        .split("data-refreshes=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .expect("refresh count");
    assert!(refreshes >= 3, "{refreshes} refreshes");
    // Certificate expiry from /metrics, with the markup in its file name shown as text.
    let days = (apilb::admin::certificate_not_after(&s.hostile).expect("parse")
        - i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs(),
        )
        .expect("seconds"))
        / 86_400;
    assert!(dom.contains("<tr class=\"certificate"), "{dom}");
    assert!(
        dom.contains("&lt;img src=x onerror=\"document.body.dataset.pwned=1\"&gt;&amp;amp;.pem"),
        "file name not shown as text:\n{dom}"
    );
    assert!(
        dom.contains(&format!(">{days}</td>")) || dom.contains(&format!(">{}</td>", days - 1)),
        "{days} days left missing:\n{dom}"
    );
    assert!(!dom.contains("<img"), "markup from a file name was parsed");
    assert!(!dom.contains("data-pwned"), "a file name's script ran");

    if let Some(path) = std::env::var_os("APILB_STATUS_SCREENSHOT") {
        let path = std::path::absolute(PathBuf::from(path)).expect("screenshot path");
        run_chromium(
            bin,
            profile.path().to_owned(),
            vec![
                "--virtual-time-budget=3000".into(),
                "--window-size=900,640".into(),
                format!("--screenshot={}", path.display()),
            ],
            format!("http://{}/", s.metrics),
        )
        .await;
        assert!(path.is_file(), "no screenshot at {}", path.display());
    }
    drop(s.lb);
}

/// The VIP as the page shows it: a one-node lab whose apilb becomes VRRP master, and
/// Chromium run inside that node's namespace (root; skips otherwise, or fails under
/// `APILB_REQUIRE_PRIVILEGED=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_vip_state() {
    use crate::support::netns::{Lab, VIP, node_ip, tag_server};
    let Some(bin) = chromium() else { return };
    let Some(lab) = Lab::with_nodes("spage", 1) else {
        return;
    };
    let backend = SocketAddr::from((node_ip(1), 7000));
    tag_server(&lab.ns(1), backend);
    let admin = "127.0.0.1:9441";
    let yaml = format!(
        "listen: [\"{VIP}:6443\"]\nbackends: [{{name: b, address: \"{backend}\"}}]\n\
         metrics: {{listen: \"{admin}\"}}\ntimeouts: {{drain: 1s}}\nvip:\n  interface: eth0\n  \
         vrid: 51\n  addresses: [\"{VIP}/24\"]\n  priority: 150\n  advertInterval: 100ms\n"
    );
    let lb = LbProcess::spawn_in_netns(&lab.ns(1), &yaml);
    wait_until(WAIT, "n1 holds the VIP", || async { lab.has_addr(1, VIP) }).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let dom = run_browser(
        lab.command(1, bin),
        profile.path().to_owned(),
        vec!["--virtual-time-budget=3000".into(), "--dump-dom".into()],
        format!("http://{admin}/"),
    )
    .await;
    let vip = start_tag(&dom, "article", "class=\"card vip\"");
    assert!(vip.contains("data-state=\"master\""), "{vip}");
    assert!(dom.contains("VRID 51 on eth0"), "{dom}");
    assert!(dom.contains(&format!("{VIP}/24")), "{dom}");
    assert!(dom.contains("150 (configured 150)"), "{dom}");
    let section = start_tag(&dom, "section", "id=\"vip-section\"");
    assert!(!section.contains("hidden"), "{section}");
    assert!(dom.contains("1 of 1 backends up"), "{dom}");
    drop(lb);
}

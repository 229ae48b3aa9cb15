//! The admin endpoint's guards (issue 16): `metrics.tls` (HTTPS) with `metrics.admin: mtls`
//! against certificates `apilb issue` wrote (no certificate, another CA, another name, the
//! right one), the client's `--ca/--cert/--key`, live reload of the TLS material, and
//! malformed or oversized requests that must get a 4xx and change nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apilb::pki::cert::{Ca, CaCert, CaKind, Profile, SanList, Usage, Window};
use apilb::pki::{KeyAlgorithm, PrivateKey};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::pki::{STACKED, issue, loopback_cluster, loopback_net};
use crate::support::{EchoBackend, LbProcess, WAIT, apilb_cmd, free_port, lb_yaml, wait_listening};

/// A PKI tree from `apilb issue` (ECDSA, fast).
fn pki_tree() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    issue(
        &loopback_cluster(loopback_net(), "ECDSA-P256", STACKED),
        &out,
        false,
    )
    .expect("issue");
    (dir, out)
}

/// `metrics` section serving HTTPS with lb-1's admin files from `out`, admin `mode`.
fn metrics_tls(addr: SocketAddr, out: &Path, mode: &str) -> String {
    let p = |f: &str| out.join("lb-1/pki").join(f).display().to_string();
    format!(
        "metrics:\n  listen: \"{addr}\"\n  admin: {mode}\n  tls:\n    cert: {}\n    key: {}\n    clientCa: {}\n",
        p("apilb-admin-server.crt"),
        p("apilb-admin-server.key"),
        p("apilb-admin-ca.crt"),
    )
}

/// A client identity: (certificate, key) files.
type Identity = (PathBuf, PathBuf);

fn admin_identity(out: &Path) -> Identity {
    (
        out.join("apilb-admin/apilb-admin.crt"),
        out.join("apilb-admin/apilb-admin.key"),
    )
}

/// One HTTPS request (Connection: close) checked against `ca`, optionally presenting
/// `identity`: status and body, or why the TLS connection failed.
async fn https(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<&Identity>,
    method: &str,
    path: &str,
) -> Result<(u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in apilb::pki::pem::read_certificates(ca).expect("ca") {
        roots.add(c).expect("root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let (chain, key) = apilb::pki::pem::read_identity(cert, key).expect("identity");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut s = connector
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut resp))
        .await
        .expect("answer within the wait")
        .map_err(|e| e.to_string())?;
    Ok(parse(&resp))
}

fn parse(resp: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_owned())
}

/// A client certificate signed by `out`'s admin CA, for client auth, named `cn`.
fn client_named(out: &Path, cn: &str, dir: &Path) -> Identity {
    let read = |f: &str| std::fs::read_to_string(out.join("apilb-admin").join(f)).expect("read");
    let ca = Ca::new(
        CaCert::from_pem(CaKind::ApilbAdmin, &read("apilb-admin-ca.crt")).expect("ca cert"),
        PrivateKey::from_pem(&read("apilb-admin-ca.key")).expect("ca key"),
    )
    .expect("ca");
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
    let profile = Profile {
        ca: CaKind::ApilbAdmin,
        common_name: cn.to_owned(),
        organizations: vec![],
        usages: vec![Usage::ClientAuth],
        sans: SanList::default(),
    };
    let window = Window::starting(
        time::OffsetDateTime::now_utc(),
        std::time::Duration::from_secs(3600),
    );
    let cert = ca.issue(&profile, &key, window).expect("issue");
    let (c, k) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    std::fs::write(&c, cert.pem).expect("write cert");
    std::fs::write(&k, key.pem()).expect("write key");
    (c, k)
}

/// The backends' states as `/status` shows them, over HTTPS.
async fn states_tls(addr: SocketAddr, ca: &Path) -> Vec<(String, String)> {
    let (code, body) = https(addr, ca, None, "GET", "/status")
        .await
        .expect("status");
    assert_eq!(code, 200, "{body}");
    states_of(&body)
}

fn states_of(body: &str) -> Vec<(String, String)> {
    let s: apilb::admin::Status = serde_json::from_str(body).expect("status JSON");
    s.backends.into_iter().map(|b| (b.name, b.state)).collect()
}

#[tokio::test]
async fn mtls_allows_only_an_apilb_admin_certificate_of_the_client_ca() {
    let (dir, out) = pki_tree();
    let (_other_dir, other) = pki_tree();
    let backend = EchoBackend::start("a").await;
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let lb = LbProcess::spawn(&lb_yaml(
        &[listen],
        &[("a", backend.addr)],
        &metrics_tls(metrics, &out, "mtls"),
    ));
    wait_listening(metrics).await;
    let ca = out.join("apilb-admin/apilb-admin-ca.crt");
    let up = vec![("a".to_owned(), "up".to_owned())];

    // Scrapes and status need no client certificate.
    let (code, body) = https(metrics, &ca, None, "GET", "/metrics")
        .await
        .expect("metrics");
    assert_eq!(code, 200);
    assert!(body.contains("apilb_"), "{body}");
    assert_eq!(states_tls(metrics, &ca).await, up);

    // No certificate.
    let (code, body) = https(metrics, &ca, None, "POST", "/backends/a/drain")
        .await
        .expect("post");
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body.trim(),
        "forbidden: state changes need a client certificate named apilb-admin signed by \
         metrics.tls.clientCa (metrics.admin: mtls); none was presented"
    );
    assert_eq!(states_tls(metrics, &ca).await, up);

    // An apilb-admin certificate of another CA (another `apilb issue` tree).
    let foreign = admin_identity(&other);
    let (code, body) = https(metrics, &ca, Some(&foreign), "POST", "/backends/a/drain")
        .await
        .expect("post");
    assert_eq!(code, 403, "{body}");
    assert!(
        body.starts_with(
            "forbidden: the client certificate is not signed by metrics.tls.clientCa ("
        ),
        "{body}"
    );
    assert!(body.trim_end().ends_with("(metrics.admin: mtls)"), "{body}");
    assert_eq!(states_tls(metrics, &ca).await, up);

    // The right CA, another name.
    let someone = client_named(&out, "someone-else", dir.path());
    let (code, body) = https(metrics, &ca, Some(&someone), "POST", "/backends/a/drain")
        .await
        .expect("post");
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body.trim(),
        "forbidden: the client certificate names someone-else (subject CN and DNS SANs), \
         not apilb-admin (metrics.admin: mtls)"
    );
    assert_eq!(states_tls(metrics, &ca).await, up);

    // The right certificate.
    let admin = admin_identity(&out);
    let (code, body) = https(metrics, &ca, Some(&admin), "POST", "/backends/a/drain")
        .await
        .expect("post");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        states_tls(metrics, &ca).await,
        vec![("a".to_owned(), "drain".to_owned())]
    );

    // The CLI with the same files: https URL, --ca, --cert/--key.
    let url = format!("https://{metrics}");
    let ca_s = ca.display().to_string();
    let (cert_s, key_s) = (admin.0.display().to_string(), admin.1.display().to_string());
    let ok = apilb_cmd(&[
        "backend",
        "enable",
        "a",
        "--metrics-address",
        &url,
        "--ca",
        &ca_s,
        "--cert",
        &cert_s,
        "--key",
        &key_s,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "a: up (0 active connections)\n"
    );
    let refused = apilb_cmd(&[
        "backend",
        "drain",
        "a",
        "--metrics-address",
        &url,
        "--ca",
        &ca_s,
    ]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!(
            "apilb at {metrics} answered 403: forbidden: state changes need a client certificate"
        )),
        "{err}"
    );
    let status = apilb_cmd(&["status", "--json", "--metrics-address", &url, "--ca", &ca_s]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(states_of(&String::from_utf8_lossy(&status.stdout)), up);
    // The endpoint's certificate is checked: another tree's CA does not verify it.
    let other_ca = other
        .join("apilb-admin/apilb-admin-ca.crt")
        .display()
        .to_string();
    let wrong = apilb_cmd(&["status", "--metrics-address", &url, "--ca", &other_ca]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("TLS handshake failed"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    drop(lb);
}

#[tokio::test]
async fn metrics_tls_material_reloads_live() {
    let (_a_dir, a) = pki_tree();
    let (_b_dir, b) = pki_tree();
    let backend = EchoBackend::start("a").await;
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let yaml = |out: &Path| {
        lb_yaml(
            &[listen],
            &[("a", backend.addr)],
            &metrics_tls(metrics, out, "mtls"),
        )
    };
    let lb = LbProcess::spawn(&yaml(&a));
    wait_listening(metrics).await;
    let (ca_a, ca_b) = (
        a.join("apilb-admin/apilb-admin-ca.crt"),
        b.join("apilb-admin/apilb-admin-ca.crt"),
    );
    assert!(https(metrics, &ca_a, None, "GET", "/healthz").await.is_ok());
    assert!(
        https(metrics, &ca_b, None, "GET", "/healthz")
            .await
            .is_err()
    );

    lb.write_config(&yaml(&b));
    lb.signal(nix::sys::signal::Signal::SIGHUP);
    lb.wait_for_log("config reloaded").await;
    let (code, _) = https(metrics, &ca_b, None, "GET", "/healthz")
        .await
        .expect("new server cert");
    assert_eq!(code, 200);
    let old = https(metrics, &ca_a, None, "GET", "/healthz").await;
    assert!(old.is_err(), "the old certificate is still served: {old:?}");
    // The client CA moved too: tree b's admin may change state, tree a's may not.
    let (code, body) = https(
        metrics,
        &ca_b,
        Some(&admin_identity(&a)),
        "POST",
        "/backends/a/maint",
    )
    .await
    .expect("post");
    assert_eq!(code, 403, "{body}");
    let (code, body) = https(
        metrics,
        &ca_b,
        Some(&admin_identity(&b)),
        "POST",
        "/backends/a/maint",
    )
    .await
    .expect("post");
    assert_eq!(code, 200, "{body}");

    // Unusable material is refused and the running endpoint keeps its certificate.
    let broken = yaml(&b).replace("apilb-admin-server.key", "apilb-health.key");
    lb.write_config(&broken);
    lb.signal(nix::sys::signal::Signal::SIGHUP);
    lb.wait_for_log("reload failed").await;
    assert!(lb.log().contains("metrics.tls.key: "), "{}", lb.log());
    let (code, _) = https(metrics, &ca_b, None, "GET", "/healthz")
        .await
        .expect("still served");
    assert_eq!(code, 200);
}

#[test]
fn mtls_without_tls_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lb.yaml");
    std::fs::write(
        &path,
        "listen: [\"127.0.0.1:6443\"]\nbackends: [{name: a, address: \"127.0.0.1:7000\"}]\n\
         metrics: {listen: \"127.0.0.1:9441\", admin: mtls}\n",
    )
    .expect("write");
    let out = apilb_cmd(&["check-config", &path.display().to_string()]);
    assert_eq!(out.status.code(), Some(64));
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        err.contains("metrics.admin: mtls needs metrics.tls with cert, key and clientCa"),
        "{err}"
    );
    // Files that are not there are found before serving, at the key that names them.
    std::fs::write(
        &path,
        "listen: [\"127.0.0.1:6443\"]\nbackends: [{name: a, address: \"127.0.0.1:7000\"}]\n\
         metrics: {listen: \"127.0.0.1:9441\", admin: mtls, tls: {cert: /nonexistent/s.crt, key: /nonexistent/s.key, clientCa: /nonexistent/ca.crt}}\n",
    )
    .expect("write");
    let out = apilb_cmd(&["check-config", &path.display().to_string()]);
    assert_eq!(out.status.code(), Some(64));
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        err.contains(": metrics.tls.cert: /nonexistent/s.crt: "),
        "{err}"
    );
}

/// A raw request on a fresh connection: status and body.
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut resp = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut resp))
        .await
        .expect("answer within the wait")
        .expect("read");
    parse(&resp)
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn malformed_admin_requests_get_a_4xx_and_change_nothing() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _lb = LbProcess::spawn(&lb_yaml(
        &[listen],
        &[("a", a.addr), ("b", b.addr)],
        &format!("metrics: {{listen: \"{metrics}\"}}\n"),
    ));
    wait_listening(metrics).await;
    let states = || async {
        let (code, body) = crate::support::http_get(metrics, "/status").await;
        assert_eq!(code, 200);
        states_of(&body)
    };
    let before = states().await;
    assert_eq!(
        before,
        vec![
            ("a".to_owned(), "up".to_owned()),
            ("b".to_owned(), "up".to_owned())
        ]
    );
    let huge_header = format!(
        "GET /status HTTP/1.1\r\nHost: t\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
        "x".repeat(apilb::admin::MAX_HEAD_BYTES + 1024)
    );
    let huge_post_header = format!(
        "POST /backends/a/drain HTTP/1.1\r\nHost: t\r\nX-Filler: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "x".repeat(apilb::admin::MAX_HEAD_BYTES + 1024)
    );
    let big_body = format!(
        "{{\"pad\": \"{}\"}}",
        "x".repeat(apilb::admin::MAX_BODY_BYTES)
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("oversized head", huge_header.into_bytes(), 431, ""),
        ("oversized head on a change", huge_post_header.into_bytes(), 431, ""),
        (
            "oversized body",
            post("/backends/a/drain", &big_body),
            413,
            "request body is over 4096 bytes",
        ),
        (
            "bad JSON",
            post("/backends/a/drain", "{\"drain\": tru"),
            400,
            "request body is not JSON: ",
        ),
        (
            "parameters to a route that takes none",
            post("/backends/a/drain", "{\"all\": true}"),
            400,
            "this request takes no parameters: send no body or {}",
        ),
        (
            "unknown backend",
            post("/backends/nope/drain", ""),
            404,
            "no backend named \"nope\"",
        ),
        (
            "unknown action",
            post("/backends/a/explode", ""),
            404,
            "unknown action \"explode\": use drain, maint or enable",
        ),
        (
            "bad path",
            post("/backends/a/drain/now", ""),
            404,
            "not found: try /, /metrics, /status, POST /backends/NAME/{drain,maint,enable}",
        ),
        (
            "path traversal",
            post("/backends/../status", ""),
            404,
            "unknown action \"status\"",
        ),
        (
            "bad method on a change route",
            b"PUT /backends/a/drain HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec(),
            405,
            "method not allowed",
        ),
        (
            "bad method on a read route",
            b"DELETE /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec(),
            405,
            "method not allowed",
        ),
        (
            "not HTTP",
            b"\x16\x03\x01\x00\xa5garbage\r\n\r\n".to_vec(),
            400,
            "",
        ),
    ];
    for (what, request, want, message) in cases {
        let (code, body) = raw(metrics, &request).await;
        assert_eq!(code, want, "{what}: {body}");
        assert!(body.starts_with(message), "{what}: {body:?}");
        assert_eq!(states().await, before, "{what} changed state");
    }
    // The same route with an empty JSON object works (the guards above refused, not the route).
    let (code, body) = raw(metrics, &post("/backends/a/drain", "{}")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        states().await,
        vec![
            ("a".to_owned(), "drain".to_owned()),
            ("b".to_owned(), "up".to_owned())
        ]
    );
}

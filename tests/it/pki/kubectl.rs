//! kubectl (Go's TLS stack) with the issued admin.conf against a TLS server that presents the
//! issued apiserver certificate at the LB VIP (127.N.0.100) and requires a client certificate
//! from the cluster CA: the SANs and the client chain are accepted by Go, and a name outside
//! the SANs is refused with Go's `x509: certificate is valid for …` error.
//!
//! Needs `kubectl` (Debian: kubernetes-client). Run: `APILB_REQUIRE_PRIVILEGED=1 cargo test --test it pki::kubectl`

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{STACKED, have_tool, issue, loopback_cluster, loopback_net};

const VERSION_JSON: &str =
    r#"{"major":"1","minor":"31","gitVersion":"v1.31.2","platform":"linux/amd64"}"#;

fn tls_config(pki: &Path) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let ca = CertificateDer::from_pem_file(pki.join("ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let cert = CertificateDer::from_pem_file(pki.join("apiserver.crt")).unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.join("apiserver.key")).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert], key)
            .unwrap(),
    )
}

/// Serve `/version` over mutual TLS; record the client certificate subjects seen.
async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    seen: Arc<Mutex<Vec<String>>>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            if let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                let (_, x) = X509Certificate::from_der(cert).unwrap();
                seen.lock().unwrap().push(x.subject().to_string());
            }
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if path.starts_with("/version") {
                ("200 OK", VERSION_JSON)
            } else {
                ("404 Not Found", "{}")
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(resp.as_bytes()).await;
            let _ = tls.shutdown().await;
        });
    }
}

/// admin.conf with the server URL rewritten (and optionally a TLS server name).
fn kubeconfig(src: &Path, dst: &Path, server: &str, tls_server_name: Option<&str>) {
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(src).unwrap()).unwrap();
    let cluster = &mut doc["clusters"][0]["cluster"];
    cluster["server"] = server.into();
    if let Some(name) = tls_server_name {
        cluster["tls-server-name"] = name.into();
    }
    std::fs::write(dst, serde_yaml::to_string(&doc).unwrap()).unwrap();
}

async fn kubectl(home: &Path, config: &Path) -> std::process::Output {
    tokio::process::Command::new("kubectl")
        .env("HOME", home)
        .env("KUBECONFIG", config)
        .args(["--request-timeout", "10s", "get", "--raw", "/version"])
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_accepts_issued_admin_conf_and_apiserver_cert() {
    if !have_tool(
        "kubectl",
        "kubectl_accepts_issued_admin_conf_and_apiserver_cert",
    ) {
        return;
    }
    for alg in ["RSA-2048", "ECDSA-P384"] {
        kubectl_case(alg).await;
    }
}

async fn kubectl_case(alg: &str) {
    let net = loopback_net();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    issue(&loopback_cluster(net, alg, STACKED), &out, false).unwrap();
    let vip: IpAddr = format!("127.{net}.0.100").parse().unwrap();
    let listener = TcpListener::bind(SocketAddr::new(vip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve(
        listener,
        tls_config(&out.join("master-2/pki")),
        seen.clone(),
    ));

    let admin = out.join("master-2/admin.conf");
    let url = format!("https://{vip}:{port}");
    // 1. At the VIP (an IP SAN).
    let cfg = dir.path().join("vip.conf");
    kubeconfig(&admin, &cfg, &url, None);
    let o = kubectl(dir.path(), &cfg).await;
    assert!(
        o.status.success(),
        "{alg}: kubectl at the VIP: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), VERSION_JSON);
    // 2. By the controlPlaneEndpoint DNS name (a DNS SAN), as kubectl would through the LB.
    let cfg = dir.path().join("dns.conf");
    kubeconfig(&admin, &cfg, &url, Some("k8s-api.test.internal"));
    let o = kubectl(dir.path(), &cfg).await;
    assert!(
        o.status.success(),
        "kubectl by DNS name: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // 3. A name that is not in the SANs: Go refuses it with the classic HA error.
    let cfg = dir.path().join("bad.conf");
    kubeconfig(&admin, &cfg, &url, Some("not-in-the-sans.example"));
    let o = kubectl(dir.path(), &cfg).await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("x509: certificate is valid for")
            && err.contains("not not-in-the-sans.example"),
        "{err}"
    );
    // The server saw the admin client certificate from the cluster CA.
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|s| s == "O=kubeadm:cluster-admins, CN=kubernetes-admin"),
        "{seen:?}"
    );
    server.abort();
}

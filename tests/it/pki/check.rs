//! Every certificate of a freshly issued tree, checked against an expectation table written
//! here from kubeadm's reference (not from `apilb::pki::spec`), with two independent
//! verifiers: x509-parser + rustls-webpki in process, and the `openssl` command line.
//! Without `openssl` only its cross-checks are skipped (with a printed reason; a failure under
//! `APILB_REQUIRE_PRIVILEGED=1`): the in-process checks and the file modes still run.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::{STACKED, issue, loopback_cluster, loopback_net, snapshot};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Eku {
    Server,
    Client,
}

/// What one certificate must be.
struct Expect {
    file: String,
    ca_file: String,
    cn: String,
    orgs: Vec<&'static str>,
    ekus: Vec<Eku>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The kubeadm table for the loopback cluster of [`loopback_cluster`].
fn expectations(net: u8) -> Vec<Expect> {
    let mut v = Vec::new();
    let leaf = |file: String, ca: &str, cn: &str, orgs: Vec<&'static str>, ekus: Vec<Eku>| Expect {
        file,
        ca_file: ca.to_owned(),
        cn: cn.to_owned(),
        orgs,
        ekus,
        dns: vec![],
        ips: vec![],
    };
    for n in 1..=3u8 {
        let m = format!("master-{n}");
        let addr = ip(&format!("127.{net}.0.1{n}"));
        let ca = format!("{m}/pki/ca.crt");
        let fp = format!("{m}/pki/front-proxy-ca.crt");
        let ec = format!("{m}/pki/etcd/ca.crt");
        let mut dns = s(&[
            "extra.test.internal",
            "k8s-api.test.internal",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            &m,
        ]);
        if n == 3 {
            dns.push("master-3.test.internal".into());
        }
        dns.sort();
        let mut api = leaf(
            format!("{m}/pki/apiserver.crt"),
            &ca,
            "kube-apiserver",
            vec![],
            vec![Eku::Server],
        );
        api.dns = dns;
        api.ips = vec![
            ip("10.96.0.1"),
            addr,
            ip(&format!("127.{net}.0.100")),
            ip(&format!("127.{net}.0.5")),
            ip(&format!("127.{net}.0.6")),
            ip("192.0.2.7"),
        ];
        v.push(api);
        v.push(leaf(
            format!("{m}/pki/apiserver-kubelet-client.crt"),
            &ca,
            "kube-apiserver-kubelet-client",
            vec!["kubeadm:cluster-admins"],
            vec![Eku::Client],
        ));
        v.push(leaf(
            format!("{m}/pki/front-proxy-client.crt"),
            &fp,
            "front-proxy-client",
            vec![],
            vec![Eku::Client],
        ));
        v.push(leaf(
            format!("{m}/pki/apiserver-etcd-client.crt"),
            &ec,
            "kube-apiserver-etcd-client",
            vec![],
            vec![Eku::Client],
        ));
        v.push(leaf(
            format!("{m}/pki/etcd/healthcheck-client.crt"),
            &ec,
            "kube-etcd-healthcheck-client",
            vec![],
            vec![Eku::Client],
        ));
        for base in ["server", "peer"] {
            let mut e = leaf(
                format!("{m}/pki/etcd/{base}.crt"),
                &ec,
                &m,
                vec![],
                vec![Eku::Server, Eku::Client],
            );
            e.dns = s(&["localhost", &m]);
            e.ips = vec![addr, ip("127.0.0.1"), ip("::1")];
            v.push(e);
        }
        for (file, cn, orgs) in [
            (
                "admin.conf",
                "kubernetes-admin".to_owned(),
                vec!["kubeadm:cluster-admins"],
            ),
            (
                "super-admin.conf",
                "kubernetes-super-admin".to_owned(),
                vec!["system:masters"],
            ),
            (
                "controller-manager.conf",
                "system:kube-controller-manager".to_owned(),
                vec![],
            ),
            ("scheduler.conf", "system:kube-scheduler".to_owned(), vec![]),
            (
                "kubelet.conf",
                format!("system:node:{m}"),
                vec!["system:nodes"],
            ),
        ] {
            v.push(leaf(
                format!("{m}/{file}"),
                &ca,
                &cn,
                orgs,
                vec![Eku::Client],
            ));
        }
    }
    for n in 1..=2 {
        v.push(leaf(
            format!("lb-{n}/pki/apilb-health.crt"),
            &format!("lb-{n}/pki/ca.crt"),
            "apilb-health",
            vec![],
            vec![Eku::Client],
        ));
    }
    v
}

fn kubeconfig_parts(path: &Path) -> (String, String, String, String) {
    use base64::Engine;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let b = |v: &serde_yaml::Value| -> String {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    let cluster = &doc["clusters"][0]["cluster"];
    let user = &doc["users"][0]["user"];
    (
        cluster["server"].as_str().unwrap().to_owned(),
        b(&cluster["certificate-authority-data"]),
        b(&user["client-certificate-data"]),
        b(&user["client-key-data"]),
    )
}

fn pem_der(text: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(text.as_bytes())
        .unwrap()
        .to_vec()
}

/// Whether the openssl cross-checks of `test` run.
fn with_openssl(test: &str) -> bool {
    super::have_tool(
        "openssl",
        &format!(
            "{test} (its openssl cross-checks; the rustls-webpki, x509-parser and file-mode checks run without openssl)"
        ),
    )
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sig_oid(alg: &str) -> &'static str {
    match alg {
        "ECDSA-P256" => "1.2.840.10045.4.3.2",
        "ECDSA-P384" => "1.2.840.10045.4.3.3",
        _ => "1.2.840.113549.1.1.11",
    }
}

/// Check one certificate (PEM) against `e` and its CA (PEM); `key` is the key PEM.
#[allow(clippy::too_many_arguments)]
fn check_leaf(
    e: &Expect,
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
    alg: &str,
    now: OffsetDateTime,
    tmp: &Path,
    openssl_checks: bool,
) {
    let der = pem_der(cert_pem);
    let ca_der = pem_der(ca_pem);
    let (_, x) = X509Certificate::from_der(&der).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let f = &e.file;

    // x509-parser: fields.
    assert_eq!(x.version().0, 2, "{f}: v3");
    let serial = x.tbs_certificate.serial.clone();
    assert!(
        serial > 0u8.into() && serial < (1u64 << 63).into(),
        "{f}: serial {serial}"
    );
    let rdns: Vec<(String, String)> = x
        .subject()
        .iter_attributes()
        .map(|a| (a.attr_type().to_id_string(), a.as_str().unwrap().to_owned()))
        .collect();
    let mut want: Vec<(String, String)> = e
        .orgs
        .iter()
        .map(|o| ("2.5.4.10".to_owned(), (*o).to_owned()))
        .collect();
    want.push(("2.5.4.3".to_owned(), e.cn.clone()));
    assert_eq!(rdns, want, "{f}: subject (O before CN, as Go writes it)");
    assert_eq!(x.issuer().as_raw(), ca.subject().as_raw(), "{f}: issuer");
    assert_eq!(
        x.signature_algorithm.algorithm.to_id_string(),
        sig_oid(alg),
        "{f}: signature algorithm"
    );
    let mut saw_ku = false;
    let mut saw_bc = false;
    let mut ekus = Vec::new();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let mut akid = None;
    for ext in x.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => {
                saw_ku = true;
                assert!(ext.critical, "{f}: KU critical");
                assert!(
                    ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign(),
                    "{f}: KU {ku}"
                );
            }
            ParsedExtension::BasicConstraints(bc) => {
                saw_bc = true;
                assert!(ext.critical && !bc.ca, "{f}: CA:FALSE critical");
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                assert!(
                    !eku.any && !eku.code_signing && eku.other.is_empty(),
                    "{f}: EKU"
                );
                if eku.server_auth {
                    ekus.push(Eku::Server);
                }
                if eku.client_auth {
                    ekus.push(Eku::Client);
                }
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    match n {
                        GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                        GeneralName::IPAddress(b) if b.len() == 4 => {
                            ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()))
                        }
                        GeneralName::IPAddress(b) => {
                            ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()))
                        }
                        other => panic!("{f}: unexpected SAN {other:?}"),
                    }
                }
            }
            ParsedExtension::AuthorityKeyIdentifier(a) => akid = a.key_identifier.clone(),
            _ => {}
        }
    }
    assert!(saw_ku && saw_bc, "{f}: KU and BC present");
    assert_eq!(ekus, e.ekus, "{f}: EKU");
    assert_eq!(dns, e.dns, "{f}: DNS SANs, sorted");
    assert_eq!(ips, e.ips, "{f}: IP SANs, in kubeadm order");
    let ca_skid = ca
        .extensions()
        .iter()
        .find_map(|x| match x.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        });
    assert_eq!(akid.map(|k| k.0.to_vec()), ca_skid, "{f}: AKID = CA SKID");
    let nb = x.validity().not_before.to_datetime();
    let na = x.validity().not_after.to_datetime();
    let backdate = now - nb;
    assert!(
        backdate > time::Duration::minutes(4) && backdate < time::Duration::minutes(7),
        "{f}: NotBefore {nb} vs now {now}"
    );
    assert_eq!(
        na - nb,
        time::Duration::hours(8760) + time::Duration::minutes(5),
        "{f}: 1 year validity"
    );

    // rustls-webpki: chain, time, EKU and every SAN.
    let leaf_der = CertificateDer::from(der.as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf_der).unwrap();
    let ca_cd = CertificateDer::from(ca_der.as_slice());
    let anchor = webpki::anchor_from_trusted_cert(&ca_cd).unwrap();
    let t = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.unix_timestamp() as u64));
    for eku in &e.ekus {
        let usage = match eku {
            Eku::Server => webpki::KeyUsage::server_auth(),
            Eku::Client => webpki::KeyUsage::client_auth(),
        };
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            std::slice::from_ref(&anchor),
            &[],
            t,
            usage,
            None,
            None,
        )
        .unwrap_or_else(|err| panic!("{f}: webpki {eku:?}: {err:?}"));
    }
    for d in &e.dns {
        let name = ServerName::try_from(d.as_str()).unwrap();
        ee.verify_is_valid_for_subject_name(&name)
            .unwrap_or_else(|err| panic!("{f}: {d}: {err:?}"));
    }
    for i in &e.ips {
        ee.verify_is_valid_for_subject_name(&ServerName::IpAddress((*i).into()))
            .unwrap();
    }

    let key_label = if alg.starts_with("RSA") {
        "RSA PRIVATE KEY"
    } else {
        "EC PRIVATE KEY"
    };
    assert!(
        key_pem.starts_with(&format!("-----BEGIN {key_label}-----\n")),
        "{f}: key PEM type"
    );
    // In process: the key is the certificate's (x509-parser SPKI vs the key's own).
    let key = apilb::pki::PrivateKey::from_pem(key_pem).unwrap();
    assert_eq!(
        x.tbs_certificate.subject_pki.raw,
        key.spki_der().as_slice(),
        "{f}: key match"
    );
    if !openssl_checks {
        return;
    }

    // openssl: chain, key match, text of extensions.
    let cert_path = tmp.join("leaf.pem");
    let ca_path = tmp.join("ca.pem");
    let key_path = tmp.join("key.pem");
    std::fs::write(&cert_path, cert_pem).unwrap();
    std::fs::write(&ca_path, ca_pem).unwrap();
    std::fs::write(&key_path, key_pem).unwrap();
    let (c, a, k) = (
        cert_path.to_str().unwrap(),
        ca_path.to_str().unwrap(),
        key_path.to_str().unwrap(),
    );
    let purpose = if e.ekus.contains(&Eku::Server) {
        "sslserver"
    } else {
        "sslclient"
    };
    assert_eq!(
        openssl(&["verify", "-purpose", purpose, "-CAfile", a, c]),
        format!("{c}: OK\n"),
        "{f}"
    );
    assert_eq!(
        openssl(&["x509", "-in", c, "-noout", "-pubkey"]),
        openssl(&["pkey", "-in", k, "-pubout"]),
        "{f}: key match"
    );
    let text = openssl(&[
        "x509",
        "-in",
        c,
        "-noout",
        "-ext",
        "subjectAltName,keyUsage,basicConstraints,extendedKeyUsage",
    ]);
    assert!(
        text.contains("X509v3 Key Usage: critical\n    Digital Signature, Key Encipherment\n"),
        "{f}: {text}"
    );
    assert!(
        text.contains("X509v3 Basic Constraints: critical\n    CA:FALSE\n"),
        "{f}: {text}"
    );
    let want_sans: Vec<String> = e
        .dns
        .iter()
        .map(|d| format!("DNS:{d}"))
        .chain(e.ips.iter().map(|i| match i {
            IpAddr::V4(v4) => format!("IP Address:{v4}"),
            IpAddr::V6(_) if *i == ip("::1") => "IP Address:0:0:0:0:0:0:0:1".to_owned(),
            IpAddr::V6(v6) => format!("IP Address:{v6}"),
        }))
        .collect();
    if want_sans.is_empty() {
        assert!(
            !text.contains("Subject Alternative Name"),
            "{f}: no SANs: {text}"
        );
    } else {
        assert!(
            text.contains(&format!(
                "X509v3 Subject Alternative Name: \n    {}\n",
                want_sans.join(", ")
            )),
            "{f}: {text}"
        );
    }
    let checkend = Command::new("openssl")
        .args(["x509", "-in", c, "-noout", "-checkend", "0"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(checkend.success(), "{f}: openssl says expired");
}

fn check_ca(
    dir: &Path,
    base: &str,
    cn: &str,
    alg: &str,
    now: OffsetDateTime,
    openssl_checks: bool,
) {
    let crt = dir.join(format!("{base}.crt"));
    let pem = std::fs::read_to_string(&crt).unwrap();
    let der = pem_der(&pem);
    let (_, x) = X509Certificate::from_der(&der).unwrap();
    let f = crt.display();
    assert_eq!(x.subject().to_string(), format!("CN={cn}"), "{f}");
    assert_eq!(
        x.issuer().to_string(),
        format!("CN={cn}"),
        "{f}: self-signed"
    );
    assert_eq!(
        x.signature_algorithm.algorithm.to_id_string(),
        sig_oid(alg),
        "{f}"
    );
    let bc = x.basic_constraints().unwrap().unwrap();
    assert!(
        bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none(),
        "{f}: CA:TRUE, no pathlen"
    );
    let ku = x.key_usage().unwrap().unwrap();
    assert!(
        ku.critical
            && ku.value.key_cert_sign()
            && ku.value.digital_signature()
            && ku.value.key_encipherment(),
        "{f}"
    );
    assert!(x.extended_key_usage().unwrap().is_none(), "{f}: no EKU");
    let san = x.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        san.value.general_names,
        vec![GeneralName::DNSName(cn)],
        "{f}: DNS SAN = CN"
    );
    assert!(
        x.extensions().iter().any(|e| matches!(
            e.parsed_extension(),
            ParsedExtension::SubjectKeyIdentifier(_)
        )),
        "{f}: SKID"
    );
    let nb = x.validity().not_before.to_datetime();
    let na = x.validity().not_after.to_datetime();
    assert!(now - nb > time::Duration::minutes(4), "{f}: backdated");
    assert_eq!(
        na - nb,
        time::Duration::hours(87600) + time::Duration::minutes(5),
        "{f}: 10 years"
    );
    let k = dir.join(format!("{base}.key"));
    let key = apilb::pki::PrivateKey::from_pem(&std::fs::read_to_string(&k).unwrap()).unwrap();
    assert_eq!(
        x.tbs_certificate.subject_pki.raw,
        key.spki_der().as_slice(),
        "{f}: key match"
    );
    let anchor_der = CertificateDer::from(der.as_slice());
    webpki::anchor_from_trusted_cert(&anchor_der)
        .unwrap_or_else(|e| panic!("{f}: webpki refuses it as a trust anchor: {e:?}"));
    if !openssl_checks {
        return;
    }
    let c = crt.to_str().unwrap();
    assert_eq!(openssl(&["verify", "-CAfile", c, c]), format!("{c}: OK\n"));
    assert_eq!(
        openssl(&["x509", "-in", c, "-noout", "-pubkey"]),
        openssl(&["pkey", "-in", k.to_str().unwrap(), "-pubout"]),
        "{f}: key match"
    );
}

/// Issue the loopback cluster with `alg` and verify every file.
fn verify_full_tree(alg: &str) {
    let openssl_checks = with_openssl(&format!("verify_full_tree({alg})"));
    let net = loopback_net();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let now = OffsetDateTime::now_utc();
    let report = issue(&loopback_cluster(net, alg, STACKED), &out, false).unwrap();
    let files = snapshot(&out);

    // Shape: exactly the kubeadm tree per master, the LB files and the RBAC manifest.
    let mut want: Vec<String> = Vec::new();
    for n in 1..=3 {
        for f in [
            "ca",
            "apiserver",
            "apiserver-kubelet-client",
            "front-proxy-ca",
            "front-proxy-client",
            "etcd/ca",
            "etcd/server",
            "etcd/peer",
            "etcd/healthcheck-client",
            "apiserver-etcd-client",
        ] {
            want.push(format!("master-{n}/pki/{f}.crt"));
            want.push(format!("master-{n}/pki/{f}.key"));
        }
        want.push(format!("master-{n}/pki/sa.key"));
        want.push(format!("master-{n}/pki/sa.pub"));
        for c in [
            "admin",
            "super-admin",
            "controller-manager",
            "scheduler",
            "kubelet",
        ] {
            want.push(format!("master-{n}/{c}.conf"));
        }
    }
    for n in 1..=2 {
        for f in [
            "ca.crt",
            "apilb-health.crt",
            "apilb-health.key",
            "apilb-admin-ca.crt",
            "apilb-admin-server.crt",
            "apilb-admin-server.key",
        ] {
            want.push(format!("lb-{n}/pki/{f}"));
        }
    }
    // The admin endpoint's CA (with its key) and the operators' client certificate.
    for f in [
        "apilb-admin-ca.crt",
        "apilb-admin-ca.key",
        "apilb-admin.crt",
        "apilb-admin.key",
    ] {
        want.push(format!("apilb-admin/{f}"));
    }
    want.push("rbac/apilb-health.yaml".into());
    want.sort();
    let mut got: Vec<String> = files.keys().map(|p| p.display().to_string()).collect();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(report.written.len(), want.len());

    // Modes.
    use std::os::unix::fs::PermissionsExt;
    for (p, (_, mode)) in &files {
        let name = p.display().to_string();
        let want = if name.ends_with(".key") || name.ends_with(".conf") || name.ends_with("sa.pub")
        {
            0o600
        } else {
            0o644
        };
        assert_eq!(*mode, want, "{name}");
    }
    for d in ["master-1", "master-1/pki", "master-1/pki/etcd", "lb-1/pki"] {
        assert_eq!(
            std::fs::metadata(out.join(d)).unwrap().permissions().mode() & 0o777,
            0o700,
            "{d}"
        );
    }
    assert_eq!(
        std::fs::metadata(out.join("rbac"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );

    // CAs and SA: identical on every master (and LB host for ca.crt).
    for f in [
        "ca.crt",
        "ca.key",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "etcd/ca.crt",
        "etcd/ca.key",
        "sa.key",
        "sa.pub",
    ] {
        let first = &files[&Path::new("master-1/pki").join(f)];
        for n in 2..=3 {
            assert_eq!(
                &files[&Path::new(&format!("master-{n}/pki")).join(f)],
                first,
                "{f} on master-{n}"
            );
        }
    }
    assert_eq!(
        files[Path::new("lb-1/pki/ca.crt")],
        files[Path::new("master-1/pki/ca.crt")]
    );
    for (base, cn) in [
        ("ca", "kubernetes"),
        ("front-proxy-ca", "front-proxy-ca"),
        ("etcd/ca", "etcd-ca"),
    ] {
        check_ca(
            &out.join("master-1/pki"),
            base,
            cn,
            alg,
            now,
            openssl_checks,
        );
    }
    // SA: PKIX public key matching the private key.
    let sa_pub = std::fs::read_to_string(out.join("master-1/pki/sa.pub")).unwrap();
    assert!(sa_pub.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let sa_key = apilb::pki::PrivateKey::from_pem(
        &std::fs::read_to_string(out.join("master-1/pki/sa.key")).unwrap(),
    )
    .unwrap();
    assert_eq!(sa_key.public_pem(), sa_pub, "sa.pub is the SPKI of sa.key");
    if openssl_checks {
        assert_eq!(
            openssl(&[
                "pkey",
                "-in",
                out.join("master-1/pki/sa.key").to_str().unwrap(),
                "-pubout"
            ]),
            sa_pub
        );
    }

    // Every leaf and kubeconfig.
    for e in expectations(net) {
        let ca_pem = std::fs::read_to_string(out.join(&e.ca_file)).unwrap();
        if e.file.ends_with(".conf") {
            let (server, ca_data, cert, key) = kubeconfig_parts(&out.join(&e.file));
            assert_eq!(ca_data, ca_pem, "{}: embeds exactly ca.crt", e.file);
            let local = e.file.contains("controller-manager") || e.file.contains("scheduler");
            let n = &e.file["master-".len().."master-".len() + 1];
            let want = if local {
                format!("https://127.{net}.0.1{n}:6443")
            } else {
                "https://k8s-api.test.internal:6443".to_owned()
            };
            assert_eq!(server, want, "{}", e.file);
            let doc: serde_yaml::Value =
                serde_yaml::from_str(&std::fs::read_to_string(out.join(&e.file)).unwrap()).unwrap();
            assert_eq!(
                doc["current-context"].as_str().unwrap(),
                format!("{}@kubernetes", e.cn)
            );
            assert_eq!(doc["users"][0]["name"].as_str().unwrap(), e.cn);
            check_leaf(&e, &cert, &key, &ca_pem, alg, now, &tmp, openssl_checks);
        } else {
            let cert = std::fs::read_to_string(out.join(&e.file)).unwrap();
            let key = std::fs::read_to_string(out.join(e.file.replace(".crt", ".key"))).unwrap();
            check_leaf(&e, &cert, &key, &ca_pem, alg, now, &tmp, openssl_checks);
        }
    }
    // Leaves are per master: different keys.
    assert_ne!(
        files[Path::new("master-1/pki/apiserver.key")],
        files[Path::new("master-2/pki/apiserver.key")]
    );
}

#[test]
fn full_tree_rsa_2048() {
    verify_full_tree("RSA-2048");
}

#[test]
fn full_tree_ecdsa_p256() {
    verify_full_tree("ECDSA-P256");
}

#[test]
fn full_tree_ecdsa_p384() {
    verify_full_tree("ECDSA-P384");
}

/// RSA-3072 and RSA-4096 (slow key generation): one CA and one leaf each, same checks.
#[test]
fn larger_rsa_keys() {
    use apilb::cluster::San;
    use apilb::pki::cert::{SanList, Window};
    use apilb::pki::{Ca, CaKind, KeyAlgorithm, PrivateKey, Profile, Usage};
    let openssl_checks = with_openssl("larger_rsa_keys");
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    for (alg, bits) in [
        (KeyAlgorithm::Rsa3072, "3072"),
        (KeyAlgorithm::Rsa4096, "4096"),
    ] {
        let ca = Ca::generate(
            CaKind::Etcd,
            PrivateKey::generate(alg).unwrap(),
            Window::starting(now, std::time::Duration::from_secs(87600 * 3600)),
        )
        .unwrap();
        let key = PrivateKey::generate(alg).unwrap();
        assert_eq!(key.algorithm(), Some(alg));
        let mut sans = SanList::default();
        sans.push(&San::Dns("etcd-1".into()));
        sans.push(&San::Ip(ip("10.0.0.21")));
        let profile = Profile {
            ca: CaKind::Etcd,
            common_name: "etcd-1".into(),
            organizations: vec![],
            usages: vec![Usage::ServerAuth, Usage::ClientAuth],
            sans,
        };
        let cert = ca
            .issue(
                &profile,
                &key,
                Window::starting(now, std::time::Duration::from_secs(8760 * 3600)),
            )
            .unwrap();
        let e = Expect {
            file: format!("{alg} etcd/server"),
            ca_file: String::new(),
            cn: "etcd-1".into(),
            orgs: vec![],
            ekus: vec![Eku::Server, Eku::Client],
            dns: vec!["etcd-1".into()],
            ips: vec![ip("10.0.0.21")],
        };
        check_leaf(
            &e,
            &cert.pem,
            key.pem(),
            &ca.cert().cert().pem,
            alg.as_str(),
            now,
            dir.path(),
            openssl_checks,
        );
        if !openssl_checks {
            continue;
        }
        let text = openssl(&[
            "pkey",
            "-in",
            dir.path().join("key.pem").to_str().unwrap(),
            "-noout",
            "-text",
        ]);
        assert!(
            text.contains(&format!("Private-Key: ({bits} bit")),
            "{text}"
        );
    }
}

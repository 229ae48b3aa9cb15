//! The one PEM/X.509 reader (`apilb::pki::pem`) as the health probes and the admin endpoint's
//! expiry metric use it: exact messages that name the config key, the file and the problem.

use std::path::{Path, PathBuf};

use apilb::config::CheckTls;
use apilb::health::probe::client_config;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{STACKED, issue, loopback_cluster, loopback_net};

fn tls(ca: &Path, cert: &Path, key: &Path) -> CheckTls {
    CheckTls {
        ca: ca.to_owned(),
        cert: Some(cert.to_owned()),
        key: Some(key.to_owned()),
        server_name: None,
    }
}

fn message(t: &CheckTls) -> String {
    match client_config(t, "health.tls") {
        Ok(_) => panic!("{t:?} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn probe_tls_files_and_expiry_read_through_pki_pem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    issue(
        &loopback_cluster(loopback_net(), "ECDSA-P256", STACKED),
        &out,
        false,
    )
    .unwrap();
    let pki = out.join("lb-1/pki");
    let (ca, cert, key) = (
        pki.join("ca.crt"),
        pki.join("apilb-health.crt"),
        pki.join("apilb-health.key"),
    );
    client_config(&tls(&ca, &cert, &key), "health.tls").expect("the issued LB files load");

    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let empty = write("empty.crt", "");
    assert_eq!(
        message(&tls(&empty, &cert, &key)),
        format!("health.tls.ca: {}: is empty", empty.display())
    );
    let not_pem = write("not-pem.key", "this is not a key\n");
    assert_eq!(
        message(&tls(&ca, &cert, &not_pem)),
        format!(
            "health.tls.key: {}: no RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY block",
            not_pem.display()
        )
    );
    assert_eq!(
        message(&tls(&ca, &key, &key)),
        format!("health.tls.cert: {}: no CERTIFICATE block", key.display())
    );
    let other_key = out.join("master-1/pki/apiserver.key");
    assert_eq!(
        message(&tls(&ca, &cert, &other_key)),
        format!(
            "health.tls.key: {}: does not match the certificate in {}",
            other_key.display(),
            cert.display()
        )
    );
    let missing = dir.path().join("missing.crt");
    assert_eq!(
        message(&tls(&missing, &cert, &key)),
        format!(
            "health.tls.ca: {}: No such file or directory (os error 2)",
            missing.display()
        )
    );

    // The admin endpoint's expiry metric: NotAfter as x509-parser reads it directly.
    let der = apilb::pki::pem::first_certificate(&std::fs::read_to_string(&cert).unwrap()).unwrap();
    let (_, x) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(
        apilb::admin::certificate_not_after(&cert).unwrap(),
        x.validity().not_after.timestamp()
    );
    assert_eq!(
        apilb::admin::certificate_not_after(&empty)
            .unwrap_err()
            .to_string(),
        format!("{}: is empty", empty.display())
    );
}

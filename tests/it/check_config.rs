//! `apilb check-config` (and the cluster description's errors) as an operator sees them:
//! the exact stderr/stdout and exit code of the built binary, one test per case of issue 18's
//! "check-config and errors".

use std::path::Path;

use crate::support::apiserver::TestPki;
use crate::support::{apilb_cmd, repo_path};

/// Write `text` to `dir/name` and return the path as a string.
fn file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8 path").to_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An unknown key no longer hides the other problems: every one is printed, in file order.
#[test]
fn an_unknown_key_hides_no_other_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = file(
        dir.path(),
        "lb.yaml",
        "listen: [\"127.0.0.1:6443\"]\n\
         backends:\n\
         \x20 - {name: a, address: \"10.0.0.300:6443\"}\n\
         \x20 - {name: b, adress: \"10.0.0.2:6443\"}\n\
         balanse: round-robin\n\
         timeouts: {idle: 5}\n",
    );
    let out = apilb_cmd(&["check-config", &p]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert_eq!(
        stderr(&out),
        format!(
            "{p}:3:24: backends[0].address: \"10.0.0.300:6443\" is not a valid address: \"10.0.0.300\" is not an IPv4 address\n\
             {p}:4:5: backends[1].address: is required\n\
             {p}:4:15: backends[1]: unknown field `adress`, expected one of `name`, `address`, `weight`, `health`\n\
             {p}:5:1: unknown field `balanse`, expected one of `listen`, `backends`, `balance`, `maxConnections`, `forwarding`, `workers`, `timeouts`, `listener`, `tcp`, `health`, `metrics`, `resolvers`, `dnsTtl`, `vip`, `announce`, `rebalance`\n\
             {p}:6:18: timeouts.idle: \"5\" is not a duration: it has no unit (write e.g. 5s or 5ms)\n"
        )
    );
    assert_eq!(stdout(&out), "");
}

/// Every missing TLS file is reported, each at the line and column of the key that names
/// it; a backend that inherits the global CA gets its problem at `health.tls.ca`.
#[test]
fn every_missing_tls_file_is_reported_with_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let p = file(
        dir.path(),
        "lb.yaml",
        &format!(
            "listen: [\"127.0.0.1:6443\"]\n\
             backends:\n\
             \x20 - {{name: a, address: \"127.0.0.1:1\"}}\n\
             \x20 - name: b\n\
             \x20   address: \"127.0.0.1:2\"\n\
             \x20   health: {{tls: {{cert: {d}/b.crt, key: {d}/b.key}}}}\n\
             health:\n\
             \x20 kind: https\n\
             \x20 tls:\n\
             \x20   ca: {d}/ca.crt\n\
             \x20   cert: {d}/client.crt\n\
             \x20   key: {d}/client.key\n"
        ),
    );
    let out = apilb_cmd(&["check-config", &p]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let enoent = "No such file or directory (os error 2)";
    // Line 6 holds both of b's files; the key's column depends on the directory's length.
    let key_col = format!("    health: {{tls: {{cert: {d}/b.crt, key: ").len() + 1;
    assert_eq!(
        stderr(&out),
        format!(
            "{p}:6:26: backends[1].health.tls.cert: {d}/b.crt: {enoent}\n\
             {p}:6:{key_col}: backends[1].health.tls.key: {d}/b.key: {enoent}\n\
             {p}:10:9: health.tls.ca: {d}/ca.crt: {enoent}\n\
             {p}:11:11: health.tls.cert: {d}/client.crt: {enoent}\n\
             {p}:12:10: health.tls.key: {d}/client.key: {enoent}\n"
        )
    );
}

/// A key that does not go with its certificate is placed at `health.tls.key`.
#[test]
fn a_mismatched_client_key_is_placed_at_its_key() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = file(
        dir.path(),
        "lb.yaml",
        &format!(
            "listen: [\"127.0.0.1:6443\"]\nbackends: [{{name: a, address: \"127.0.0.1:1\"}}]\nhealth:\n  kind: tls\n  tls:\n    ca: {}\n    cert: {}\n    key: {}\n",
            pki.ca.display(),
            pki.client_cert.display(),
            pki.stranger_key.display()
        ),
    );
    let out = apilb_cmd(&["check-config", &p]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = stderr(&out);
    let prefix = format!("{p}:8:10: health.tls.key: ");
    assert!(err.starts_with(&prefix), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.len() > prefix.len() + 1, "{err}");
    // With the matching key, it is valid.
    let good = file(
        dir.path(),
        "good.yaml",
        &std::fs::read_to_string(&p).expect("read").replace(
            pki.stranger_key.to_str().expect("utf-8"),
            pki.client_key.to_str().expect("utf-8"),
        ),
    );
    let out = apilb_cmd(&["check-config", &good]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// The summary prints YAML spellings, and `--config FILE` works as well as `FILE`.
#[test]
fn summary_uses_yaml_spellings_and_both_forms_work() {
    let example = repo_path("config/apilb.yaml");
    let example = example.to_str().expect("utf-8 path");
    for args in [
        &["check-config", example][..],
        &["check-config", "--config", example],
        &["check-config", "-c", example],
    ] {
        let out = apilb_cmd(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert_eq!(
            stdout(&out),
            format!("{example}: ok (1 listener(s), 3 backend(s), balance least-connections)\n"),
            "{args:?}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let p = file(
        dir.path(),
        "rr.yaml",
        "listen: [\"127.0.0.1:6443\", \"[::1]:6443\"]\nbackends: [{name: a, address: \"127.0.0.1:1\"}]\nbalance: random-two\n",
    );
    let out = apilb_cmd(&["check-config", &p]);
    assert_eq!(
        stdout(&out),
        format!("{p}: ok (2 listener(s), 1 backend(s), balance random-two)\n")
    );
    // Both forms at once, or none, is a usage error.
    let out = apilb_cmd(&["check-config", "--config", example, example]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = apilb_cmd(&["check-config"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// `serve` takes the positional form too (a bad file shows it reached the config check).
#[test]
fn serve_accepts_a_positional_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = file(dir.path(), "bad.yaml", "listen: []\nbackends: []\n");
    for args in [&["serve", &p][..], &["serve", "--config", &p]] {
        let out = apilb_cmd(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {out:?}");
        assert_eq!(
            stderr(&out),
            format!(
                "{p}:1:9: listen: needs at least one address, e.g. [\"127.0.0.1:6443\"]\n{p}:2:11: backends: needs at least one backend\n"
            ),
            "{args:?}"
        );
    }
}

/// One documented duration syntax: `1 hour` is refused with how to write it.
#[test]
fn durations_have_one_documented_syntax() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = file(
        dir.path(),
        "lb.yaml",
        "listen: [\"127.0.0.1:6443\"]\nbackends: [{name: a, address: \"127.0.0.1:1\"}]\ntimeouts:\n  idle: 1 hour\n  drain: 1h30m\n  connect: 1.5s\n",
    );
    let out = apilb_cmd(&["check-config", &p]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert_eq!(
        stderr(&out),
        format!(
            "{p}:4:9: timeouts.idle: \"1 hour\" is not a duration: write it without spaces, with the units ms, s, m, h, d (e.g. 1h or 1h30m)\n\
             {p}:6:12: timeouts.connect: \"1.5s\" is not a duration: write a number and a unit, e.g. 3s, 250ms or 1h30m\n"
        )
    );
}

/// `serve --help` says what the signals do and what the exit codes mean.
#[test]
fn serve_help_describes_signals_and_exit_codes() {
    let out = apilb_cmd(&["serve", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for phrase in [
        "SIGHUP re-reads the config file",
        "SIGTERM or SIGINT stop accepting",
        "a second SIGTERM or SIGINT cuts them at once",
        "Exit codes: 0 after a clean shutdown; 64 for a bad config",
        "1 for a failure while starting or running",
        "Usage: apilb serve [OPTIONS] <--config <FILE>|FILE>",
    ] {
        assert!(help.contains(phrase), "missing {phrase:?} in:\n{help}");
    }
}

/// The cluster description's problems have the LB config's format, through `apilb issue`.
#[test]
fn cluster_description_problems_have_the_same_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = file(
        dir.path(),
        "cluster.yaml",
        "kubernetesVersion: v1.31.2\n\
         controlPlaneEndpoint: 10.0.0.100\n\
         loadBalancer: {vip: 10.0.0.100}\n\
         masters:\n\
         \x20 - {name: master-1, address: 10.0.0.11}\n\
         \x20 - {name: master-2, adress: 10.0.0.12}\n\
         pki: {caValidity: 1 year}\n",
    );
    let out_dir = dir.path().join("out");
    let out = apilb_cmd(&[
        "issue",
        "--cluster",
        &p,
        "--out",
        out_dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert_eq!(
        stderr(&out),
        format!(
            "{p}:6:5: masters[1].address: is required\n\
             {p}:6:22: masters[1]: unknown field `adress`, expected one of `name`, `address`, `certSANs`, `asn`\n\
             {p}:7:19: pki.caValidity: \"1 year\" is not a duration: write it without spaces, with the units ms, s, m, h, d (e.g. 1h or 1h30m)\n"
        )
    );
    assert!(!out_dir.exists(), "nothing written");
}

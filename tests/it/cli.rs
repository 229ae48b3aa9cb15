//! The command line: `check-config`, `--version`, `--help`, the hidden `demo-apiserver`.

use std::process::Command;

use crate::support::repo_path;

fn apilb(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_apilb"))
        .args(args)
        .output()
        .expect("run apilb")
}

#[test]
fn check_config_accepts_the_example() {
    let path = repo_path("config/apilb.yaml");
    let out = apilb(&["check-config", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok (1 listener(s), 3 backend(s)"));
}

#[test]
fn check_config_prints_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "listen: [\"127.0.0.1:6443\"]\nbackends:\n  - {name: a, address: \"10.0.0.300:6443\"}\n  - {name: a, address: \"10.0.0.2:6443\"}\ntimeouts: {idle: 5}\n",
    )
    .expect("write");
    let out = apilb(&["check-config", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(64));
    let p = path.display();
    let want = format!(
        "{p}:3:24: backends[0].address: \"10.0.0.300:6443\" is not a valid address: \"10.0.0.300\" is not an IPv4 address\n\
         {p}:4:12: backends[1].name: \"a\" is used by another backend\n\
         {p}:5:18: timeouts.idle: \"5\" is not a duration: it has no unit (write e.g. 5s or 5ms)\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), want);
}

#[test]
fn check_config_names_a_missing_file() {
    let out = apilb(&["check-config", "/nonexistent/apilb.yaml"]);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "/nonexistent/apilb.yaml: cannot read: No such file or directory (os error 2)\n"
    );
}

#[test]
fn serve_with_a_bad_config_exits_64_before_binding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "listen: []\nbackends: []\n").expect("write");
    let out = apilb(&["serve", "--config", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen: needs at least one address"));
}

#[test]
fn version_and_help_on_every_subcommand() {
    let out = apilb(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("apilb {}", env!("CARGO_PKG_VERSION"))
    );
    for sub in [
        &["--help"][..],
        &["serve", "--help"],
        &["check-config", "--help"],
    ] {
        let out = apilb(sub);
        assert_eq!(out.status.code(), Some(0), "{sub:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: apilb"),
            "{sub:?}"
        );
    }
}

/// The lab's per-process stand-in apiserver is hidden from `--help`, and a missing PKI
/// directory is a usage error (64) naming the file.
#[test]
fn demo_apiserver_is_hidden_and_checks_its_pki() {
    let help = apilb(&["--help"]);
    assert!(!String::from_utf8_lossy(&help.stdout).contains("demo-apiserver"));
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("nope");
    let out = apilb(&[
        "demo-apiserver",
        "--listen",
        "127.0.0.1:0",
        "--pki",
        pki.to_str().expect("utf-8 path"),
        "--name",
        "m",
    ]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("apiserver.crt"),
        "{out:?}"
    );
}

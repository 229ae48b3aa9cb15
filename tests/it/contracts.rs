//! Contracts of the built binary that README.md and `--help` promise, checked black-box over
//! loopback: log format and filter, a busy listen address, `backend drain --wait` at its
//! deadline, `bootstrap --renew`, `--help` everywhere, bad health-check TLS files (in
//! `check-config`, `serve` and on SIGHUP), `metrics.admin`, and every documented metric family.
//!
//! Assertions hold to the stable parts of messages (exit codes, file names, key names,
//! addresses), not to their wording.
//!
//! Run: `cargo test --test it contracts`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::net::{TcpSocket, TcpStream};

use crate::support::apiserver::TestPki;
use crate::support::dns::TestDns;
use crate::support::*;

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run `apilb` with `args` and a config file holding `yaml` (its path replaces `{}`).
fn with_config(yaml: &str, args: &[&str]) -> (Output, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lb.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let p = path.to_str().expect("utf-8 path");
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "{}" { p } else { a })
        .collect();
    (apilb_cmd(&args), dir, path)
}

/// Value of the sample whose line starts with `series` (name and labels).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Stop a served LB with SIGTERM and wait until its last log line is in.
async fn stop(lb: &mut LbProcess) {
    lb.signal(Signal::SIGTERM);
    assert_eq!(lb.wait_exit(WAIT).await, Some(0), "{}", lb.log());
    lb.wait_for_log("stopped").await;
}

// ---------------------------------------------------------------------------------------
// Logging

/// `--log-format json`: every line on stderr is one JSON object with a level and a message,
/// through start, a reload, a failed reload and shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_writes_one_object_per_line() {
    let a = EchoBackend::start("a").await;
    let listen = addr();
    let yaml = lb_yaml(&[listen], &[("a", a.addr)], "");
    let mut lb = LbProcess::spawn_with(&yaml, |c| {
        c.args(["--log-format", "json"]);
    });
    wait_listening(listen).await;
    lb.write_config(&yaml);
    lb.signal(Signal::SIGHUP);
    lb.wait_for_log("config reloaded").await;
    lb.write_config("listen: [oops");
    lb.signal(Signal::SIGHUP);
    lb.wait_for_log("reload failed").await;
    stop(&mut lb).await;

    let log = lb.log();
    let mut levels = BTreeSet::new();
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{log}"));
        let level = v["level"]
            .as_str()
            .unwrap_or_else(|| panic!("no level: {line}"));
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
            "{line}"
        );
        let message = v["fields"]["message"]
            .as_str()
            .or_else(|| v["message"].as_str());
        assert!(message.is_some_and(|m| !m.is_empty()), "no message: {line}");
        levels.insert(level.to_owned());
    }
    // Start, reload and shutdown are INFO; the failed reload is an ERROR.
    assert!(
        levels.contains("INFO") && levels.contains("ERROR"),
        "{levels:?}\n{log}"
    );
}

/// `--log FILTER` decides what is printed, and overrides RUST_LOG either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_filter_selects_what_is_printed_and_overrides_rust_log() {
    let a = EchoBackend::start("a").await;

    // RUST_LOG=info (set by LbProcess), --log warn: the failed reload, no INFO lines.
    let listen = addr();
    let mut quiet = LbProcess::spawn_with(&lb_yaml(&[listen], &[("a", a.addr)], ""), |c| {
        c.args(["--log", "warn"]);
    });
    wait_listening(listen).await;
    quiet.write_config("listen: [oops");
    quiet.signal(Signal::SIGHUP);
    quiet.wait_for_log("reload failed").await;
    quiet.signal(Signal::SIGTERM);
    assert_eq!(quiet.wait_exit(WAIT).await, Some(0));
    let log = quiet.log();
    assert!(!log.contains("apilb serving"), "{log}");
    assert!(!log.contains(" INFO "), "{log}");

    // RUST_LOG=warn, --log info: the INFO lines are back.
    let listen = addr();
    let mut loud = LbProcess::spawn_with(&lb_yaml(&[listen], &[("a", a.addr)], ""), |c| {
        c.env("RUST_LOG", "warn").args(["--log", "info"]);
    });
    wait_listening(listen).await;
    loud.wait_for_log("apilb serving").await;
    stop(&mut loud).await;
    assert!(loud.log().contains(" INFO "), "{}", loud.log());
}

// ---------------------------------------------------------------------------------------
// Start-up failures

/// A listen address another socket holds: exit 1, the address named, and the metrics
/// endpoint (bound before the proxy) not left behind.
#[test]
fn busy_listen_address_exits_1_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().expect("addr");
    let metrics = addr();
    let (out, _dir, _) = with_config(
        &lb_yaml(
            &[busy],
            &[("a", dead_addr())],
            &format!("metrics: {{listen: \"{metrics}\"}}\n"),
        ),
        &["serve", "--config", "{}"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains(&busy.to_string()), "{err}");
    assert!(std::net::TcpStream::connect(metrics).is_err());
}

// ---------------------------------------------------------------------------------------
// backend drain --wait

/// `drain --wait` with a connection held open through the LB: at the deadline it exits 1
/// and says how many connections are left; the connection itself keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_wait_reaching_its_deadline_exits_1() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let (listen, metrics) = (addr(), addr());
    let lb = LbProcess::spawn(&lb_yaml(
        &[listen],
        &[("a", a.addr), ("b", b.addr)],
        &format!("balance: round-robin\nmetrics: {{listen: \"{metrics}\"}}\n"),
    ));
    wait_listening(listen).await;
    wait_listening(metrics).await;
    let (mut held, on) = connect_tagged(listen).await;
    let m = metrics.to_string();
    let args = [
        "backend",
        "drain",
        on.as_str(),
        "--wait",
        "--deadline",
        "1s",
        "--metrics-address",
        m.as_str(),
    ]
    .map(str::to_owned);
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        apilb_cmd(&args)
    })
    .await
    .expect("join");
    let took = started.elapsed();
    let printed = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{printed}{}", text(&out.stderr));
    let last = printed.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("{on}: 1 connections still open after 1s")),
        "{printed}"
    );
    assert!(took >= Duration::from_secs(1), "{took:?}");
    roundtrip(&mut held, b"still flowing after the deadline").await;
    assert!(!lb.log().contains("panicked"));
}

// ---------------------------------------------------------------------------------------
// bootstrap --renew

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("prefix").to_owned();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// (SubjectPublicKeyInfo, serial, notBefore) of a PEM certificate.
fn cert_facts(pem: &[u8]) -> (Vec<u8>, Vec<u8>, i64) {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).expect("PEM");
    let c = p.parse_x509().expect("X.509");
    (
        c.public_key().raw.to_vec(),
        c.raw_serial().to_vec(),
        c.validity().not_before.timestamp(),
    )
}

/// `bootstrap --renew` on a real tree: keys, CAs and generated configs stay byte for byte;
/// every leaf certificate is reissued for the same key; kubeconfigs get new client
/// certificates.
#[test]
fn bootstrap_renew_reissues_leaves_and_keeps_keys_cas_and_configs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = dir.path().join("cluster.yaml");
    std::fs::write(
        &cluster,
        crate::pki::loopback_cluster(
            crate::pki::loopback_net(),
            "ECDSA-P256",
            crate::pki::STACKED,
        ),
    )
    .expect("write cluster");
    let out = dir.path().join("out");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "bootstrap",
            "--cluster",
            cluster.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        let o = apilb_cmd(&args);
        assert_eq!(o.status.code(), Some(0), "{extra:?}: {}", text(&o.stderr));
    };
    run(&[]);
    let before = files(&out);
    run(&["--renew"]);
    let after = files(&out);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the same files"
    );

    let (mut leaves, mut kubeconfigs, mut kept) = (0, 0, 0);
    for (rel, old) in &before {
        let new = &after[rel];
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let is_ca = name.ends_with("ca.crt");
        if name.ends_with(".crt") && !is_ca {
            let (old_key, old_serial, old_nb) = cert_facts(old);
            let (new_key, new_serial, new_nb) = cert_facts(new);
            assert_eq!(old_key, new_key, "{}: same key", rel.display());
            assert_ne!(old_serial, new_serial, "{}: reissued", rel.display());
            assert!(
                new_nb >= old_nb,
                "{}: notBefore not moved back",
                rel.display()
            );
            leaves += 1;
        } else if name.ends_with(".conf") {
            assert_ne!(old, new, "{}: new client certificate", rel.display());
            kubeconfigs += 1;
        } else {
            // Keys, CA certificates, sa.pub, kubeadm.yaml (token and certificate key kept),
            // LB configs, units, manifests and READMEs.
            assert_eq!(old, new, "{}: unchanged by --renew", rel.display());
            kept += 1;
        }
    }
    assert!(
        before.keys().any(|p| p.ends_with("kubeadm.yaml"))
            && before.keys().any(|p| p.ends_with("apiserver.key"))
            && before.keys().any(|p| p.ends_with("pki/ca.crt")),
        "{:?}",
        before.keys()
    );
    assert!(
        leaves >= 10 && kubeconfigs >= 4 && kept >= 10,
        "{leaves} leaves, {kubeconfigs} kubeconfigs, {kept} kept"
    );
}

// ---------------------------------------------------------------------------------------
// --help

/// The subcommand names listed under "Commands:" in a help text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect()
}

/// The options and arguments each subcommand's help must mention. A subcommand that
/// `--help` lists but this table lacks fails the test, so a new one gets its line here.
const EXPECTED_OPTIONS: &[(&str, &[&str])] = &[
    ("serve", &["--config"]),
    ("check-config", &["<FILE>"]),
    (
        "demo",
        &["--dir", "--listen", "--metrics-address", "--no-input"],
    ),
    ("status", &["--metrics-address", "--json"]),
    ("backend", &["--metrics-address"]),
    (
        "backend drain",
        &["<NAME>", "--wait", "--deadline", "--metrics-address"],
    ),
    ("backend maint", &["<NAME>", "--metrics-address"]),
    ("backend enable", &["<NAME>", "--metrics-address"]),
    ("backend rebalance", &["--metrics-address"]),
    ("issue", &["--cluster", "--out", "--renew"]),
    (
        "bootstrap",
        &[
            "--cluster",
            "--out",
            "--kubeadm-api",
            "--token",
            "--certificate-key",
            "--renew",
            "--overwrite",
        ],
    ),
    ("certs", &[]),
    ("certs check-expiration", &["--dir"]),
    ("token", &[]),
    ("token create", &["--ttl"]),
    ("token secret-manifest", &["<TOKEN>", "--ttl"]),
    ("ca-cert-hash", &["<FILE>"]),
    ("certificate-key", &[]),
    ("completions", &["<SHELL>", "bash", "zsh", "fish"]),
];

/// `--help` on every subcommand `apilb --help` lists (and on theirs, recursively): exit 0,
/// its own usage line, the global log options and the subcommand's own options.
#[test]
fn help_on_every_subcommand_lists_its_options() {
    let top = apilb_cmd(&["--help"]);
    assert_eq!(top.status.code(), Some(0));
    let mut queue: Vec<Vec<String>> = subcommands(&text(&top.stdout))
        .into_iter()
        .map(|s| vec![s])
        .collect();
    assert!(queue.len() >= 10, "{}", text(&top.stdout));
    let mut seen = BTreeSet::new();
    while let Some(path) = queue.pop() {
        let key = path.join(" ");
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = apilb_cmd(&args);
        let help = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{key}: {out:?}");
        assert!(
            help.contains(&format!("Usage: apilb {key}")),
            "{key}:\n{help}"
        );
        let want = EXPECTED_OPTIONS
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("`apilb {key}` is new: add its options to EXPECTED_OPTIONS"))
            .1;
        for opt in want
            .iter()
            .chain(&["--log-format", "--log <FILTER>", "--help"])
        {
            assert!(
                help.contains(opt),
                "`apilb {key} --help` lacks {opt}:\n{help}"
            );
        }
        for sub in subcommands(&help) {
            let mut p = path.clone();
            p.push(sub);
            queue.push(p);
        }
        seen.insert(key);
    }
    let table: BTreeSet<String> = EXPECTED_OPTIONS
        .iter()
        .map(|(k, _)| k.to_string())
        .collect();
    assert_eq!(seen, table, "every subcommand in the table is still listed");
}

// ---------------------------------------------------------------------------------------
// Bad health-check TLS files

/// The three broken TLS set-ups: (what, ca, cert, key, a file the message must name).
fn bad_tls_cases(pki: &TestPki) -> Vec<(&'static str, PathBuf, PathBuf, PathBuf, PathBuf)> {
    let empty_ca = pki.dir.path().join("empty-ca.crt");
    std::fs::write(&empty_ca, "").expect("write");
    let not_pem = pki.dir.path().join("not-pem.key");
    std::fs::write(&not_pem, "this is not a PEM private key\n").expect("write");
    vec![
        (
            "empty CA file",
            empty_ca.clone(),
            pki.client_cert.clone(),
            pki.client_key.clone(),
            empty_ca,
        ),
        (
            "non-PEM key",
            pki.ca.clone(),
            pki.client_cert.clone(),
            not_pem.clone(),
            not_pem,
        ),
        (
            "key not matching the certificate",
            pki.ca.clone(),
            pki.client_cert.clone(),
            pki.stranger_key.clone(),
            // The pair is at fault; today's message names the certificate file and the
            // `key` key.
            pki.client_cert.clone(),
        ),
    ]
}

fn tls_health_yaml(ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "health:\n  kind: https\n  tls:\n    ca: \"{}\"\n    cert: \"{}\"\n    key: \"{}\"\n",
        ca.display(),
        cert.display(),
        key.display()
    )
}

/// `check-config` and `serve` with each broken TLS set-up: exit 64 naming the file, and
/// `serve` binds nothing.
#[test]
fn bad_health_tls_files_are_config_errors_before_binding() {
    let pki = TestPki::new();
    for (what, ca, cert, key, named) in bad_tls_cases(&pki) {
        let listen = addr();
        let metrics = addr();
        let yaml = lb_yaml(
            &[listen],
            &[("a", dead_addr())],
            &format!(
                "{}metrics: {{listen: \"{metrics}\"}}\n",
                tls_health_yaml(&ca, &cert, &key)
            ),
        );
        let file = named.file_name().and_then(|n| n.to_str()).expect("name");

        let (out, _dir, _) = with_config(&yaml, &["check-config", "{}"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "check-config, {what}: {err}");
        assert!(
            err.contains(file),
            "check-config, {what}: names {file}: {err}"
        );
        assert!(
            err.contains("health.tls"),
            "check-config, {what}: names the key: {err}"
        );

        let (out, _dir, _) = with_config(&yaml, &["serve", "--config", "{}"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "serve, {what}: {err}");
        assert!(err.contains(file), "serve, {what}: names {file}: {err}");
        assert!(!err.contains("apilb serving"), "serve, {what}: {err}");
        for a in [listen, metrics] {
            assert!(
                std::net::TcpStream::connect(a).is_err(),
                "serve, {what}: {a} left bound"
            );
        }
    }
}

/// SIGHUP onto each broken TLS set-up: the reload is refused and counted, and the running
/// config keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_health_tls_files_on_sighup_keep_the_running_config() {
    let pki = TestPki::new();
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let (listen, metrics) = (addr(), addr());
    let metrics_yaml = format!("metrics: {{listen: \"{metrics}\"}}\n");
    let lb = LbProcess::spawn(&lb_yaml(&[listen], &[("a", a.addr)], &metrics_yaml));
    wait_listening(listen).await;
    wait_listening(metrics).await;
    let (mut held, _) = connect_tagged(listen).await;

    for (i, (what, ca, cert, key, named)) in bad_tls_cases(&pki).into_iter().enumerate() {
        // Had it applied, new connections would go to b.
        lb.write_config(&lb_yaml(
            &[listen],
            &[("b", b.addr)],
            &format!("{}{metrics_yaml}", tls_health_yaml(&ca, &cert, &key)),
        ));
        lb.signal(Signal::SIGHUP);
        wait_until(
            WAIT,
            &format!("reload {} refused ({what})", i + 1),
            || async { lb.log_count("reload failed") == i + 1 },
        )
        .await;
        let file = named.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(
            lb.log().contains(file),
            "{what}: names {file}:\n{}",
            lb.log()
        );
        assert_eq!(which_backend(listen).await, "a", "{what}");
        roundtrip(&mut held, what.as_bytes()).await;
        let (_, body) = http_get(metrics, "/metrics").await;
        assert_eq!(
            sample(&body, "apilb_config_reloads_total{result=\"failed\"}"),
            Some((i + 1) as f64),
            "{what}"
        );
    }
    assert!(!lb.log().contains("config reloaded"), "{}", lb.log());
}

// ---------------------------------------------------------------------------------------
// metrics.admin

/// An HTTP request from a chosen local address: its status.
async fn http_from(from: [u8; 4], to: SocketAddr, method: &str, path: &str) -> u16 {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind client address");
    let s: TcpStream = socket.connect(to).await.expect("connect");
    http_on(s, method, path).await.0
}

/// `metrics.admin`: `off` refuses state changes with 403 even from 127.0.0.1, `any` allows
/// them, `loopback` (the default) allows them from 127.0.0.1 and 127.0.0.2. On loopback
/// every peer is 127/8, so `loopback` refusing a non-loopback peer is
/// [`metrics_admin_loopback_refuses_a_non_loopback_peer`]'s job (a namespace, root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_admin_off_any_loopback() {
    let a = EchoBackend::start("a").await;
    for (admin, from, want) in [
        ("off", [127, 0, 0, 1], 403),
        ("any", [127, 0, 0, 1], 200),
        ("any", [127, 0, 0, 2], 200),
        ("loopback", [127, 0, 0, 1], 200),
        ("loopback", [127, 0, 0, 2], 200),
    ] {
        let (listen, metrics) = (addr(), addr());
        let lb = LbProcess::spawn(&lb_yaml(
            &[listen],
            &[("a", a.addr)],
            &format!("metrics: {{listen: \"{metrics}\", admin: {admin}}}\n"),
        ));
        wait_listening(metrics).await;
        let status = http_from(from, metrics, "POST", "/backends/a/drain").await;
        assert_eq!(status, want, "admin: {admin}, from {from:?}");
        // Reading stays open to everyone.
        assert_eq!(http_from(from, metrics, "GET", "/status").await, 200);
        let (_, body) = http_get(metrics, "/status").await;
        let st: apilb::admin::Status = serde_json::from_str(&body).expect("status JSON");
        let state = &st.backends.iter().find(|b| b.name == "a").expect("a").state;
        let drained = want == 200;
        assert_eq!(state == "drain", drained, "admin: {admin}: state {state}");
        drop(lb);
    }
}

/// `apilb backend drain a` run inside node 1 of `lab` against `metrics`.
fn drain_in(lab: &crate::support::netns::Lab, metrics: SocketAddr) -> Output {
    lab.command(1, env!("CARGO_BIN_EXE_apilb"))
        .args([
            "backend",
            "drain",
            "a",
            "--metrics-address",
            &metrics.to_string(),
        ])
        .env("NO_COLOR", "1")
        .output()
        .expect("run apilb backend drain")
}

/// In a namespace whose node has a real (non-loopback) address: with `metrics.admin:
/// loopback` a state change from that address is refused (403) while the same change from
/// 127.0.0.1 goes through; with `any` the non-loopback peer is allowed.
/// Run: `sudo APILB_REQUIRE_PRIVILEGED=1 cargo test --test it contracts::metrics_admin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_admin_loopback_refuses_a_non_loopback_peer() {
    let Some(lab) = crate::support::netns::Lab::with_nodes("admin", 1) else {
        return;
    };
    let ns = lab.ns(1);
    let own = crate::support::netns::node_ip(1);
    for (admin, want_remote) in [("loopback", false), ("any", true)] {
        let yaml = format!(
            "listen: [\"127.0.0.1:6443\"]\nbackends:\n  - {{name: a, address: \"127.0.0.1:1\"}}\n\
             health: {{kind: none}}\nmetrics: {{listen: \"0.0.0.0:9441\", admin: {admin}}}\n"
        );
        let lb = LbProcess::spawn_in_netns(&ns, &yaml);
        lb.wait_for_log("metrics and status endpoint listening")
            .await;
        let remote = SocketAddr::from((own, 9441));
        let out = drain_in(&lab, remote);
        let err = text(&out.stderr);
        if want_remote {
            assert_eq!(
                out.status.code(),
                Some(0),
                "admin: {admin}, from {own}: {err}"
            );
            assert!(text(&out.stdout).starts_with("a: drain"), "{out:?}");
        } else {
            assert_eq!(
                out.status.code(),
                Some(1),
                "admin: {admin}, from {own}: {err}"
            );
            assert!(err.contains("403"), "admin: {admin}, from {own}: {err}");
            let out = drain_in(&lab, SocketAddr::from(([127, 0, 0, 1], 9441)));
            assert_eq!(
                out.status.code(),
                Some(0),
                "admin: {admin}, from 127.0.0.1: {out:?}"
            );
        }
        drop(lb);
    }
}

// ---------------------------------------------------------------------------------------
// Documented metric families

/// The metric family names README.md lists under "Metrics and status" (`{a,b}` alternatives
/// expanded, label lists dropped). Only `apilb_*` names: "process metrics" has no list.
fn documented_families() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let start = readme
        .find("`GET /metrics`")
        .expect("README lists /metrics");
    let end = start + readme[start..].find("`GET /status`").expect("then /status");
    let section = &readme[start..end];
    let mut names = BTreeSet::new();
    for code in section.split('`').skip(1).step_by(2) {
        let name = code.split_once('{').map_or(code, |(n, _)| n);
        if !name.starts_with("apilb_") {
            continue;
        }
        // `apilb_connections_{accepted,rejected}_total` names several families.
        if let Some(open) = code.find("_{") {
            let close = code[open..].find('}').expect("closing brace") + open;
            for alt in code[open + 2..close].split(',') {
                names.insert(format!("{}_{alt}{}", &code[..open], &code[close + 1..]));
            }
        } else {
            names.insert(name.to_owned());
        }
    }
    names.into_iter().collect()
}

/// Connections the LB counts as open now.
async fn active(metrics: SocketAddr) -> Option<f64> {
    let (_, body) = http_get(metrics, "/metrics").await;
    sample(&body, "apilb_connections_active")
}

/// After traffic (proxied bytes, a refused backend, a rejected client over `maxConnections`,
/// a DNS-named backend, health checks, reloads, descriptor exhaustion and a client no backend
/// accepts), every family README.md documents has samples in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_metric_family_is_exported() {
    let families = documented_families();
    assert!(families.len() >= 20, "README's list parsed: {families:?}");
    if !have_tool("prlimit", "util-linux") {
        return;
    }
    let pki = TestPki::new();
    let a = EchoBackend::start("a").await;
    let dns = TestDns::start().await;
    dns.set("api.test.internal", &[a.addr.ip()], 60);
    let (listen, metrics) = (addr(), addr());
    let yaml = |max: usize| {
        format!(
            "listen: [\"{listen}\"]\nmaxConnections: {max}\nbalance: round-robin\nbackends:\n  \
             - {{name: a, address: \"{}\"}}\n  \
             - {{name: dead, address: \"{}\", health: {{kind: none}}}}\n  \
             - {{name: named, address: \"api.test.internal:{}\"}}\n\
             resolvers: [\"{}\"]\n\
             health: {{kind: tcp, interval: 100ms, fastInterval: 50ms}}\n\
             metrics: {{listen: \"{metrics}\", watchCertificates: [\"{}\"]}}\n",
            a.addr,
            dead_addr(),
            a.addr.port(),
            dns.addr,
            pki.ca.display()
        )
    };
    // A small descriptor limit (both soft and hard, so apilb cannot raise it) for the
    // accept-error phase.
    let lb = LbProcess::spawn_with_nofile(&yaml(1), 48);
    // Not wait_listening(listen): its probe, accepted late, could take the one slot.
    lb.wait_for_log("apilb serving").await;
    wait_listening(metrics).await;
    let idle = || async {
        wait_until(WAIT, "no connection open", || async {
            active(metrics).await == Some(0.0)
        })
        .await
    };
    // Round robin over three backends: one of three clients tries `dead` (refused, retried).
    for _ in 0..3 {
        idle().await;
        let (mut s, name) = connect_tagged(listen).await;
        assert_eq!(name, "a", "a and named are the same echo server");
        roundtrip(&mut s, b"some bytes").await;
    }
    // One connection held; a second client is over maxConnections.
    idle().await;
    let (held, name) = connect_tagged(listen).await;
    assert!(!name.is_empty(), "the held connection was admitted");
    let mut extra = TcpStream::connect(listen).await.expect("connect");
    assert!(closed_within(&mut extra, WAIT).await, "over maxConnections");
    drop(held);
    lb.write_config("listen: [oops");
    lb.signal(Signal::SIGHUP);
    lb.wait_for_log("reload failed").await;
    lb.write_config(&yaml(20000));
    lb.signal(Signal::SIGHUP);
    lb.wait_for_log("config reloaded").await;
    // Exhaust the descriptors: each proxied connection takes two.
    let mut clients = Vec::new();
    for _ in 0..40 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(listen)).await
        {
            clients.push(s);
        }
    }
    lb.wait_for_log("accept failed").await;
    drop(clients);
    idle().await;
    // Nothing accepts: a client whose every backend attempt fails.
    a.stop();
    wait_until(WAIT, "a client no backend accepted", || async {
        let mut s = TcpStream::connect(listen).await.expect("connect");
        closed_within(&mut s, WAIT).await;
        let (_, body) = http_get(metrics, "/metrics").await;
        body.contains("\napilb_connections_failed_total{")
    })
    .await;

    let (status, body) = http_get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    let missing: Vec<&String> = families
        .iter()
        .filter(|f| {
            !body.lines().any(|l| {
                l.strip_prefix(f.as_str())
                    .is_some_and(|rest| rest.starts_with([' ', '{']) || rest.starts_with("_bucket"))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "documented in README.md but without samples: {missing:?}\n{body}"
    );
}

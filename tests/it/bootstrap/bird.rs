//! `apilb bootstrap` with `loadBalancer.bgp`: every LB host's `bird.conf` passes BIRD's own
//! parse check (`bird -p`), single and dual stack, with and without BFD and password; the
//! password is read from its file at bootstrap time, lands only in `bird.conf` (0600), and a
//! missing or empty file is a clear error that writes nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::golden::example_with_bgp;
use super::{bootstrap, read};
use crate::support::have_tool;

/// `bird -p -c FILE` (parse only; no socket, no kernel).
fn bird_parses(file: &Path) {
    let o = Command::new("bird")
        .args(["-p", "-c"])
        .arg(file)
        .output()
        .expect("run bird");
    assert!(
        o.status.success(),
        "bird -p -c {}: {}\n{}",
        file.display(),
        String::from_utf8_lossy(&o.stderr),
        read(file)
    );
}

fn write_cluster(dir: &Path, yaml: &str) -> std::path::PathBuf {
    let file = dir.join("cluster.yaml");
    std::fs::write(&file, yaml).unwrap();
    file
}

#[test]
fn every_generated_bird_conf_parses() {
    if !have_tool("bird", "bird2") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("pw");
    std::fs::write(&password, "md5 secret with spaces\n").unwrap();
    let cases = [
        // Single stack, one router, password, BFD on (default).
        format!(
            "  bgp:\n    localAsn: 65010\n    routers: [{{address: 10.0.0.1, asn: 65000}}]\n    password: file:{}\n",
            password.display()
        ),
        // Two routers, BFD off, 4-byte AS numbers.
        "  bgp:\n    localAsn: 4200000001\n    routers: [{address: 10.0.0.1, asn: 4200000000}, {address: 10.0.0.2, asn: 65000}]\n    bfd: false\n".to_owned(),
    ];
    let dual = |bgp: &str| {
        example_with_bgp(bgp)
            .replace(
                "vip: 10.0.0.100                  # also",
                "vip: [10.0.0.100, 'fd00::100']  # also",
            )
            .replace(
                "serviceSubnet: 10.96.0.0/12,",
                "serviceSubnet: '10.96.0.0/12,fd00:10:96::/108',",
            )
    };
    let mut yamls: Vec<String> = cases.iter().map(|c| example_with_bgp(c)).collect();
    yamls.push(dual(
        "  bgp:\n    localAsn: 65010\n    routers: [{address: 10.0.0.1, asn: 65000}, {address: 'fd00::1', asn: 65000}]\n",
    ));
    for (n, yaml) in yamls.iter().enumerate() {
        let case = dir.path().join(format!("case{n}"));
        std::fs::create_dir(&case).unwrap();
        let out = case.join("out");
        let o = bootstrap(&write_cluster(&case, yaml), &out, &[]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "case {n}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        for lb in ["lb-1", "lb-2"] {
            let file = out.join(lb).join("bird.conf");
            bird_parses(&file);
            let text = read(&file);
            assert!(text.contains("kernel table 100;"), "{text}");
            assert!(text.contains("graceful restart off;"), "{text}");
            assert!(text.contains("hold time 9;"), "{text}");
            assert!(text.contains("import none;"), "{text}");
            assert_eq!(text.contains("bfd on;"), n != 1, "case {n}: {text}");
            assert_eq!(
                text.contains("password \"md5 secret with spaces\";"),
                n == 0,
                "case {n}: {text}"
            );
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, if n == 0 { 0o600 } else { 0o644 }, "case {n} {lb}");
            // apilb.yaml announces the VIPs into the table, with the protocol, bird.conf learns.
            let cfg = apilb::config::Config::from_yaml(
                &read(&out.join(lb).join("apilb.yaml")),
                "apilb.yaml",
            )
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(cfg.vip.is_none());
            let a = cfg.announce.as_ref().expect("an announce section");
            assert_eq!(
                (a.table, a.protocol, a.interface.as_str()),
                (100, 248, "lo")
            );
            assert_eq!(a.healthy_backends_below, 1);
            for ip in &a.addresses {
                let len = if ip.is_ipv4() { 32 } else { 128 };
                assert!(
                    text.contains(&format!("{ip}/{len}")),
                    "{ip} in bird.conf:\n{text}"
                );
            }
            assert!(text.contains("krt_source = 248;"), "{text}");
            // The password is in bird.conf only.
            for f in ["apilb.yaml", "README.md"] {
                assert!(!read(&out.join(lb).join(f)).contains("md5 secret"));
            }
            assert!(!String::from_utf8_lossy(&o.stdout).contains("md5 secret"));
        }
        if n == 2 {
            let text = read(&out.join("lb-1/bird.conf"));
            assert!(text.contains("ipv6 table vip6;"), "{text}");
            assert!(
                text.contains("export where net ~ [ fd00::100/128 ];"),
                "{text}"
            );
        }
    }
}

#[test]
fn password_file_problems_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let missing = dir.path().join("missing");
    for (file, want) in [
        (
            &missing,
            format!(
                "loadBalancer.bgp.password: cannot read {}: No such file or directory",
                missing.display()
            ),
        ),
        (
            &empty,
            format!(
                "loadBalancer.bgp.password: {} is empty; write the TCP-MD5 password into it",
                empty.display()
            ),
        ),
    ] {
        let yaml = example_with_bgp(&format!(
            "  bgp: {{localAsn: 65010, routers: [{{address: 10.0.0.1, asn: 65000}}], password: 'file:{}'}}\n",
            file.display()
        ));
        let out = dir.path().join("out");
        let o = bootstrap(&write_cluster(dir.path(), &yaml), &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{err}");
        assert!(err.contains(&want), "{err}");
        assert!(!out.join("lb-1").exists(), "nothing written: {err}");
    }
}

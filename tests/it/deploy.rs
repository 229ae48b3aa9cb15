//! deploy/apilb.service beyond `systemd-analyze verify` (in `bootstrap::lb`): its
//! `ExecStopPost` removes the VIP that `/etc/apilb/vip.env` names, as the per-host README
//! writes it, and does nothing (successfully) when the VIP is gone or the file is absent.
//!
//! Runs the command line as systemd would (`$$` is a literal `$`) inside a network
//! namespace of the test lab; needs root (`sudo cargo test --test it deploy`).

use crate::support::netns::{Lab, VIP};
use crate::support::repo_path;

/// The `ExecStopPost=` script of the unit, as the shell receives it.
fn exec_stop_post_script() -> String {
    let unit = std::fs::read_to_string(repo_path("deploy/apilb.service")).expect("read unit");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStopPost="))
        .expect("an ExecStopPost= line");
    let command = line
        .strip_prefix("-/bin/sh -c '")
        .and_then(|l| l.strip_suffix('\''))
        .unwrap_or_else(|| panic!("ExecStopPost is not -/bin/sh -c '...': {line}"));
    command.replace("$$", "$")
}

#[test]
fn exec_stop_post_removes_the_vip_after_a_crash() {
    let Some(lab) = Lab::with_nodes("stoppost", 1) else {
        return;
    };
    let script = exec_stop_post_script();
    let cidr = format!("{VIP}/24");
    let add = std::process::Command::new("ip")
        .args(["-n", &lab.ns(1), "addr", "add", &cidr, "dev", "eth0"])
        .output()
        .expect("ip addr add");
    assert!(add.status.success(), "{add:?}");
    assert!(lab.has_addr(1, VIP));

    let run = |env: &[(&str, &str)]| {
        let mut cmd = lab.command(1, "/bin/sh");
        cmd.args(["-c", &script])
            .env_remove("APILB_VIP_INTERFACE")
            .env_remove("APILB_VIP_ADDRESSES");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run ExecStopPost")
    };
    let vip_env = [
        ("APILB_VIP_INTERFACE", "eth0"),
        ("APILB_VIP_ADDRESSES", cidr.as_str()),
    ];

    // No vip.env: nothing happens, and the stop is not failed.
    let out = run(&[]);
    assert!(out.status.success(), "{out:?}");
    assert!(lab.has_addr(1, VIP), "removed without vip.env");

    // After a crash the VIP is still there: removed.
    let out = run(&vip_env);
    assert!(out.status.success(), "{out:?}");
    assert!(!lab.has_addr(1, VIP), "VIP still on eth0");

    // After a clean stop apilb removed it already: still a success, and quiet.
    let out = run(&vip_env);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
}

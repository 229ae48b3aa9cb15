//! Log output as an operator sees it: ANSI colour only at a terminal that is not the
//! journal's stream and without `NO_COLOR`, and field values written as an operator writes
//! them (`token create` logs its expiry as an RFC 3339 time).
//!
//! The terminal cases run the binary under a pseudo-terminal with `script` (util-linux,
//! in Debian's essential `bsdutils`).

use std::process::{Command, Output, Stdio};

use crate::support::have_tool;

const ESC: &str = "\x1b[";

fn token_create(env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apilb"));
    cmd.args(["token", "create", "--ttl", "2h"])
        .env_remove("NO_COLOR")
        .env_remove("JOURNAL_STREAM")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run apilb token create")
}

/// What `shell` writes to a terminal (stdout and stderr both on the pseudo-terminal).
fn on_terminal(shell: &str) -> String {
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", shell, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("JOURNAL_STREAM")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn no_colour_into_a_pipe_and_the_expiry_is_an_rfc3339_time() {
    let before = std::time::SystemTime::now();
    let out = token_create(&[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(ESC), "escape codes in a pipe: {stderr:?}");
    let (_, rest) = stderr
        .split_once(" expires=")
        .unwrap_or_else(|| panic!("no expires field: {stderr:?}"));
    let value = rest.split_whitespace().next().expect("expires value");
    assert!(value.ends_with('Z') && value.len() == 20, "{value:?}");
    let at = humantime::parse_rfc3339(value).expect("RFC 3339");
    let ttl = at.duration_since(before).expect("in the future");
    assert!(
        (7199..=7201).contains(&ttl.as_secs()),
        "expires {value}: {ttl:?} from now, not 2h"
    );
    assert!(
        stderr.contains("token created; pass the same --ttl to `token secret-manifest`"),
        "{stderr:?}"
    );
}

#[test]
fn colour_at_a_terminal_unless_no_color_or_the_journal() {
    if !have_tool("script", "bsdutils") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_apilb");
    let plain = on_terminal(&format!("{bin} token create"));
    assert!(plain.contains(ESC), "no colour at a terminal: {plain:?}");

    let no_color = on_terminal(&format!("NO_COLOR=1 {bin} token create"));
    assert!(no_color.contains("token created"), "{no_color:?}");
    assert!(!no_color.contains(ESC), "NO_COLOR=1: {no_color:?}");

    // JOURNAL_STREAM naming stderr itself, as systemd sets it for a unit whose stderr is
    // the journal: no colour even though it is a terminal here.
    let journal = on_terminal(&format!(
        "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) {bin} token create"
    ));
    assert!(journal.contains("token created"), "{journal:?}");
    assert!(!journal.contains(ESC), "stderr is the journal: {journal:?}");

    // An inherited JOURNAL_STREAM that names another file does not count.
    let other = on_terminal(&format!("JOURNAL_STREAM=1:1 {bin} token create"));
    assert!(other.contains(ESC), "{other:?}");
}

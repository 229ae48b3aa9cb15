//! The Debian package as an operator meets it: `deploy/deb/build.sh` builds it (release
//! build, generated man pages and completions, `cargo deb`), `lintian` finds no error or
//! warning, `dpkg -i` installs it, the installed binary, man page and unit work, `dpkg -r`
//! keeps the config and `dpkg -P` removes it.
//!
//! Needs root, cargo-deb, lintian, dpkg and man (`.ci/run` installs them); skips otherwise,
//! and also when an `apilb` package is already installed (the test would remove it). It
//! leaves the machine as it found it: the package is purged and the `apilb` user it created
//! deleted, also when an assertion fails. It packages the release binary: `.ci/run` builds
//! it before the tests (a cold release build took 14 min on a shared, loaded 2-core machine);
//! with it built, the test takes about 25 s (build.sh ~9 s, lintian ~8 s, dpkg the rest).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use crate::support::{apilb_cmd, have_tool, repo_path, skip_or_fail};

const UNIT: &str = "/lib/systemd/system/apilb.service";
const CONFIG: &str = "/etc/apilb/apilb.yaml";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

fn package_installed() -> bool {
    let out = run("dpkg-query", &["-W", "-f=${db:Status-Abbrev}", "apilb"]);
    out.status.success() && !String::from_utf8_lossy(&out.stdout).starts_with("un")
}

fn user_exists() -> bool {
    run("getent", &["passwd", "apilb"]).status.success()
}

/// Purges the package (and deletes the `apilb` user when the test created it) on drop, so a
/// failed assertion leaves nothing installed.
struct Installed {
    user_existed: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if package_installed() {
            let out = run("dpkg", &["-P", "apilb"]);
            if !out.status.success() {
                eprintln!("cleanup: dpkg -P apilb failed: {}", text(&out));
            }
        }
        if !self.user_existed && user_exists() {
            let out = run("userdel", &["apilb"]);
            if !out.status.success() {
                eprintln!("cleanup: userdel apilb failed: {}", text(&out));
            }
        }
    }
}

/// The files of a built .deb, as `dpkg-deb -c` lists them (`./usr/bin/apilb`).
fn contents(deb: &Path) -> Vec<String> {
    let out = run("dpkg-deb", &["-c", deb.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5).map(str::to_owned))
        .collect()
}

/// Build the package into `out_dir` with deploy/deb/build.sh; the .deb's path.
fn build(out_dir: &Path) -> PathBuf {
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(repo_path("deploy/deb/build.sh"))
        .arg("-o")
        .arg(out_dir)
        .output()
        .expect("run deploy/deb/build.sh");
    assert!(out.status.success(), "deploy/deb/build.sh: {}", text(&out));
    eprintln!("deploy/deb/build.sh took {:.1?}", started.elapsed());
    let debs: Vec<PathBuf> = std::fs::read_dir(out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "one .deb in {}: {debs:?}", out_dir.display());
    let name = debs[0].file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        name,
        format!("apilb_{}-1_amd64.deb", env!("CARGO_PKG_VERSION")),
        "{}",
        text(&out)
    );
    debs[0].clone()
}

#[test]
fn debian_package_builds_passes_lintian_installs_and_purges() {
    if !is_root() {
        skip_or_fail("the package test needs root (dpkg -i)");
        return;
    }
    let tools = [
        ("dpkg", "dpkg"),
        ("dpkg-deb", "dpkg"),
        ("dpkg-shlibdeps", "dpkg-dev"),
        ("strip", "binutils"),
        ("readelf", "binutils"),
        ("lintian", "lintian"),
        ("man", "man-db"),
        ("systemd-analyze", "systemd"),
    ];
    if !tools.iter().all(|(tool, pkg)| have_tool(tool, pkg)) {
        return;
    }
    if !run("cargo", &["deb", "--version"]).status.success() {
        skip_or_fail("cargo-deb not found (cargo install cargo-deb --locked)");
        return;
    }
    if package_installed() {
        skip_or_fail("an apilb package is already installed; this test would remove it");
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let deb = build(dir.path());
    let deb_s = deb.to_str().unwrap();

    // What it holds.
    let files = contents(&deb);
    for want in [
        "./usr/bin/apilb",
        &format!(".{UNIT}"),
        &format!(".{CONFIG}"),
        "./usr/share/man/man1/apilb.1.gz",
        "./usr/share/man/man1/apilb-serve.1.gz",
        "./usr/share/man/man1/apilb-backend-drain.1.gz",
        "./usr/share/man/man1/apilb-completions.1.gz",
        "./usr/share/bash-completion/completions/apilb",
        "./usr/share/zsh/vendor-completions/_apilb",
        "./usr/share/fish/vendor_completions.d/apilb.fish",
        "./usr/share/doc/apilb/README.md",
        "./usr/share/doc/apilb/changelog.Debian.gz",
        "./usr/share/doc/apilb/copyright",
    ] {
        assert!(
            files.iter().any(|f| f == want),
            "{want} not in the package: {files:#?}"
        );
    }
    assert!(
        !files.iter().any(|f| f.contains("demo-apiserver")),
        "a hidden subcommand got a man page: {files:#?}"
    );
    let package = run("dpkg-deb", &["-f", deb_s, "Package", "Depends"]);
    let package = String::from_utf8_lossy(&package.stdout);
    assert!(package.starts_with("Package: apilb\n"), "{package}");
    assert!(package.contains("adduser"), "{package}");
    let control = dir.path().join("control");
    let out = run("dpkg-deb", &["-e", deb_s, control.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), CONFIG);
    for script in ["postinst", "postrm"] {
        let body = std::fs::read_to_string(control.join(script)).unwrap();
        for never in ["start", "restart", "enable"] {
            assert!(
                !body
                    .lines()
                    .filter(|l| !l.trim_start().starts_with('#'))
                    .any(|l| l.contains(&format!("systemctl {never}"))
                        || l.contains(&format!("deb-systemd-invoke {never}"))),
                "{script} runs `{never}`:\n{body}"
            );
        }
    }

    // Stripped: no DWARF and no symbol table in the packaged binary.
    let extracted = dir.path().join("root");
    let out = run("dpkg-deb", &["-x", deb_s, extracted.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let sections = run(
        "readelf",
        &["-S", extracted.join("usr/bin/apilb").to_str().unwrap()],
    );
    assert!(sections.status.success(), "{}", text(&sections));
    let sections = String::from_utf8_lossy(&sections.stdout);
    // (`.debug_gdb_scripts` is not debug info: a loaded section naming gdb's pretty-printers.)
    for dwarf in [".debug_info", ".debug_line", ".symtab"] {
        assert!(
            !sections.contains(dwarf),
            "/usr/bin/apilb has {dwarf}:\n{sections}"
        );
    }
    let size = std::fs::metadata(extracted.join("usr/bin/apilb"))
        .unwrap()
        .len();
    eprintln!("packaged /usr/bin/apilb: {size} bytes; .deb: {} bytes", {
        std::fs::metadata(&deb).unwrap().len()
    });

    // lintian: no error, no warning (the kept ones are overridden, with the reason, in
    // deploy/deb/lintian-overrides).
    let out = run("lintian", &["--fail-on", "error,warning", deb_s]);
    let report = text(&out);
    let tags: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(
        out.status.success() && tags.is_empty(),
        "lintian:\n{report}"
    );

    // Install.
    let guard = Installed {
        user_existed: user_exists(),
    };
    let out = run("dpkg", &["-i", deb_s]);
    assert!(out.status.success(), "dpkg -i: {}", text(&out));
    assert!(user_exists(), "postinst did not create the apilb user");
    let out = run("/usr/bin/apilb", &["--version"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("apilb {}", env!("CARGO_PKG_VERSION"))
    );
    for page in ["apilb", "apilb-serve", "apilb-backend-drain"] {
        let out = run("man", &["-w", page]);
        assert!(out.status.success(), "man -w {page}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("/usr/share/man/man1/{page}.1.gz")
        );
    }
    let out = run("systemd-analyze", &["verify", UNIT]);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify {UNIT}: {}",
        text(&out)
    );
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(
        unit.lines()
            .any(|l| l.starts_with("ExecStart=/usr/bin/apilb serve ")),
        "{unit}"
    );
    assert!(!unit.contains("/usr/local/"), "{unit}");
    // Installed, not enabled: nothing links to the unit.
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/apilb.service").exists(),
        "the package enabled the service"
    );

    // Remove: the config stays.
    let out = run("dpkg", &["-r", "apilb"]);
    assert!(out.status.success(), "dpkg -r: {}", text(&out));
    assert!(!Path::new("/usr/bin/apilb").exists());
    assert!(!Path::new(UNIT).exists());
    assert!(Path::new(CONFIG).exists(), "dpkg -r removed {CONFIG}");
    let status = run("dpkg-query", &["-W", "-f=${db:Status-Abbrev}", "apilb"]);
    assert_eq!(String::from_utf8_lossy(&status.stdout).trim(), "rc");

    // Purge: the config goes too.
    let out = run("dpkg", &["-P", "apilb"]);
    assert!(out.status.success(), "dpkg -P: {}", text(&out));
    assert!(!Path::new(CONFIG).exists(), "dpkg -P left {CONFIG}");
    assert!(!package_installed());
    drop(guard);
    assert!(!package_installed());
}

/// `apilb completions SHELL` prints the same script the package ships, for each shell.
#[test]
fn completions_subcommand_prints_each_shells_script() {
    let bash = apilb_cmd(&["completions", "bash"]);
    assert!(bash.status.success(), "{bash:?}");
    let bash = String::from_utf8_lossy(&bash.stdout);
    assert!(bash.contains("complete -F _apilb"), "{bash}");
    assert!(bash.contains("check-config"), "{bash}");

    let zsh = apilb_cmd(&["completions", "zsh"]);
    assert!(zsh.status.success(), "{zsh:?}");
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef apilb"));

    let fish = apilb_cmd(&["completions", "fish"]);
    assert!(fish.status.success(), "{fish:?}");
    assert!(String::from_utf8_lossy(&fish.stdout).contains("complete -c apilb"));

    let bad = apilb_cmd(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("invalid value 'tcsh'"),
        "{bad:?}"
    );
}

//! How the demo's hints name the `apilb` binary so they work when pasted: `apilb` when
//! that name on PATH is this very binary, else the full path of the running binary (e.g.
//! `target/release/apilb` after `cargo build`, before any install).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The command that runs this binary: `apilb` or the full path.
pub(super) fn apilb_command() -> String {
    let exe = std::env::current_exe().ok();
    let path = std::env::var_os("PATH");
    command_for(exe.as_deref(), path.as_deref())
}

/// `apilb` if the first `apilb` on `path` (a PATH value) is `exe`, else `exe` (quoted
/// for a POSIX shell when it needs it). `apilb` when `exe` is unknown.
pub(super) fn command_for(exe: Option<&Path>, path: Option<&OsStr>) -> String {
    const NAME: &str = "apilb";
    let Some(exe) = exe else {
        return NAME.to_owned();
    };
    let first = path.and_then(|p| {
        std::env::split_paths(p)
            .map(|dir| dir.join(NAME))
            .find(|candidate| candidate.is_file())
    });
    if first.is_some_and(|found| same_file(&found, exe)) {
        return NAME.to_owned();
    }
    shell_word(&exe.display().to_string())
}

fn same_file(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| -> Option<PathBuf> { std::fs::canonicalize(p).ok() };
    matches!((canonical(a), canonical(b)), (Some(x), Some(y)) if x == y)
}

/// `word` as one POSIX shell word: as is when it has only safe characters, else in single
/// quotes.
fn shell_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apilb_on_path_only_when_it_is_this_binary() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let other = dir.path().join("other");
        let build = dir.path().join("target/release");
        for d in [&bin, &other, &build] {
            std::fs::create_dir_all(d).unwrap();
        }
        let exe = build.join("apilb");
        std::fs::write(&exe, "binary").unwrap();
        std::fs::write(other.join("apilb"), "an older install").unwrap();
        std::os::unix::fs::symlink(&exe, bin.join("apilb")).unwrap();
        let path = |dirs: &[&Path]| std::env::join_paths(dirs).unwrap();
        let full = exe.display().to_string();

        // Not on PATH at all: the full path.
        let p = path(&[dir.path()]);
        assert_eq!(command_for(Some(&exe), Some(&p)), full);
        // A link to this binary on PATH: the short name.
        let p = path(&[&bin, &other]);
        assert_eq!(command_for(Some(&exe), Some(&p)), "apilb");
        // Another apilb first on PATH: the full path, so the hint runs this one.
        let p = path(&[&other, &bin]);
        assert_eq!(command_for(Some(&exe), Some(&p)), full);
        // No PATH: the full path; unknown binary: the name.
        assert_eq!(command_for(Some(&exe), None), full);
        assert_eq!(command_for(None, Some(&p)), "apilb");
    }

    #[test]
    fn paths_are_quoted_only_when_needed() {
        assert_eq!(
            shell_word("/home/me/apilb/target/release/apilb"),
            "/home/me/apilb/target/release/apilb"
        );
        assert_eq!(
            shell_word("/home/me/my apilb/apilb"),
            "'/home/me/my apilb/apilb'"
        );
        assert_eq!(shell_word("/tmp/it's/apilb"), "'/tmp/it'\\''s/apilb'");
    }
}

//! The files a package ships that come from the command-line definitions in [`crate::cli`]:
//! a man page for `apilb` and for every visible subcommand (clap_mangen), and bash, zsh and
//! fish completions (clap_complete). `apilb completions SHELL` prints one completion script;
//! the hidden `apilb generate-assets DIR` writes them all (deploy/deb/build.sh runs it before
//! `cargo deb`).
//!
//! Everything is rendered in memory first, so a write error is reported with its path
//! instead of the generators' own panics.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
pub use clap_complete::Shell;

use crate::cli::Cli;

/// The name completions and man pages use for the binary.
const BIN: &str = "apilb";

/// The shells whose completions the package ships, with the file name each one's
/// completion directory expects.
pub const PACKAGED_SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "apilb"),
    (Shell::Zsh, "_apilb"),
    (Shell::Fish, "apilb.fish"),
];

/// Why assets could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A directory or file under the output directory.
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Rendering a man page (clap_mangen writes into memory here; kept for its signature).
    #[error("rendering the man page of `{command}`: {source}")]
    Render {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The man pages (section 1), `apilb.1` first.
    pub man_pages: Vec<PathBuf>,
    /// One completion script per shell in [`PACKAGED_SHELLS`].
    pub completions: Vec<PathBuf>,
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in self.man_pages.iter().chain(&self.completions) {
            writeln!(f, "{}", p.display())?;
        }
        Ok(())
    }
}

/// The completion script of `shell` for `apilb`.
/// Hidden subcommands (internal helpers) are left out: clap_complete would offer them.
pub fn completion_script(shell: Shell) -> Vec<u8> {
    let mut cmd = without_hidden_subcommands(Cli::command());
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut out);
    out
}

/// `cmd` with its hidden subcommands dropped (clap has no way to remove one, so the root is
/// rebuilt with the same arguments and settings around the visible ones).
fn without_hidden_subcommands(cmd: clap::Command) -> clap::Command {
    let visible: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut root = clap::Command::new(BIN)
        .args(cmd.get_arguments().cloned())
        .subcommands(visible)
        .subcommand_required(cmd.is_subcommand_required_set())
        .propagate_version(cmd.is_propagate_version_set());
    if cmd.get_version().is_some() {
        root = root.version(env!("CARGO_PKG_VERSION"));
    }
    if let Some(about) = cmd.get_about() {
        root = root.about(about.clone());
    }
    root
}

/// Every man page: (file name, roff text), `apilb.1` first, then each visible subcommand
/// (`apilb-serve.1`, `apilb-backend-drain.1`, ...) in definition order. Hidden subcommands
/// (internal helpers) get none.
pub fn man_pages() -> Result<Vec<(String, Vec<u8>)>, Error> {
    fn walk(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> Result<(), Error> {
        let man = clap_mangen::Man::new(cmd.clone());
        let mut text = Vec::new();
        man.render(&mut text).map_err(|source| Error::Render {
            command: cmd.get_display_name().unwrap_or(BIN).to_owned(),
            source,
        })?;
        pages.push((man.get_filename(), text));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, pages)?;
        }
        Ok(())
    }
    // Built, so each subcommand knows its full name (`apilb-backend-drain`); `help` is not
    // a page of its own.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    walk(&cmd, &mut pages)?;
    Ok(pages)
}

/// Write the man pages to `DIR/man/` and the completions to `DIR/completions/{bash,zsh,fish}/`,
/// creating the directories and replacing files of the same names.
pub fn generate(dir: &Path) -> Result<Written, Error> {
    let write = |path: PathBuf, data: &[u8]| -> Result<PathBuf, Error> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(data).and_then(|()| f.flush()))
            .map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
        Ok(path)
    };
    let mut written = Written {
        man_pages: Vec::new(),
        completions: Vec::new(),
    };
    for (name, text) in man_pages()? {
        written
            .man_pages
            .push(write(dir.join("man").join(name), &text)?);
    }
    for (shell, name) in PACKAGED_SHELLS {
        let path = dir.join("completions").join(shell.to_string()).join(name);
        written
            .completions
            .push(write(path, &completion_script(shell))?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every visible subcommand, nested ones included, as `apilb-a-b`.
    fn visible_commands() -> Vec<String> {
        fn walk(prefix: &str, cmd: &clap::Command, out: &mut Vec<String>) {
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let name = format!("{prefix}-{}", sub.get_name());
                out.push(name.clone());
                walk(&name, sub, out);
            }
        }
        let mut out = vec![BIN.to_owned()];
        walk(BIN, &Cli::command(), &mut out);
        out
    }

    #[test]
    fn generate_writes_a_man_page_per_visible_command_and_three_completions() {
        let dir = tempfile::tempdir().unwrap();
        let written = generate(dir.path()).unwrap();

        let mut expected: Vec<String> = visible_commands()
            .into_iter()
            .map(|c| format!("{c}.1"))
            .collect();
        let mut names: Vec<String> = written
            .man_pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names[0], "apilb.1");
        names.sort();
        expected.sort();
        assert_eq!(names, expected);
        assert!(names.contains(&"apilb-backend-drain.1".to_owned()));
        assert!(names.contains(&"apilb-certs-check-expiration.1".to_owned()));
        assert!(!names.iter().any(|n| n.contains("demo-apiserver")));
        assert!(!names.iter().any(|n| n.contains("generate-assets")));
        assert!(!names.contains(&"apilb-help.1".to_owned()));

        // Each page is roff with its own name and the text of its doc comment.
        let serve = std::fs::read_to_string(dir.path().join("man/apilb-serve.1")).unwrap();
        assert!(serve.starts_with(".ie"), "{serve}");
        assert!(serve.contains(".TH apilb-serve 1"), "{serve}");
        assert!(
            serve.contains("SIGHUP re\\-reads the config file"),
            "{serve}"
        );
        let drain = std::fs::read_to_string(dir.path().join("man/apilb-backend-drain.1")).unwrap();
        assert!(drain.contains("\\-\\-deadline"), "{drain}");

        let rel: Vec<PathBuf> = written
            .completions
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().to_owned())
            .collect();
        assert_eq!(
            rel,
            [
                "completions/bash/apilb",
                "completions/zsh/_apilb",
                "completions/fish/apilb.fish"
            ]
            .map(PathBuf::from)
        );
        let bash = std::fs::read_to_string(&written.completions[0]).unwrap();
        assert!(bash.contains("complete -F _apilb"), "{bash}");
        let fish = std::fs::read_to_string(&written.completions[2]).unwrap();
        assert!(fish.contains("check-config"), "{fish}");
        assert!(!fish.contains("demo-apiserver"), "{fish}");
    }

    #[test]
    fn generate_names_the_path_it_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "not a directory").unwrap();
        let err = generate(&blocker).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("writing {}", blocker.join("man").display())),
            "{err}"
        );
    }
}

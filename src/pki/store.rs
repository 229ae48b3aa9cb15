//! The output tree on disk: reading what exists, and writing a whole plan so that nothing is
//! half-written. Every new file is first written and fsynced into a staging directory inside
//! the output directory (same file system), then moved into place: a new file with
//! `link` + `unlink` (fails rather than clobber a file that appeared meanwhile), a renewed one
//! with `rename` (atomic replacement). Keys and kubeconfigs are 0600, the rest 0644;
//! directories created below the root are 0700 when they hold secrets, else 0755.

use std::collections::BTreeSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::Error;

/// Mode of private keys and kubeconfigs.
pub const SECRET_MODE: u32 = 0o600;
/// Mode of certificates and other public files.
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode of directories that hold secrets.
pub const SECRET_DIR_MODE: u32 = 0o700;
/// Mode of other directories.
pub const PUBLIC_DIR_MODE: u32 = 0o755;

/// One file to write, relative to the output root.
#[derive(Debug, Clone)]
pub struct Write {
    /// Path relative to the root.
    pub rel: PathBuf,
    /// Contents.
    pub bytes: Vec<u8>,
    /// File mode.
    pub mode: u32,
    /// Replace an existing file (renewal) rather than create a new one.
    pub replace: bool,
}

/// Read `root/rel` if it exists. A directory or unreadable file is an error message.
pub fn read_existing(root: &Path, rel: &Path) -> Result<Option<String>, String> {
    let path = root.join(rel);
    match fs::read(&path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| "exists but is not text (PEM or YAML)".to_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            Err("a parent path is a file, not a directory".into())
        }
        Err(e) => Err(format!("exists but cannot be read: {e}")),
    }
}

/// Write every file of `writes` under `root` (created if missing).
pub fn write_all(root: &Path, writes: &[Write]) -> Result<(), Error> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut created_dirs = Vec::new();
    let out_err = |source: io::Error| Error::Output {
        path: root.to_owned(),
        source,
    };
    create_dirs(root, PUBLIC_DIR_MODE, &mut created_dirs).map_err(out_err)?;
    let staging = root.join(format!(".apilb-staging-{}", random_suffix()));
    if let Err(e) = DirBuilder::new().mode(SECRET_DIR_MODE).create(&staging) {
        remove_dirs(&created_dirs);
        return Err(out_err(e));
    }
    let result = stage_and_move(root, &staging, writes, &mut created_dirs);
    let _ = fs::remove_dir_all(&staging);
    if result.is_err() {
        remove_dirs(&created_dirs);
    }
    result
}

fn stage_and_move(
    root: &Path,
    staging: &Path,
    writes: &[Write],
    created_dirs: &mut Vec<PathBuf>,
) -> Result<(), Error> {
    // 1. Stage: everything written and fsynced before anything is moved into place.
    let mut staged = Vec::with_capacity(writes.len());
    for (i, w) in writes.iter().enumerate() {
        let tmp = staging.join(i.to_string());
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(w.mode)
                .open(&tmp)?;
            f.write_all(&w.bytes)?;
            f.sync_all()
        };
        write().map_err(|source| Error::Output {
            path: root.to_owned(),
            source,
        })?;
        staged.push(tmp);
    }
    // 2. Directories, with modes by what they will hold.
    let secret_dirs: BTreeSet<PathBuf> = writes
        .iter()
        .filter(|w| w.mode == SECRET_MODE)
        .flat_map(|w| {
            w.rel
                .ancestors()
                .skip(1)
                .map(Path::to_path_buf)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for w in writes {
        for a in w.rel.ancestors().skip(1) {
            if !a.as_os_str().is_empty() {
                dirs.insert(a.to_path_buf());
            }
        }
    }
    for d in &dirs {
        let mode = if secret_dirs.contains(d) {
            SECRET_DIR_MODE
        } else {
            PUBLIC_DIR_MODE
        };
        create_dirs(&root.join(d), mode, created_dirs).map_err(|source| Error::Write {
            path: root.join(d),
            source,
        })?;
    }
    // 3. Move into place.
    let mut touched: BTreeSet<PathBuf> = BTreeSet::new();
    for (w, tmp) in writes.iter().zip(&staged) {
        let dest = root.join(&w.rel);
        let moved = if w.replace {
            fs::rename(tmp, &dest)
        } else {
            fs::hard_link(tmp, &dest).and_then(|()| fs::remove_file(tmp))
        };
        moved.map_err(|source| Error::Write {
            path: dest.clone(),
            source,
        })?;
        if let Some(parent) = dest.parent() {
            touched.insert(parent.to_path_buf());
        }
    }
    for d in touched {
        File::open(&d)
            .and_then(|f| f.sync_all())
            .map_err(|source| Error::Write { path: d, source })?;
    }
    Ok(())
}

/// `mkdir -p` that records what it created and gives new directories `mode`.
fn create_dirs(path: &Path, mode: u32, created: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(path);
    while let Some(p) = cur {
        match fs::metadata(p) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", p.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(p.to_path_buf()),
            Err(e) => return Err(e),
        }
        cur = p.parent().filter(|p| !p.as_os_str().is_empty());
    }
    for p in missing.into_iter().rev() {
        DirBuilder::new().mode(mode).create(&p)?;
        created.push(p);
    }
    Ok(())
}

fn remove_dirs(created: &[PathBuf]) {
    for d in created.iter().rev() {
        // Best effort: only empty directories we made ourselves.
        let _ = fs::remove_dir(d);
    }
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        return std::process::id().to_string();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_with_modes_and_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        let w = |rel: &str, mode, replace| Write {
            rel: rel.into(),
            bytes: rel.as_bytes().to_vec(),
            mode,
            replace,
        };
        write_all(
            &root,
            &[
                w("m1/pki/ca.key", SECRET_MODE, false),
                w("m1/pki/ca.crt", PUBLIC_MODE, false),
                w("rbac/x.yaml", PUBLIC_MODE, false),
            ],
        )
        .unwrap();
        assert_eq!(mode(&root.join("m1/pki/ca.key")), 0o600);
        assert_eq!(mode(&root.join("m1/pki/ca.crt")), 0o644);
        assert_eq!(mode(&root.join("m1/pki")), 0o700);
        assert_eq!(mode(&root.join("m1")), 0o700);
        assert_eq!(mode(&root.join("rbac")), 0o755);
        // No staging directory left behind.
        let names: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // A create over an existing file fails; a replace succeeds.
        let err = write_all(&root, &[w("m1/pki/ca.crt", PUBLIC_MODE, false)]).unwrap_err();
        assert!(matches!(err, Error::Write { .. }), "{err}");
        let mut r = w("m1/pki/ca.crt", PUBLIC_MODE, true);
        r.bytes = b"new".to_vec();
        write_all(&root, &[r]).unwrap();
        assert_eq!(fs::read(root.join("m1/pki/ca.crt")).unwrap(), b"new");
    }

    #[test]
    fn unwritable_root_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "x").unwrap();
        let root = file.join("out");
        let err = write_all(
            &root,
            &[Write {
                rel: "a".into(),
                bytes: vec![],
                mode: PUBLIC_MODE,
                replace: false,
            }],
        )
        .unwrap_err();
        assert!(matches!(err, Error::Output { .. }), "{err}");
        assert_eq!(
            read_existing(&root, Path::new("a")).unwrap_err(),
            "a parent path is a file, not a directory"
        );
    }
}

//! The output tree on disk: reading what exists, and writing a whole plan so that nothing is
//! half-written.
//!
//! [`write_all`] works in passes, so that durability costs two waits on the disk rather than
//! one per file:
//! 1. every new file is written into a staging directory inside the output directory (same
//!    file system), with its final mode;
//! 2. every staged file is fsynced, the `fsync`s running side by side on a few threads
//!    ([`sync_all_parallel`] says why that is as durable and much faster);
//! 3. missing directories are created (0700 when they will hold secrets, else 0755);
//! 4. each file is moved into place: a new one with `link` + `unlink` (fails rather than
//!    clobber a file that appeared meanwhile), a renewed one with `rename` (atomic
//!    replacement) after keeping a hard link to the old one;
//! 5. every directory whose entries changed is fsynced, once, side by side again.
//!
//! Durability: a name is only ever made to point at a file whose contents and inode are
//! already on disk (2. before 4.), so a crash never leaves a key or certificate empty or
//! partial under its real name; and `write_all` returns only once every such name is on disk
//! too (5.). Not `syncfs(2)`: it would also wait for every other dirty file of the file system
//! (on a master, container images being pulled), which costs an unbounded time.
//!
//! A failure at any step undoes what was done: moved files are unlinked or their old
//! version renamed back, created directories removed. So the tree is either the old one or
//! the new one, complete. Keys and kubeconfigs are 0600, the rest 0644.

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

/// Why an existing file of the tree cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// It is binary.
    #[error("exists but is not text (PEM or YAML)")]
    NotText,
    /// A component of its path is a file.
    #[error("a parent path is a file, not a directory")]
    ParentNotDir,
    /// Any other I/O error (the OS error is part of the message).
    #[error("exists but cannot be read: {0}")]
    Io(io::Error),
}

/// Read `root/rel` if it exists.
pub fn read_existing(root: &Path, rel: &Path) -> Result<Option<String>, ReadError> {
    let path = root.join(rel);
    match fs::read(&path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| ReadError::NotText),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Err(ReadError::ParentNotDir),
        Err(e) => Err(ReadError::Io(e)),
    }
}

/// Write every file of `writes` under `root` (created if missing): the old tree stays as it
/// was, or the new one is complete.
pub fn write_all(root: &Path, writes: &[Write]) -> Result<(), Error> {
    write_all_with(root, writes, &mut Faults::default())
}

/// A test hook: makes the `n`-th file operation (0-based; staging a file and moving it into
/// place are one operation each) fail, as a full disk or a race would.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// The operation that fails, if any.
    pub(crate) fail_at: Option<usize>,
    done: usize,
}

impl Faults {
    /// Count one operation; `Err` when it is the one that must fail.
    fn step(&mut self) -> io::Result<()> {
        let n = self.done;
        self.done += 1;
        if self.fail_at == Some(n) {
            return Err(io::Error::other(format!(
                "injected failure at operation {n}"
            )));
        }
        Ok(())
    }
}

pub(crate) fn write_all_with(
    root: &Path,
    writes: &[Write],
    faults: &mut Faults,
) -> Result<(), Error> {
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
    let result = stage_and_move(root, &staging, writes, &mut created_dirs, faults);
    // Best effort: the staging directory holds only temporary names and backups.
    let _ = fs::remove_dir_all(&staging);
    if result.is_err() {
        remove_dirs(&created_dirs);
    }
    result
}

/// A file moved into place, as needed to undo the move.
enum Moved {
    /// Newly linked at this path.
    Created(PathBuf),
    /// Renamed over this path; the old file is linked at the backup path.
    Replaced { dest: PathBuf, backup: PathBuf },
    /// Renamed to this path, which did not exist.
    Renamed(PathBuf),
}

fn stage_and_move(
    root: &Path,
    staging: &Path,
    writes: &[Write],
    created_dirs: &mut Vec<PathBuf>,
    faults: &mut Faults,
) -> Result<(), Error> {
    let out_err = |source: io::Error| Error::Output {
        path: root.to_owned(),
        source,
    };
    // 1. Stage every file.
    let mut staged = Vec::with_capacity(writes.len());
    for (i, w) in writes.iter().enumerate() {
        let tmp = staging.join(i.to_string());
        let mut f = faults
            .step()
            .and_then(|()| {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(w.mode)
                    .open(&tmp)
            })
            .map_err(out_err)?;
        f.write_all(&w.bytes).map_err(out_err)?;
        staged.push(tmp);
    }
    // 2. Make every staged file durable (contents and inode) before any name in the tree can
    // point at it. Reopened by name, so that a large tree does not hold a descriptor per
    // file. See `sync_all_parallel` for why in parallel.
    sync_all_parallel(&staged, |p| File::open(p)?.sync_all()).map_err(|(_, e)| out_err(e))?;

    // 3. Directories, with modes by what they will hold.
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
    let first_created = created_dirs.len();
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

    // 4. Move into place, undoing every move on the first failure.
    let mut moved: Vec<Moved> = Vec::with_capacity(writes.len());
    for (i, (w, tmp)) in writes.iter().zip(&staged).enumerate() {
        let dest = root.join(&w.rel);
        match move_into_place(w, tmp, &dest, staging, i, faults) {
            Ok(m) => moved.push(m),
            Err(source) => {
                undo(moved);
                return Err(Error::Write { path: dest, source });
            }
        }
    }

    // 5. fsync every directory whose entries changed, once each.
    let mut touched: BTreeSet<PathBuf> = writes
        .iter()
        .filter_map(|w| root.join(&w.rel).parent().map(Path::to_path_buf))
        .collect();
    for d in &created_dirs[first_created..] {
        if let Some(parent) = d.parent() {
            touched.insert(parent.to_path_buf());
        }
    }
    for d in created_dirs.iter().take(first_created) {
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => touched.insert(p.to_path_buf()),
            _ => touched.insert(PathBuf::from(".")),
        };
    }
    // The names: once these return, every link made above, and every directory created, is
    // on disk (their targets already were, by 2.).
    let touched: Vec<PathBuf> = touched.into_iter().collect();
    if let Err((i, source)) = sync_all_parallel(&touched, |d| File::open(d)?.sync_all()) {
        undo(moved);
        return Err(Error::Write {
            path: touched[i].clone(),
            source,
        });
    }
    Ok(())
}

/// Threads that wait on `fsync` at once in [`sync_all_parallel`]. They wait on the disk, not
/// the CPU, so this is not the number of cores.
const SYNC_THREADS: usize = 8;

/// Run `sync` (an `fsync`) on every item, on up to [`SYNC_THREADS`] threads including this
/// one; the first error (by index) and its index, after all have run.
///
/// Why in parallel: each `fsync` ends with a cache flush of the device, which on a busy or
/// networked disk takes milliseconds while the CPU idles. Waiting on them one after another
/// costs the sum of those flushes (~0.5 s for this tree under a loaded disk, benches/pki);
/// concurrent `fsync`s overlap their writes, and the block layer folds flush requests that
/// arrive while one is in flight into the next one (and a journalled file system commits
/// them together). Durability is the same: every item is synced, and every error is seen.
fn sync_all_parallel<T: Sync>(
    items: &[T],
    sync: impl Fn(&T) -> io::Result<()> + Sync,
) -> Result<(), (usize, io::Error)> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let next = AtomicUsize::new(0);
    let first_err: Mutex<Option<(usize, io::Error)>> = Mutex::new(None);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            if let Err(e) = sync(item) {
                let mut slot = first_err.lock().unwrap_or_else(|p| p.into_inner());
                if slot.as_ref().is_none_or(|(j, _)| i < *j) {
                    *slot = Some((i, e));
                }
            }
        }
    };
    let helpers = SYNC_THREADS.min(items.len()).saturating_sub(1);
    std::thread::scope(|s| {
        for _ in 0..helpers {
            // A thread that cannot be started leaves its share to the others (this one
            // always works through the list).
            if std::thread::Builder::new().spawn_scoped(s, work).is_err() {
                break;
            }
        }
        work();
    });
    match first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn move_into_place(
    w: &Write,
    tmp: &Path,
    dest: &Path,
    staging: &Path,
    i: usize,
    faults: &mut Faults,
) -> io::Result<Moved> {
    faults.step()?;
    if !w.replace {
        fs::hard_link(tmp, dest)?;
        if let Err(e) = fs::remove_file(tmp) {
            let _ = fs::remove_file(dest);
            return Err(e);
        }
        return Ok(Moved::Created(dest.to_owned()));
    }
    let backup = staging.join(format!("{i}.old"));
    match fs::hard_link(dest, &backup) {
        Ok(()) => {
            fs::rename(tmp, dest)?;
            Ok(Moved::Replaced {
                dest: dest.to_owned(),
                backup,
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::rename(tmp, dest)?;
            Ok(Moved::Renamed(dest.to_owned()))
        }
        Err(e) => Err(e),
    }
}

/// Undo moves, last first. Best effort: the error that caused it is the one reported.
fn undo(moved: Vec<Moved>) {
    for m in moved.into_iter().rev() {
        let _ = match m {
            Moved::Created(dest) | Moved::Renamed(dest) => fs::remove_file(dest),
            Moved::Replaced { dest, backup } => fs::rename(backup, dest),
        };
    }
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
    fn parallel_sync_runs_every_item_once_and_reports_the_first_failure() {
        let items: Vec<usize> = (0..40).collect();
        let seen = std::sync::Mutex::new(Vec::new());
        let r = sync_all_parallel(&items, |&i| {
            seen.lock().unwrap().push(i);
            if i == 9 || i == 23 {
                return Err(io::Error::other(format!("item {i}")));
            }
            Ok(())
        });
        let (i, e) = r.unwrap_err();
        assert_eq!((i, e.to_string()), (9, "item 9".to_owned()));
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, items, "every item synced once, failures or not");
        assert!(sync_all_parallel(&items, |_| Ok(())).is_ok());
        assert!(sync_all_parallel(&[] as &[usize], |_| Ok(())).is_ok());
        // Real files and directories.
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..12).map(|i| dir.path().join(i.to_string())).collect();
        for p in &paths {
            fs::write(p, "x").unwrap();
        }
        assert!(sync_all_parallel(&paths, |p| File::open(p)?.sync_all()).is_ok());
        let missing = [dir.path().to_owned(), dir.path().join("none")];
        let (i, e) = sync_all_parallel(&missing, |p| File::open(p)?.sync_all()).unwrap_err();
        assert_eq!((i, e.kind()), (1, io::ErrorKind::NotFound));
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
            read_existing(&root, Path::new("a"))
                .unwrap_err()
                .to_string(),
            "a parent path is a file, not a directory"
        );
    }

    /// Every file and directory under `root` (relative path -> mode and, for files, bytes),
    /// and whether a staging directory is left.
    fn tree(root: &Path) -> std::collections::BTreeMap<PathBuf, (u32, Option<Vec<u8>>)> {
        let mut out = std::collections::BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = fs::read_dir(&d) else {
                continue;
            };
            for e in entries {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                if p.is_dir() {
                    out.insert(rel, (mode(&p), None));
                    stack.push(p);
                } else {
                    out.insert(rel, (mode(&p), Some(fs::read(&p).unwrap())));
                }
            }
        }
        out
    }

    fn cluster(masters: usize) -> crate::cluster::Cluster {
        let mut yaml = String::from(
            "clusterName: kubernetes\nkubernetesVersion: v1.31.2\n\
             controlPlaneEndpoint: k8s-api.test.internal:6443\n\
             loadBalancer:\n  vip: 10.0.0.100\n  hosts:\n    - {name: lb-1, address: 10.0.0.5}\n\
             etcd: {topology: stacked}\npki: {encryptionAlgorithm: ECDSA-P256}\nmasters:\n",
        );
        for n in 1..=masters {
            yaml.push_str(&format!("  - {{name: master-{n}, address: 10.0.0.1{n}}}\n"));
        }
        crate::cluster::Cluster::from_yaml(&yaml).unwrap()
    }

    /// Inject a failure at every file operation in turn: after each failure the tree is the
    /// old one, byte for byte and mode for mode; the run without a failure gives the new one.
    fn fail_everywhere(root: &Path, writes: &[Write]) {
        let old = tree(root);
        let mut n = 0;
        loop {
            let mut faults = Faults {
                fail_at: Some(n),
                ..Faults::default()
            };
            match write_all_with(root, writes, &mut faults) {
                Err(e) => {
                    assert!(
                        e.to_string().starts_with("cannot write")
                            || e.to_string().starts_with("failed to write"),
                        "{e}"
                    );
                    assert_eq!(tree(root), old, "failure at operation {n}: {e}");
                }
                Ok(()) => break,
            }
            n += 1;
        }
        assert_eq!(n, 2 * writes.len(), "one staging and one move per file");
        let new = tree(root);
        for w in writes {
            assert_eq!(
                new.get(&w.rel),
                Some(&(w.mode, Some(w.bytes.clone()))),
                "{}",
                w.rel.display()
            );
        }
        assert!(
            new.keys()
                .all(|k| !k.to_string_lossy().contains(".apilb-staging")),
            "{new:?}"
        );
    }

    #[test]
    fn a_failure_after_any_file_leaves_no_tree_or_the_complete_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        let now = time::OffsetDateTime::now_utc();
        let opts = crate::pki::Options { renew: false, now };
        let plan = crate::pki::plan(&cluster(2), &root, opts).unwrap();
        fail_everywhere(&root, plan.writes());
        assert!(root.join("master-2/pki/etcd/ca.key").is_file());
    }

    #[test]
    fn a_failure_after_any_file_leaves_the_old_tree_or_the_complete_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        let now = time::OffsetDateTime::now_utc();
        crate::pki::issue(
            &cluster(2),
            &root,
            crate::pki::Options { renew: false, now },
        )
        .unwrap();
        // Renew every leaf (replacements) and add a master (new files and directories).
        let later = now + time::Duration::hours(1);
        let opts = crate::pki::Options {
            renew: true,
            now: later,
        };
        let plan = crate::pki::plan(&cluster(3), &root, opts).unwrap();
        let writes = plan.writes();
        assert!(writes.iter().any(|w| w.replace) && writes.iter().any(|w| !w.replace));
        fail_everywhere(&root, writes);
    }
}

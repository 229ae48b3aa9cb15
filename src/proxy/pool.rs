//! Reusable forwarding resources, held by a connection only while data is in flight: an
//! idle connection owns no buffer and no pipe, so 10,000 quiet watches cost little memory.

use std::os::fd::OwnedFd;
use std::sync::Mutex;

use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// Size of a copy buffer.
pub(crate) const BUF_SIZE: usize = 64 * 1024;
/// Requested pipe capacity for splice(2); the kernel default is 64 KiB.
pub(crate) const PIPE_SIZE: usize = 256 * 1024;
/// At most this many idle buffers or pipes are kept for reuse, per worker (each worker has
/// its own pools): 4 MiB of buffers at most. A buffer is borrowed only around one read and
/// its write, so a worker rarely has more than a few dozen out at once.
const POOL_CAP: usize = 64;

/// A pipe for splice(2): bytes go socket -> `write` end, `read` end -> socket.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) read: OwnedFd,
    pub(crate) write: OwnedFd,
    /// Capacity, as the kernel granted it.
    pub(crate) size: usize,
}

impl Pipe {
    fn new() -> std::io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // A larger pipe moves more per system call; if the kernel refuses (pipe-max-size,
        // per-user pipe limits), the default size still works.
        let size = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32))
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(64 * 1024);
        Ok(Self { read, write, size })
    }
}

/// Pools of empty pipes and buffers.
#[derive(Debug, Default)]
pub(crate) struct Pools {
    pipes: Mutex<Vec<Pipe>>,
    bufs: Mutex<Vec<Box<[u8]>>>,
}

impl Pools {
    /// An empty pipe, reused or new.
    pub(crate) fn pipe(&self) -> std::io::Result<Pipe> {
        match lock(&self.pipes).pop() {
            Some(p) => Ok(p),
            None => Pipe::new(),
        }
    }

    /// Return a pipe. Only call this with an empty pipe: the caller drained it.
    pub(crate) fn put_pipe(&self, pipe: Pipe) {
        let mut pipes = lock(&self.pipes);
        if pipes.len() < POOL_CAP {
            pipes.push(pipe);
        }
    }

    /// A buffer of [`BUF_SIZE`] bytes, reused or new.
    pub(crate) fn buf(&self) -> Box<[u8]> {
        lock(&self.bufs)
            .pop()
            .unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
    }

    /// Return a buffer.
    pub(crate) fn put_buf(&self, buf: Box<[u8]>) {
        let mut bufs = lock(&self.bufs);
        if bufs.len() < POOL_CAP {
            bufs.push(buf);
        }
    }
}

/// Lock a pool; a poisoned pool is still a valid list.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

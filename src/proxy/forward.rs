//! Moving bytes between the two legs of a connection: full duplex, byte-exact, half-close
//! passed on (EOF from one side becomes shutdown(Write) on the other while the reverse
//! direction keeps flowing), idle timeout, and a cut-off for the end of a drain.
//!
//! Two ways to move bytes: splice(2) through a pooled pipe (the bytes never enter user
//! space) and read/write through a pooled buffer. Neither holds a pipe or buffer while the
//! connection is quiet. `auto` copies (cheaper for small request/response messages) and
//! moves a direction to splice once a read fills the buffer (bulk transfer), which measured
//! best on both kinds of traffic.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::{SpliceFFlags, splice};
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::pool::Pools;
use super::socket::tune_late;
use super::track::{Signal, Why};
use crate::config::TcpOptions;

/// How bytes are moved for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Copy small messages; a direction switches to splice once a read fills the buffer.
    Auto,
    Splice,
    Copy,
}

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Both sides sent EOF.
    Eof,
    /// No bytes either way for the idle timeout.
    IdleTimeout,
    /// Cut off at the end of a drain.
    DrainCut,
    /// Closed because its backend went down (`onDown: close`).
    BackendDown,
    /// Reading from or writing to the client failed.
    Client(io::Error),
    /// Reading from or writing to the backend failed.
    Backend(io::Error),
    /// Shed by the rebalancer at a quiet instant: FIN on both legs.
    Rebalance,
}

impl End {
    /// Position of this reason in [`crate::metrics::CLOSE_REASONS`].
    pub(crate) fn index(&self) -> usize {
        match self {
            End::Eof => 0,
            End::IdleTimeout => 1,
            End::DrainCut => 2,
            End::BackendDown => 3,
            End::Client(_) => 4,
            End::Backend(_) => 5,
            End::Rebalance => 6,
        }
    }

    /// The `reason` label of `apilb_connections_closed_total`.
    pub(crate) fn label(&self) -> &'static str {
        crate::metrics::CLOSE_REASONS[self.index()]
    }
}

/// A direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Client to backend.
    Up,
    /// Backend to client.
    Down,
}

/// Bytes moved and the time of the last byte in each direction. Per message: one relaxed
/// add and one relaxed store, nothing more (readers are the idle timer and the rebalancer).
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    /// Microseconds from `start` to the last byte client to backend.
    last_up_us: AtomicU64,
    /// Microseconds from `start` to the last byte backend to client.
    last_down_us: AtomicU64,
    pub(crate) up: AtomicU64,
    pub(crate) down: AtomicU64,
    /// Set once a shed began: the connection is on its way out.
    closing: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_up_us: AtomicU64::new(0),
            last_down_us: AtomicU64::new(0),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        }
    }

    /// Whether a graceful shed of the connection has begun.
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Time since the connection started.
    pub(crate) fn age(&self) -> Duration {
        self.start.elapsed()
    }

    /// Count `n` client bytes forwarded outside [`run`] (the first exchange).
    pub(crate) fn sent_up(&self, n: u64) {
        self.moved(Dir::Up, usize::try_from(n).unwrap_or(usize::MAX));
    }

    /// When the connection started.
    pub(crate) fn since(&self) -> Instant {
        self.start
    }

    fn moved(&self, dir: Dir, n: usize) {
        let us = self.start.elapsed().as_micros() as u64;
        let (count, last) = match dir {
            Dir::Up => (&self.up, &self.last_up_us),
            Dir::Down => (&self.down, &self.last_down_us),
        };
        count.fetch_add(n as u64, Ordering::Relaxed);
        last.store(us, Ordering::Relaxed);
    }

    /// Time of the last byte from the client (the start if none).
    pub(crate) fn last_up(&self) -> Instant {
        self.start + Duration::from_micros(self.last_up_us.load(Ordering::Relaxed))
    }

    /// Time of the last byte from the backend (the start if none).
    pub(crate) fn last_down(&self) -> Instant {
        self.start + Duration::from_micros(self.last_down_us.load(Ordering::Relaxed))
    }

    /// Time of the last byte either way (the start if none).
    pub(crate) fn last(&self) -> Instant {
        self.last_up().max(self.last_down())
    }
}

/// Which leg an I/O error happened on, for blame.
enum Failure {
    Src(io::Error),
    Dst(io::Error),
}

/// Forward between `client` and `backend` until both sides are done, an error, or a reason
/// raised on `signal`: idle, cut (end of drain), kill (backend down) or shed (rebalance;
/// honoured only at a quiet instant, see [`shed_gracefully`]). The signal is checked on each
/// wake-up with one atomic load; nothing in here waits on a timer or on a token shared with
/// other connections. The signal also asks, once, for the backend leg's late options
/// (`tcp`, see [`tune_late`]).
pub(crate) async fn run(
    client: &TcpStream,
    backend: &TcpStream,
    mode: Mode,
    signal: &Signal,
    tcp: &TcpOptions,
    pools: &Pools,
    activity: &Activity,
) -> End {
    // The forwarding futures end with this block, so the shed below does not sit beside
    // them in every connection's task (a future is as large as its largest state).
    let shed_now = {
        let up = pump(client, backend, mode, pools, activity, Dir::Up);
        let down = pump(backend, client, mode, pools, activity, Dir::Down);
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            // A direction that ends passes its FIN on while the other one still flows;
            // once both have ended, closing the sockets sends the last FIN without a
            // shutdown call.
            let raised = tokio::select! {
                r = &mut up, if !up_done => match r {
                    Ok(()) => {
                        up_done = true;
                        if !down_done && let Err(e) = pass_fin(backend) {
                            return End::Backend(e);
                        }
                        None
                    }
                    Err(Failure::Src(e)) => return End::Client(e),
                    Err(Failure::Dst(e)) => return End::Backend(e),
                },
                r = &mut down, if !down_done => match r {
                    Ok(()) => {
                        down_done = true;
                        if !up_done && let Err(e) = pass_fin(client) {
                            return End::Client(e);
                        }
                        None
                    }
                    Err(Failure::Src(e)) => return End::Backend(e),
                    Err(Failure::Dst(e)) => return End::Client(e),
                },
                why = std::future::poll_fn(|cx| signal.poll(cx)) => Some(why),
            };
            match raised {
                None => {}
                Some(Why::Idle) => return End::IdleTimeout,
                Some(Why::Cut) => return End::DrainCut,
                Some(Why::Kill) => return End::BackendDown,
                // The server spoke last (no request forwarded and unanswered), and nothing
                // is in flight in the kernel either.
                Some(Why::Shed)
                    if !up_done
                        && !down_done
                        && activity.last_down() > activity.last_up()
                        && quiet(client, backend) =>
                {
                    break true;
                }
                // Not now: wait for the next request to shed.
                Some(Why::Shed) => signal.clear(Why::Shed),
                Some(Why::Tune) => {
                    signal.clear(Why::Tune);
                    if let Err(e) = tune_late(backend, tcp) {
                        tracing::debug!(error = %e, "backend leg keepalive options");
                    }
                }
            }
            if up_done && down_done {
                break false;
            }
        }
    };
    if shed_now {
        activity.closing.store(true, Ordering::Relaxed);
        shed_gracefully(client, backend, signal).await
    } else {
        End::Eof
    }
}

/// Longest a shed connection waits for both peers to close after our FINs.
const SHED_LINGER: Duration = Duration::from_secs(10);

/// Whether nothing is in flight: no unread byte (or FIN) waiting on either leg, and both
/// legs writable (a direction blocked on a full send buffer still holds bytes). Closing
/// with unread data would send RST, so a shed happens only when this holds.
fn quiet(client: &TcpStream, backend: &TcpStream) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [
        PollFd::new(client.as_fd(), PollFlags::POLLIN | PollFlags::POLLOUT),
        PollFd::new(backend.as_fd(), PollFlags::POLLIN | PollFlags::POLLOUT),
    ];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds.iter().all(|f| f.revents() == Some(PollFlags::POLLOUT)),
        Err(_) => false,
    }
}

/// End a quiet connection the way a clean close looks to both peers: FIN to each
/// (shutdown(Write)), then read and discard until each peer closes its side too (bounded
/// by [`SHED_LINGER`] and by a cut, the end of a drain), so the final close finds empty
/// receive queues and sends no RST.
async fn shed_gracefully(client: &TcpStream, backend: &TcpStream, signal: &Signal) -> End {
    let (a, b) = (pass_fin(client), pass_fin(backend));
    if let Err(e) = a {
        return End::Client(e);
    }
    if let Err(e) = b {
        return End::Backend(e);
    }
    let both = async { tokio::join!(discard_until_eof(client), discard_until_eof(backend)) };
    tokio::select! {
        r = tokio::time::timeout(SHED_LINGER, both) => if r.is_err() {
            tracing::debug!("a peer did not close within {SHED_LINGER:?} of the rebalance FIN");
        },
        () = cut(signal) => {}
    }
    End::Rebalance
}

/// Resolves once a cut is raised on `signal`.
async fn cut(signal: &Signal) {
    std::future::poll_fn(|cx| signal.poll_raised(cx, Why::Cut)).await;
}

/// Bytes read at a time while discarding after a rebalance FIN.
const DISCARD_SCRATCH: usize = 4096;

/// Read and drop whatever `src` sends until its EOF (or an error: nothing left to save).
/// The scratch space is on the heap: an array here would sit in every connection's task
/// (a future is as large as its largest state), shed or not.
async fn discard_until_eof(src: &TcpStream) {
    let mut scratch = vec![0u8; DISCARD_SCRATCH];
    loop {
        if src.readable().await.is_err() {
            return;
        }
        match src.try_read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// shutdown(Write) on `dst`: the peer sees our FIN. ENOTCONN means it is already gone, with
/// nothing left to tell it.
fn pass_fin(dst: &TcpStream) -> io::Result<()> {
    match SockRef::from(dst).shutdown(Shutdown::Write) {
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
        _ => Ok(()),
    }
}

/// One direction: `src` to `dst` until EOF.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    mode: Mode,
    pools: &Pools,
    activity: &Activity,
    dir: Dir,
) -> Result<(), Failure> {
    let bulk = match mode {
        Mode::Copy => {
            return pump_copy(src, dst, pools, activity, dir, false)
                .await
                .map(drop);
        }
        Mode::Auto => pump_copy(src, dst, pools, activity, dir, true).await?,
        Mode::Splice => CopyEnd::Bulk,
    };
    if bulk == CopyEnd::Eof {
        return Ok(());
    }
    match pump_splice(src, dst, pools, activity, dir).await {
        Err(SpliceError::NoPipe(e)) => {
            tracing::debug!(error = %e, "no pipe for splice; copying instead");
            pump_copy(src, dst, pools, activity, dir, false)
                .await
                .map(drop)
        }
        Err(SpliceError::Io(f)) => Err(f),
        Ok(()) => Ok(()),
    }
}

/// Why [`pump_copy`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyEnd {
    /// The source sent FIN.
    Eof,
    /// A read filled the whole buffer: bulk data, better spliced.
    Bulk,
}

/// Copy `src` to `dst` through a pooled buffer until EOF, or, with `until_bulk`, until a
/// read fills the whole buffer (the data read is forwarded first).
async fn pump_copy(
    src: &TcpStream,
    dst: &TcpStream,
    pools: &Pools,
    activity: &Activity,
    dir: Dir,
    until_bulk: bool,
) -> Result<CopyEnd, Failure> {
    loop {
        src.readable().await.map_err(Failure::Src)?;
        let mut buf = pools.buf();
        loop {
            let cap = buf.len();
            let step = read_step(src, cap, || {
                nix::unistd::read(src.as_fd(), &mut buf).map_err(io::Error::from)
            });
            match step {
                Ok(Step::Eof) => {
                    pools.put_buf(buf);
                    return Ok(CopyEnd::Eof);
                }
                Ok(Step::Data { n, drained }) => {
                    write_all(dst, &buf[..n]).await.map_err(Failure::Dst)?;
                    activity.moved(dir, n);
                    if until_bulk && n == cap {
                        pools.put_buf(buf);
                        return Ok(CopyEnd::Bulk);
                    }
                    if drained {
                        break;
                    }
                }
                Ok(Step::Empty) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::Src(e)),
            }
        }
        pools.put_buf(buf);
    }
}

/// What one read-side call did.
enum Step {
    /// The peer sent FIN.
    Eof,
    /// `n` bytes moved; `drained` when fewer than asked for, so the socket is empty now.
    Data { n: usize, drained: bool },
    /// Nothing to read (EAGAIN).
    Empty,
}

/// One read-side call (`op` moves up to `cap` bytes out of `src`) inside tokio's readiness.
///
/// A short transfer means the socket is drained, so readiness is cleared then: the next
/// round waits for the kernel's next event instead of making a call that only returns
/// EAGAIN (one system call saved per message on request/response traffic). This is
/// race-free: tokio clears readiness only if no event arrived since it was observed, and it
/// never clears the read-closed flag, so a FIN that came with the data is not lost.
fn read_step(
    src: &TcpStream,
    cap: usize,
    op: impl FnOnce() -> io::Result<usize>,
) -> io::Result<Step> {
    let mut moved = 0;
    let r = src.try_io(Interest::READABLE, || {
        let n = op()?;
        moved = n;
        if n > 0 && n < cap {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match r {
        Ok(0) => Ok(Step::Eof),
        Ok(n) => Ok(Step::Data { n, drained: false }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && moved > 0 => Ok(Step::Data {
            n: moved,
            drained: true,
        }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::Empty),
        Err(e) => Err(e),
    }
}

pub(crate) async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match dst.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

enum SpliceError {
    /// No pipe could be made (descriptor limits); the caller falls back to copying.
    NoPipe(io::Error),
    Io(Failure),
}

impl From<Failure> for SpliceError {
    fn from(f: Failure) -> Self {
        SpliceError::Io(f)
    }
}

async fn pump_splice(
    src: &TcpStream,
    dst: &TcpStream,
    pools: &Pools,
    activity: &Activity,
    dir: Dir,
) -> Result<(), SpliceError> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        src.readable().await.map_err(Failure::Src)?;
        // The pipe is taken only now that data is waiting, and returned empty. If this
        // future is dropped mid-way, the pipe (possibly holding bytes) is closed instead.
        let pipe = pools.pipe().map_err(SpliceError::NoPipe)?;
        loop {
            let step = read_step(src, pipe.size, || {
                splice(src.as_fd(), None, &pipe.write, None, pipe.size, flags)
                    .map_err(io::Error::from)
            });
            let (n, drained) = match step {
                Ok(Step::Eof) => {
                    pools.put_pipe(pipe);
                    return Ok(());
                }
                Ok(Step::Data { n, drained }) => (n, drained),
                Ok(Step::Empty) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Src(e).into()),
            };
            let mut left = n;
            while left > 0 {
                let wrote = dst.try_io(Interest::WRITABLE, || {
                    splice(&pipe.read, None, dst.as_fd(), None, left, flags)
                        .map_err(io::Error::from)
                });
                match wrote {
                    Ok(m) => left -= m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        dst.writable().await.map_err(Failure::Dst)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Failure::Dst(e).into()),
                }
            }
            activity.moved(dir, n);
            if drained {
                break;
            }
        }
        pools.put_pipe(pipe);
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Upper bound on the forwarding future, in bytes.
    const MAX_FORWARD_FUTURE: usize = 4096;

    /// Every connection's task holds this future for its whole life, idle or not, and a
    /// future is as large as its largest state: its size is memory per idle connection (the
    /// l4 bench's RSS row). Two 4 KiB arrays inline in the rarely used shed path once made
    /// every connection 8 KiB bigger.
    #[tokio::test]
    async fn the_forwarding_future_stays_small() {
        let (a, b) = pair().await;
        let parts = Parts::new();
        let f = parts.forward(&a, &b);
        let size = std::mem::size_of_val(&f);
        assert!(
            size <= MAX_FORWARD_FUTURE,
            "the forwarding future is {size} bytes"
        );
        eprintln!("forwarding future: {size} bytes");
    }

    /// What one connection's forwarding borrows besides its two sockets.
    struct Parts {
        pools: Pools,
        activity: Activity,
        signal: Signal,
    }

    impl Parts {
        fn new() -> Self {
            Self {
                pools: Pools::default(),
                activity: Activity::new(),
                signal: Signal::default(),
            }
        }

        /// [`run`] between `client` and `backend`, copying small messages.
        fn forward<'a>(
            &'a self,
            client: &'a TcpStream,
            backend: &'a TcpStream,
        ) -> impl Future<Output = End> + 'a {
            run(
                client,
                backend,
                Mode::Auto,
                &self.signal,
                &TCP,
                &self.pools,
                &self.activity,
            )
        }
    }

    /// One message each way through the proxy: `hello` from the user, `event` back.
    async fn exchange(user: &mut TcpStream, server: &mut TcpStream) {
        let mut got = [0u8; 5];
        user.write_all(b"hello").await.expect("write");
        server.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello");
        server.write_all(b"event").await.expect("write");
        user.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"event");
    }

    /// Two connected sockets on loopback.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (b, _) = l.accept().await.expect("accept");
        (a, b)
    }

    /// Each reason raised on the signal ends forwarding with its own close reason while
    /// bytes keep flowing; a shed waits while a request is unanswered and is honoured at the
    /// next request that finds the connection quiet, with a FIN to both peers.
    #[tokio::test]
    async fn raised_reasons_end_forwarding_with_their_own_reason() {
        for why in [Why::Cut, Why::Kill, Why::Idle, Why::Shed] {
            let ((mut user, client), (backend, mut server)) = (pair().await, pair().await);
            let parts = Parts::new();
            let (signal, activity) = (&parts.signal, &parts.activity);
            let forwarding = parts.forward(&client, &backend);
            let script = async {
                let mut got = [0u8; 5];
                // Messages both ways, as a watch would carry them.
                for _ in 0..3 {
                    exchange(&mut user, &mut server).await;
                }
                if why != Why::Shed {
                    signal.raise(why);
                    // The peers stay open until forwarding ended.
                    return Some((user, server));
                }
                // A request in flight: the shed must wait.
                user.write_all(b"again").await.expect("write");
                server.read_exact(&mut got).await.expect("read");
                signal.raise(Why::Shed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                server.write_all(b"reply").await.expect("write");
                user.read_exact(&mut got).await.expect("read");
                assert_eq!(&got, b"reply", "the answer got through");
                // Quiet now: the next request to shed is honoured.
                tokio::time::sleep(Duration::from_millis(50)).await;
                signal.raise(Why::Shed);
                // Both peers see a clean FIN, and close in turn, which ends the shed.
                assert_eq!(user.read(&mut got).await.expect("read"), 0);
                assert_eq!(server.read(&mut got).await.expect("read"), 0);
                None
            };
            let (end, _peers) = tokio::time::timeout(Duration::from_secs(10), async {
                tokio::join!(forwarding, script)
            })
            .await
            .unwrap_or_else(|_| panic!("{why:?}: forwarding did not end"));
            let want = match why {
                Why::Idle => "idle_timeout",
                Why::Cut => "drain_cut",
                Why::Kill => "backend_down",
                Why::Shed => "rebalance",
                Why::Tune => unreachable!("not an end"),
            };
            assert_eq!(end.label(), want, "{why:?}: {end:?}");
            assert_eq!(activity.up.load(Ordering::Relaxed) % 5, 0);
        }
    }

    /// A cut raised while a shed waits for the peers to close ends the wait at once.
    #[tokio::test]
    async fn a_cut_ends_a_shed_waiting_for_its_peers() {
        let ((mut user, client), (backend, mut server)) = (pair().await, pair().await);
        let parts = Parts::new();
        let signal = &parts.signal;
        let forwarding = parts.forward(&client, &backend);
        let script = async {
            let mut got = [0u8; 5];
            exchange(&mut user, &mut server).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            signal.raise(Why::Shed);
            // The FIN reaches the user, who does not close (SHED_LINGER would hold on).
            assert_eq!(user.read(&mut got).await.expect("read"), 0);
            signal.raise(Why::Cut);
            (user, server)
        };
        let started = Instant::now();
        let (end, _peers) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(forwarding, script)
        })
        .await
        .expect("a cut ends the shed's linger");
        assert_eq!(end.label(), "rebalance");
        assert!(started.elapsed() < SHED_LINGER);
    }

    const TCP: TcpOptions = TcpOptions {
        keepalive_time: Duration::from_secs(7),
        keepalive_interval: Duration::from_secs(3),
        user_timeout: Duration::from_secs(13),
    };

    /// Asked to tune, the connection sets its backend leg's keepalive options and goes on.
    #[tokio::test]
    async fn a_tune_request_sets_the_backend_legs_late_options_and_forwarding_goes_on() {
        let ((mut user, client), (backend, mut server)) = (pair().await, pair().await);
        let parts = Parts::new();
        let signal = &parts.signal;
        let forwarding = parts.forward(&client, &backend);
        let leg = SockRef::from(&backend);
        assert!(!leg.keepalive().expect("getsockopt"));
        let script = async {
            let mut got = [0u8; 5];
            signal.raise(Why::Tune);
            user.write_all(b"hello").await.expect("write");
            server.read_exact(&mut got).await.expect("read");
            assert_eq!(&got, b"hello");
            assert!(leg.keepalive().expect("getsockopt"));
            assert_eq!(
                leg.tcp_keepalive_time().expect("getsockopt"),
                Duration::from_secs(7)
            );
            assert_eq!(
                leg.tcp_user_timeout().expect("getsockopt"),
                Some(Duration::from_secs(13))
            );
            drop(user);
            drop(server);
        };
        let (end, ()) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(forwarding, script)
        })
        .await
        .expect("forwarding ended");
        assert_eq!(end.label(), "eof");
    }
}

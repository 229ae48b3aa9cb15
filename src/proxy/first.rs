//! The first exchange on a new backend leg: a hung apiserver accepts TCP (the kernel
//! completes the handshake from its backlog) but never answers, so a connection is judged by
//! the backend's first byte. Until then the client's bytes are kept; if they are only TLS
//! handshake records (a ClientHello, which any server may receive again) and the backend
//! stays silent for `timeouts.firstByte` or closes, the leg is dropped and the same bytes are
//! replayed to another backend. Nothing is ever replayed once the backend has sent a byte,
//! nor after the client sent application data (TLS early data or a plain-text request),
//! which might not be safe to run twice.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::forward::Activity;
use super::pool::Pools;

/// The most client bytes kept for a replay; a ClientHello is a few hundred bytes, rarely
/// more than a few KiB.
pub(crate) const REPLAY_LIMIT: usize = 16 * 1024;

/// TLS record content type of handshake messages.
const TLS_HANDSHAKE: u8 = 0x16;
/// Length of a TLS record header.
const TLS_HEADER: usize = 5;

/// The client's bytes sent on this connection so far, while they may still be replayed.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    sent: Vec<u8>,
    /// False once a byte that must not be sent twice went out, or the limit was passed.
    replayable: bool,
}

impl Replay {
    pub(crate) fn new() -> Self {
        Self {
            sent: Vec::new(),
            replayable: true,
        }
    }

    /// Record bytes sent to the backend.
    pub(crate) fn record(&mut self, bytes: &[u8]) {
        if !self.replayable {
            return;
        }
        if self.sent.len() + bytes.len() > REPLAY_LIMIT {
            self.forget();
            return;
        }
        self.sent.extend_from_slice(bytes);
        if !only_tls_handshake(&self.sent) {
            self.forget();
        }
    }

    /// Whether what was sent may go to another backend.
    pub(crate) fn replayable(&self) -> bool {
        self.replayable && !self.sent.is_empty()
    }

    /// Whether nothing was sent yet (another backend may take the client as it is).
    pub(crate) fn nothing_sent(&self) -> bool {
        self.replayable && self.sent.is_empty()
    }

    /// The bytes to send to the next backend.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.sent
    }

    fn forget(&mut self) {
        self.replayable = false;
        self.sent = Vec::new();
    }
}

/// Whether `bytes` are TLS handshake records only: every complete record, and the header of
/// a record still arriving, is a handshake record. An incomplete header is accepted while it
/// can still become one.
pub(crate) fn only_tls_handshake(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest[0] != TLS_HANDSHAKE {
            return false;
        }
        if rest.len() < TLS_HEADER {
            // Major version 3 (SSL 3.0 to TLS 1.3 all write 0x03 here).
            return rest.len() < 2 || rest[1] == 0x03;
        }
        if rest[1] != 0x03 {
            return false;
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if rest.len() < TLS_HEADER + len {
            return true;
        }
        rest = &rest[TLS_HEADER + len..];
    }
    true
}

/// How the first exchange on a backend leg ended.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// The backend sent its first byte, or there is nothing to judge (the client sent no
    /// replayable bytes): forward as usual.
    Forward,
    /// The backend left replayable client bytes unanswered for the limit.
    Silent,
    /// The backend closed or failed before its first byte, with nothing or only replayable
    /// bytes sent.
    Closed(io::Error),
    /// The connection is being cut (end of a drain).
    Cut,
}

/// Forward the client's first bytes to `backend` and wait for the backend's first byte, for
/// as long as the client's bytes stay replayable and at most `limit` after the last of them
/// (or after the start, if the client says nothing). Bytes forwarded are counted in
/// `activity` and kept in `replay`.
pub(crate) async fn exchange(
    client: &TcpStream,
    backend: &TcpStream,
    limit: Duration,
    replay: &mut Replay,
    activity: &Activity,
    pools: &Pools,
    cut: &CancellationToken,
) -> Verdict {
    let mut deadline = Instant::now() + limit;
    let mut client_open = true;
    let mut peek = [0u8; 1];
    loop {
        tokio::select! {
            biased;
            () = cut.cancelled() => return Verdict::Cut,
            r = backend.peek(&mut peek) => return match r {
                Ok(n) if n > 0 => Verdict::Forward,
                _ if !replay.replayable() && !replay.nothing_sent() => Verdict::Forward,
                Ok(_) => Verdict::Closed(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before answering",
                )),
                Err(e) => Verdict::Closed(e),
            },
            r = client.readable(), if client_open => {
                if r.is_err() {
                    return Verdict::Forward;
                }
                // A pooled buffer only around the read and write, not while the backend
                // thinks: a flood of new connections would otherwise hold one each.
                let mut buf = pools.buf();
                let n = match client.try_read(&mut buf) {
                    Ok(0) => {
                        // EOF: forwarding passes it on (a later read sees it again).
                        pools.put_buf(buf);
                        if replay.nothing_sent() {
                            // Connected and left without a byte (a port probe): nothing
                            // to judge, so the backend leg is not held for the limit.
                            return Verdict::Forward;
                        }
                        client_open = false;
                        continue;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        pools.put_buf(buf);
                        continue;
                    }
                    Err(_) => {
                        pools.put_buf(buf);
                        return Verdict::Forward;
                    }
                };
                let written = super::forward::write_all(backend, &buf[..n]).await;
                replay.record(&buf[..n]);
                pools.put_buf(buf);
                if written.is_err() {
                    // The backend leg failed on write: let forwarding report it.
                    return Verdict::Forward;
                }
                activity.sent_up(n as u64);
                if !replay.replayable() {
                    return Verdict::Forward;
                }
                deadline = Instant::now() + limit;
            }
            () = tokio::time::sleep_until(deadline) => {
                return if replay.replayable() { Verdict::Silent } else { Verdict::Forward };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![kind, 0x03, 0x01];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn only_handshake_records_may_be_replayed() {
        let hello = record(TLS_HANDSHAKE, &[1, 0, 0, 3, 9, 9, 9]);
        let app = record(0x17, b"GET / HTTP/1.1");
        let cases: &[(&[u8], bool, &str)] = &[
            (&hello, true, "a whole ClientHello record"),
            (&hello[..3], true, "a header still arriving"),
            (&hello[..1], true, "one byte of a handshake header"),
            (&hello[..hello.len() - 2], true, "a record still arriving"),
            (
                &[hello.clone(), hello.clone()].concat(),
                true,
                "two handshake records",
            ),
            (
                &[hello.clone(), app.clone()].concat(),
                false,
                "then early data",
            ),
            (
                &[hello.clone(), vec![0x17]].concat(),
                false,
                "then the start of early data",
            ),
            (&app, false, "application data"),
            (b"GET / HTTP/1.1\r\n", false, "plain text"),
            (&[0x16, 0x02], false, "not TLS version 3.x"),
            (
                &[0x16, 0x02, 0x01, 0x00, 0x01, 0x00],
                false,
                "a full header of SSL 2",
            ),
        ];
        for (bytes, want, what) in cases {
            assert_eq!(only_tls_handshake(bytes), *want, "{what}");
        }
    }

    #[test]
    fn a_replay_keeps_handshake_bytes_and_forgets_everything_else() {
        let hello = record(TLS_HANDSHAKE, &[1; 200]);
        let mut r = Replay::new();
        assert!(!r.replayable(), "nothing sent yet, nothing to replay");
        r.record(&hello[..50]);
        r.record(&hello[50..]);
        assert!(r.replayable());
        assert_eq!(r.bytes(), &hello[..]);
        r.record(&record(0x17, b"early"));
        assert!(!r.replayable(), "early data is never replayed");
        r.record(&hello);
        assert!(!r.replayable(), "and it stays so");

        let mut big = Replay::new();
        let huge = record(TLS_HANDSHAKE, &vec![1; REPLAY_LIMIT]);
        big.record(&huge);
        assert!(!big.replayable(), "over the limit");
    }
}

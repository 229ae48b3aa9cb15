//! Data-plane workers: N threads, each running its own single-threaded tokio runtime (its
//! own epoll, timers and task queue; no work stealing). An accept loop runs on one worker
//! and spawns the connections it accepts there, so a connection lives on one thread from
//! accept to close and its wakeups never cross cores. The control plane stays on the main
//! runtime, so a slow health check or reload never delays forwarding.

use std::io;
use std::sync::mpsc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The running worker threads. Dropping this stops them; tasks still on a worker are
/// dropped with its runtime (the proxy drains before that).
#[derive(Debug)]
pub(crate) struct Workers {
    handles: Vec<Handle>,
    stop: CancellationToken,
}

impl Workers {
    /// Start `n` workers (at least one).
    pub(crate) fn start(n: usize) -> io::Result<Workers> {
        let stop = CancellationToken::new();
        let mut handles = Vec::with_capacity(n.max(1));
        for index in 0..n.max(1) {
            let (tx, rx) = mpsc::sync_channel(1);
            let done = stop.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("apilb-worker-{index}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(done.cancelled());
                });
            if let Err(e) = spawned {
                stop.cancel();
                return Err(e);
            }
            match rx.recv() {
                Ok(Ok(h)) => handles.push(h),
                Ok(Err(e)) => {
                    stop.cancel();
                    return Err(e);
                }
                Err(_) => {
                    stop.cancel();
                    return Err(io::Error::other("a worker thread ended while starting"));
                }
            }
        }
        Ok(Workers { handles, stop })
    }

    /// How many workers run.
    pub(crate) fn len(&self) -> usize {
        self.handles.len()
    }

    /// Worker `i`'s runtime.
    pub(crate) fn handle(&self, i: usize) -> &Handle {
        &self.handles[i % self.handles.len()]
    }

    /// Whether every worker runs a task it is given within `within`: each is handed a
    /// task that answers at once, so a worker stuck in a busy loop or a blocking call
    /// fails this.
    pub(crate) async fn all_alive(&self, within: Duration) -> bool {
        let mut answers = Vec::with_capacity(self.handles.len());
        for h in &self.handles {
            let (tx, rx) = tokio::sync::oneshot::channel();
            h.spawn(async move {
                let _ = tx.send(());
            });
            answers.push(rx);
        }
        let all = async {
            for rx in answers {
                if rx.await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(within, all).await.unwrap_or(false)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_worker_runs_its_tasks_on_its_own_thread() {
        let workers = Workers::start(3).expect("workers");
        assert_eq!(workers.len(), 3);
        let mut names = Vec::new();
        for i in 0..3 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            workers.handle(i).spawn(async move {
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
            });
            names.push(rx.await.expect("answer").expect("named thread"));
        }
        assert_eq!(
            names,
            ["apilb-worker-0", "apilb-worker-1", "apilb-worker-2"],
            "worker i runs on thread i"
        );
        assert!(workers.all_alive(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_blocked_worker_is_not_alive() {
        let workers = Workers::start(2).expect("workers");
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        // Block worker 1's only thread (as a bug would).
        workers.handle(1).spawn(async move {
            let _ = blocked.recv();
        });
        assert!(!workers.all_alive(Duration::from_millis(200)).await);
        release.send(()).expect("release");
        assert!(workers.all_alive(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn dropping_the_workers_stops_their_threads() {
        let workers = Workers::start(1).expect("workers");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // A task that holds the sender until its runtime is dropped.
        workers.handle(0).spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(workers);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .is_ok(),
            "the worker's runtime was dropped and with it the task"
        );
    }
}

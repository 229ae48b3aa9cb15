//! What the bench harnesses (`l4`, `drill`) share: running a harness on a tokio runtime until
//! it ends or a stop signal arrives.

use std::future::Future;
use std::process::ExitCode;

/// Run `harness` on a two-worker runtime. SIGINT or SIGTERM drops it (and with it every
/// process guard it holds) and exits 130; an error is printed and exits 1.
pub(crate) fn run_until_interrupted(harness: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = harness => r.map_err(|e| (e, ExitCode::FAILURE)),
            sig = interrupted() => Err((anyhow::anyhow!("interrupted by {sig}"), ExitCode::from(130))),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((e, code)) => {
            eprintln!("error: {e:#}");
            code
        }
    }
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ignored = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

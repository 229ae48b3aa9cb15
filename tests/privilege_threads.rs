//! `privilege::drop_to` leaves no thread with a capability, also a blocking-pool thread that
//! was busy during the drop (as the certificate watcher's file read can be at start).
//!
//! Capabilities are per thread, and libtest's main thread never enters the runtime, so this
//! runs without the test harness (`harness = false`): `main` is the runtime's `block_on`
//! thread, as in `apilb serve`. Needs root; skips with a printed reason otherwise, and fails
//! instead under `APILB_REQUIRE_PRIVILEGED=1`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use caps::{CapSet, CapsHashSet};

fn main() -> ExitCode {
    if caps::read(None, CapSet::Permitted).is_ok_and(|p| p.is_empty()) {
        let why = "privilege_threads: needs root (no capability to drop)";
        if std::env::var("APILB_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
            eprintln!("{why} (APILB_REQUIRE_PRIVILEGED=1 turns this skip into a failure)");
            return ExitCode::FAILURE;
        }
        eprintln!("skipped: {why}");
        if let Some(log) = std::env::var_os("APILB_SKIP_LOG") {
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(log) {
                let _ = writeln!(f, "{why}");
            }
        }
        return ExitCode::SUCCESS;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(scenario()) {
        Ok(()) => {
            eprintln!("privilege_threads: a busy blocking thread lost its capabilities: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("privilege_threads: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn scenario() -> Result<(), String> {
    if holding().is_empty() {
        return Err("root, yet no thread holds a capability".into());
    }
    // One blocking-pool thread busy for longer than the first gather takes.
    let (started, running) = std::sync::mpsc::channel();
    let busy = tokio::task::spawn_blocking(move || {
        let _ = started.send(());
        std::thread::sleep(Duration::from_millis(300));
    });
    running.recv().map_err(|e| format!("busy thread: {e}"))?;
    apilb::privilege::drop_to(CapsHashSet::new(), &[])
        .await
        .map_err(|e| format!("drop_to: {e}"))?;
    busy.await.map_err(|e| format!("busy task: {e}"))?;
    let left = holding();
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("threads still holding capabilities: {left:?}"))
    }
}

/// Threads of this process whose effective or permitted set is not empty.
fn holding() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return vec!["/proc/self/task unreadable".into()];
    };
    let mut out = Vec::new();
    for tid in dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
    {
        let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else {
            continue; // the thread ended
        };
        let over = ["CapEff:", "CapPrm:"]
            .iter()
            .any(|f| apilb::privilege::status_mask(&status, f).is_some_and(|m| m != 0));
        if over {
            out.push(tid);
        }
    }
    out
}

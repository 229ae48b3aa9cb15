//! The soak under faults, CI length (issue 16): the debug apilb for about 60 s (set
//! `APILB_SOAK_SECS` to change it) under mixed checksummed traffic while a backend is killed
//! and restarted, another hung and resumed, the config reloaded valid and invalid, the
//! connection limit flooded and the descriptor limit lowered to EMFILE. The engine is shared
//! with `benches/soak` (release apilb, 10 min); see benches/soak/README.md.

#[path = "../../benches/soak/engine.rs"]
mod engine;

use std::time::Duration;

use crate::support::{have_tool, skip_log};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_under_faults() {
    if !have_tool("prlimit", "util-linux") {
        return;
    }
    let secs = std::env::var("APILB_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let log = skip_log().with_file_name("soak-apilb.log");
    let plan = engine::Plan {
        apilb: env!("CARGO_BIN_EXE_apilb").into(),
        duration: Duration::from_secs(secs),
        max_connections: 200,
        flood_extra: 100,
        bulk_clients: 2,
        bulk_bytes: 1 << 20,
        short_clients: 4,
        streams: 4,
        log: log.clone(),
    };
    let report = engine::run(&plan).await.expect("the soak ran");
    println!("{}", report.markdown());
    for f in &report.failures {
        println!("failure: {} on {:?}: {}", f.class, f.backend, f.what);
    }
    // A debug build's allocator settles slower than a release one; 64 MiB is far above what
    // a steady run grows and far below what a per-connection leak at this load would.
    let problems = report.problems(engine::Bounds {
        rss_growth_kib: 64 * 1024,
    });
    assert!(
        problems.is_empty(),
        "the soak broke its promises (apilb log: {}):\n{}\n{}",
        log.display(),
        problems.join("\n"),
        report.unexplained_lines().join("\n")
    );
}

//! Property tests of the inputs (issue 16, "Inputs"): the LB config, the cluster description,
//! the VRRP decoder and ConfigDiff. Each property runs a modest number of cases so the suite
//! stays fast; a failure prints the shrunk input, which then becomes a regression test.
//!
//! The properties: no input panics; every problem names its key path (for packets, a typed
//! [`apilb::vip::packet::Invalid`] reason); a valid input round-trips through its written
//! form unchanged.

mod cluster;
mod config;
mod diff;
mod packet;
mod yaml;

use proptest::test_runner::Config as RunnerConfig;

/// The case count for one property: small enough for CI, large enough to shrink a bug.
/// `APILB_PROPTEST_CASES=N` runs every property N times instead, for a deeper search.
pub(crate) fn cases(n: u32) -> RunnerConfig {
    let cases = std::env::var("APILB_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    RunnerConfig {
        cases,
        // Shrinking a failure is worth some time, but not minutes.
        max_shrink_iters: 2_000,
        ..RunnerConfig::default()
    }
}

//! Soak under faults (issue 16): the release apilb in front of three stand-in backends for
//! 10 minutes (by default) of checksummed mixed traffic while backends are killed and hung,
//! the config is reloaded valid and invalid, the connection limit is flooded and the
//! descriptor limit is lowered to EMFILE. Writes `benches/soak/results.md` with the commit
//! and date, and exits 1 if a promise was broken. See benches/soak/README.md.
//!
//! The engine is shared with the CI test (`tests/it/soak.rs`, about 60 s of the debug build).

mod engine;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::engine::common;

/// apilb under faults for a long time: corruption, unexplained failures, leaks.
#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Args {
    /// How long the traffic and the faults run.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,

    /// apilb binary [default: target/release/apilb of this crate].
    #[arg(long)]
    apilb_bin: Option<PathBuf>,

    /// The proxy's maxConnections; the flood opens this many plus --flood-extra.
    #[arg(long, default_value_t = 200)]
    max_connections: usize,

    /// Connections the flood opens beyond maxConnections.
    #[arg(long, default_value_t = 100)]
    flood_extra: usize,

    /// Bulk clients, each moving --bulk-bytes per connection.
    #[arg(long, default_value_t = 2)]
    bulk_clients: usize,

    #[arg(long, default_value_t = 4 << 20)]
    bulk_bytes: usize,

    /// Clients looping connect, 256 bytes each way, close.
    #[arg(long, default_value_t = 8)]
    short_clients: usize,

    /// Long-lived streams, each exchanging 512 bytes every 100 ms.
    #[arg(long, default_value_t = 16)]
    streams: usize,

    /// RSS growth after the warm-up (the first fifth) allowed, in MiB.
    #[arg(long, default_value_t = 32)]
    rss_growth_mib: u64,

    /// Where the report goes.
    #[arg(long, default_value = "benches/soak/results.md")]
    out: PathBuf,

    /// apilb's log.
    #[arg(long, default_value = "target/soak-apilb.log")]
    log: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    common::run_until_interrupted(harness(args))
}

#[allow(clippy::print_stdout)] // The report goes to stdout as well as to the file.
async fn harness(args: Args) -> anyhow::Result<()> {
    let apilb = args
        .apilb_bin
        .clone()
        .unwrap_or_else(|| engine::crate_path("target/release/apilb"));
    let apilb = common::find_executable(&apilb)
        .with_context(|| format!("no apilb binary at {}", apilb.display()))?;
    let plan = engine::Plan {
        apilb: apilb.clone(),
        duration: args.duration,
        max_connections: args.max_connections,
        flood_extra: args.flood_extra,
        bulk_clients: args.bulk_clients,
        bulk_bytes: args.bulk_bytes,
        short_clients: args.short_clients,
        streams: args.streams,
        log: args.log.clone(),
    };
    eprintln!(
        "soak: {} for {}",
        apilb.display(),
        humantime::format_duration(args.duration)
    );
    let report = engine::run(&plan).await?;
    let problems = report.problems(engine::Bounds {
        rss_growth_kib: args.rss_growth_mib * 1024,
    });
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "?".into());
    let mut md = format!(
        "# Soak under faults\n\ncommit: {}  \ndate: {date}  \napilb: {} ({})  \n\
         plan: {} of traffic; {} bulk clients x {} bytes, {} short-connection clients, {} \
         long-lived streams; maxConnections {}, flood +{}\n\n",
        common::commit(),
        apilb.display(),
        common::version(&apilb, "--version"),
        humantime::format_duration(args.duration),
        args.bulk_clients,
        args.bulk_bytes,
        args.short_clients,
        args.streams,
        args.max_connections,
        args.flood_extra,
    );
    md += &report.markdown();
    md += "\n## Verdict\n\n";
    if problems.is_empty() {
        md += "Every promise kept: no corrupted byte, every failure explained by a fault, \
               descriptors and runtime tasks back to the start, RSS within its bound, every \
               invalid reload refused with the old config serving.\n";
    } else {
        for p in &problems {
            md += &format!("- BROKEN: {p}\n");
        }
        for l in report.unexplained_lines() {
            md += &format!("- unexplained: {l}\n");
        }
    }
    md += "\n## Failures by class and cause\n\n| class | cause | count |\n| --- | --- | --- |\n";
    let mut table: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for f in &report.failures {
        let cause = f
            .cause
            .map_or("**unexplained**", engine::Cause::label)
            .to_owned();
        *table.entry((f.class.to_owned(), cause)).or_default() += 1;
    }
    for ((class, cause), n) in table {
        md += &format!("| {class} | {cause} | {n} |\n");
    }
    std::fs::write(&args.out, &md).with_context(|| format!("write {}", args.out.display()))?;
    print!("{md}");
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} promises broken (see {})",
            problems.len(),
            args.out.display()
        )
    }
}

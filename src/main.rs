//! The `apilb` binary: parse the command line, set up tracing and the runtime, run the
//! library's command, and map its outcome to an exit code (64 for bad configuration or
//! input, 1 otherwise).

use std::process::ExitCode;

use clap::Parser;

use apilb::cli::Cli;
use apilb::commands::{self, EXIT_FAILURE};

fn main() -> ExitCode {
    let cli = Cli::parse();
    apilb::logging::init(cli.log_format, cli.log_filter.as_deref());
    // The control plane (and every command but serve's data plane, which runs on its own
    // worker threads) needs little CPU: two threads keep a slow check from stalling the
    // others without taking a core from the data plane.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("apilb-control")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let outcome = runtime.block_on(commands::run(cli.command));
    // A read of standard input (the demo's) may still be pending in a blocking thread: do
    // not wait for it.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprint!("{}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

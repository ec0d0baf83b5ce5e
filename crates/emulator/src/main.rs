//! `vodpipe-emulator`: the deployable pieces of vodpipe (the three Lambda functions and
//! the Fargate worker task) run for real against a local AWS emulator, with this program
//! standing in for what only AWS itself provides: the Lambda runtime API and event source
//! mappings ([`runtime_api`], [`sources`]) and Fargate's task runner ([`fargate`]).
//!
//! `e2e` drives one upload through all of it; `make e2e-aws` and the end-to-end test run it.

mod burst;
mod e2e;
mod fargate;
mod load;
mod runtime_api;
mod sources;

use vodpipe_emulator::{faults, iam, moto};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "vodpipe's deployable functions and worker tasks on a local AWS emulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Upload one video to the emulated ingest bucket and follow it to PUBLISHED through
    /// the ingest, stitch and fleet functions and worker tasks; print its status JSON.
    E2e(Box<e2e::E2eArgs>),
    /// The control plane alone under load: many jobs through the real worker and stitch
    /// with a stand-in encoder, worker processes killed and duplicates injected; prints
    /// throughput, AWS calls per item and what they cost (`make load`).
    Load(load::LoadArgs),
    /// A worker process of `load` (started by it).
    #[command(hide = true)]
    LoadWorker(load::LoadWorkerArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VODPIPE_EMULATOR_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::E2e(a) => e2e::run(*a),
        Cmd::Load(a) if a.deployed => burst::run(a),
        Cmd::Load(a) => load::run(a),
        Cmd::LoadWorker(a) => load::worker(a),
    };
    match code {
        Ok(c) => std::process::exit(c),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

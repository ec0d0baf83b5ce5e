//! `vodpipe`: the command-line face of the pipeline. Parses arguments, opens the embedded
//! backend and calls one use-case in `vodpipe-control`; nothing here decides anything about
//! media or state. Each command lives in a module of its own; this one holds the command
//! line's top level, the logging set-up and the dispatch.

mod arg_values;
mod aws;
mod backend;
mod ingest;
mod local_state;
mod media_opts;
mod plan;
mod progress;
mod repackage;
mod run;
mod serve;
mod simulate;
mod status;
mod watch;
mod worker;

use clap::{Parser, Subcommand};

/// Video-on-demand transcoding: a source video in, an HLS + DASH ladder out.
#[derive(Parser)]
#[command(name = "vodpipe", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline on local files: ingest, a fleet of workers, wait, report.
    Run(run::RunArgs),
    /// Probe a file and show its ladder and chunk plan, without encoding.
    Plan(plan::PlanArgs),
    /// Ingest a file into a state directory: probe, plan, queue its work.
    Ingest(ingest::IngestArgs),
    /// Work queued items until stopped (SIGTERM/SIGINT) or idle.
    Worker(worker::WorkerArgs),
    /// One job's state, progress, attempts, timings and cost.
    Status(status::StatusArgs),
    /// Every job, as a table or JSON; `--watch` keeps it live.
    Jobs(status::JobsArgs),
    /// Treat a folder as the ingest bucket: ingest each file once it stops growing.
    Watch(watch::WatchArgs),
    /// Publish a published video again with the subtitle files beside it that it lacks:
    /// a new version, no encode.
    Repackage(repackage::RepackageArgs),
    /// AWS backend administration.
    #[cfg_attr(
        not(feature = "aws"),
        command(about = "AWS backend administration (not in this build: `make build-aws`)")
    )]
    Aws(aws::AwsArgs),
    /// What N uploads an hour would need from AWS and cost, in virtual time.
    Simulate(simulate::SimulateArgs),
    /// A web console on localhost: live jobs, each job's timeline, a player for what
    /// was published.
    Serve(serve::ServeArgs),
}

fn main() {
    // Fail points named in FAILPOINTS; they exist only in test builds (the crash-window
    // tests), and this does nothing elsewhere.
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    let json_logs =
        matches!(cli.command, Command::Worker(_)) && std::env::var_os("VODPIPE_LOG_JSON").is_some();
    let filter = tracing_subscriber::EnvFilter::try_from_env("VODPIPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    if json_logs {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Plan(a) => plan::plan(a),
        Command::Ingest(a) => ingest::ingest(a),
        Command::Worker(a) => worker::worker(a),
        Command::Status(a) => status::status(a),
        Command::Jobs(a) => status::jobs(a),
        Command::Aws(a) => aws::aws(a),
        Command::Watch(a) => watch::watch(a),
        Command::Repackage(a) => repackage::repackage(a),
        Command::Simulate(a) => simulate::simulate(a),
        Command::Serve(a) => serve::serve(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("vodpipe: {e:#}");
            std::process::exit(2);
        }
    }
}

//! Which backend a command runs on: the embedded one (a state directory) or AWS (names
//! from `VODPIPE_…` variables, credentials and endpoint from the usual AWS ones).
//!
//! A build without the `aws` feature still accepts `--backend aws`, and refuses it with
//! [`NO_AWS`], so a user of the embedded binary learns how to get the other one instead of
//! being told the flag's value does not exist.

#[cfg(feature = "aws")]
use anyhow::Context;
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
#[cfg(feature = "aws")]
use vodpipe_aws::Aws;
use vodpipe_control::pipeline::Ports;
use vodpipe_control::ports::{JobStore, ObjectStore, WorkQueue};
use vodpipe_local::Local;

/// Backend choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Files and SQLite on this machine.
    Local,
    /// S3, SQS and DynamoDB.
    Aws,
}

/// Where the state lives.
#[derive(Args, Clone)]
pub struct StateOpts {
    /// Backend: local (a state directory) or aws (see `vodpipe aws bootstrap`).
    #[arg(long, env = "VODPIPE_BACKEND", value_enum, default_value = "local")]
    pub backend: Kind,
    /// State directory for the local backend (SQLite database, scratch space).
    #[arg(long, env = "VODPIPE_STATE")]
    pub state: Option<PathBuf>,
    /// Receives after which a message is dead-lettered and its job fails (local backend;
    /// on AWS the queues' redrive policy decides).
    #[arg(long, default_value_t = 5)]
    pub max_receives: u32,
}

impl StateOpts {
    /// The local state directory; an error on AWS-only paths is the caller's to avoid.
    /// The `--out` directory of `vodpipe run` is accepted too: its state is in
    /// OUT/.vodpipe, which nobody should have to know.
    pub fn state_dir(&self) -> Result<PathBuf> {
        match (&self.state, self.backend) {
            (Some(s), _) => Ok(resolve_state(s)),
            (None, Kind::Aws) => Ok(std::env::temp_dir().join("vodpipe-aws")),
            (None, Kind::Local) => {
                bail!("--state DIR is required (or VODPIPE_STATE, or --backend aws)")
            }
        }
    }

    /// Scratch space for ffmpeg outputs.
    pub fn scratch(&self) -> Result<PathBuf> {
        Ok(self.state_dir()?.join("scratch"))
    }

    /// Opens the backend. `existing` refuses to create a new local state directory.
    pub fn open(
        &self,
        out: Option<&Path>,
        workers: u32,
        ffmpeg: Option<&str>,
        existing: bool,
    ) -> Result<Backend> {
        match self.backend {
            #[cfg(feature = "aws")]
            Kind::Aws => Ok(Backend::Aws(Box::new(
                Aws::from_env().context("connecting to AWS")?,
            ))),
            #[cfg(not(feature = "aws"))]
            Kind::Aws => bail!("--backend aws (or VODPIPE_BACKEND=aws): {NO_AWS}"),
            Kind::Local => {
                let dir = self.state_dir()?;
                if existing && !dir.join(DB).exists() {
                    bail!(
                        "no vodpipe state in {} (give the directory `vodpipe run --out` \
                         wrote to, or the --state of `vodpipe ingest`/`watch`)",
                        dir.display(),
                    );
                }
                let local = crate::local_state::open_with(
                    &dir,
                    out,
                    workers,
                    self.max_receives,
                    ffmpeg,
                    None,
                )?;
                Ok(Backend::Local(Box::new(local)))
            }
        }
    }
}

/// `dir` itself when it holds a state database (or none is anywhere), else the state
/// `vodpipe run --out dir` made in `dir/.vodpipe`.
pub fn resolve_state(dir: &Path) -> PathBuf {
    let nested = dir.join(RUN_STATE);
    if !dir.join(DB).exists() && nested.join(DB).exists() {
        nested
    } else {
        dir.to_path_buf()
    }
}

/// The state database's file name in a state directory.
const DB: &str = "vodpipe.db";

/// Where `vodpipe run` keeps its state under `--out`.
pub const RUN_STATE: &str = ".vodpipe";

/// What a build without the `aws` feature says when asked for AWS: how to get a build
/// that has it.
#[cfg(not(feature = "aws"))]
pub const NO_AWS: &str = "this vodpipe was built without AWS support; build with \
     `cargo build --release -p vodpipe-cli` (default features) or `make build-aws`";

/// The backoff base the embedded backend reports failed launches with. Its fleet starts
/// processes and records no failed launch, so this only words a record some other writer
/// left; it is AWS's default (`VODPIPE_LAUNCH_BACKOFF_SECS` unset).
const LOCAL_LAUNCH_BACKOFF_SECS: f64 = 60.0;

/// An open backend.
pub enum Backend {
    /// Embedded.
    Local(Box<Local>),
    /// AWS.
    #[cfg(feature = "aws")]
    Aws(Box<Aws>),
}

impl Backend {
    /// Its ports.
    pub fn ports(&self) -> Ports<'_> {
        match self {
            Backend::Local(l) => l.ports(),
            #[cfg(feature = "aws")]
            Backend::Aws(a) => a.ports(),
        }
    }

    /// The backend's name as `--backend` spells it, for the console's page to show which
    /// store it reads.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Local(_) => "local",
            #[cfg(feature = "aws")]
            Backend::Aws(_) => "aws",
        }
    }

    /// How long a tier's launches wait after its first failed one, doubling with each
    /// further failure: what `status` and `jobs` need to say when the next launch is.
    pub fn launch_backoff_secs(&self) -> f64 {
        match self {
            Backend::Local(_) => LOCAL_LAUNCH_BACKOFF_SECS,
            #[cfg(feature = "aws")]
            Backend::Aws(_) => vodpipe_aws::config::launch_backoff_secs(),
        }
    }

    /// The job store.
    pub fn jobs(&self) -> &dyn JobStore {
        self.ports().jobs
    }

    /// The queues.
    pub fn queue(&self) -> &dyn WorkQueue {
        self.ports().queue
    }

    /// The output objects.
    pub fn objects(&self) -> &dyn ObjectStore {
        self.ports().objects
    }
}

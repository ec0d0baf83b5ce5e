//! `vodpipe serve`: a web console for people who do not read JSON lines. A live jobs
//! table, a page per job with its timeline and items, and a player for what was
//! published, on either backend.
//!
//! The console only reads: the job store (through the same ports as `vodpipe jobs`) and,
//! on the embedded backend, the output directory. One thread reads the store on a fixed
//! period and every browser gets the same snapshot pushed over server-sent events, so a
//! hundred open tabs cost the store what one does.

mod assets;
mod licence;
mod media;
mod private;
mod snapshot;

use crate::backend::{Backend, StateOpts};
use anyhow::{bail, Context, Result};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Arguments of `vodpipe serve`.
#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    state: StateOpts,
    /// Address to listen on. The console has no login, so it listens on loopback unless
    /// told otherwise with --allow-remote.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Accept a --listen address other than loopback: anyone who reaches it sees every
    /// job and every published asset.
    #[arg(long)]
    allow_remote: bool,
    /// AWS backend: the base URL published keys are served under, i.e. the stack's
    /// `PlaybackBase` output (https://<distribution>.cloudfront.net). Without it the
    /// console lists jobs but cannot play them.
    #[arg(long, env = "VODPIPE_PLAYBACK_BASE")]
    playback_base: Option<String>,
    /// Seconds between reads of the job store for the live table.
    #[arg(long, default_value_t = 1.0)]
    refresh_secs: f64,
    /// Jobs in the live table at most (the newest; `vodpipe jobs --json` lists them all).
    #[arg(long, default_value_t = 500)]
    max_jobs: usize,
    /// The key file protected jobs were encrypted with: the console's player then plays
    /// those that signal Clear Key, through a licence it serves (SPEKE jobs need no file).
    #[arg(long, env = "VODPIPE_DRM_KEYS")]
    drm_keys: Option<PathBuf>,
    #[command(flatten)]
    private: private::PrivateArgs,
}

/// Where a published key can be fetched by a browser.
#[derive(Clone)]
pub(crate) enum Media {
    /// The embedded backend's output directory, served under `/media/`, and its state
    /// directory, never served even when it lies inside the output directory.
    Dir {
        /// The output root.
        root: PathBuf,
        /// The state directory.
        state: PathBuf,
    },
    /// A base URL (CloudFront on AWS; any web server in front of the output directory on
    /// the embedded backend), or none known.
    Base(Option<String>),
}

impl Media {
    /// The URL of `key`, if it can be played from here.
    pub(crate) fn url(&self, key: &str) -> Option<String> {
        let path: String = key
            .split('/')
            .map(percent_encode)
            .collect::<Vec<_>>()
            .join("/");
        match self {
            Media::Dir { .. } => Some(format!("/media/{path}")),
            Media::Base(Some(b)) => Some(format!("{}/{path}", b.trim_end_matches('/'))),
            Media::Base(None) => None,
        }
    }
}

/// Percent-encodes one path segment (asset names may hold spaces and any Unicode).
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What every request handler shares.
pub(crate) struct Console {
    backend: Backend,
    media: Media,
    snapshot: watch::Receiver<Arc<String>>,
    stopping: watch::Receiver<bool>,
    /// Where protected assets' keys come from, for Clear Key playback.
    keys: vodpipe_control::keys::Keys,
    /// Signs the players' requests when the distribution is private.
    private: Option<private::Signer>,
}

/// `vodpipe serve`.
pub fn serve(a: ServeArgs) -> Result<i32> {
    if !a.listen.ip().is_loopback() && !a.allow_remote {
        bail!(
            "--listen {} is not a loopback address: the console has no login, so anyone who \
             can reach it sees every job and asset. Add --allow-remote if that is what you want.",
            a.listen
        );
    }
    if !(0.1..=600.0).contains(&a.refresh_secs) {
        bail!("--refresh-secs must be between 0.1 and 600");
    }
    let backend = a.state.open(None, 0, None, true)?;
    if let Some(b) = &a.playback_base {
        if !(b.starts_with("https://") || b.starts_with("http://")) {
            bail!("--playback-base must be an http(s) URL, got {b:?}");
        }
    }
    let media = match &backend {
        // An output directory served by a web server of its own is played from there.
        Backend::Local(_) if a.playback_base.is_some() => Media::Base(a.playback_base.clone()),
        Backend::Local(l) => Media::Dir {
            root: l.objects.root().to_path_buf(),
            state: a.state.state_dir()?,
        },
        #[cfg(feature = "aws")]
        Backend::Aws(_) => Media::Base(a.playback_base.clone()),
    };
    let private = a.private.signer()?;
    if private.is_some() && !matches!(media, Media::Base(Some(_))) {
        bail!("--playback-private-key signs requests to --playback-base: give it too");
    }
    let mut keys = vodpipe_control::keys::Keys::default();
    if let Some(path) = &a.drm_keys {
        keys.file = Some(Arc::new(
            vodpipe_control::keys::KeyFile::read(path)
                .map_err(|e| anyhow::anyhow!("--drm-keys {e}"))?,
        ));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (snap_tx, snap_rx) = watch::channel(Arc::new(String::from("{}")));
    let console = Arc::new(Console {
        backend,
        media,
        snapshot: snap_rx,
        stopping: stop_rx,
        keys,
        private,
    });
    // The first snapshot is read before anyone can ask for it.
    let mut poller = snapshot::Poller::new(a.max_jobs);
    poller.tick(&console, &snap_tx);
    let poller = {
        let console = console.clone();
        let period = Duration::from_secs_f64(a.refresh_secs);
        std::thread::spawn(move || poller.run(&console, &snap_tx, period))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the console's runtime")?;
    let code = rt.block_on(run(a.listen, a.allow_remote, console, &stop_tx));
    // However serving ended, the poller stops too, and a job page still being read from
    // the store does not hold the exit up.
    let _ = stop_tx.send(true);
    rt.shutdown_timeout(Duration::from_secs(2));
    let _ = poller.join();
    code
}

async fn run(
    listen: SocketAddr,
    allow_remote: bool,
    console: Arc<Console>,
    stop_tx: &watch::Sender<bool>,
) -> Result<i32> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // On loopback, only requests addressed to loopback: a page elsewhere that points its
    // own name at 127.0.0.1 (DNS rebinding) must not read jobs or media through it.
    let hosts = (!allow_remote).then(|| {
        let port = addr.port();
        vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ]
    });
    if !addr.ip().is_loopback() {
        eprintln!(
            "vodpipe serve: WARNING: listening on {addr}, beyond this machine; the console \
             has no login"
        );
    }
    if matches!(console.media, Media::Base(None)) {
        eprintln!(
            "vodpipe serve: no --playback-base (VODPIPE_PLAYBACK_BASE): jobs are listed but \
             cannot be played; give the stack's PlaybackBase output"
        );
    }
    // The first stdout line is the address: scripts (and the tests) start on port 0.
    println!("vodpipe console: http://{addr}/  (Ctrl-C to stop)");
    let app = router(console.clone(), hosts);
    let stop = stop_tx.clone();
    let shutdown = async move {
        stop_signal().await;
        let _ = stop.send(true);
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving the console")?;
    Ok(0)
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn router(console: Arc<Console>, hosts: Option<Vec<String>>) -> Router {
    let hosts = Arc::new(hosts);
    Router::new()
        .route("/", get(assets::page))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/assets/{name}", get(assets::asset))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/events", get(events))
        .route("/api/licence/{id}", axum::routing::post(licence::licence))
        .merge(media::routes())
        .with_state(console)
        .layer(axum::middleware::from_fn_with_state(hosts, check_host))
}

/// Refuses (403) a request whose Host is not one this console answers.
async fn check_host(
    State(hosts): State<Arc<Option<Vec<String>>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(allowed) = hosts.as_ref() {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(host)) {
            return (
                StatusCode::FORBIDDEN,
                "this console answers requests to 127.0.0.1, localhost or [::1] only",
            )
                .into_response();
        }
    }
    next.run(req).await
}

#[derive(Deserialize)]
struct JobsQuery {
    status: Option<String>,
}

/// The current snapshot, optionally only the jobs in one state: for scripts and for the
/// first paint before the event stream connects.
async fn jobs(State(c): State<Arc<Console>>, Query(q): Query<JobsQuery>) -> Response {
    let snap = c.snapshot.borrow().clone();
    let Some(status) = q.status else {
        return json_text(snap.as_str().to_owned());
    };
    let Some(status) = vodpipe_control::job::JobStatus::parse(&status.to_uppercase()) else {
        return (StatusCode::BAD_REQUEST, format!("unknown state {status:?}")).into_response();
    };
    match serde_json::from_str::<serde_json::Value>(&snap) {
        Ok(mut v) => {
            if let Some(list) = v.get_mut("jobs").and_then(|j| j.as_array_mut()) {
                list.retain(|j| j["status"] == status.as_str());
            }
            Json(v).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// One job with its items, read on demand.
async fn job(State(c): State<Arc<Console>>, UrlPath(id): UrlPath<String>) -> Response {
    let console = c.clone();
    match tokio::task::spawn_blocking(move || snapshot::job_detail(&console, &id)).await {
        Ok(Ok(Some(v))) => Json(v).into_response(),
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, "no such job").into_response(),
        Ok(Err(e)) => (StatusCode::BAD_GATEWAY, format!("{e:#}")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Pushes every new snapshot ("jobs" events) until the console stops.
async fn events(
    State(c): State<Arc<Console>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let state = (c.snapshot.clone(), c.stopping.clone(), true);
    let stream = futures_util::stream::unfold(state, |(mut snap, mut stop, first)| async move {
        if !first {
            tokio::select! {
                changed = snap.changed() => changed.ok()?,
                _ = stop.wait_for(|s| *s) => return None,
            }
        }
        if *stop.borrow() {
            return None;
        }
        let data = snap.borrow_and_update().clone();
        let event = Event::default().event("jobs").data(data.as_str());
        Some((Ok(event), (snap, stop, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn json_text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

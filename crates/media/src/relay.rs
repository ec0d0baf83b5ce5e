//! A source read over HTTP, relayed to ffprobe on 127.0.0.1 in closed byte ranges, so a
//! probe reads what it needs of the source and not what the transport pushes at it.
//!
//! ffmpeg's HTTP client asks for `bytes=N-` (everything from N on) and seeks by opening a
//! new connection. A server (S3) answers such a request by sending the rest of the object
//! as fast as the connection takes it, so a probe that needs 50 KB of a 50 GB object pulls
//! megabytes through before it hangs up (measured on loopback: 4 MB for an MKV whose
//! header probe consumes 49 KB). The ingest function must read a bounded amount of any
//! source, so its header probe opens the source through this relay: each of ffprobe's
//! requests is answered with one block, read from the source with a closed range
//! (`bytes=N-M`), and the connection ends there; ffprobe (`-reconnect 1`) asks again from
//! where it stopped. Requests that each continue where the last one ended are a
//! sequential read: their blocks double, up to [`MAX_BLOCK`], so a long read costs few
//! requests; any other request starts again at [`FIRST_BLOCK`]. What the source sends is
//! then what ffprobe reads, rounded up to a block per request.
//!
//! The relay also knows what ffprobe cannot tell apart: whether a read of the source
//! failed ([`Relay::failures`]). ffmpeg reports every block's end as "Stream ends
//! prematurely" before it reconnects, so its messages say nothing about the transport
//! here; the relay's count does.

use crate::error::{Error, Result};
use crate::moov::RangeSource;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The block answering a request that does not continue the previous one.
pub const FIRST_BLOCK: u64 = 256 * 1024;
/// The largest block: a sequential read's blocks double up to this.
pub const MAX_BLOCK: u64 = 4 * 1024 * 1024;

/// Requests answered at once. ffmpeg opens the connection of a seek before it closes the
/// one it leaves, which still waits for the rest of its block: answered one at a time, the
/// seek would wait for a block nobody reads.
const THREADS: usize = 4;

/// A running relay; dropping it stops it.
pub struct Relay {
    server: Arc<tiny_http::Server>,
    url: String,
    failures: Arc<AtomicU64>,
    last_failure: Arc<Mutex<Option<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("url", &self.url).finish()
    }
}

impl Relay {
    /// Serves `source` on a free port of 127.0.0.1, under a path nobody can guess (only
    /// the process that started it learns it).
    pub fn start(source: Arc<RangeSource>) -> Result<Relay> {
        let server = tiny_http::Server::http("127.0.0.1:0")
            .map_err(|e| Error::Unavailable(format!("cannot start the probe's relay: {e}")))?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| Error::Unavailable("the probe's relay has no port".into()))?;
        let server = Arc::new(server);
        let path = format!("/{:016x}{:016x}", random(), random());
        let failures = Arc::new(AtomicU64::new(0));
        let last_failure = Arc::new(Mutex::new(None));
        let run: Arc<Mutex<Option<Run>>> = Arc::default();
        let threads = (0..THREADS)
            .map(|_| {
                let (server, path, source) = (server.clone(), path.clone(), source.clone());
                let (failures, last_failure) = (failures.clone(), last_failure.clone());
                let run = run.clone();
                std::thread::spawn(move || {
                    // `recv` fails once the relay is dropped (`unblock`).
                    while let Ok(request) = server.recv() {
                        if let Err(why) = answer(&source, &path, request, &run) {
                            failures.fetch_add(1, Ordering::SeqCst);
                            if let Ok(mut last) = last_failure.lock() {
                                *last = Some(why);
                            }
                        }
                    }
                })
            })
            .collect();
        Ok(Relay {
            server,
            url: format!("http://127.0.0.1:{port}{path}"),
            failures,
            last_failure,
            threads,
        })
    }

    /// The URL ffprobe opens.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Reads of the source that failed (after [`RangeSource`]'s own retries) so far, and
    /// the last one's reason: each was answered with a 503, which ffprobe retries.
    pub fn failures(&self) -> (u64, Option<String>) {
        let last = self.last_failure.lock().ok().and_then(|l| l.clone());
        (self.failures.load(Ordering::SeqCst), last)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // One unblock wakes one waiting thread; each thread wakes on its own.
        for _ in &self.threads {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Where the last answer ended and how large its block was: a request starting there
/// continues a sequential read.
#[derive(Debug, Clone, Copy)]
struct Run {
    next: u64,
    block: u64,
}

/// The block for a request at `start` after `run`: doubled for a sequential read, else
/// the first block again.
fn block_for(start: u64, run: Option<Run>) -> u64 {
    match run {
        Some(r) if r.next == start => (r.block * 2).min(MAX_BLOCK),
        _ => FIRST_BLOCK,
    }
}

/// `bytes=N-` or `bytes=N-M` (ffmpeg asks for one range); `None` for anything else.
fn parse_range(header: &str) -> Option<(u64, Option<u64>)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => None,
        e => Some(e.parse().ok().filter(|&e: &u64| e >= start)?),
    };
    Some((start, end))
}

/// Answers one request: a block of the source (its size from the read `run` it may
/// continue, which it then updates), or an error status. `Err` (after a 503 was sent) when
/// reading the source failed.
fn answer(
    source: &RangeSource,
    path: &str,
    request: tiny_http::Request,
    run: &Mutex<Option<Run>>,
) -> std::result::Result<(), String> {
    let header = |name: &str, value: String| {
        tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
    };
    if request.url() != path || *request.method() != tiny_http::Method::Get {
        let _ = request.respond(tiny_http::Response::empty(404));
        return Ok(());
    }
    let size = source.size();
    let range = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Range"))
        .map(|h| parse_range(h.value.as_str()));
    let (start, end) = match range {
        None => (0, None),
        Some(Some(r)) => r,
        Some(None) => {
            let _ = request.respond(tiny_http::Response::empty(416));
            return Ok(());
        }
    };
    if start >= size {
        let mut r = tiny_http::Response::empty(416);
        if let Some(h) = header("Content-Range", format!("bytes */{size}")) {
            r.add_header(h);
        }
        let _ = request.respond(r);
        return Ok(());
    }
    let last = {
        let mut run = run
            .lock()
            .map_err(|_| "the relay's state is poisoned".to_string())?;
        let block = block_for(start, *run);
        let last = end
            .unwrap_or(size - 1)
            .min(size - 1)
            .min(start.saturating_add(block - 1));
        *run = Some(Run {
            next: last + 1,
            block,
        });
        last
    };
    match source.read_at(start, last - start + 1) {
        Ok(bytes) => {
            let mut r = tiny_http::Response::from_data(bytes).with_status_code(206);
            for h in [
                header("Content-Range", format!("bytes {start}-{last}/{size}")),
                header("Accept-Ranges", "bytes".into()),
            ]
            .into_iter()
            .flatten()
            {
                r.add_header(h);
            }
            // ffprobe hanging up early is no failure of the source.
            let _ = request.respond(r);
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, start, "the probe's relay could not read the source");
            let _ = request.respond(tiny_http::Response::empty(503));
            Err(e.to_string())
        }
    }
}

/// 64 random bits from the standard library's per-process random hasher keys.
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_reads_double_their_blocks_and_a_seek_starts_small_again() {
        assert_eq!(block_for(0, None), FIRST_BLOCK);
        let run = Some(Run {
            next: FIRST_BLOCK,
            block: FIRST_BLOCK,
        });
        assert_eq!(block_for(FIRST_BLOCK, run), 2 * FIRST_BLOCK);
        assert_eq!(block_for(7, run), FIRST_BLOCK);
        let big = Some(Run {
            next: 10,
            block: MAX_BLOCK,
        });
        assert_eq!(block_for(10, big), MAX_BLOCK);
    }

    #[test]
    fn ranges_are_parsed_as_ffmpeg_sends_them() {
        assert_eq!(parse_range("bytes=0-"), Some((0, None)));
        assert_eq!(parse_range("bytes=10-19"), Some((10, Some(19))));
        assert_eq!(parse_range("bytes=19-10"), None);
        assert_eq!(parse_range("items=0-"), None);
    }
}

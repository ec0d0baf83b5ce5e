//! Sources served to ffprobe on 127.0.0.1, for a probe that has no TLS.
//!
//! The ingest function's ffprobe is a static build with file, HTTP and TCP only
//! (`infra/ffprobe-layer`): carrying a TLS stack and a CA bundle into a Lambda layer buys
//! nothing when the function itself can read the object. So the function serves each
//! source on a loopback port, under an unguessable path that expires, and ffprobe opens
//! `http://127.0.0.1:PORT/s/<token>`. Every request becomes a ranged S3 `GetObject`
//! (ffprobe asks for `bytes=N-` and seeks by reconnecting), streamed through as it
//! arrives, so nothing is downloaded whole and a dropped connection stops the transfer.
//! Credentials never appear on a command line, and only registered objects are served.

use crate::backend;
use crate::config::Bridge;
use aws_sdk_s3::Client;
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vodpipe_control::ports::{PortError, PortResult};

/// Threads answering requests: ffprobe keeps one connection at a time per input.
const THREADS: usize = 4;

/// One object a token stands for.
#[derive(Debug, Clone)]
struct Entry {
    bucket: String,
    key: String,
    /// The object version every read pins, when the job has one.
    version: Option<String>,
    expires: Instant,
}

/// The loopback server. Dropping it stops its threads.
pub struct Loopback {
    server: Arc<tiny_http::Server>,
    port: u16,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    /// Threads still answering; tiny_http ends them all when accepting fails (too many
    /// open files, say), and a server without threads is replaced.
    threads: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for Loopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loopback")
            .field("port", &self.port)
            .finish()
    }
}

/// A range request: `bytes=N-` or `bytes=N-M` (one range; ffmpeg never asks for more).
pub fn parse_range(header: &str) -> Option<(u64, Option<u64>)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => None,
        e => Some(e.parse().ok().filter(|&e: &u64| e >= start)?),
    };
    Some((start, end))
}

impl Loopback {
    /// Binds 127.0.0.1 on a free port and starts answering.
    pub fn start(bridge: Arc<Bridge>, client: Client) -> PortResult<Self> {
        let server = tiny_http::Server::http("127.0.0.1:0")
            .map_err(|e| PortError::Backend(format!("loopback source server: {e}")))?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| PortError::Backend("loopback source server has no port".into()))?;
        let server = Arc::new(server);
        let entries: Arc<Mutex<HashMap<String, Entry>>> = Arc::default();
        let threads = Arc::new(std::sync::atomic::AtomicUsize::new(THREADS));
        for _ in 0..THREADS {
            let (server, entries, bridge, client, threads) = (
                server.clone(),
                entries.clone(),
                bridge.clone(),
                client.clone(),
                threads.clone(),
            );
            std::thread::spawn(move || {
                // `recv` fails once the server is unblocked (dropped) or cannot accept any
                // more: the thread ends.
                while let Ok(request) = server.recv() {
                    serve(&bridge, &client, &entries, request);
                }
                threads.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        tracing::debug!(port, "serving sources on loopback");
        Ok(Loopback {
            server,
            port,
            entries,
            threads,
        })
    }

    /// Whether it still answers (else the caller starts another).
    pub fn is_alive(&self) -> bool {
        self.threads.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// A URL that serves `s3://bucket/key` (at `version`, when given) for `ttl` to anything
    /// on this machine.
    pub fn url(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        ttl: Duration,
    ) -> PortResult<String> {
        let mut raw = [0u8; 16];
        getrandom::getrandom(&mut raw).map_err(|e| backend("loopback token", e))?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| PortError::Backend("loopback registry poisoned".into()))?;
        entries.retain(|_, e| e.expires > now);
        entries.insert(
            token.clone(),
            Entry {
                bucket: bucket.to_string(),
                key: key.to_string(),
                version: version.map(str::to_string),
                expires: now + ttl,
            },
        );
        Ok(format!("http://127.0.0.1:{}/s/{token}", self.port))
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        for _ in 0..THREADS {
            self.server.unblock();
        }
    }
}

fn header(name: &'static str, value: &str) -> Option<tiny_http::Header> {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

/// Answers `request` with `code`, `headers` and `body` of `length` bytes. The length is
/// always sent as `Content-Length` (never chunked), so a client knows the size of what it
/// asked for; HEAD gets the headers only.
fn respond<R: Read>(
    request: tiny_http::Request,
    code: u16,
    headers: Vec<Option<tiny_http::Header>>,
    body: R,
    length: usize,
) {
    let mut response = tiny_http::Response::new(code.into(), Vec::new(), body, Some(length), None)
        .with_chunked_threshold(usize::MAX);
    for h in headers.into_iter().flatten() {
        response.add_header(h);
    }
    // A client that seeks closes the connection mid-body; the write error ends the
    // transfer and drops the S3 stream.
    let _ = request.respond(response);
}

fn serve(
    bridge: &Bridge,
    client: &Client,
    entries: &Mutex<HashMap<String, Entry>>,
    request: tiny_http::Request,
) {
    let entry = request
        .url()
        .strip_prefix("/s/")
        .and_then(|token| entries.lock().ok()?.get(token).cloned())
        .filter(|e| e.expires > Instant::now());
    let Some(entry) = entry else {
        return respond(request, 404, vec![], std::io::empty(), 0);
    };
    let head = *request.method() == tiny_http::Method::Head;
    if !head && *request.method() != tiny_http::Method::Get {
        return respond(
            request,
            405,
            vec![header("Allow", "GET, HEAD")],
            std::io::empty(),
            0,
        );
    }
    let mut headers = vec![
        header("Accept-Ranges", "bytes"),
        header("Content-Type", "application/octet-stream"),
    ];
    if head {
        let size = bridge
            .run(
                client
                    .head_object()
                    .bucket(&entry.bucket)
                    .key(&entry.key)
                    .set_version_id(entry.version.clone())
                    .send(),
            )
            .ok()
            .and_then(|o| o.content_length());
        return match size {
            Some(n) => respond(request, 200, headers, std::io::empty(), n.max(0) as usize),
            None => respond(request, 502, vec![], std::io::empty(), 0),
        };
    }
    let wanted = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Range"))
        .and_then(|h| parse_range(h.value.as_str()));
    let mut get = client
        .get_object()
        .bucket(&entry.bucket)
        .key(&entry.key)
        .set_version_id(entry.version.clone());
    if let Some((start, end)) = wanted {
        get = get.range(match end {
            Some(e) => format!("bytes={start}-{e}"),
            None => format!("bytes={start}-"),
        });
    }
    let out = match bridge.run(get.send()) {
        Ok(out) => out,
        Err(e) => {
            let code = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(502);
            tracing::warn!(key = %entry.key, code, error = ?e, "loopback source read failed");
            // 416 carries the size so a client can tell where the object ends; anything
            // but a missing object is the upstream's failure (5xx), which the probe treats
            // as a reason to retry, never as a verdict on the file.
            let size = e
                .raw_response()
                .and_then(|r| r.headers().get("content-range"))
                .map(str::to_string);
            let code = if code == 416 || code == 404 {
                code
            } else {
                502
            };
            return respond(
                request,
                code,
                vec![size.and_then(|s| header("Content-Range", &s))],
                std::io::empty(),
                0,
            );
        }
    };
    let Some(length) = out.content_length().map(|n| n.max(0) as usize) else {
        return respond(request, 502, vec![], std::io::empty(), 0);
    };
    let code = match (wanted, out.content_range()) {
        (Some(_), Some(cr)) => {
            headers.push(header("Content-Range", cr));
            206
        }
        _ => 200,
    };
    let body = Body {
        bridge,
        stream: out.body,
        pending: bytes::Bytes::new(),
    };
    respond(request, code, headers, body, length);
}

/// An S3 body read synchronously, chunk by chunk, as the client takes it.
struct Body<'a> {
    bridge: &'a Bridge,
    stream: aws_sdk_s3::primitives::ByteStream,
    pending: bytes::Bytes,
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            match self.bridge.run(self.stream.next()) {
                Some(Ok(chunk)) => self.pending = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_ffmpeg_sends_parse() {
        assert_eq!(parse_range("bytes=0-"), Some((0, None)));
        assert_eq!(parse_range("bytes=1024-2047"), Some((1024, Some(2047))));
        assert_eq!(parse_range("bytes=5-4"), None);
        assert_eq!(parse_range("bytes=-500"), None);
        assert_eq!(parse_range("items=0-1"), None);
    }
}

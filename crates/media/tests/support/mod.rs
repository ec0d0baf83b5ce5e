//! What the media tests share: a source served over HTTP with byte ranges, as S3 serves
//! one through a presigned URL.

#![allow(clippy::unwrap_used, dead_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Serves `data` with range support on 127.0.0.1; with `fail_every`, every such request
/// (the first included) is answered with 503 SlowDown instead. Returns the URL and the
/// count of requests served.
pub fn serve(data: Vec<u8>, fail_every: Option<u32>) -> (String, Arc<AtomicU32>) {
    let (url, count, _) = serve_counting(data, fail_every);
    (url, count)
}

/// [`serve`], also counting the body bytes the server sent: what a client made it send,
/// as S3 counts it. An open-ended range (`bytes=N-`) is sent until the client hangs up,
/// so it counts what went into the connection, read or not. Each request is answered on
/// a thread of its own, as S3 answers a client that opens a second connection (a seek)
/// before it closes the first.
pub fn serve_counting(
    data: Vec<u8>,
    fail_every: Option<u32>,
) -> (String, Arc<AtomicU32>, Arc<AtomicU64>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let count = Arc::new(AtomicU32::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let (seen, sent) = (count.clone(), bytes.clone());
    let data = Arc::new(data);
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            if fail_every.is_some_and(|every| n.is_multiple_of(every)) {
                let _ = req.respond(
                    tiny_http::Response::from_string("<Error><Code>SlowDown</Code></Error>")
                        .with_status_code(503),
                );
                continue;
            }
            let (data, sent) = (data.clone(), sent.clone());
            std::thread::spawn(move || answer(req, &data, &sent));
        }
    });
    (format!("http://127.0.0.1:{port}/source.mp4"), count, bytes)
}

/// Answers one range request from `data`, counting into `sent` the body bytes written.
fn answer(req: tiny_http::Request, data: &Arc<Vec<u8>>, sent: &Arc<AtomicU64>) {
    let range = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Range"))
        .map(|h| h.value.as_str().to_string());
    let (a, b) = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| {
            let a: usize = a.parse().unwrap();
            let b: usize = b.parse().unwrap_or(data.len() - 1);
            (a, b.min(data.len() - 1))
        })
        .unwrap_or((0, data.len() - 1));
    let body = Counting {
        data: data.clone(),
        at: a,
        end: b + 1,
        sent: sent.clone(),
    };
    let headers = vec![
        tiny_http::Header::from_bytes("Content-Range", format!("bytes {a}-{b}/{}", data.len()))
            .unwrap(),
        tiny_http::Header::from_bytes("Accept-Ranges", "bytes").unwrap(),
    ];
    let status = if range.is_some() { 206 } else { 200 };
    let resp = tiny_http::Response::new(status.into(), headers, body, Some(b + 1 - a), None);
    let _ = req.respond(resp);
}

/// A response body that counts what is read of it (in small pieces, so what tiny_http
/// has taken is close to what it wrote).
struct Counting {
    data: Arc<Vec<u8>>,
    at: usize,
    end: usize,
    sent: Arc<AtomicU64>,
}

impl std::io::Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(16 * 1024).min(self.end - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        self.sent.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

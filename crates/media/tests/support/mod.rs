//! What the media tests share: a source served over HTTP with byte ranges, as S3 serves
//! one through a presigned URL.

#![allow(clippy::unwrap_used, dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Serves `data` with range support on 127.0.0.1; with `fail_every`, every such request
/// (the first included) is answered with 503 SlowDown instead. Returns the URL and the
/// count of requests served.
pub fn serve(data: Vec<u8>, fail_every: Option<u32>) -> (String, Arc<AtomicU32>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let count = Arc::new(AtomicU32::new(0));
    let seen = count.clone();
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
            let resp = tiny_http::Response::from_data(data[a..=b].to_vec())
                .with_status_code(if range.is_some() { 206 } else { 200 })
                .with_header(
                    tiny_http::Header::from_bytes(
                        "Content-Range",
                        format!("bytes {a}-{b}/{}", data.len()),
                    )
                    .unwrap(),
                )
                .with_header(tiny_http::Header::from_bytes("Accept-Ranges", "bytes").unwrap());
            let _ = req.respond(resp);
        }
    });
    (format!("http://127.0.0.1:{port}/source.mp4"), count)
}

//! The console's page, script and style, and the two players it offers, compiled into
//! the binary: `vodpipe serve` works offline and needs no build step of its own. The
//! players are the releases the playback tests pin (tests/player/package.json); a test
//! checks the copies here are byte for byte those.

use axum::extract::Path as UrlPath;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("../../assets/console.html");

/// (name, content type, bytes) of every asset under `/assets/`.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/console.css"),
    ),
    (
        "hls.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/hls.min.js"),
    ),
    (
        "shaka-player.compiled.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/shaka-player.compiled.js"),
    ),
];

/// The single page (routing is in the page's URL fragment).
pub(super) async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

/// One embedded asset by name.
pub(super) async fn asset(UrlPath(name): UrlPath<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, bytes)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

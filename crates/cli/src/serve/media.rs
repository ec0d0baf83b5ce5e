//! The embedded backend's output directory over HTTP, for the console's players and any
//! other player page: byte ranges (tower-http's `ServeFile`), CORS for GET/HEAD, and never
//! a byte from outside the output root, nor from its hidden entries (the `.vodpipe` state
//! of `vodpipe run` lives there).

use super::{Console, Media};
use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower::ServiceExt;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::ServeFile;

/// `/media/{*path}` with its CORS layer.
pub(super) fn routes() -> Router<Arc<Console>> {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD])
        .allow_headers([header::RANGE])
        .expose_headers([
            header::CONTENT_RANGE,
            header::CONTENT_LENGTH,
            header::ACCEPT_RANGES,
        ]);
    Router::new().route("/media/{*path}", get(file)).layer(cors)
}

async fn file(
    State(c): State<Arc<Console>>,
    UrlPath(path): UrlPath<String>,
    req: Request,
) -> Response {
    let Media::Dir { root, state } = c.media.clone() else {
        return (
            StatusCode::NOT_FOUND,
            "this console plays from the playback base, not from /media",
        )
            .into_response();
    };
    // Resolving links touches the disk: off the runtime's threads.
    let file = tokio::task::spawn_blocking(move || inside(&root, &state, &path)).await;
    let Ok(Some(file)) = file else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    match ServeFile::new(file).oneshot(req).await {
        Ok(r) => r.map(Body::new),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The regular file `rel` names under `root`, or None if it is missing, hidden, not a
/// file, in the `state` directory, or anywhere outside `root` (by `..`, an absolute path,
/// or a symbolic link leading out or into a hidden entry). `rel` is already
/// percent-decoded.
pub(crate) fn inside(root: &Path, state: &Path, rel: &str) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for part in rel.split('/') {
        if part.is_empty()
            || part.starts_with('.')
            || part.contains(['\\', '\0'])
            || Path::new(part).is_absolute()
        {
            return None;
        }
        path.push(part);
    }
    let real_root = std::fs::canonicalize(root).ok()?;
    let real = std::fs::canonicalize(&path).ok()?;
    let under = real.strip_prefix(&real_root).ok()?;
    let hidden = under
        .components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
    let in_state = std::fs::canonicalize(state).is_ok_and(|s| real.starts_with(s));
    (!hidden && !in_state && real.is_file()).then_some(real)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::inside;

    #[test]
    fn only_files_under_the_root_and_not_hidden() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("out");
        std::fs::create_dir_all(root.join("asset/.vodpipe")).unwrap();
        std::fs::create_dir_all(root.join(".vodpipe")).unwrap();
        std::fs::write(root.join("asset/master.m3u8"), "#EXTM3U").unwrap();
        std::fs::write(root.join(".vodpipe/vodpipe.db"), "x").unwrap();
        std::fs::write(d.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), root.join("asset/link")).unwrap();
        std::os::unix::fs::symlink(root.join(".vodpipe/vodpipe.db"), root.join("asset/db"))
            .unwrap();
        // A state directory without a dot, inside the output root.
        std::fs::create_dir_all(root.join("state")).unwrap();
        std::fs::write(root.join("state/vodpipe.db"), "x").unwrap();
        let state = root.join("state");
        assert!(inside(&root, &state, "asset/master.m3u8").is_some());
        for bad in [
            "../secret",
            "asset/../../secret",
            "asset/./master.m3u8",
            ".vodpipe/vodpipe.db",
            "asset//master.m3u8",
            "asset/link",
            "asset",
            "asset/missing",
            "/etc/passwd",
            "asset\\..\\..\\secret",
            "asset/db",
            "state/vodpipe.db",
        ] {
            assert!(inside(&root, &state, bad).is_none(), "{bad} was served");
        }
    }
}

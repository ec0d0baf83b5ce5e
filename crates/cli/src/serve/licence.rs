//! A Clear Key licence for the console's player: a protected asset that signals Clear Key
//! (a test or preview asset; a real one is licensed by its DRM's own server) plays in the
//! console, with its keys from the same source the workers encrypted with (the key file
//! given with `--drm-keys`, or the job's SPEKE key server).

use super::Console;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use std::sync::Arc;
use vodpipe_media::cenc::System;

/// The W3C Clear Key licence request.
#[derive(Deserialize)]
pub(super) struct LicenceRequest {
    kids: Vec<String>,
}

/// `POST /api/licence/{job}`: the JSON Web Key set of the job's asset (every key of it,
/// when the request names one of them).
pub(super) async fn licence(
    State(c): State<Arc<Console>>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    // Players send the request as bytes, without a JSON content type.
    let req: LicenceRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a Clear Key licence request: {e}"),
            )
                .into_response()
        }
    };
    let console = c.clone();
    match tokio::task::spawn_blocking(move || keys_for(&console, &id, &req.kids)).await {
        Ok(Ok(set)) => Json(set).into_response(),
        Ok(Err((code, why))) => (code, why).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn keys_for(
    c: &Console,
    id: &str,
    kids: &[String],
) -> Result<serde_json::Value, (StatusCode, String)> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let job = c
        .backend
        .jobs()
        .job(id)
        .map_err(|e| (StatusCode::BAD_GATEWAY, format!("{e:#}")))?
        .ok_or((StatusCode::NOT_FOUND, format!("no job {id}")))?;
    let drm = job
        .settings
        .as_ref()
        .and_then(|s| s.drm.as_ref())
        .map(|d| d.value.clone())
        .ok_or((StatusCode::NOT_FOUND, format!("job {id} is not protected")))?;
    if !drm.systems().contains(&System::ClearKey) {
        return Err((
            StatusCode::FORBIDDEN,
            "this asset does not signal Clear Key: its DRM's own licence server licenses it".into(),
        ));
    }
    let keys = c
        .keys
        .asset_keys(&job.asset, &drm)
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?;
    // Every key of the asset, whichever the player asked for first: a video and an audio
    // key are then both in the player's one session (players ask once per session).
    let mut both = vec![&keys.video.key, &keys.audio.key];
    both.dedup_by_key(|k| k.kid);
    if !kids.iter().any(|want| {
        both.iter()
            .any(|k| b64.encode(k.kid) == want.trim_end_matches('='))
    }) {
        return Err((
            StatusCode::NOT_FOUND,
            format!("job {id}'s asset has none of the key IDs asked for"),
        ));
    }
    let set: Vec<serde_json::Value> = both
        .into_iter()
        .map(
            |k| serde_json::json!({"kty": "oct", "kid": b64.encode(k.kid), "k": b64.encode(k.key)}),
        )
        .collect();
    Ok(serde_json::json!({"keys": set, "type": "temporary"}))
}

//! The messages API on localhost: the same router as in Lambda, with the caller named by the
//! `X-User` header (there is no JWT authorizer here), and a `/files/` route that stands in for S3's
//! presigned URLs: downloads and uploads with links that expire and cannot be forged.

use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use tokio::io::AsyncWriteExt;
use tracing::info;
use transcoder_api::{Api, MAX_BODY_BYTES};
use transcoder_core::links::LINK_LIFETIME;
use transcoder_core::{ClaimStore, Link, LinkError, Links, MessageStore, ObjectKey};

/// What a path segment must encode: everything but unreserved characters (RFC 3986).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Links to this server's `/files/` route, signed with a key that lives as long as the process.
#[derive(Clone)]
pub struct LocalLinks {
    base_url: String,
    key: RandomState,
}

impl LocalLinks {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            key: RandomState::new(),
        }
    }

    fn token(&self, method: &str, key: &str, expires: i64) -> String {
        format!("{:016x}", self.key.hash_one((method, key, expires)))
    }

    fn link(&self, method: &str, key: &ObjectKey, now: DateTime<Utc>) -> Link {
        let expires_at = now + LINK_LIFETIME;
        let expires = expires_at.timestamp();
        let path: Vec<String> = key
            .as_str()
            .split('/')
            .map(|s| utf8_percent_encode(s, PATH_SEGMENT).to_string())
            .collect();
        Link {
            url: format!(
                "{}/files/{}?expires={expires}&token={}",
                self.base_url,
                path.join("/"),
                self.token(method, key.as_str(), expires)
            ),
            expires_at,
        }
    }

    /// Whether `query` carries a valid, unexpired token for `method` on `key`.
    fn verify(&self, method: &str, key: &str, query: &str) -> bool {
        let mut expires = None;
        let mut token = None;
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("expires", v)) => expires = v.parse::<i64>().ok(),
                Some(("token", v)) => token = Some(v),
                _ => {}
            }
        }
        match (expires, token) {
            (Some(expires), Some(token)) => {
                expires >= Utc::now().timestamp() && token == self.token(method, key, expires)
            }
            _ => false,
        }
    }
}

impl Links for LocalLinks {
    async fn download(&self, key: &ObjectKey, now: DateTime<Utc>) -> Result<Link, LinkError> {
        Ok(self.link("GET", key, now))
    }

    async fn upload(&self, key: &ObjectKey, now: DateTime<Utc>) -> Result<Link, LinkError> {
        Ok(self.link("PUT", key, now))
    }
}

pub struct ServerState<S> {
    pub api: Api<S, LocalLinks>,
    pub links: LocalLinks,
    pub bucket: PathBuf,
}

/// The local server's routes.
pub fn router<S: MessageStore + ClaimStore + 'static>(state: Arc<ServerState<S>>) -> Router {
    Router::new().fallback(handle::<S>).with_state(state)
}

async fn handle<S: MessageStore + ClaimStore + 'static>(
    State(state): State<Arc<ServerState<S>>>,
    request: Request,
) -> Response {
    if let Some(encoded) = request.uri().path().strip_prefix("/files/") {
        return files(&state, encoded.to_owned(), request).await;
    }
    let caller = request
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (parts, body) = request.into_parts();
    // One byte over the limit is enough for the router to answer 413.
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES + 1).await {
        Ok(bytes) => bytes,
        Err(_) => Bytes::from(vec![0; MAX_BODY_BYTES + 1]),
    };
    let request = axum::http::Request::from_parts(parts, body);
    let response = state.api.handle(caller.as_deref(), &request).await;
    info!(method = %request.method(), path = request.uri().path(), status = response.status().as_u16(), caller, "api");
    response.map(Body::from).into_response()
}

async fn files<S>(state: &ServerState<S>, encoded: String, request: Request) -> Response {
    let Ok(key) = percent_decode_str(&encoded).decode_utf8() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let key = key.into_owned();
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == ".." || s.starts_with('.'))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    let method = request.method().clone();
    let query = request.uri().query().unwrap_or_default().to_owned();
    if !state.links.verify(method.as_str(), &key, &query) {
        return (
            StatusCode::FORBIDDEN,
            "the link is invalid or has expired\n",
        )
            .into_response();
    }
    let path = state.bucket.join(&key);
    match method {
        Method::GET => match tokio::fs::read(&path).await {
            Ok(bytes) => {
                ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
            }
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        },
        Method::PUT => match receive(&path, request.into_body()).await {
            Ok(size) => {
                info!(key, bytes = size, "upload received");
                StatusCode::OK.into_response()
            }
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        },
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, PUT")],
        )
            .into_response(),
    }
}

/// Writes an upload under a hidden name and renames it into place once complete, so the watcher
/// only ever sees whole files.
async fn receive(path: &Path, body: Body) -> std::io::Result<u64> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no folder"))?;
    tokio::fs::create_dir_all(dir).await?;
    static UPLOADS: AtomicU64 = AtomicU64::new(0);
    let part = dir.join(format!(
        ".upload-{}-{}",
        std::process::id(),
        UPLOADS.fetch_add(1, Ordering::SeqCst)
    ));
    let mut file = tokio::fs::File::create(&part).await?;
    let mut size = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(std::io::Error::other)?;
        size += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    drop(file);
    tokio::fs::rename(&part, path).await?;
    Ok(size)
}

//! The messages API on localhost: the same router as in Lambda, with the caller named by the
//! `X-User` header (there is no JWT authorizer here), and a `/files/` route that stands in for S3's
//! presigned URLs: downloads and uploads with links that expire and cannot be forged. An upload
//! link binds a size and a content type, as S3's do, and the route enforces both.
//!
//! It answers only requests addressed to a loopback name: a web page that rebinds its own domain
//! to 127.0.0.1 still sends its own `Host`, and is refused.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{Next, from_fn, map_request, map_request_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use sha2::Sha256;
use std::io::SeekFrom;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;
use tracing::{info, warn};
use transcoder_api::{Api, ApiError, Identity};
use transcoder_core::{
    ClaimStore, Escaped, LINK_LIFETIME, LOUDNESS_KEY, Link, LinkError, Links,
    METADATA_HEADER_PREFIX, MessageStore, OUTPUTS_KEY, ObjectKey, UPLOAD_LINK_LIFETIME, Upload,
    UploadStore,
};

use crate::bucket::store_metadata;
use crate::ffmpeg::Budget;
use crate::space::{Space, bytes, is_no_space};

/// What a path segment must encode: everything but unreserved characters (RFC 3986).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The name an upload is written under until it is complete; hidden, so the watcher skips it.
const PARTIAL_PREFIX: &str = ".upload-";

/// Links to this server's `/files/` route, signed with HMAC-SHA256 under a key that lives as long
/// as the process.
#[derive(Clone)]
pub struct LocalLinks {
    base_url: String,
    /// HMAC-SHA256, already keyed; each token starts from a clone.
    mac: Hmac<Sha256>,
}

/// What a verified link allows: for an upload, the exact size and content type it was signed for;
/// a download link has neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Terms {
    size: Option<u64>,
    content_type: Option<String>,
    /// The `x-amz-meta-outputs` and `x-amz-meta-loudness` the PUT must send, if any.
    outputs: Option<String>,
    loudness: Option<String>,
}

impl Terms {
    /// The metadata an upload under these terms carries, as S3 would keep it.
    fn metadata(&self) -> Vec<(String, String)> {
        [(OUTPUTS_KEY, &self.outputs), (LOUDNESS_KEY, &self.loudness)]
            .into_iter()
            .filter_map(|(key, value)| Some((key.to_owned(), value.clone()?)))
            .collect()
    }
}

impl LocalLinks {
    /// Links under `base_url`, signed with a new random key.
    pub fn new(base_url: impl Into<String>) -> Result<Self, getrandom::Error> {
        // A key of SHA-256's block size, the most HMAC can use.
        let mut key = [0; 64];
        getrandom::fill(&mut key)?;
        Ok(Self {
            base_url: base_url.into(),
            mac: Hmac::new(&key.into()),
        })
    }

    fn mac(&self, method: &str, key: &str, expires: i64, terms: &Terms) -> Hmac<Sha256> {
        let size = terms.size.map(|s| s.to_string()).unwrap_or_default();
        let content_type = terms.content_type.as_deref().unwrap_or_default();
        let mut mac = self.mac.clone();
        let expires = expires.to_string();
        // Each field length-prefixed, so no two different requests sign the same bytes.
        for field in [method, key, &expires, &size, content_type] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        // The metadata last, each present or not, so a link without it signs what it did before.
        for value in [&terms.outputs, &terms.loudness] {
            match value {
                None => mac.update(&[0]),
                Some(value) => {
                    mac.update(&[1]);
                    mac.update(&(value.len() as u64).to_be_bytes());
                    mac.update(value.as_bytes());
                }
            }
        }
        mac
    }

    fn link(
        &self,
        method: &str,
        key: &ObjectKey,
        terms: &Terms,
        expires_at: DateTime<Utc>,
    ) -> Link {
        let expires = expires_at.timestamp();
        let path: Vec<String> = key
            .as_str()
            .split('/')
            .map(|s| utf8_percent_encode(s, PATH_SEGMENT).to_string())
            .collect();
        let token = self
            .mac(method, key.as_str(), expires, terms)
            .finalize()
            .into_bytes();
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("expires", &expires.to_string());
        if let Some(size) = terms.size {
            query.append_pair("size", &size.to_string());
        }
        if let Some(content_type) = &terms.content_type {
            query.append_pair("type", content_type);
        }
        if let Some(outputs) = &terms.outputs {
            query.append_pair(OUTPUTS_KEY, outputs);
        }
        if let Some(loudness) = &terms.loudness {
            query.append_pair(LOUDNESS_KEY, loudness);
        }
        query.append_pair("token", &URL_SAFE_NO_PAD.encode(token));
        Link {
            url: format!(
                "{}/files/{}?{}",
                self.base_url,
                path.join("/"),
                query.finish()
            ),
            expires_at,
        }
    }

    /// The terms of the link `query` carries if its token is valid and unexpired for `method` on
    /// `key`.
    fn verify(&self, method: &str, key: &str, query: &LinkQuery) -> Option<Terms> {
        let token = URL_SAFE_NO_PAD.decode(query.token.as_bytes()).ok()?;
        let terms = Terms {
            size: query.size,
            content_type: query.content_type.clone(),
            outputs: query.outputs.clone(),
            loudness: query.loudness.clone(),
        };
        let mac = self.mac(method, key, query.expires, &terms);
        // verify_slice compares in constant time.
        (query.expires >= Utc::now().timestamp() && mac.verify_slice(&token).is_ok())
            .then_some(terms)
    }
}

impl Links for LocalLinks {
    async fn download(&self, key: &ObjectKey, now: DateTime<Utc>) -> Result<Link, LinkError> {
        Ok(self.link("GET", key, &Terms::default(), now + LINK_LIFETIME))
    }

    async fn upload(&self, upload: &Upload, now: DateTime<Utc>) -> Result<Link, LinkError> {
        let terms = Terms {
            size: Some(upload.size),
            content_type: Some(upload.content_type.clone()),
            outputs: upload.choice.outputs.as_ref().map(|o| o.to_string()),
            loudness: upload.choice.loudness.map(|l| l.to_string()),
        };
        Ok(self.link("PUT", &upload.key, &terms, now + UPLOAD_LINK_LIFETIME))
    }
}

pub struct ServerState<S> {
    pub api: Api<S, LocalLinks>,
    pub links: LocalLinks,
    pub bucket: PathBuf,
    /// The largest upload `/files/` accepts, whatever a link says (`MAX_UPLOAD_BYTES`).
    pub max_upload_bytes: u64,
    /// The web page at `/`, signing in by user name: built at start-up, which it refuses if the
    /// page's headers cannot be made (`page::router`).
    pub page: Router,
    /// The bucket's disk: below its floor, uploads are refused (507).
    pub space: Space,
    /// Each user's quota, which an upload may not pass.
    pub budget: Budget,
}

/// The local server's routes: the API's router, with the caller named by `X-User`, `/files/`
/// and the web page; every request logged, and refused unless it is addressed to a loopback name.
pub fn router<S: MessageStore + UploadStore + ClaimStore + 'static>(
    state: Arc<ServerState<S>>,
) -> Router {
    let files = Router::new()
        .route(
            "/files/{*key}",
            get(download::<S>)
                .put(upload::<S>)
                .fallback(|method: Method, uri: Uri| async move {
                    ApiError::method_not_allowed(
                        method.as_str(),
                        uri.path(),
                        &["GET", "HEAD", "PUT"],
                    )
                }),
        )
        .with_state(state.clone());
    transcoder_api::router(state.api.clone())
        .layer(map_request_with_state(state.clone(), room_for_uploads::<S>))
        .layer(map_request(named_by_header))
        .merge(files)
        .merge(state.page.clone())
        .layer(map_request(loopback_only))
        .layer(from_fn(log))
}

/// The caller named by the `X-User` header: there is no authorizer on one machine.
async fn named_by_header(mut request: Request) -> Request {
    let named = request
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(user) = named {
        request.extensions_mut().insert(Identity(user));
    }
    request
}

/// `POST /uploads` signs no link while the disk is below its floor: the upload would be refused.
async fn room_for_uploads<S>(
    State(state): State<Arc<ServerState<S>>>,
    request: Request,
) -> Result<Request, ApiError> {
    if request.method() == Method::POST && request.uri().path() == "/uploads" {
        state.room_for(0)?;
    }
    Ok(request)
}

impl<S> ServerState<S> {
    /// Refuses an upload of `size` bytes that would take the disk below its floor.
    fn room_for(&self, size: u64) -> Result<(), ApiError> {
        match self.space.short_for(size) {
            Some(free) => {
                warn!(
                    free_bytes = free,
                    min_free_bytes = self.space.min_free(),
                    "upload refused: the disk is below its floor"
                );
                Err(ApiError::insufficient_storage(format!(
                    "{} free, {} kept free",
                    bytes(free),
                    bytes(self.space.min_free())
                )))
            }
            None => Ok(()),
        }
    }

    /// Refuses an upload of `size` bytes at `key` that would take its owner's files past their
    /// quota (a file it replaces does not count).
    async fn within_quota(&self, key: &str, size: u64) -> Result<(), ApiError> {
        let Some(owner) = key
            .strip_prefix(self.budget.input_prefix.as_str())
            .and_then(|rest| rest.split_once('/'))
            .map(|(owner, _)| owner.to_owned())
        else {
            return Ok(());
        };
        let replaced = vec![self.bucket.join(key)];
        let used = self.budget.used_by(&self.bucket, &owner, replaced).await;
        if used.saturating_add(size) > self.budget.per_user {
            warn!(owner = %Escaped(&owner), used_bytes = used, bytes = size, "upload refused: past the user's quota");
            return Err(ApiError::quota_exceeded(format!(
                "your files take {}; this upload of {} would pass your {} quota: remove some of your files first",
                bytes(used),
                bytes(size),
                bytes(self.budget.per_user)
            )));
        }
        Ok(())
    }
}

async fn loopback_only(request: Request) -> Result<Request, ApiError> {
    match loopback_host(&request) {
        Ok(()) => Ok(request),
        Err(host) => {
            warn!(host = %Escaped(&host), path = request.uri().path(), "refused: not a loopback host");
            Err(ApiError::misdirected(&host))
        }
    }
}

async fn log(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let caller = request
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(|c| Escaped(c).to_string());
    let response = next.run(request).await;
    info!(%method, path = %Escaped(&path), status = response.status().as_u16(), caller, "api");
    response
}

/// Whether the request is addressed to a loopback name (`localhost`, `127.x.y.z`, `[::1]`, any
/// port); `Err` holds the name it used instead. The URI's authority counts as well as `Host`.
fn loopback_host(request: &Request) -> Result<(), String> {
    let named: Vec<&str> = request
        .uri()
        .authority()
        .map(|a| a.as_str())
        .into_iter()
        .chain(
            request
                .headers()
                .get_all(header::HOST)
                .iter()
                .map(|h| h.to_str().unwrap_or("(not text)")),
        )
        .collect();
    if named.is_empty() {
        return Err("(none)".into());
    }
    match named.iter().find(|host| !is_loopback(host)) {
        Some(host) => Err((*host).to_owned()),
        None => Ok(()),
    }
}

fn is_loopback(authority: &str) -> bool {
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) => (
                ip.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback()),
                port,
            ),
            None => return false,
        },
        None => {
            let (host, port) = authority
                .find(':')
                .map_or((authority, ""), |i| authority.split_at(i));
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
            (loopback, port)
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// What a `/files/` link carries in its query string.
#[derive(Debug, Deserialize)]
struct LinkQuery {
    expires: i64,
    size: Option<u64>,
    #[serde(rename = "type")]
    content_type: Option<String>,
    outputs: Option<String>,
    loudness: Option<String>,
    token: String,
}

/// The key a `/files/` path names, once decoded, if it is one the bucket could hold: no empty,
/// `.` or `..` segment, and no hidden name.
fn file_key(key: Result<UrlPath<String>, PathRejection>) -> Result<String, ApiError> {
    let Ok(UrlPath(key)) = key else {
        return Err(ApiError::file_not_found());
    };
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == ".." || s.starts_with('.'))
    {
        return Err(ApiError::file_not_found());
    }
    Ok(key)
}

/// The terms of the link the request carries, if it is valid for `method` on `key`.
fn verified<S>(
    state: &ServerState<S>,
    method: &Method,
    key: &str,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Result<Terms, ApiError> {
    query
        .ok()
        .and_then(|Query(query)| state.links.verify(method.as_str(), key, &query))
        .ok_or_else(|| ApiError::link_refused("the link is invalid or has expired"))
}

/// `GET /files/{key}`: the file, streamed from disk with its length; or the one byte range a
/// `Range` header asks for (206), as S3 answers it, so that a player can seek.
async fn download<S: Send + Sync>(
    State(state): State<Arc<ServerState<S>>>,
    method: Method,
    key: Result<UrlPath<String>, PathRejection>,
    query: Result<Query<LinkQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = file_key(key)?;
    // HEAD is signed as the GET it stands for.
    let signed = if method == Method::HEAD {
        Method::GET
    } else {
        method
    };
    verified(&state, &signed, &key, query)?;
    let mut file = tokio::fs::File::open(state.bucket.join(&key))
        .await
        .map_err(|_| ApiError::file_not_found())?;
    let len = match file.metadata().await {
        Ok(meta) if meta.is_file() => meta.len(),
        _ => return Err(ApiError::file_not_found()),
    };
    let (status, start, count) = match wanted_range(&headers, len) {
        Wanted::Whole => (StatusCode::OK, 0, len),
        Wanted::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Wanted::Unsatisfiable => {
            let mut refused = ApiError::range_not_satisfiable(len).into_response();
            refused.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}"))
                    .map_err(|_| ApiError::internal())?,
            );
            return Ok(refused);
        }
    };
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|_| ApiError::internal())?;
    }
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, count.to_string()),
            (header::ACCEPT_RANGES, "bytes".to_owned()),
        ],
        Body::from_stream(ReaderStream::new(file.take(count))),
    )
        .into_response();
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {start}-{}/{len}", start + count - 1);
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&range).map_err(|_| ApiError::internal())?,
        );
    }
    Ok(response)
}

/// What a download's `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// No header, one this server does not read (not `bytes=`, malformed), or several ranges:
    /// the whole file with 200, as S3 answers a request for more than one range.
    Whole,
    /// Bytes `start` to `end`, both included.
    Part { start: u64, end: u64 },
    /// A range that starts at or past the end of the file: 416.
    Unsatisfiable,
}

/// Reads `Range: bytes=a-b`, `bytes=a-` and `bytes=-n` (the last `n` bytes), as RFC 9110 and S3
/// read them; `b` past the end is the end.
fn wanted_range(headers: &HeaderMap, len: u64) -> Wanted {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => Wanted::Unsatisfiable,
            Some(_) if len == 0 => Wanted::Unsatisfiable,
            Some(n) => Wanted::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => Wanted::Whole,
        },
        (start, "") => match number(start) {
            Some(start) if start >= len => Wanted::Unsatisfiable,
            Some(start) => Wanted::Part {
                start,
                end: len - 1,
            },
            None => Wanted::Whole,
        },
        (start, end) => match (number(start), number(end)) {
            (Some(start), Some(end)) if start > end => Wanted::Whole,
            (Some(start), Some(_)) if start >= len => Wanted::Unsatisfiable,
            (Some(start), Some(end)) => Wanted::Part {
                start,
                end: end.min(len - 1),
            },
            _ => Wanted::Whole,
        },
    }
}

/// `PUT /files/{key}`: exactly the bytes the upload link is signed for, or nothing.
async fn upload<S: Send + Sync>(
    State(state): State<Arc<ServerState<S>>>,
    method: Method,
    key: Result<UrlPath<String>, PathRejection>,
    query: Result<Query<LinkQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let key = file_key(key)?;
    let terms = verified(&state, &method, &key, query)?;
    let metadata = terms.metadata();
    let (Some(size), Some(content_type)) = (terms.size, terms.content_type) else {
        return Err(ApiError::link_refused("the link is not an upload link"));
    };
    check_upload(&headers, size, &content_type, state.max_upload_bytes)?;
    check_metadata(&headers, &metadata)?;
    state.room_for(size)?;
    state.within_quota(&key, size).await?;
    match receive(&state.bucket.join(&key), body, size, &metadata).await {
        Ok(()) => {
            info!(key = %Escaped(&key), bytes = size, "upload received");
            Ok(StatusCode::OK)
        }
        Err(err) => {
            warn!(key = %Escaped(&key), error = %err, "upload refused");
            Err(err.into())
        }
    }
}

/// Refuses, before reading a byte, an upload whose headers break its link's terms, as S3 refuses
/// a request that does not match the signed headers.
fn check_upload(
    headers: &HeaderMap,
    size: u64,
    content_type: &str,
    max: u64,
) -> Result<(), ApiError> {
    if size > max {
        return Err(ApiError::file_too_large(size, max));
    }
    let sent_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if sent_type.trim() != content_type {
        return Err(ApiError::link_refused(format!(
            "the link is signed for Content-Type: {content_type}, not '{}'",
            Escaped(sent_type)
        )));
    }
    if let Some(length) = headers.get(header::CONTENT_LENGTH) {
        let length = length
            .to_str()
            .ok()
            .and_then(|l| l.parse::<u64>().ok())
            .ok_or_else(|| ApiError::link_refused("the Content-Length is not a number"))?;
        if length > size {
            return Err(ApiError::longer_than_signed(size));
        }
        if length < size {
            return Err(ApiError::incomplete_upload(length, size));
        }
    }
    Ok(())
}

/// Refuses an upload whose `x-amz-meta-*` headers are not exactly those its link is signed for,
/// as S3 refuses a request whose signed headers differ.
fn check_metadata(headers: &HeaderMap, signed: &[(String, String)]) -> Result<(), ApiError> {
    let sent: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(name, value)| {
            let key = name.as_str().strip_prefix(METADATA_HEADER_PREFIX)?;
            Some((
                key.to_owned(),
                value.to_str().unwrap_or("\u{fffd}").trim().to_owned(),
            ))
        })
        .collect();
    for (key, value) in &sent {
        if !signed.iter().any(|(k, v)| k == key && v == value) {
            return Err(ApiError::link_refused(format!(
                "the link is not signed for {METADATA_HEADER_PREFIX}{key}: '{}'",
                Escaped(value)
            )));
        }
    }
    for (key, value) in signed {
        if !sent.iter().any(|(k, _)| k == key) {
            return Err(ApiError::link_refused(format!(
                "the link is signed for {METADATA_HEADER_PREFIX}{key}: {value}, which was not sent"
            )));
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
enum ReceiveError {
    #[error("the body passed the {0} bytes the link is signed for")]
    TooLarge(u64),
    #[error("the body ended after {received} of {size} bytes")]
    Short { received: u64, size: u64 },
    #[error("the client stopped sending: {0}")]
    Interrupted(axum::Error),
    #[error("cannot write the upload: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ReceiveError> for ApiError {
    fn from(err: ReceiveError) -> Self {
        match err {
            ReceiveError::TooLarge(size) => ApiError::longer_than_signed(size),
            ReceiveError::Short { received, size } => ApiError::incomplete_upload(received, size),
            ReceiveError::Interrupted(_) => ApiError::bad_request(
                "upload_interrupted",
                "the upload was cut off; nothing was stored",
            ),
            ReceiveError::Io(e) if is_no_space(&e) => {
                ApiError::insufficient_storage("the disk is full")
            }
            ReceiveError::Io(_) => ApiError::internal(),
        }
    }
}

/// An upload being written: removed when dropped unless it was completed, so an upload that is
/// refused, cut off or abandoned leaves nothing behind.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes exactly `size` bytes under a hidden name and renames the file into place once complete,
/// so the watcher only ever sees whole files. Stops reading as soon as the body passes `size`,
/// with or without a Content-Length.
async fn receive(
    path: &Path,
    body: Body,
    size: u64,
    metadata: &[(String, String)],
) -> Result<(), ReceiveError> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no folder"))?;
    tokio::fs::create_dir_all(dir).await?;
    static UPLOADS: AtomicU64 = AtomicU64::new(0);
    let mut partial = Partial {
        path: dir.join(format!(
            "{PARTIAL_PREFIX}{}-{}",
            std::process::id(),
            UPLOADS.fetch_add(1, Ordering::SeqCst)
        )),
        done: false,
    };
    let mut file = tokio::fs::File::create(&partial.path).await?;
    let mut received = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ReceiveError::Interrupted)?;
        received += chunk.len() as u64;
        if received > size {
            return Err(ReceiveError::TooLarge(size));
        }
        file.write_all(&chunk).await?;
    }
    if received < size {
        return Err(ReceiveError::Short { received, size });
    }
    file.flush().await?;
    drop(file);
    store_metadata(&partial.path, path, metadata).await?;
    tokio::fs::rename(&partial.path, path).await?;
    partial.done = true;
    Ok(())
}

/// Removes the partial uploads a previous run left under `bucket` (it was stopped mid-upload);
/// returns how many.
pub fn remove_partial_uploads(bucket: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut dirs = vec![bucket.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            // The entry's own type: a symbolic link is never followed out of the bucket.
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file()
                && entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(PARTIAL_PREFIX)
            {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_are_ours() {
        for host in [
            "localhost",
            "LOCALHOST:3000",
            "127.0.0.1",
            "127.0.0.1:3000",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:3000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "evil.example",
            "127.0.0.1.evil.example",
            "127.0.0.1.evil.example:3000",
            "localhost.evil.example",
            "evil.example:3000",
            "localhost:",
            "localhost:3000x",
            "127.0.0.1:3000@evil.example",
            "evil@127.0.0.1",
            "10.0.0.1",
            "0.0.0.0:3000",
            "[::2]:3000",
            "[::1",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn ranges_are_read_as_s3_reads_them() {
        let ask = |range: &str, len: u64| {
            let mut headers = HeaderMap::new();
            headers.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
            wanted_range(&headers, len)
        };
        let part = |start, end| Wanted::Part { start, end };
        assert_eq!(wanted_range(&HeaderMap::new(), 10), Wanted::Whole);
        assert_eq!(ask("bytes=0-3", 10), part(0, 3));
        assert_eq!(ask("bytes=4-", 10), part(4, 9));
        assert_eq!(ask("bytes=-3", 10), part(7, 9));
        assert_eq!(ask("bytes=-30", 10), part(0, 9));
        assert_eq!(ask("bytes=8-100", 10), part(8, 9));
        assert_eq!(ask("bytes=9-9", 10), part(9, 9));
        for unsatisfiable in ["bytes=10-", "bytes=10-20", "bytes=-0"] {
            assert_eq!(
                ask(unsatisfiable, 10),
                Wanted::Unsatisfiable,
                "{unsatisfiable}"
            );
        }
        assert_eq!(ask("bytes=-1", 0), Wanted::Unsatisfiable);
        assert_eq!(ask("bytes=0-", 0), Wanted::Unsatisfiable);
        // Several ranges, another unit, or what is not a range: the whole file.
        for whole in [
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=--1",
            "bytes=+1-2",
            "bytes=",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(ask(whole, 10), Wanted::Whole, "{whole}");
        }
    }

    /// The query string as the route's extractor reads it.
    fn parsed(query: impl AsRef<str>) -> LinkQuery {
        let uri: Uri = format!("/?{}", query.as_ref()).parse().unwrap();
        Query::try_from_uri(&uri).unwrap().0
    }

    #[tokio::test]
    async fn a_link_is_valid_only_for_its_method_key_and_terms() {
        let links = LocalLinks::new("http://127.0.0.1:3000").unwrap();
        let upload = Upload {
            key: ObjectKey::new("media/alice/song.mp3").unwrap(),
            size: 10,
            content_type: "audio/mpeg".into(),
            choice: Default::default(),
        };
        let link = links.upload(&upload, Utc::now()).await.unwrap();
        let query = link.url.split_once('?').unwrap().1;
        let terms = Terms {
            size: Some(10),
            content_type: Some("audio/mpeg".into()),
            ..Terms::default()
        };
        assert_eq!(
            links.verify("PUT", "media/alice/song.mp3", &parsed(query)),
            Some(terms)
        );
        assert_eq!(
            links.verify("GET", "media/alice/song.mp3", &parsed(query)),
            None
        );
        assert_eq!(
            links.verify("PUT", "media/bob/song.mp3", &parsed(query)),
            None
        );
        for (from, to) in [("size=10", "size=11"), ("audio%2Fmpeg", "audio%2Fwav")] {
            assert_eq!(
                links.verify(
                    "PUT",
                    "media/alice/song.mp3",
                    &parsed(query.replace(from, to))
                ),
                None,
                "{to}"
            );
        }
        let other = LocalLinks::new("http://127.0.0.1:3000").unwrap();
        assert_eq!(
            other.verify("PUT", "media/alice/song.mp3", &parsed(query)),
            None
        );
    }

    #[tokio::test]
    async fn a_link_binds_the_choice_and_the_put_must_send_exactly_it() {
        let links = LocalLinks::new("http://127.0.0.1:3000").unwrap();
        let upload = Upload {
            key: ObjectKey::new("media/alice/song.mp3").unwrap(),
            size: 10,
            content_type: "audio/mpeg".into(),
            choice: transcoder_core::Choice {
                outputs: Some("mp3:128,opus".parse().unwrap()),
                loudness: Some(transcoder_core::Loudness::Podcast),
            },
        };
        let link = links.upload(&upload, Utc::now()).await.unwrap();
        let query = link.url.split_once('?').unwrap().1;
        let terms = links
            .verify("PUT", "media/alice/song.mp3", &parsed(query))
            .unwrap();
        assert_eq!(
            terms.metadata(),
            [
                ("outputs".to_owned(), "mp3:128,opus".to_owned()),
                ("loudness".to_owned(), "podcast".to_owned())
            ]
        );
        for (from, to) in [("mp3%3A128", "mp3%3A320"), ("podcast", "broadcast")] {
            let tampered = query.replace(from, to);
            assert_ne!(tampered, query);
            assert_eq!(
                links.verify("PUT", "media/alice/song.mp3", &parsed(tampered)),
                None,
                "{to}"
            );
        }
        let without = query.replace("&loudness=podcast", "");
        assert_eq!(
            links.verify("PUT", "media/alice/song.mp3", &parsed(without)),
            None
        );

        let signed = terms.metadata();
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(
                    axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            map
        };
        let exact = headers(&[
            ("x-amz-meta-outputs", "mp3:128,opus"),
            ("x-amz-meta-loudness", "podcast"),
        ]);
        assert_eq!(check_metadata(&exact, &signed), Ok(()));
        for refused in [
            headers(&[("x-amz-meta-outputs", "mp3:128,opus")]),
            headers(&[
                ("x-amz-meta-outputs", "wav"),
                ("x-amz-meta-loudness", "podcast"),
            ]),
            headers(&[
                ("x-amz-meta-outputs", "mp3:128,opus"),
                ("x-amz-meta-loudness", "podcast"),
                ("x-amz-meta-extra", "1"),
            ]),
        ] {
            let err = check_metadata(&refused, &signed).unwrap_err();
            assert_eq!(err.code, "link_refused", "{refused:?}");
        }
        assert!(check_metadata(&headers(&[("x-amz-meta-outputs", "wav")]), &[]).is_err());
        assert_eq!(check_metadata(&HeaderMap::new(), &[]), Ok(()));
    }

    #[tokio::test]
    async fn the_choice_is_kept_with_the_file_and_read_back_only_for_that_file() {
        use transcoder_core::{SourceObject, SourceReader};
        let dir = std::env::temp_dir().join(format!("choice-meta-{}", std::process::id()));
        let file = dir.join("media/alice/song.mp3");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let metadata = [("outputs".to_owned(), "opus:64".to_owned())];
        let body = Body::from(transcoder_core::mp3_frames(1));
        receive(&file, body, 417, &metadata).await.unwrap();
        let folder = crate::bucket::BucketFolder::new(&dir);
        let upload = SourceObject {
            bucket: "local".into(),
            key: ObjectKey::new("media/alice/song.mp3").unwrap(),
            etag: None,
            size: None,
        };
        let head = folder.read_head(&upload, 64).await.unwrap();
        assert_eq!(head.bytes.len(), 64);
        assert_eq!(head.metadata["outputs"], "opus:64");
        // A file copied over it by hand is another object: it gets no choice.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, transcoder_core::mp3_frames(2)).unwrap();
        assert!(
            folder
                .read_head(&upload, 64)
                .await
                .unwrap()
                .metadata
                .is_empty()
        );
        // A new upload without a choice removes the old one's.
        let body = Body::from(transcoder_core::mp3_frames(1));
        receive(&file, body, 417, &metadata).await.unwrap();
        let body = Body::from(transcoder_core::mp3_frames(1));
        receive(&file, body, 417, &[]).await.unwrap();
        assert!(
            folder
                .read_head(&upload, 64)
                .await
                .unwrap()
                .metadata
                .is_empty()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The `/files/` route: downloads (whole or one byte range) and uploads, each with a link this
//! server signed, which it checks first; an upload must also match the terms its link binds.

use std::io::SeekFrom;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use tracing::{info, warn};
use transcoder_api::ApiError;
use transcoder_core::{Escaped, METADATA_HEADER_PREFIX};

use super::ServerState;
use super::links::{LinkQuery, Terms};
use super::range::{Wanted, wanted_range};
use super::receive::receive;

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
pub(super) async fn download<S: Send + Sync>(
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

/// `PUT /files/{key}`: exactly the bytes the upload link is signed for, or nothing.
pub(super) async fn upload<S: Send + Sync>(
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
pub(super) fn check_metadata(
    headers: &HeaderMap,
    signed: &[(String, String)],
) -> Result<(), ApiError> {
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

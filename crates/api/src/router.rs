//! The routes, as one axum [`Router`] that every host serves: `lambda_http::run` in Lambda, the
//! local runner on localhost. Every route acts for the [`Caller`] its host verified, and only on
//! the caller's own data: messages and uploads are looked up under the caller's id, so another
//! user's message or upload does not exist here.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State,
};
use axum::http::request::Parts;
use axum::http::{self as http, Method, StatusCode, Uri};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use tracing::{error, warn};
use transcoder_core::{
    Analysis, Chain, Links, Message, MessageId, MessageOutput, MessageStore, ObjectKey, Owner,
    StoreError, UploadId, UploadRecord, UploadState, UploadStore,
};

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::upload::UploadRequest;

/// The largest request body accepted, in bytes. An upload request describes the file; it is not the file.
pub const MAX_BODY_BYTES: usize = 4096;
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// Every route, as the OpenAPI document names it. [`router`] serves exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/messages"),
    ("POST", "/messages/{id}/dismiss"),
    ("GET", "/uploads"),
    ("POST", "/uploads"),
    ("GET", "/uploads/{id}"),
];

/// What the routes share: the configuration, the message store and the link signer. Cloning
/// it is cheap; every clone is the same API.
pub struct Api<S, L>(Arc<Shared<S, L>>);

struct Shared<S, L> {
    config: ApiConfig,
    store: S,
    links: L,
}

impl<S, L> Clone for Api<S, L> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S: MessageStore + UploadStore + 'static, L: Links + 'static> Api<S, L> {
    pub fn new(config: ApiConfig, store: S, links: L) -> Self {
        Self(Arc::new(Shared {
            config,
            store,
            links,
        }))
    }

    pub fn store(&self) -> &S {
        &self.0.store
    }

    /// Answers one request for `identity` (`None`: nobody) in this process, through the router
    /// the hosts serve: for tests, benchmarks and fuzzing, with no host and no socket.
    pub async fn handle(
        &self,
        identity: Option<&str>,
        request: &http::Request<Bytes>,
    ) -> http::Response<String> {
        let mut call = http::Request::builder()
            .method(request.method())
            .uri(request.uri())
            .body(Body::from(request.body().clone()))
            .unwrap_or_default();
        *call.headers_mut() = request.headers().clone();
        if let Some(identity) = identity {
            call.extensions_mut().insert(Identity(identity.to_owned()));
        }
        let response = match router(self.clone()).oneshot(call).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        http::Response::from_parts(parts, String::from_utf8_lossy(&body).into_owned())
    }
}

/// Who is calling, as the host verified it: the `sub` claim of the JWT that API Gateway checked,
/// or, locally, the `X-User` header. Hosts put it in the request's extensions before the router
/// sees the request; nothing a client sends can put it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity(pub String);

/// The caller the routes act for: the request's [`Identity`] in NFC, if it names a user; else 401.
struct Caller(Owner);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Identity>()
            // NFC, as names are: a user is one folder however the name's accents were typed.
            .and_then(|Identity(id)| Owner::new(transcoder_core::nfc(id)).ok())
            .map(Self)
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The routes of [`ROUTES`], with the API's own answers for an unknown path (404), a method a
/// route does not take (405 with `Allow`) and a body over [`MAX_BODY_BYTES`] (413).
pub fn router<S: MessageStore + UploadStore + 'static, L: Links + 'static>(
    api: Api<S, L>,
) -> Router {
    Router::new()
        .route("/messages", get(list::<S, L>))
        .route("/messages/{id}/dismiss", post(dismiss::<S, L>))
        .route("/uploads", get(list_uploads::<S, L>).post(upload::<S, L>))
        .route("/uploads/{id}", get(one_upload::<S, L>))
        .route_layer(from_fn(no_head))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(|method: Method, uri: Uri| async move {
            ApiError::route_not_found(method.as_str(), uri.path())
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

/// 405 for a method the matched route does not take, with `Allow` naming the ones it does, as
/// [`ROUTES`] lists them. axum's own `Allow` would name HEAD beside GET, which [`no_head`]
/// refuses.
async fn method_not_allowed(method: Method, uri: Uri, route: Option<MatchedPath>) -> ApiError {
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, path)| route.as_ref().is_some_and(|r| r.as_str() == *path))
        .map(|(method, _)| *method)
        .collect();
    if allowed.is_empty() || !names_a_route(&uri) {
        return ApiError::route_not_found(method.as_str(), uri.path());
    }
    ApiError::method_not_allowed(method.as_str(), uri.path(), &allowed)
}

/// API Gateway routes no HEAD (its `GET` routes take GET only), so the router takes none either,
/// though axum answers HEAD with a route's GET handler.
async fn no_head(route: Option<MatchedPath>, request: Request, next: Next) -> Response {
    if request.method() == Method::HEAD {
        let (method, uri) = (request.method().clone(), request.uri().clone());
        return method_not_allowed(method, uri, route).await.into_response();
    }
    next.run(request).await
}

/// Whether every segment of the path is there: a route's `{id}` matches an empty segment, but
/// `/messages//dismiss` names no message.
fn names_a_route(uri: &Uri) -> bool {
    !uri.path().split('/').skip(1).any(str::is_empty)
}

/// The `{id}` of a route's path, percent-decoded. Every route with an id takes it through this
/// extractor, so a malformed one gets the same answer everywhere: 400 `bad_id` when it does
/// not decode to UTF-8, and 404 `not_found` when it is empty (no route has an empty segment).
struct PathId(String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if !names_a_route(&parts.uri) {
            return Err(ApiError::route_not_found(
                parts.method.as_str(),
                parts.uri.path(),
            ));
        }
        // Each of these routes has one parameter, so the id can fail only by its encoding.
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::bad_request(
                    "bad_id",
                    "the id in the path is not UTF-8 once percent-decoded",
                )
            })?;
        Ok(Self(id))
    }
}

/// `GET /messages` answers with this.
#[derive(Debug, Serialize)]
pub struct MessageList {
    pub messages: Vec<MessageView>,
    pub next_cursor: Option<String>,
}

/// One unread message, with a signed download link for each output.
#[derive(Debug, Serialize)]
pub struct MessageView {
    pub id: MessageId,
    pub text: String,
    pub file: String,
    pub state: transcoder_core::Outcome,
    pub created_at: String,
    pub outputs: Vec<OutputView>,
}

#[derive(Debug, Serialize)]
pub struct OutputView {
    pub format: String,
    pub key: String,
    pub url: String,
}

/// `GET /uploads` answers with this.
#[derive(Debug, Serialize)]
pub struct UploadList {
    pub uploads: Vec<UploadView>,
    pub next_cursor: Option<String>,
}

/// One upload as its owner sees it (`GET /uploads/{id}` answers with one).
#[derive(Debug, Serialize)]
pub struct UploadView {
    pub id: UploadId,
    pub file: String,
    /// The source object's key, as `POST /uploads` returned it.
    pub key: String,
    pub state: UploadState,
    pub percent: Option<u8>,
    pub reason: Option<String>,
    pub outputs: Vec<OutputView>,
    /// What the job measured of the source (`lambda` and local backends); `null` otherwise.
    pub analysis: Option<AnalysisView>,
    pub created_at: String,
    pub updated_at: String,
}

/// An upload's measurements, with a download link for its waveform's peaks (BBC
/// audiowaveform's JSON, version 2).
#[derive(Debug, Serialize)]
pub struct AnalysisView {
    pub duration_s: f64,
    pub integrated_lufs: Option<f64>,
    pub true_peak_dbtp: Option<f64>,
    pub loudness_range_lu: Option<f64>,
    pub peaks: Option<String>,
}

/// `POST /uploads` answers with this: where and how to PUT the file.
#[derive(Debug, Serialize)]
pub struct UploadLink {
    pub key: String,
    pub url: String,
    pub method: &'static str,
    /// The link is signed for these; the bucket refuses a request without them.
    pub headers: UploadHeaders,
    pub expires_at: String,
}

#[derive(Debug, Serialize)]
pub struct UploadHeaders {
    #[serde(rename = "Content-Type")]
    pub content_type: String,
    #[serde(rename = "Content-Length")]
    pub content_length: String,
    /// The outputs asked for, as the starter reads them back (`mp3:128,opus:96`).
    #[serde(rename = "x-amz-meta-outputs", skip_serializing_if = "Option::is_none")]
    pub outputs: Option<String>,
    /// The loudness asked for.
    #[serde(
        rename = "x-amz-meta-loudness",
        skip_serializing_if = "Option::is_none"
    )]
    pub loudness: Option<String>,
}

/// `limit` (1–100, default 20) and `cursor`, from the query string; other parameters are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    pub limit: usize,
    pub cursor: Option<String>,
}

/// The page parameters as the query string has them, before `limit` is checked (so that its
/// refusal says what a limit must be).
#[derive(Deserialize)]
struct PageParams {
    limit: Option<String>,
    cursor: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for PageQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // Only a parameter given twice fails here: every value is text, the rest are ignored.
        let Query(params) = Query::<PageParams>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request("bad_query", rejection.body_text()))?;
        let limit = match params.limit {
            None => DEFAULT_LIMIT,
            Some(limit) => limit
                .parse()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "bad_limit",
                        format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        Ok(Self {
            limit,
            cursor: params.cursor,
        })
    }
}

impl<S: Send + Sync> FromRequest<S> for UploadRequest {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let body =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection: BytesRejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(MAX_BODY_BYTES),
                    // The body ended early or could not be read: it is no JSON either.
                    _ => ApiError::bad_request("bad_json", rejection.body_text()),
                })?;
        UploadRequest::from_json(&body)
    }
}

async fn list<S: MessageStore, L: Links>(
    State(Api(api)): State<Api<S, L>>,
    Caller(caller): Caller,
    page: PageQuery,
) -> Result<Json<MessageList>, ApiError> {
    let found = api
        .store
        .list_unread(&caller, page.limit, page.cursor.as_deref())
        .await
        .map_err(store_error)?;
    let now = Utc::now();
    let mut messages = Vec::with_capacity(found.messages.len());
    for message in found.messages {
        messages.push(view(&api.links, message, now).await?);
    }
    Ok(Json(MessageList {
        messages,
        next_cursor: found.next_cursor,
    }))
}

/// Each output with a signed download link.
async fn signed(
    links: &impl Links,
    outputs: Vec<MessageOutput>,
    now: DateTime<Utc>,
) -> Result<Vec<OutputView>, ApiError> {
    let mut signed = Vec::with_capacity(outputs.len());
    for output in outputs {
        let key = ObjectKey::new(output.key.as_str()).map_err(|_| ApiError::internal())?;
        let url = download_link(links, &key, now).await?;
        signed.push(OutputView {
            format: output.format,
            key: output.key,
            url,
        });
    }
    Ok(signed)
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn view(
    links: &impl Links,
    message: Message,
    now: DateTime<Utc>,
) -> Result<MessageView, ApiError> {
    Ok(MessageView {
        id: message.id,
        text: message.text,
        file: message.file,
        state: message.state,
        created_at: timestamp(message.created_at),
        outputs: signed(links, message.outputs, now).await?,
    })
}

async fn upload_view(
    links: &impl Links,
    upload: UploadRecord,
    now: DateTime<Utc>,
) -> Result<UploadView, ApiError> {
    Ok(UploadView {
        id: upload.id,
        file: upload.file,
        key: upload.key,
        state: upload.state,
        percent: upload.percent,
        reason: upload.reason,
        outputs: signed(links, upload.outputs, now).await?,
        analysis: match upload.analysis {
            Some(analysis) => Some(analysis_view(links, analysis, now).await?),
            None => None,
        },
        created_at: timestamp(upload.created_at),
        updated_at: timestamp(upload.updated_at),
    })
}

async fn analysis_view(
    links: &impl Links,
    analysis: Analysis,
    now: DateTime<Utc>,
) -> Result<AnalysisView, ApiError> {
    let peaks = match &analysis.peaks {
        Some(key) => Some(download_link(links, key, now).await?),
        None => None,
    };
    Ok(AnalysisView {
        duration_s: analysis.duration_s,
        integrated_lufs: analysis.integrated_lufs,
        true_peak_dbtp: analysis.true_peak_dbtp,
        loudness_range_lu: analysis.loudness_range_lu,
        peaks,
    })
}

async fn download_link(
    links: &impl Links,
    key: &ObjectKey,
    now: DateTime<Utc>,
) -> Result<String, ApiError> {
    let link = links.download(key, now).await.map_err(|e| {
        error!(error = %e, "download link not signed");
        ApiError::internal()
    })?;
    Ok(link.url)
}

async fn list_uploads<S: UploadStore, L: Links>(
    State(Api(api)): State<Api<S, L>>,
    Caller(caller): Caller,
    page: PageQuery,
) -> Result<Json<UploadList>, ApiError> {
    let found = api
        .store
        .list_uploads(&caller, page.limit, page.cursor.as_deref())
        .await
        .map_err(store_error)?;
    let now = Utc::now();
    let mut uploads = Vec::with_capacity(found.uploads.len());
    for upload in found.uploads {
        uploads.push(upload_view(&api.links, upload, now).await?);
    }
    Ok(Json(UploadList {
        uploads,
        next_cursor: found.next_cursor,
    }))
}

async fn one_upload<S: UploadStore, L: Links>(
    State(Api(api)): State<Api<S, L>>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<Json<UploadView>, ApiError> {
    let found = api
        .store
        .upload(&caller, &UploadId(id.clone()))
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::upload_not_found(&id))?;
    Ok(Json(upload_view(&api.links, found, Utc::now()).await?))
}

async fn dismiss<S: MessageStore, L: Links>(
    State(Api(api)): State<Api<S, L>>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    let found = api
        .store
        .dismiss(&caller, &MessageId(id.clone()))
        .await
        .map_err(store_error)?;
    if !found {
        return Err(ApiError::message_not_found(&id));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn upload<S: MessageStore, L: Links>(
    State(Api(api)): State<Api<S, L>>,
    Caller(caller): Caller,
    request: UploadRequest,
) -> Result<(StatusCode, Json<UploadLink>), ApiError> {
    let upload = request.upload(&caller, &api.config)?;
    let link = api.links.upload(&upload, Utc::now()).await.map_err(|e| {
        error!(error = %e, "upload link not signed");
        ApiError::internal()
    })?;
    Ok((
        StatusCode::CREATED,
        Json(UploadLink {
            key: upload.key.as_str().to_owned(),
            url: link.url,
            method: "PUT",
            headers: UploadHeaders {
                outputs: upload.choice.outputs.as_ref().map(|o| o.to_string()),
                loudness: upload.choice.loudness.map(|l| l.to_string()),
                content_type: upload.content_type,
                content_length: upload.size.to_string(),
            },
            expires_at: link.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        }),
    ))
}

fn store_error(err: StoreError) -> ApiError {
    match &err {
        StoreError::BadCursor => {
            ApiError::bad_request("bad_cursor", "the cursor is not one this API gave you")
        }
        StoreError::Unavailable { .. } => {
            warn!(error = %Chain(&err), "message store unavailable");
            ApiError::unavailable()
        }
        StoreError::Corrupt { .. } => {
            error!(error = %Chain(&err), "message store returned an unreadable item");
            ApiError::internal()
        }
    }
}

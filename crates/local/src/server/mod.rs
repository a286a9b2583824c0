//! The messages API on localhost: the same router as in Lambda, with the caller named by the
//! `X-User` header (there is no JWT authorizer here), and a `/files/` route that stands in for S3's
//! presigned URLs: downloads and uploads with links that expire and cannot be forged. An upload
//! link binds a size and a content type, as S3's do, and the route enforces both.
//!
//! It answers only requests addressed to a loopback name: a web page that rebinds its own domain
//! to 127.0.0.1 still sends its own `Host`, and is refused.
//!
//! This module holds the server's state and puts the routes together; each part is its own module:
//! the links ([`LocalLinks`]), the loopback check, the `/files/` route, a download's range and
//! the writing of an upload.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{Next, from_fn, map_request, map_request_with_state};
use axum::response::Response;
use axum::routing::get;
use tracing::{info, warn};
use transcoder_api::{Api, ApiError, Identity};
use transcoder_core::{ClaimStore, Escaped, MessageStore, UploadStore};

use crate::ffmpeg::Budget;
use crate::space::{Space, bytes};

mod files;
mod links;
mod loopback;
mod range;
mod receive;

pub use links::LocalLinks;
pub use receive::remove_partial_uploads;

use files::{download, upload};
use loopback::loopback_only;

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

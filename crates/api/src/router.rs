//! The routes. Every one acts for the caller its host names, and only on the caller's own data:
//! messages are looked up under the caller's id, so another user's message does not exist here.

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use http::{Method, Request, Response, StatusCode, header};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use tracing::{error, warn};
use transcoder_core::{Links, Message, MessageId, MessageStore, ObjectKey, Owner, StoreError};

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::upload::requested_upload;

/// The largest request body accepted, in bytes. An upload request describes the file; it is not the file.
pub const MAX_BODY_BYTES: usize = 4096;
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// Every route, as the OpenAPI document names it.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/messages"),
    ("POST", "/messages/{id}/dismiss"),
    ("POST", "/uploads"),
];

enum Endpoint {
    List,
    Dismiss(String),
    Upload,
}

fn resolve(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let (endpoint, allow) = match segments.as_slice() {
        ["messages"] => (Endpoint::List, "GET"),
        ["messages", id, "dismiss"] if !id.is_empty() => {
            let id = percent_decode_str(id)
                .decode_utf8()
                .map_err(|_| ApiError::route_not_found(method.as_str(), path))?;
            (Endpoint::Dismiss(id.into_owned()), "POST")
        }
        ["uploads"] => (Endpoint::Upload, "POST"),
        _ => return Err(ApiError::route_not_found(method.as_str(), path)),
    };
    if method.as_str() == allow {
        Ok(endpoint)
    } else {
        Err(ApiError::method_not_allowed(method.as_str(), path, allow))
    }
}

pub struct Api<S, L> {
    config: ApiConfig,
    store: S,
    links: L,
}

impl<S: MessageStore, L: Links> Api<S, L> {
    pub fn new(config: ApiConfig, store: S, links: L) -> Self {
        Self {
            config,
            store,
            links,
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Answers one request for `caller`, the identity the host verified (`None`: nobody).
    pub async fn handle(&self, caller: Option<&str>, request: &Request<Bytes>) -> Response<String> {
        match self.route(caller, request).await {
            Ok(response) => response,
            Err(err) => err.into_response(),
        }
    }

    async fn route(
        &self,
        caller: Option<&str>,
        request: &Request<Bytes>,
    ) -> Result<Response<String>, ApiError> {
        let endpoint = resolve(request.method(), request.uri().path())?;
        let caller = caller
            .and_then(|c| Owner::new(c).ok())
            .ok_or_else(ApiError::unauthorized)?;
        if request.body().len() > MAX_BODY_BYTES {
            return Err(ApiError::too_large(MAX_BODY_BYTES));
        }
        match endpoint {
            Endpoint::List => self.list(&caller, request.uri().query()).await,
            Endpoint::Dismiss(id) => self.dismiss(&caller, &id).await,
            Endpoint::Upload => self.upload(&caller, request.body()).await,
        }
    }

    async fn list(
        &self,
        caller: &Owner,
        query: Option<&str>,
    ) -> Result<Response<String>, ApiError> {
        let (limit, cursor) = page_query(query)?;
        let page = self
            .store
            .list_unread(caller, limit, cursor.as_deref())
            .await
            .map_err(store_error)?;
        let mut messages = Vec::with_capacity(page.messages.len());
        for message in &page.messages {
            messages.push(self.message_json(message).await?);
        }
        Ok(json_response(
            StatusCode::OK,
            json!({"messages": messages, "next_cursor": page.next_cursor}),
        ))
    }

    async fn message_json(&self, message: &Message) -> Result<Value, ApiError> {
        let now = Utc::now();
        let mut outputs = Vec::with_capacity(message.outputs.len());
        for output in &message.outputs {
            let key = ObjectKey::new(output.key.as_str()).map_err(|_| ApiError::internal())?;
            let link = self.links.download(&key, now).await.map_err(|e| {
                error!(error = %e, "download link not signed");
                ApiError::internal()
            })?;
            outputs.push(json!({"format": output.format, "key": output.key, "url": link.url}));
        }
        Ok(json!({
            "id": message.id,
            "text": message.text,
            "file": message.file,
            "state": message.state,
            "created_at": message.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "outputs": outputs,
        }))
    }

    async fn dismiss(&self, caller: &Owner, id: &str) -> Result<Response<String>, ApiError> {
        let found = self
            .store
            .dismiss(caller, &MessageId(id.to_owned()))
            .await
            .map_err(store_error)?;
        if !found {
            return Err(ApiError::message_not_found(id));
        }
        Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(String::new())
            .unwrap_or_default())
    }

    async fn upload(&self, caller: &Owner, body: &Bytes) -> Result<Response<String>, ApiError> {
        let upload = requested_upload(body, caller, &self.config)?;
        let link = self.links.upload(&upload, Utc::now()).await.map_err(|e| {
            error!(error = %e, "upload link not signed");
            ApiError::internal()
        })?;
        Ok(json_response(
            StatusCode::CREATED,
            json!({
                "key": upload.key.as_str(),
                "url": link.url,
                "method": "PUT",
                // The link is signed for these; the bucket refuses a request without them.
                "headers": {
                    "Content-Type": upload.content_type,
                    "Content-Length": upload.size.to_string(),
                },
                "expires_at": link.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            }),
        ))
    }
}

/// `limit` (1–100, default 20) and `cursor` from the query string; other parameters are ignored.
fn page_query(query: Option<&str>) -> Result<(usize, Option<String>), ApiError> {
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "bad_limit",
                            format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                        )
                    })?;
            }
            "cursor" => cursor = Some(value.into_owned()),
            _ => {}
        }
    }
    Ok((limit, cursor))
}

fn store_error(err: StoreError) -> ApiError {
    match err {
        StoreError::BadCursor => {
            ApiError::bad_request("bad_cursor", "the cursor is not one this API gave you")
        }
        StoreError::Unavailable(reason) => {
            warn!(reason, "message store unavailable");
            ApiError::unavailable()
        }
        StoreError::Corrupt(reason) => {
            error!(reason, "message store returned an unreadable item");
            ApiError::internal()
        }
    }
}

fn json_response(status: StatusCode, body: Value) -> Response<String> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .unwrap_or_default()
}

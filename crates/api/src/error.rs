//! Errors as the API answers them: `{"error": {"code": "...", "message": "..."}}` with the status
//! that fits. Client mistakes are 4xx and never a 500.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For 405: the methods the route allows, as the `Allow` header names them.
    pub allow: Option<HeaderValue>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            allow: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in: the request carries no verified identity",
        )
    }

    pub fn route_not_found(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {method} {path}"),
        )
    }

    pub fn message_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "message_not_found",
            format!("you have no message '{id}'"),
        )
    }

    pub fn upload_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "upload_not_found",
            format!("you have no upload '{id}'"),
        )
    }

    /// 405: `path` takes only the methods `allow` names.
    pub fn method_not_allowed(method: &str, path: &str, allow: &[&str]) -> Self {
        let allow = allow.join(", ");
        let Ok(header) = HeaderValue::from_str(&allow) else {
            // Never a 405 without its `Allow`: a method that is no header value is our mistake.
            return Self::internal();
        };
        Self {
            allow: Some(header),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{path} does not accept {method}; it accepts {allow}"),
            )
        }
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 413: an upload asked for, or sent, more bytes than allowed.
    pub fn file_too_large(size: u64, limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            format!("the file is {size} bytes; uploads are limited to {limit} bytes"),
        )
    }

    /// 413: an upload longer than the size its link is signed for.
    pub fn longer_than_signed(size: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            format!("the upload is longer than the {size} bytes its link is signed for"),
        )
    }

    /// 421: a request for another host name, such as a DNS-rebinding page's, is not ours to answer.
    pub fn misdirected(host: &str) -> Self {
        Self::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            format!(
                "this server answers only loopback host names (localhost, 127.0.0.1, [::1]), not '{}'",
                transcoder_core::Escaped(host)
            ),
        )
    }

    /// 403: a `/files/` link that was not signed by this server, for this request, or has expired.
    pub fn link_refused(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "link_refused", reason)
    }

    /// 400: an upload that ended before the size its link was signed for.
    pub fn incomplete_upload(received: u64, size: u64) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "incomplete_upload",
            format!("the upload ended after {received} of {size} bytes; nothing was stored"),
        )
    }

    /// 416: a download's `Range` starts at or past the end of the file.
    pub fn range_not_satisfiable(len: u64) -> Self {
        Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            format!("the range asked for starts past the end of the file, which is {len} bytes"),
        )
    }

    pub fn file_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "file_not_found",
            "there is no such file",
        )
    }

    /// 507: the disk uploads are stored on is too full to take this one; nothing was stored.
    /// Only the local runner answers it (S3 does not fill up).
    pub fn insufficient_storage(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
            format!(
                "there is not enough free space for uploads ({detail}); nothing was stored: try again later"
            ),
        )
    }

    /// 507: the upload would take the caller's files past their quota; nothing was stored.
    /// Only the local runner's `/files/` route answers it.
    pub fn quota_exceeded(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded", reason)
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the message store is unavailable; try again shortly",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code,
                    message: self.message,
                },
            }),
        )
            .into_response();
        if let Some(allow) = self.allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }
}

/// `{"error": {"code": "...", "message": "..."}}`, as `openapi.yaml`'s `Error` schema.
#[derive(Serialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize)]
struct ErrorDetail {
    code: &'static str,
    message: String,
}

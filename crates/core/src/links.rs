//! Links that let a client talk to the bucket directly: download a transcoded file, upload a new
//! one. S3 presigned URLs in the cloud, a local route on one machine. An upload link is signed for
//! one key, one size and one content type, so the store itself refuses anything else.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::choice::Choice;
use crate::key::ObjectKey;

/// How long a download link stays valid.
pub const LINK_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// How long an upload link stays valid: long enough to start sending a file the client already
/// has, short enough that a leaked link is soon worthless (it can be replayed until it expires).
pub const UPLOAD_LINK_LIFETIME: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// What an upload link allows: exactly `size` bytes of `content_type` at `key`, carrying exactly
/// the metadata of `choice` (none for what is left to the deployment's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub key: ObjectKey,
    pub size: u64,
    pub content_type: String,
    pub choice: Choice,
}

impl Upload {
    /// The metadata headers the client must send, as S3 names them: `x-amz-meta-outputs`...
    pub fn metadata_headers(&self) -> Vec<(String, String)> {
        self.choice
            .metadata()
            .into_iter()
            .map(|(key, value)| (format!("{METADATA_HEADER_PREFIX}{key}"), value))
            .collect()
    }
}

/// What S3 puts before a user-metadata key in a header.
pub const METADATA_HEADER_PREFIX: &str = "x-amz-meta-";

#[derive(Debug, thiserror::Error)]
#[error("cannot sign a link for '{key}': {reason}")]
pub struct LinkError {
    pub key: String,
    pub reason: String,
}

pub trait Links: Send + Sync {
    /// A link to GET `key`, valid for [`LINK_LIFETIME`] from `now`.
    fn download(
        &self,
        key: &ObjectKey,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Link, LinkError>> + Send;

    /// A link to PUT `upload`, valid for [`UPLOAD_LINK_LIFETIME`] from `now`; the client must send
    /// `Content-Length: {size}`, `Content-Type: {content_type}` and the
    /// [`Upload::metadata_headers`], and no other metadata.
    fn upload(
        &self,
        upload: &Upload,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Link, LinkError>> + Send;
}

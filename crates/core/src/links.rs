//! Links that let a client talk to the bucket directly: download a transcoded file, upload a new
//! one. S3 presigned URLs in the cloud, a local route on one machine.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::key::ObjectKey;

/// How long a link stays valid.
pub const LINK_LIFETIME: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

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

    /// A link to PUT a new object at `key`, valid for [`LINK_LIFETIME`] from `now`.
    fn upload(
        &self,
        key: &ObjectKey,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Link, LinkError>> + Send;
}

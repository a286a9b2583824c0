//! Links that sign nothing, for the API's tests.

use chrono::{DateTime, Utc};
use transcoder_core::{
    LINK_LIFETIME, Link, LinkError, Links, ObjectKey, UPLOAD_LINK_LIFETIME, Upload,
};

/// Links that sign nothing: a readable URL that names the method and the key (and, for an upload,
/// the size and type), so a test can see which object a response points at.
pub struct UnsignedLinks;

impl Links for UnsignedLinks {
    async fn download(&self, key: &ObjectKey, now: DateTime<Utc>) -> Result<Link, LinkError> {
        Ok(Link {
            url: format!("https://links.test/get/{key}"),
            expires_at: now + LINK_LIFETIME,
        })
    }

    async fn upload(&self, upload: &Upload, now: DateTime<Utc>) -> Result<Link, LinkError> {
        Ok(Link {
            url: format!(
                "https://links.test/put/{}?size={}&type={}",
                upload.key, upload.size, upload.content_type
            ),
            expires_at: now + UPLOAD_LINK_LIFETIME,
        })
    }
}

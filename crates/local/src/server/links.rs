//! The links of the `/files/` route, which stand in for S3's presigned URLs: signed with
//! HMAC-SHA256 under a key that lives as long as the process, bound to a method, a key, an expiry
//! and, for an upload, its size, content type and choice. It signs and checks; it serves nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use sha2::Sha256;
use transcoder_core::{
    LINK_LIFETIME, LOUDNESS_KEY, Link, LinkError, Links, OUTPUTS_KEY, ObjectKey,
    UPLOAD_LINK_LIFETIME, Upload,
};

/// What a path segment must encode: everything but unreserved characters (RFC 3986).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

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
pub(super) struct Terms {
    pub(super) size: Option<u64>,
    pub(super) content_type: Option<String>,
    /// The `x-amz-meta-outputs` and `x-amz-meta-loudness` the PUT must send, if any.
    pub(super) outputs: Option<String>,
    pub(super) loudness: Option<String>,
}

impl Terms {
    /// The metadata an upload under these terms carries, as S3 would keep it.
    pub(super) fn metadata(&self) -> Vec<(String, String)> {
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
    pub(super) fn verify(&self, method: &str, key: &str, query: &LinkQuery) -> Option<Terms> {
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

/// What a `/files/` link carries in its query string.
#[derive(Debug, Deserialize)]
pub(super) struct LinkQuery {
    expires: i64,
    size: Option<u64>,
    #[serde(rename = "type")]
    content_type: Option<String>,
    outputs: Option<String>,
    loudness: Option<String>,
    token: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::Query;
    use axum::http::{HeaderMap, HeaderValue, Uri};

    use crate::server::files::check_metadata;

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
}

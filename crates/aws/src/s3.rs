//! S3 presigned URLs: clients download transcoded files and upload new ones straight to the
//! bucket, signed with the function's own role. Signing is local computation; no request is sent.
//! An upload URL signs `Content-Length`, `Content-Type` and the upload's `x-amz-meta-*` headers
//! (its choice of outputs), so S3 refuses another size, type or choice.

use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use chrono::{DateTime, Utc};
use std::time::Duration;

use transcoder_core::{
    LINK_LIFETIME, Link, LinkError, Links, ObjectKey, UPLOAD_LINK_LIFETIME, Upload,
};

#[derive(Debug, Clone)]
pub struct S3Links {
    client: Client,
    bucket: String,
}

impl S3Links {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// A signer built from the shared SDK configuration (credentials and region).
    pub fn from_sdk(sdk: &aws_config::SdkConfig, bucket: &str) -> Self {
        Self::new(Client::new(sdk), bucket)
    }

    fn config(
        key: &ObjectKey,
        now: DateTime<Utc>,
        lifetime: Duration,
    ) -> Result<PresigningConfig, LinkError> {
        PresigningConfig::builder()
            .start_time(now.into())
            .expires_in(lifetime)
            .build()
            .map_err(|e| error(key, e))
    }
}

fn error(key: &ObjectKey, reason: impl std::fmt::Display) -> LinkError {
    LinkError {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

fn link(uri: &str, now: DateTime<Utc>, lifetime: Duration) -> Link {
    Link {
        url: uri.to_owned(),
        expires_at: now + lifetime,
    }
}

impl Links for S3Links {
    async fn download(&self, key: &ObjectKey, now: DateTime<Utc>) -> Result<Link, LinkError> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .presigned(Self::config(key, now, LINK_LIFETIME)?)
            .await
            .map_err(|e| error(key, aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(link(request.uri(), now, LINK_LIFETIME))
    }

    async fn upload(&self, upload: &Upload, now: DateTime<Utc>) -> Result<Link, LinkError> {
        let key = &upload.key;
        let size = i64::try_from(upload.size).map_err(|e| error(key, e))?;
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_length(size)
            .content_type(&upload.content_type);
        for (name, value) in upload.choice.metadata() {
            put = put.metadata(name, value);
        }
        let request = put
            .presigned(Self::config(key, now, UPLOAD_LINK_LIFETIME)?)
            .await
            .map_err(|e| error(key, aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(link(request.uri(), now, UPLOAD_LINK_LIFETIME))
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::{Credentials, Region};
    use chrono::TimeZone;

    use super::*;

    fn links() -> S3Links {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new(
                "AKIDLOCALTEST",
                "local-test-secret",
                None,
                None,
                "test",
            ))
            .build();
        S3Links::new(Client::from_conf(config), "audio-transcoder-media")
    }

    #[tokio::test]
    async fn links_are_presigned_for_fifteen_minutes_with_the_key_encoded() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
        let key = ObjectKey::new("transcoded/alice/red flower (live) café.wav").unwrap();
        let link = links().download(&key, now).await.unwrap();
        assert!(
            link.url.starts_with(
                "https://audio-transcoder-media.s3.eu-west-1.amazonaws.com/transcoded/alice/red%20flower%20%28live%29%20caf%C3%A9.wav?"
            ),
            "{}",
            link.url
        );
        assert!(link.url.contains("X-Amz-Expires=900"), "{}", link.url);
        assert!(
            link.url.contains("X-Amz-Date=20261123T080000Z"),
            "{}",
            link.url
        );
        assert!(link.url.contains("X-Amz-Signature="), "{}", link.url);
        assert_eq!(link.expires_at, now + LINK_LIFETIME);

        let upload = links().upload(&song(), now).await.unwrap();
        assert!(upload.url.starts_with(
            "https://audio-transcoder-media.s3.eu-west-1.amazonaws.com/media/alice/song.mp3?"
        ));
        assert_ne!(
            upload.url.split("X-Amz-Signature=").nth(1),
            link.url.split("X-Amz-Signature=").nth(1)
        );
    }

    fn song() -> Upload {
        Upload {
            key: ObjectKey::new("media/alice/song.mp3").unwrap(),
            size: 5_000_000,
            content_type: "audio/mpeg".into(),
            choice: Default::default(),
        }
    }

    #[tokio::test]
    async fn an_upload_link_signs_its_size_and_type_and_lives_five_minutes() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
        let link = links().upload(&song(), now).await.unwrap();
        let query: Vec<(String, String)> = form_urlencoded::parse(
            link.url
                .split_once('?')
                .map(|(_, q)| q)
                .unwrap_or_default()
                .as_bytes(),
        )
        .into_owned()
        .collect();
        let param = |name: &str| {
            query
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let signed: Vec<&str> = param("X-Amz-SignedHeaders")
            .unwrap_or_default()
            .split(';')
            .collect();
        assert!(signed.contains(&"content-length"), "{}", link.url);
        assert!(signed.contains(&"content-type"), "{}", link.url);
        assert_eq!(param("X-Amz-Expires"), Some("300"));
        assert_eq!(link.expires_at, now + UPLOAD_LINK_LIFETIME);
        assert!(!link.url.contains("x-amz-meta"), "{}", link.url);
    }

    #[tokio::test]
    async fn an_upload_link_signs_the_choice_as_metadata_headers() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
        let chosen = Upload {
            choice: transcoder_core::Choice {
                outputs: Some("mp3:128,opus".parse().unwrap()),
                loudness: Some(transcoder_core::Loudness::Podcast),
            },
            ..song()
        };
        let link = links().upload(&chosen, now).await.unwrap();
        let query = link.url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let signed: String = form_urlencoded::parse(query.as_bytes())
            .find(|(n, _)| n == "X-Amz-SignedHeaders")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let signed: Vec<&str> = signed.split(';').collect();
        for header in ["x-amz-meta-outputs", "x-amz-meta-loudness"] {
            assert!(signed.contains(&header), "{header} not in {signed:?}");
        }
        // The values are in the signature, not the URL: another choice is another signature.
        assert!(!query.contains("mp3"), "{query}");
        let other = Upload {
            choice: transcoder_core::Choice {
                outputs: Some("mp3:160,opus".parse().unwrap()),
                ..chosen.choice.clone()
            },
            ..song()
        };
        let other = links().upload(&other, now).await.unwrap();
        assert_ne!(other.url, link.url);
        assert_eq!(
            chosen.metadata_headers(),
            [
                ("x-amz-meta-outputs".to_owned(), "mp3:128,opus".to_owned()),
                ("x-amz-meta-loudness".to_owned(), "podcast".to_owned())
            ]
        );
    }
}

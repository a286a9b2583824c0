//! Uploads' first bytes from S3: one ranged GetObject per read, pinned to the event's ETag, for
//! the starter to sniff before it creates a job. Reads only; what the bytes mean is decided in
//! `transcoder_core::sniff`.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use transcoder_core::{Head, SourceError, SourceObject, SourceReader};

#[derive(Debug, Clone)]
pub struct S3Source {
    client: Client,
}

impl S3Source {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// A reader built from the shared SDK configuration, once per cold start.
    pub fn from_sdk(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(sdk))
    }
}

/// An ETag as `If-Match` wants it: quoted. Events carry it bare.
fn entity_tag(etag: &str) -> String {
    if etag.starts_with('"') {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

/// Why S3 did not give the bytes of `upload`: gone, or unavailable for now.
fn refused<E>(upload: &SourceObject, err: SdkError<E, HttpResponse>) -> SourceError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let key = upload.key.escaped();
    match err {
        SdkError::ServiceError(err) => {
            let status = err.raw().status().as_u16();
            match status {
                // 412: If-Match failed, a newer upload replaced this one.
                404 | 412 => SourceError::gone(format!("'{key}'")),
                // 403 too: without s3:ListBucket a deleted key reads as denied, and a denial
                // of ours is for an operator to see in the failure queue after the retries.
                _ => SourceError::unavailable(format!("'{key}' (HTTP {status})")),
            }
            .caused_by(err.into_err())
        }
        // HeadObject's errors have no body: a 412 or 404 comes as a bare response.
        SdkError::ResponseError(ref e) if matches!(e.raw().status().as_u16(), 404 | 412) => {
            SourceError::gone(format!("'{key}': HTTP {}", e.raw().status().as_u16()))
        }
        err => SourceError::unavailable(format!("'{key}'")).caused_by(err),
    }
}

impl S3Source {
    /// Writes the whole of `upload`, the version its ETag names, to `path`; returns its size.
    /// A newer upload or a deletion since is [`SourceError::Gone`]; a local write that fails
    /// (a full disk) is [`SourceError::Unavailable`] with the file system's words.
    pub async fn download(
        &self,
        upload: &SourceObject,
        path: &std::path::Path,
    ) -> Result<u64, SourceError> {
        use tokio::io::AsyncWriteExt;
        let mut request = self
            .client
            .get_object()
            .bucket(&upload.bucket)
            .key(upload.key.as_str());
        if let Some(etag) = &upload.etag {
            request = request.if_match(entity_tag(etag));
        }
        let output = request.send().await.map_err(|e| refused(upload, e))?;
        let key = upload.key.escaped();
        let write = |e: std::io::Error| SourceError::unavailable(format!("'{key}'")).caused_by(e);
        let mut file = tokio::fs::File::create(path).await.map_err(write)?;
        let mut body = output.body;
        let mut size = 0;
        loop {
            match body.try_next().await {
                Ok(Some(chunk)) => {
                    file.write_all(&chunk).await.map_err(write)?;
                    size += chunk.len() as u64;
                }
                Ok(None) => break,
                Err(err) => {
                    return Err(SourceError::unavailable(format!(
                        "'{key}': the response broke off"
                    ))
                    .caused_by(err));
                }
            }
        }
        file.flush().await.map_err(write)?;
        Ok(size)
    }

    /// Checks that `upload` is still the object at its key (HeadObject, `If-Match` its ETag):
    /// [`SourceError::Gone`] once a newer upload replaced it or it was deleted.
    pub async fn still_current(&self, upload: &SourceObject) -> Result<(), SourceError> {
        let mut request = self
            .client
            .head_object()
            .bucket(&upload.bucket)
            .key(upload.key.as_str());
        if let Some(etag) = &upload.etag {
            request = request.if_match(entity_tag(etag));
        }
        request.send().await.map_err(|e| refused(upload, e))?;
        Ok(())
    }
}

impl SourceReader for S3Source {
    async fn read_range(
        &self,
        upload: &SourceObject,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, SourceError> {
        Ok(self.get(upload, offset, len).await?.bytes)
    }

    /// The same ranged GET: S3 answers it with the object's `x-amz-meta-*` headers, which the
    /// SDK hands back as its metadata, so the choice costs no request.
    async fn read_head(&self, upload: &SourceObject, len: usize) -> Result<Head, SourceError> {
        self.get(upload, 0, len).await
    }
}

impl S3Source {
    /// Up to `len` bytes of `upload` from `offset`, and its user metadata, in one GET.
    async fn get(
        &self,
        upload: &SourceObject,
        offset: u64,
        len: usize,
    ) -> Result<Head, SourceError> {
        if len == 0 {
            return Ok(Head::default());
        }
        let last = offset.saturating_add(len as u64 - 1);
        let mut request = self
            .client
            .get_object()
            .bucket(&upload.bucket)
            .key(upload.key.as_str())
            .range(format!("bytes={offset}-{last}"));
        if let Some(etag) = &upload.etag {
            request = request.if_match(entity_tag(etag));
        }
        let key = upload.key.escaped();
        let output = match request.send().await {
            Ok(output) => output,
            // 416: the range starts at or past the end of the object.
            Err(SdkError::ServiceError(err)) if err.raw().status().as_u16() == 416 => {
                return Ok(Head::default());
            }
            Err(err) => return Err(refused(upload, err)),
        };
        let metadata = output.metadata.unwrap_or_default();
        // Never more than asked for, whatever the response holds.
        let mut body = output.body;
        let mut bytes = Vec::with_capacity(len);
        while bytes.len() < len {
            match body.try_next().await {
                Ok(Some(chunk)) => {
                    let room = len - bytes.len();
                    bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                Err(err) => {
                    return Err(SourceError::unavailable(format!(
                        "'{key}': the response broke off"
                    ))
                    .caused_by(err));
                }
            }
        }
        Ok(Head { bytes, metadata })
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::primitives::ByteStream;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use transcoder_core::ObjectKey;

    use super::*;

    fn upload(etag: Option<&str>) -> SourceObject {
        SourceObject {
            bucket: "audio-transcoder-media".into(),
            key: ObjectKey::new("media/alice/song.mp3").unwrap(),
            etag: etag.map(str::to_owned),
            size: None,
        }
    }

    fn answering(status: u16) -> S3Source {
        let rule = mock!(Client::get_object).then_http_response(move || {
            HttpResponse::new(
                StatusCode::try_from(status).unwrap(),
                SdkBody::from("<Error><Code>Whatever</Code></Error>"),
            )
        });
        S3Source::new(mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]))
    }

    #[tokio::test]
    async fn one_ranged_get_pinned_to_the_etag_and_never_more_bytes_than_asked() {
        let rule = mock!(Client::get_object)
            .match_requests(|r| {
                r.bucket() == Some("audio-transcoder-media")
                    && r.key() == Some("media/alice/song.mp3")
                    && r.range() == Some("bytes=100-107")
                    && r.if_match() == Some("\"d41d8cd98f00b204e9800998ecf8427e\"")
            })
            .then_output(|| {
                GetObjectOutput::builder()
                    .body(ByteStream::from_static(b"0123456789abcdef"))
                    .build()
            });
        let source = S3Source::new(mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]));
        let bytes = source
            .read_range(&upload(Some("d41d8cd98f00b204e9800998ecf8427e")), 100, 8)
            .await
            .unwrap();
        assert_eq!(bytes, b"01234567");
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn the_first_read_brings_the_x_amz_meta_headers_of_its_one_response() {
        let rule = mock!(Client::get_object)
            .match_requests(|r| r.range() == Some("bytes=0-7"))
            .then_http_response(|| {
                let mut response = HttpResponse::new(
                    StatusCode::try_from(206).unwrap(),
                    SdkBody::from("01234567"),
                );
                let headers = response.headers_mut();
                headers.insert("Content-Range", "bytes 0-7/100");
                headers.insert("x-amz-meta-outputs", "mp3:128,opus");
                headers.insert("x-amz-meta-loudness", "podcast");
                response
            });
        let source = S3Source::new(mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]));
        let head = source.read_head(&upload(None), 8).await.unwrap();
        assert_eq!(head.bytes, b"01234567");
        assert_eq!(head.metadata["outputs"], "mp3:128,opus");
        assert_eq!(head.metadata["loudness"], "podcast");
        assert_eq!(head.metadata.len(), 2);
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn each_answer_is_gone_empty_or_worth_a_retry() {
        for (status, expected) in [
            (404, "gone"),
            (412, "gone"),
            (416, "empty"),
            (403, "retry"),
            (500, "retry"),
        ] {
            let got = match answering(status).read_range(&upload(None), 0, 8).await {
                Err(SourceError::Gone { .. }) => "gone",
                Ok(bytes) if bytes.is_empty() => "empty",
                Err(SourceError::Unavailable { .. }) => "retry",
                Ok(_) => "bytes",
            };
            assert_eq!(got, expected, "HTTP {status}");
        }
    }

    #[test]
    fn a_bare_etag_is_quoted_and_a_quoted_one_kept() {
        assert_eq!(entity_tag("abc-2"), "\"abc-2\"");
        assert_eq!(entity_tag("\"abc\""), "\"abc\"");
    }
}

//! Reading an upload's first bytes, so that what a file is comes from its content before any job
//! is created. The trait is all the starter needs from the bucket: S3 (a ranged GET) in the cloud,
//! the bucket folder on one machine, a map in tests. It reads; it never decides what the bytes mean
//! (that is [`crate::sniff`]). The first read also brings the object's user metadata (S3 answers
//! a GET with its `x-amz-meta-*` headers), where an upload's choice of outputs travels, so that
//! choice costs no request of its own.

use std::collections::HashMap;
use std::future::Future;

use crate::error::Cause;
use crate::key::ObjectKey;
use crate::sniff::{AudioFormat, NotAudio, SNIFF_BYTES, Sniffed, sniff};

/// An uploaded object, as its event names it: which bucket, which key, which version (ETag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceObject {
    pub bucket: String,
    pub key: ObjectKey,
    /// The ETag the event reported: a reader that can should read only that version, so that a
    /// newer upload of the key (which has its own event) is never judged on this one's behalf.
    pub etag: Option<String>,
    /// The size the event reported, if it did: what a refusal can compare a header's claims with.
    pub size: Option<u64>,
}

/// Why an upload's bytes could not be read. The reader's own error (S3's, the file system's) is
/// the source, not part of the text: write one out with [`Chain`](crate::Chain).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Deleted, or replaced by a newer upload: a retry would find the same, so none is made.
    #[error("the upload is gone or was replaced by a newer one: {context}")]
    Gone {
        context: String,
        #[source]
        cause: Option<Cause>,
    },
    /// The store did not answer (or refused us): worth a retry of the event.
    #[error("the upload cannot be read right now: {context}")]
    Unavailable {
        context: String,
        #[source]
        cause: Option<Cause>,
    },
}

impl SourceError {
    /// The upload at `context` is no longer the one its event named.
    pub fn gone(context: impl Into<String>) -> Self {
        Self::Gone {
            context: context.into(),
            cause: None,
        }
    }

    /// The upload at `context` cannot be read now; a retry may.
    pub fn unavailable(context: impl Into<String>) -> Self {
        Self::Unavailable {
            context: context.into(),
            cause: None,
        }
    }

    /// The same error, with the error beneath it as its source.
    pub fn caused_by(mut self, err: impl Into<Cause>) -> Self {
        let (Self::Gone { cause, .. } | Self::Unavailable { cause, .. }) = &mut self;
        *cause = Some(err.into());
        self
    }
}

/// An object's user metadata: keys lowercase and without `x-amz-meta-`, as S3 answers them.
pub type UserMetadata = HashMap<String, String>;

/// The first bytes of an object, and its user metadata, from one read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    pub bytes: Vec<u8>,
    pub metadata: UserMetadata,
}

/// Where uploads are read from.
pub trait SourceReader: Send + Sync {
    /// Up to `len` bytes of `upload` from byte `offset`; fewer when the object ends first, none
    /// when `offset` is at or past its end.
    fn read_range(
        &self,
        upload: &SourceObject,
        offset: u64,
        len: usize,
    ) -> impl Future<Output = Result<Vec<u8>, SourceError>> + Send;

    /// Up to `len` bytes from the start of `upload` with its user metadata, in the one read.
    /// A store that keeps no metadata (a plain file) has none: its uploads get the defaults.
    fn read_head(
        &self,
        upload: &SourceObject,
        len: usize,
    ) -> impl Future<Output = Result<Head, SourceError>> + Send {
        async move {
            Ok(Head {
                bytes: self.read_range(upload, 0, len).await?,
                metadata: UserMetadata::new(),
            })
        }
    }
}

/// How many reads [`identify`] makes at most: the first, and one after each ID3 tag too large for
/// the bytes read. Taggers write one tag, rarely two; more is not a file worth a longer look.
pub const MAX_READS: usize = 3;

/// What an upload's bytes say it is, reading as few of them as the sniffer needs.
pub async fn identify(
    reader: &impl SourceReader,
    upload: &SourceObject,
) -> Result<Result<AudioFormat, NotAudio>, SourceError> {
    Ok(examine(reader, upload).await?.format)
}

/// What [`examine`] found of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Examined {
    pub format: Result<AudioFormat, NotAudio>,
    /// The user metadata of the first read.
    pub metadata: UserMetadata,
}

/// What an upload's bytes say it is, as [`identify`], and the user metadata its first read
/// brought: no more reads than the sniffer needs.
pub async fn examine(
    reader: &impl SourceReader,
    upload: &SourceObject,
) -> Result<Examined, SourceError> {
    let first = reader.read_head(upload, SNIFF_BYTES).await?;
    let metadata = first.metadata;
    let format = sniff_from(reader, upload, first.bytes).await?;
    Ok(Examined { format, metadata })
}

/// Sniffs `first`, the upload's first bytes, reading on past ID3 tags.
async fn sniff_from(
    reader: &impl SourceReader,
    upload: &SourceObject,
    first: Vec<u8>,
) -> Result<Result<AudioFormat, NotAudio>, SourceError> {
    let mut offset = 0;
    let mut size = upload.size;
    let mut next = Some(first);
    for _ in 0..MAX_READS {
        let head = match next.take() {
            Some(first) => first,
            None => reader.read_range(upload, offset, SNIFF_BYTES).await?,
        };
        if head.is_empty() && offset > 0 {
            // The tags before `offset` end at or past the end of the file: say so, not "empty".
            return Ok(Err(NotAudio::nothing_after_tag(offset, size)));
        }
        if head.len() < SNIFF_BYTES {
            // A short read ends at the end of the file.
            size = size.or(Some(offset + head.len() as u64));
        }
        match sniff(&head) {
            Sniffed::Audio(format) => return Ok(Ok(format)),
            Sniffed::NotAudio(reason) => return Ok(Err(reason)),
            Sniffed::SkipTo { offset: after } => offset += after,
        }
    }
    Ok(Err(NotAudio::BadId3))
}

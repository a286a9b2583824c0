//! Reading an upload's first bytes, so that what a file is comes from its content before any job
//! is created. The trait is all the starter needs from the bucket: S3 (a ranged GET) in the cloud,
//! the bucket folder on one machine, a map in tests. It reads; it never decides what the bytes mean
//! (that is [`crate::sniff`]). The first read also brings the object's user metadata (S3 answers
//! a GET with its `x-amz-meta-*` headers), where an upload's choice of outputs travels, so that
//! choice costs no request of its own.

use std::collections::HashMap;
use std::future::Future;

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

/// Why an upload's bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Deleted, or replaced by a newer upload: a retry would find the same, so none is made.
    #[error("the upload is gone or was replaced by a newer one: {0}")]
    Gone(String),
    /// The store did not answer (or refused us): worth a retry of the event.
    #[error("the upload cannot be read right now: {0}")]
    Unavailable(String),
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

/// Uploads held in memory: the reader of handler tests, benchmarks and fuzz targets.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    objects: HashMap<String, Vec<u8>>,
    metadata: HashMap<String, UserMetadata>,
    /// The bytes of every key not in `objects`; without them such a key is gone.
    others: Option<Vec<u8>>,
}

impl MemorySource {
    /// A bucket in which every key holds a short MP3.
    pub fn audio() -> Self {
        Self {
            objects: HashMap::new(),
            metadata: HashMap::new(),
            others: Some(mp3_frames(4)),
        }
    }

    /// The same bucket with `key` carrying the user metadata `pairs`.
    pub fn with_metadata(mut self, key: &str, pairs: &[(&str, &str)]) -> Self {
        let pairs = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        self.metadata.insert(key.to_owned(), pairs.collect());
        self
    }

    /// The same bucket with `key` holding `bytes`.
    pub fn with(mut self, key: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.objects.insert(key.to_owned(), bytes.into());
        self
    }
}

impl SourceReader for MemorySource {
    async fn read_range(
        &self,
        upload: &SourceObject,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, SourceError> {
        let bytes = self
            .objects
            .get(upload.key.as_str())
            .or(self.others.as_ref())
            .ok_or_else(|| SourceError::Gone(format!("no object '{}'", upload.key.escaped())))?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = start.saturating_add(len).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }

    async fn read_head(&self, upload: &SourceObject, len: usize) -> Result<Head, SourceError> {
        Ok(Head {
            bytes: self.read_range(upload, 0, len).await?,
            metadata: self
                .metadata
                .get(upload.key.as_str())
                .cloned()
                .unwrap_or_default(),
        })
    }
}

/// `count` frames of silent MPEG-1 layer III at 128 kb/s and 44.1 kHz (417 bytes each): the
/// smallest bytes the sniffer accepts as MP3, for tests and benchmarks.
pub fn mp3_frames(count: usize) -> Vec<u8> {
    let mut frame = vec![0u8; 417];
    frame[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
    frame.repeat(count)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records the ranges asked for.
    struct Counting<R> {
        inner: R,
        reads: Mutex<Vec<(u64, usize)>>,
    }

    impl<R: SourceReader> SourceReader for Counting<R> {
        async fn read_range(
            &self,
            upload: &SourceObject,
            offset: u64,
            len: usize,
        ) -> Result<Vec<u8>, SourceError> {
            self.reads.lock().unwrap().push((offset, len));
            self.inner.read_range(upload, offset, len).await
        }

        async fn read_head(&self, upload: &SourceObject, len: usize) -> Result<Head, SourceError> {
            self.reads.lock().unwrap().push((0, len));
            self.inner.read_head(upload, len).await
        }
    }

    fn counting(key: &str, bytes: Vec<u8>) -> Counting<MemorySource> {
        Counting {
            inner: MemorySource::default().with(key, bytes),
            reads: Mutex::default(),
        }
    }

    fn upload(key: &str) -> SourceObject {
        SourceObject {
            bucket: "bucket".into(),
            key: ObjectKey::new(key).unwrap(),
            etag: None,
            size: None,
        }
    }

    fn id3(body: usize) -> Vec<u8> {
        let mut tag = b"ID3\x04\x00\x00".to_vec();
        tag.extend([21, 14, 7, 0].map(|shift| ((body >> shift) & 0x7F) as u8));
        tag.resize(10 + body, 0);
        tag
    }

    #[tokio::test]
    async fn one_read_identifies_a_file_and_a_playlist_is_not_audio() {
        let mp3 = counting("a.mp3", mp3_frames(40));
        assert_eq!(
            identify(&mp3, &upload("a.mp3")).await,
            Ok(Ok(AudioFormat::Mp3))
        );
        assert_eq!(*mp3.reads.lock().unwrap(), [(0, SNIFF_BYTES)]);

        let playlist = counting(
            "b.mp3",
            b"#EXTM3U\n#EXTINF:5.0,\n../alice/song.mp3\n".to_vec(),
        );
        assert_eq!(
            identify(&playlist, &upload("b.mp3")).await,
            Ok(Err(NotAudio::Text))
        );
    }

    #[tokio::test]
    async fn the_first_read_brings_the_metadata_and_no_read_is_added() {
        let source = Counting {
            inner: MemorySource::default()
                .with("a.mp3", mp3_frames(40))
                .with_metadata("a.mp3", &[("outputs", "mp3:128")]),
            reads: Mutex::default(),
        };
        let examined = examine(&source, &upload("a.mp3")).await.unwrap();
        assert_eq!(examined.format, Ok(AudioFormat::Mp3));
        assert_eq!(examined.metadata["outputs"], "mp3:128");
        assert_eq!(*source.reads.lock().unwrap(), [(0, SNIFF_BYTES)]);
        let tagged = counting("t.mp3", [id3(SNIFF_BYTES * 3), mp3_frames(2)].concat());
        let examined = examine(&tagged, &upload("t.mp3")).await.unwrap();
        assert_eq!(examined.format, Ok(AudioFormat::Mp3));
        assert!(examined.metadata.is_empty());
        assert_eq!(tagged.reads.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_large_tag_is_skipped_with_a_second_read_where_it_ends() {
        let tag = id3(SNIFF_BYTES * 3);
        let source = counting("c.mp3", [tag.clone(), mp3_frames(2)].concat());
        assert_eq!(
            identify(&source, &upload("c.mp3")).await,
            Ok(Ok(AudioFormat::Mp3))
        );
        assert_eq!(
            *source.reads.lock().unwrap(),
            [(0, SNIFF_BYTES), (tag.len() as u64, SNIFF_BYTES)]
        );
    }

    #[tokio::test]
    async fn tags_behind_tags_are_followed_a_bounded_number_of_times() {
        let tags: Vec<u8> = (0..MAX_READS + 1)
            .flat_map(|_| id3(SNIFF_BYTES * 2))
            .collect();
        let source = counting("d.mp3", [tags, mp3_frames(2)].concat());
        assert_eq!(
            identify(&source, &upload("d.mp3")).await,
            Ok(Err(NotAudio::BadId3))
        );
        assert_eq!(source.reads.lock().unwrap().len(), MAX_READS);
    }

    #[tokio::test]
    async fn a_tag_with_nothing_after_it_says_so_and_a_missing_file_is_gone() {
        let tag = id3(SNIFF_BYTES * 2);
        let source = counting("e.mp3", tag.clone());
        assert_eq!(
            identify(&source, &upload("e.mp3")).await,
            Ok(Err(NotAudio::NoAudioAfterTag {
                tag: tag.len() as u64
            }))
        );
        // A header that claims 256 MiB in a 56 KiB file, its size known from the event.
        let mut bomb = b"ID3\x04\x00\x00\x7F\x7F\x7F\x7F".to_vec();
        bomb.resize(56 * 1024, 0);
        let source = counting("f.mp3", bomb.clone());
        let sized = SourceObject {
            size: Some(56 * 1024),
            ..upload("f.mp3")
        };
        let reason = identify(&source, &sized).await.unwrap().unwrap_err();
        assert_eq!(
            reason.to_string(),
            "not an audio file: its ID3 tag claims 256 MiB but the file is 56 KiB"
        );
        // A short first read tells the size too.
        let small = counting("g.mp3", bomb[..1000].to_vec());
        let reason = identify(&small, &upload("g.mp3"))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(
            reason.to_string(),
            "not an audio file: its ID3 tag claims 256 MiB but the file is 1000 bytes"
        );
        // Without the size, the reason still names the tag rather than calling the file empty.
        let reason = identify(&source, &upload("f.mp3"))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(
            reason.to_string(),
            "not an audio file: its ID3 tag claims 256 MiB and no audio follows it"
        );
        assert!(matches!(
            identify(&source, &upload("missing.mp3")).await,
            Err(SourceError::Gone(_))
        ));
    }
}

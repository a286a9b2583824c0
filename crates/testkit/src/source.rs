//! Uploads held in memory, a reader that records what it is asked, and the smallest bytes that
//! pass for an MP3.

use std::collections::HashMap;
use std::sync::Mutex;

use transcoder_core::{Head, SourceError, SourceObject, SourceReader, UserMetadata};

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
            .ok_or_else(|| SourceError::gone(format!("no object '{}'", upload.key.escaped())))?;
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

/// A reader that records each read asked of it, then reads from the one it wraps: for tests of
/// how few reads, of which uploads, the handlers make.
#[derive(Debug, Default)]
pub struct RecordingSource<R> {
    inner: R,
    reads: Mutex<Vec<(SourceObject, u64, usize)>>,
}

impl<R> RecordingSource<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            reads: Mutex::default(),
        }
    }

    /// The ranges read so far, in order, as (offset, length); a head is a range from 0.
    pub fn ranges(&self) -> Vec<(u64, usize)> {
        let reads = self.reads.lock().unwrap();
        reads
            .iter()
            .map(|(_, offset, len)| (*offset, *len))
            .collect()
    }

    /// The upload of each read so far, in order.
    pub fn uploads(&self) -> Vec<SourceObject> {
        let reads = self.reads.lock().unwrap();
        reads.iter().map(|(upload, _, _)| upload.clone()).collect()
    }

    fn record(&self, upload: &SourceObject, offset: u64, len: usize) {
        let mut reads = self.reads.lock().unwrap();
        reads.push((upload.clone(), offset, len));
    }
}

impl<R: SourceReader> SourceReader for RecordingSource<R> {
    async fn read_range(
        &self,
        upload: &SourceObject,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, SourceError> {
        self.record(upload, offset, len);
        self.inner.read_range(upload, offset, len).await
    }

    async fn read_head(&self, upload: &SourceObject, len: usize) -> Result<Head, SourceError> {
        self.record(upload, 0, len);
        self.inner.read_head(upload, len).await
    }
}

/// `count` frames of silent MPEG-1 layer III at 128 kb/s and 44.1 kHz (417 bytes each): the
/// smallest bytes the sniffer accepts as MP3, for tests and benchmarks.
pub fn mp3_frames(count: usize) -> Vec<u8> {
    let mut frame = vec![0u8; 417];
    frame[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
    frame.repeat(count)
}

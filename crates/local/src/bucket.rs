//! A folder as the bucket. Files that appear under the input prefix become S3-shaped
//! `ObjectCreated` events, with their keys form-URL-encoded as S3 encodes them, so the starter
//! decodes them exactly as in the cloud. A file is announced once it has stopped changing, so a
//! slow copy is picked up only when complete; a restart announces every file again, and the
//! starter's claims keep finished ones from being transcoded twice. [`BucketFolder`] reads an
//! upload's bytes back for the starter, as S3 answers a ranged GET.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tracing::warn;
use transcoder_core::{
    Escaped, Head, SourceError, SourceObject, SourceReader, UserMetadata, is_nfc,
};
use transcoder_ffmpeg::FileSource;

/// What a file looked like at the last scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    size: u64,
    modified: SystemTime,
    /// Unchanged since this scan time.
    since: SystemTime,
    announced: bool,
}

/// Scans the folder under the input prefix and announces new, settled files.
pub struct Watcher {
    bucket: PathBuf,
    name: String,
    input_prefix: String,
    settle: Duration,
    seen: HashMap<String, Seen>,
    /// Entries skipped at the last scan, each logged once, when it was first skipped.
    skipped: HashSet<PathBuf>,
}

impl Watcher {
    /// `name` is the bucket's name in events; files are settled once unchanged for `settle`.
    pub fn new(
        bucket: impl Into<PathBuf>,
        name: &str,
        input_prefix: &str,
        settle: Duration,
    ) -> Self {
        Self {
            bucket: bucket.into(),
            name: name.to_owned(),
            input_prefix: input_prefix.to_owned(),
            settle,
            seen: HashMap::new(),
            skipped: HashSet::new(),
        }
    }

    /// One scan at `now`: the S3 event records of files that have settled since they last changed.
    pub fn scan(&mut self, now: SystemTime) -> Vec<Value> {
        let mut files = Vec::new();
        let mut skipped = Vec::new();
        walk(
            &self.bucket.join(&self.input_prefix),
            &mut files,
            &mut skipped,
        );
        let mut present = HashMap::with_capacity(files.len());
        let mut records = Vec::new();
        for path in files {
            let key = match key_of(&self.bucket, &path) {
                Ok(key) => key,
                Err(reason) => {
                    skipped.push((path, reason));
                    continue;
                }
            };
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let modified = meta.modified().unwrap_or(UNIX_EPOCH);
            let current = match self.seen.get(&key) {
                Some(seen) if seen.size == meta.len() && seen.modified == modified => *seen,
                _ => Seen {
                    size: meta.len(),
                    modified,
                    since: now,
                    announced: false,
                },
            };
            let settled = now.duration_since(current.since).unwrap_or_default() >= self.settle;
            let current = if settled && !current.announced {
                records.push(self.record(&key, current.size, modified, now));
                Seen {
                    announced: true,
                    ..current
                }
            } else {
                current
            };
            present.insert(key, current);
        }
        self.seen = present;
        self.report(skipped);
        records
    }

    /// Logs each skipped entry once, the first scan it is skipped at; one that goes away and
    /// comes back is logged again.
    fn report(&mut self, skipped: Vec<(PathBuf, Skip)>) {
        let mut now_skipped = HashSet::with_capacity(skipped.len());
        for (path, reason) in skipped {
            if !self.skipped.contains(&path) {
                let shown = path.strip_prefix(&self.bucket).unwrap_or(&path);
                warn!(path = %Escaped(&shown.to_string_lossy()), "skipped: {reason}");
            }
            now_skipped.insert(path);
        }
        self.skipped = now_skipped;
    }

    /// Forgets a file, so that it is announced again once it has settled: the local retry.
    pub fn forget(&mut self, key: &str) {
        self.seen.remove(key);
    }

    fn record(&self, key: &str, size: u64, modified: SystemTime, now: SystemTime) -> Value {
        // The modification time orders uploads of one key, as S3's sequencer does.
        let nanos = modified
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let time = chrono::DateTime::<chrono::Utc>::from(now)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        json!({
            "eventVersion": "2.1",
            "eventSource": "local:bucket",
            "awsRegion": "local",
            "eventTime": time,
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "local"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "local-runner",
                "bucket": {"name": self.name, "arn": format!("arn:local:s3:::{}", self.name)},
                "object": {"key": s3_event_key(key), "size": size, "sequencer": format!("{nanos:032X}")}
            }
        })
    }
}

/// The bucket folder as the starter reads it: a key is a file's path below the folder.
#[derive(Debug, Clone)]
pub struct BucketFolder {
    root: PathBuf,
}

impl BucketFolder {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file that holds `key`, if the key names one below the folder: no `..`, no absolute
    /// path, no empty segment, so that a key can never reach outside the bucket.
    fn path_of(&self, key: &str) -> Option<PathBuf> {
        let relative = Path::new(key);
        let plain = key.split('/').all(|s| !s.is_empty())
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        plain.then(|| self.root.join(relative))
    }
}

impl SourceReader for BucketFolder {
    async fn read_range(
        &self,
        upload: &SourceObject,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, SourceError> {
        let path = self.path_of(upload.key.as_str()).ok_or_else(|| {
            SourceError::gone(format!(
                "'{}': not a file name in the bucket",
                upload.key.escaped()
            ))
        })?;
        FileSource(&path).read_range(upload, offset, len).await
    }

    /// The first bytes, and the metadata its upload link stored beside the file, as S3 keeps
    /// an object's `x-amz-meta-*` headers with it.
    async fn read_head(&self, upload: &SourceObject, len: usize) -> Result<Head, SourceError> {
        let bytes = self.read_range(upload, 0, len).await?;
        let metadata = match self.path_of(upload.key.as_str()) {
            Some(path) => stored_metadata(&path).await,
            None => UserMetadata::new(),
        };
        Ok(Head { bytes, metadata })
    }
}

/// What a hidden name beside a file starts with when it holds that file's metadata. Hidden, so
/// the watcher skips it; an upload's own name is never hidden, so never one of these.
const METADATA_PREFIX: &str = ".metadata-";

/// Where the metadata of the file at `path` is kept.
fn metadata_path(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    Some(path.with_file_name(format!("{METADATA_PREFIX}{name}")))
}

/// The metadata of one upload, with the size and modification time of the file it came with:
/// a file replaced since (copied in by hand) no longer matches, and gets none.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredMetadata {
    size: u64,
    modified_nanos: u128,
    metadata: UserMetadata,
}

fn identity(meta: &std::fs::Metadata) -> (u64, u128) {
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let nanos = modified
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    (meta.len(), nanos)
}

/// Keeps `metadata` for the upload written at `partial`, which is about to become the file at
/// `path` (a rename keeps its size and time); with no metadata, removes what an earlier upload
/// of the key left. Done before the rename, so the file never appears without it.
pub async fn store_metadata(
    partial: &Path,
    path: &Path,
    metadata: &[(String, String)],
) -> std::io::Result<()> {
    let Some(beside) = metadata_path(path) else {
        return Ok(());
    };
    if metadata.is_empty() {
        return match tokio::fs::remove_file(&beside).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let (size, modified_nanos) = identity(&tokio::fs::metadata(partial).await?);
    let stored = StoredMetadata {
        size,
        modified_nanos,
        metadata: metadata.iter().cloned().collect(),
    };
    let json = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
    tokio::fs::write(beside, json).await
}

/// The metadata kept for the file at `path`, if it is still the file it came with.
async fn stored_metadata(path: &Path) -> UserMetadata {
    let Some(beside) = metadata_path(path) else {
        return UserMetadata::new();
    };
    let (Ok(json), Ok(file)) = (
        tokio::fs::read(&beside).await,
        tokio::fs::metadata(path).await,
    ) else {
        return UserMetadata::new();
    };
    match serde_json::from_slice::<StoredMetadata>(&json) {
        Ok(stored) if (stored.size, stored.modified_nanos) == identity(&file) => stored.metadata,
        Ok(_) => UserMetadata::new(),
        Err(err) => {
            warn!(path = %Escaped(&beside.to_string_lossy()), error = %err, "unreadable metadata ignored");
            UserMetadata::new()
        }
    }
}

/// Why an entry under the input prefix is not an upload. Hidden names are not among them: they
/// are temporary files of uploads and of copies in flight, skipped without a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("a symbolic link, which is never followed (it could point anywhere on the machine)")]
    Symlink,
    #[error("not a regular file (a FIFO, a socket or a device)")]
    NotAFile,
    #[error("its name is not UTF-8, and an object key must be: rename it")]
    NotUtf8,
    #[error(
        "its name is not in Unicode NFC (an accent typed as a separate character): rename it, or upload it through the page, which normalizes names"
    )]
    NotNfc,
    #[error("it cannot be read: its type is unknown")]
    Unreadable,
}

/// Files below `dir`, and the entries skipped with their reason; hidden names are left out.
fn walk(dir: &Path, files: &mut Vec<PathBuf>, skipped: &mut Vec<(PathBuf, Skip)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = entry.path();
        // The entry's own type: a symbolic link is never followed.
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, files, skipped),
            Ok(t) if t.is_file() => files.push(path),
            Ok(t) if t.is_symlink() => skipped.push((path, Skip::Symlink)),
            Ok(_) => skipped.push((path, Skip::NotAFile)),
            Err(_) => skipped.push((path, Skip::Unreadable)),
        }
    }
}

/// The object key of a file in the bucket folder: its relative path with `/` separators. A name
/// that is not UTF-8 has no key; one not in NFC is refused, so that `café` typed two ways is
/// never two keys that look the same (the API normalizes what it is sent).
pub fn key_of(bucket: &Path, path: &Path) -> Result<String, Skip> {
    let relative = path.strip_prefix(bucket).map_err(|_| Skip::Unreadable)?;
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect();
    let key = parts.ok_or(Skip::NotUtf8)?.join("/");
    if is_nfc(&key) {
        Ok(key)
    } else {
        Err(Skip::NotNfc)
    }
}

/// Encodes a key as S3 event notifications do: form-URL-encoding, `/` kept, space as `+`.
pub fn s3_event_key(key: &str) -> String {
    key.split('/')
        .map(|segment| {
            percent_encoding::utf8_percent_encode(segment, FORM)
                .to_string()
                .replace("%20", "+")
        })
        .collect::<Vec<_>>()
        .join("/")
}

const FORM: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'*');

#[cfg(test)]
mod tests {
    use transcoder_core::ObjectKey;

    use super::*;

    #[test]
    fn keys_are_encoded_as_s3_encodes_them_and_decode_back() {
        for key in [
            "media/alice/red flower (live) café C++.mp3",
            "media/あ/音楽 100%.mp3",
            "media/a/b/c.mp3",
        ] {
            let encoded = s3_event_key(key);
            assert!(!encoded.contains(' '), "{encoded}");
            assert_eq!(
                ObjectKey::from_s3_event_key(&encoded).unwrap().as_str(),
                key
            );
        }
        assert_eq!(
            s3_event_key("media/alice/red flower+.mp3"),
            "media/alice/red+flower%2B.mp3"
        );
    }

    #[test]
    fn a_key_is_a_utf8_path_in_nfc() {
        let bucket = Path::new("/b");
        assert_eq!(
            key_of(bucket, Path::new("/b/media/alice/caf\u{e9}.mp3")),
            Ok("media/alice/caf\u{e9}.mp3".to_owned())
        );
        assert_eq!(
            key_of(bucket, Path::new("/b/media/alice/cafe\u{301}.mp3")),
            Err(Skip::NotNfc)
        );
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let name = std::ffi::OsStr::from_bytes(b"/b/media/alice/\xFF.mp3");
            assert_eq!(key_of(bucket, Path::new(name)), Err(Skip::NotUtf8));
        }
    }

    #[tokio::test]
    async fn the_folder_reads_a_range_and_nothing_outside_the_bucket() {
        let dir = transcoder_testkit::scratch();
        std::fs::create_dir_all(dir.join("media/alice")).unwrap();
        std::fs::write(dir.join("media/alice/song.mp3"), b"0123456789").unwrap();
        std::fs::write(dir.join("secret"), b"not yours").unwrap();
        let folder = BucketFolder::new(dir.path());
        let upload = |key: &str| SourceObject {
            bucket: "local".into(),
            key: ObjectKey::new(key).unwrap(),
            etag: None,
            size: None,
        };
        let read = |key: &'static str, offset, len| {
            let folder = folder.clone();
            async move { folder.read_range(&upload(key), offset, len).await }
        };
        assert_eq!(
            read("media/alice/song.mp3", 2, 4).await.unwrap(),
            b"2345".to_vec()
        );
        assert_eq!(
            read("media/alice/song.mp3", 8, 100).await.unwrap(),
            b"89".to_vec()
        );
        assert_eq!(
            read("media/alice/song.mp3", 50, 4).await.unwrap(),
            Vec::<u8>::new()
        );
        for key in [
            "media/alice/missing.mp3",
            "media/alice/../../secret",
            "/etc/passwd",
            "media//alice/song.mp3",
            "media/alice",
        ] {
            assert!(
                matches!(read(key, 0, 4).await, Err(SourceError::Gone { .. })),
                "{key}"
            );
        }
    }

    #[test]
    fn a_file_is_announced_once_after_it_stops_changing() {
        let dir = transcoder_testkit::scratch();
        let media = dir.join("media/alice");
        std::fs::create_dir_all(&media).unwrap();
        std::fs::create_dir_all(dir.join("transcoded/alice")).unwrap();
        std::fs::write(dir.join("transcoded/alice/old.wav"), b"x").unwrap();
        let mut watcher = Watcher::new(dir.path(), "local", "media/", Duration::from_secs(1));
        let t0 = SystemTime::now();
        let at = |s: u64| t0 + Duration::from_secs(s);

        std::fs::write(media.join("song.mp3"), b"part").unwrap();
        std::fs::write(media.join(".upload-123"), b"hidden").unwrap();
        assert!(watcher.scan(at(0)).is_empty());
        // Still growing: not announced.
        std::fs::write(media.join("song.mp3"), b"partial copy").unwrap();
        assert!(watcher.scan(at(2)).is_empty());
        let records = watcher.scan(at(4));
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["s3"]["object"]["key"], "media/alice/song.mp3");
        assert_eq!(records[0]["s3"]["object"]["size"], 12);
        assert!(watcher.scan(at(6)).is_empty());

        // A new version of the same key is a new upload with a new sequencer.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(media.join("song.mp3"), b"a whole new song").unwrap();
        assert!(watcher.scan(at(7)).is_empty());
        let again = watcher.scan(at(9));
        assert_eq!(again.len(), 1);
        assert_ne!(
            again[0]["s3"]["object"]["sequencer"],
            records[0]["s3"]["object"]["sequencer"]
        );
    }
}

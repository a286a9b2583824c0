//! Writing an upload to the bucket's folder: whole or not at all, under a hidden name until it
//! is complete, so that the watcher never sees half a file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use transcoder_api::ApiError;

use crate::bucket::store_metadata;
use crate::space::is_no_space;

/// The name an upload is written under until it is complete; hidden, so the watcher skips it.
const PARTIAL_PREFIX: &str = ".upload-";

#[derive(Debug, thiserror::Error)]
pub(super) enum ReceiveError {
    #[error("the body passed the {0} bytes the link is signed for")]
    TooLarge(u64),
    #[error("the body ended after {received} of {size} bytes")]
    Short { received: u64, size: u64 },
    #[error("the client stopped sending: {0}")]
    Interrupted(axum::Error),
    #[error("cannot write the upload: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ReceiveError> for ApiError {
    fn from(err: ReceiveError) -> Self {
        match err {
            ReceiveError::TooLarge(size) => ApiError::longer_than_signed(size),
            ReceiveError::Short { received, size } => ApiError::incomplete_upload(received, size),
            ReceiveError::Interrupted(_) => ApiError::bad_request(
                "upload_interrupted",
                "the upload was cut off; nothing was stored",
            ),
            ReceiveError::Io(e) if is_no_space(&e) => {
                ApiError::insufficient_storage("the disk is full")
            }
            ReceiveError::Io(_) => ApiError::internal(),
        }
    }
}

/// An upload being written: removed when dropped unless it was completed, so an upload that is
/// refused, cut off or abandoned leaves nothing behind.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes exactly `size` bytes under a hidden name and renames the file into place once complete,
/// so the watcher only ever sees whole files. Stops reading as soon as the body passes `size`,
/// with or without a Content-Length.
pub(super) async fn receive(
    path: &Path,
    body: Body,
    size: u64,
    metadata: &[(String, String)],
) -> Result<(), ReceiveError> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no folder"))?;
    tokio::fs::create_dir_all(dir).await?;
    static UPLOADS: AtomicU64 = AtomicU64::new(0);
    let mut partial = Partial {
        path: dir.join(format!(
            "{PARTIAL_PREFIX}{}-{}",
            std::process::id(),
            UPLOADS.fetch_add(1, Ordering::SeqCst)
        )),
        done: false,
    };
    let mut file = tokio::fs::File::create(&partial.path).await?;
    let mut received = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ReceiveError::Interrupted)?;
        received += chunk.len() as u64;
        if received > size {
            return Err(ReceiveError::TooLarge(size));
        }
        file.write_all(&chunk).await?;
    }
    if received < size {
        return Err(ReceiveError::Short { received, size });
    }
    file.flush().await?;
    drop(file);
    store_metadata(&partial.path, path, metadata).await?;
    tokio::fs::rename(&partial.path, path).await?;
    partial.done = true;
    Ok(())
}

/// Removes the partial uploads a previous run left under `bucket` (it was stopped mid-upload);
/// returns how many.
pub fn remove_partial_uploads(bucket: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut dirs = vec![bucket.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            // The entry's own type: a symbolic link is never followed out of the bucket.
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file()
                && entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(PARTIAL_PREFIX)
            {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use transcoder_core::ObjectKey;

    #[tokio::test]
    async fn the_choice_is_kept_with_the_file_and_read_back_only_for_that_file() {
        use transcoder_core::{SourceObject, SourceReader};
        let dir = transcoder_testkit::scratch();
        let file = dir.join("media/alice/song.mp3");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let metadata = [("outputs".to_owned(), "opus:64".to_owned())];
        let body = Body::from(transcoder_testkit::mp3_frames(1));
        receive(&file, body, 417, &metadata).await.unwrap();
        let folder = crate::bucket::BucketFolder::new(dir.path());
        let upload = SourceObject {
            bucket: "local".into(),
            key: ObjectKey::new("media/alice/song.mp3").unwrap(),
            etag: None,
            size: None,
        };
        let head = folder.read_head(&upload, 64).await.unwrap();
        assert_eq!(head.bytes.len(), 64);
        assert_eq!(head.metadata["outputs"], "opus:64");
        // A file copied over it by hand is another object: it gets no choice.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, transcoder_testkit::mp3_frames(2)).unwrap();
        assert!(
            folder
                .read_head(&upload, 64)
                .await
                .unwrap()
                .metadata
                .is_empty()
        );
        // A new upload without a choice removes the old one's.
        let body = Body::from(transcoder_testkit::mp3_frames(1));
        receive(&file, body, 417, &metadata).await.unwrap();
        let body = Body::from(transcoder_testkit::mp3_frames(1));
        receive(&file, body, 417, &[]).await.unwrap();
        assert!(
            folder
                .read_head(&upload, 64)
                .await
                .unwrap()
                .metadata
                .is_empty()
        );
    }
}

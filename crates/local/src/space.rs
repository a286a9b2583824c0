//! The disk the bucket folder lives on, as S3 is not: it fills. What one job may write
//! (`MAX_JOB_OUTPUT_BYTES`), what one user's files may take (`USER_QUOTA_BYTES`), and the free
//! space kept (`MIN_FREE_BYTES`) below which new uploads are refused and queued work waits. A
//! full disk is never the user's fault: what it stops waits until space is back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{info, warn};

pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;

/// `MAX_JOB_OUTPUT_BYTES` by default: 1 GiB, about 46 minutes of WAV, FLAC and AAC.
pub const DEFAULT_JOB_OUTPUT_BYTES: u64 = GIB;
/// `USER_QUOTA_BYTES` by default: 10 GiB of one user's uploads and outputs.
pub const DEFAULT_USER_QUOTA_BYTES: u64 = 10 * GIB;

/// The longest wait between two looks at the free space.
const MOST_POLL: Duration = Duration::from_secs(5);

/// The free space of the disk under one folder, and the floor kept free on it.
#[derive(Debug, Clone)]
pub struct Space {
    dir: PathBuf,
    min_free: u64,
    /// Whether a waiter found the disk below what it needs: "waiting" and "back" are each
    /// logged once per change, however many wait and however often they look.
    low: Arc<AtomicBool>,
}

impl Space {
    pub fn new(dir: impl Into<PathBuf>, min_free: u64) -> Self {
        Self {
            dir: dir.into(),
            min_free,
            low: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The floor (`MIN_FREE_BYTES`).
    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    /// The bytes an unprivileged writer may still write (statvfs's `f_bavail`), or `None` when
    /// the disk cannot be asked: then only the writes themselves can say it is full.
    pub fn free(&self) -> Option<u64> {
        transcoder_ffmpeg::free_bytes(&self.dir)
    }

    /// The free space, if writing `bytes` more would take it below the floor.
    pub fn short_for(&self, bytes: u64) -> Option<u64> {
        self.free()
            .filter(|free| free.saturating_sub(bytes) < self.min_free)
    }

    /// Waits until at least `needed` bytes, and the floor, are free; looks again after 200 ms,
    /// doubling to 5 s. The first waiter to find too little logs it, the first to find enough
    /// says so: one line each per change, not one per look.
    pub async fn wait_for(&self, needed: u64, what: &str) {
        let mut poll = Duration::from_millis(100);
        loop {
            let want = needed.max(self.min_free);
            match self.free() {
                Some(free) if free < want => {
                    if !self.low.swap(true, Ordering::SeqCst) {
                        warn!(
                            free_bytes = free,
                            needed_bytes = want,
                            min_free_bytes = self.min_free,
                            "waiting for free space: {} free, {} needed before {what}",
                            bytes(free),
                            bytes(want)
                        );
                    }
                }
                free => {
                    if self.low.swap(false, Ordering::SeqCst) {
                        info!(free_bytes = free, "space is back: {what}");
                    }
                    return;
                }
            }
            poll = (poll * 2).min(MOST_POLL);
            tokio::time::sleep(poll).await;
        }
    }
}

/// `MIN_FREE_BYTES` by default: 5 % of the disk under `dir`, at most 1 GiB (0 if the disk
/// cannot be asked).
pub fn default_min_free(dir: &Path) -> u64 {
    rustix::fs::statvfs(dir).map_or(0, |stat| {
        (stat.f_blocks.saturating_mul(stat.f_frsize) / 20).min(GIB)
    })
}

/// What a full disk looks like in an error or a complaint: one definition, shared with the
/// ffmpeg runs.
pub use transcoder_ffmpeg::{is_no_space, says_no_space};

/// The bytes the files below `dir` take, without following links; 0 if it does not exist.
pub fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => dirs.push(entry.path()),
                Ok(meta) if meta.is_file() => total += meta.len(),
                _ => {}
            }
        }
    }
    total
}

/// A size as a person reads it: one definition, shared with the Lambda worker's messages.
pub use transcoder_ffmpeg::bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_floor_is_a_twentieth_of_the_disk_and_at_most_a_gib() {
        let floor = default_min_free(&std::env::temp_dir());
        assert!(floor > 0 && floor <= GIB, "{floor}");
        assert_eq!(default_min_free(Path::new("/no/such/folder")), 0);
    }
}

//! One runner per data folder. A runner's start-up recovery (partial uploads and temporary outputs
//! removed, running jobs queued again) is only safe while nothing else uses the folder, so the
//! runner first takes an exclusive OS file lock (`flock`) on a file in each data folder, and holds
//! it until it exits: the kernel releases it however the process ends, `kill -9` included, so a
//! lock is never left behind. The holder's PID is written into the file for the message of the
//! runner that finds it taken. It must not touch anything in the folder but its lock file.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file in the bucket folder.
pub const BUCKET_LOCK: &str = ".transcoder-local.lock";

/// Why the data folders could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error(
        "another transcoder-local ({holder}) is using {} (it holds the lock {}): stop it, or give \
         this one its own BUCKET_DIR and STORE_PATH",
        .folder.display(), .lock.display()
    )]
    Taken {
        folder: PathBuf,
        lock: PathBuf,
        /// "PID 1234", or why it is not known.
        holder: String,
    },
    #[error("cannot lock {}: {source}", .lock.display())]
    Io {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The locks this process holds; they are released when it is dropped or the process ends.
#[derive(Debug)]
pub struct Owner {
    _locks: Vec<File>,
}

impl Owner {
    /// Takes the data folders of a runner: the bucket folder (`BUCKET_DIR`, the lock file inside
    /// it) and the store (`STORE_PATH`, the lock file `{STORE_PATH}.lock` beside it), creating the
    /// folders that hold them. Fails at once, touching nothing else, if another process holds
    /// either.
    pub fn take(bucket: &Path, store: &Path) -> Result<Self, OwnerError> {
        let mut store_lock = store.as_os_str().to_owned();
        store_lock.push(".lock");
        let locks = [
            (bucket.to_owned(), bucket.join(BUCKET_LOCK)),
            (store.to_owned(), PathBuf::from(store_lock)),
        ];
        let mut held = Vec::new();
        for (folder, lock) in locks {
            held.push(lock_file(&folder, &lock)?);
        }
        Ok(Self { _locks: held })
    }
}

/// Locks `lock`, the lock file of `folder`, and writes this process's PID into it.
fn lock_file(folder: &Path, lock: &Path) -> Result<File, OwnerError> {
    let io = |source| OwnerError::Io {
        lock: lock.to_owned(),
        source,
    };
    if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // Not truncated on open: the holder's PID must still be there for the loser to read. Opened
    // close-on-exec (as Rust opens every file), so no ffmpeg inherits the lock and outlives it.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let holder = match file.read_to_string(&mut text) {
                Ok(_) => match text.trim().parse::<u32>() {
                    Ok(pid) => format!("PID {pid}"),
                    // The holder has the lock and has not yet written its PID.
                    Err(_) => "PID not yet written".to_owned(),
                },
                Err(e) => format!("PID unreadable: {e}"),
            };
            return Err(OwnerError::Taken {
                folder: folder.to_owned(),
                lock: lock.to_owned(),
                holder,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use transcoder_testkit::scratch;

    #[test]
    fn a_second_owner_is_refused_with_the_holders_pid_until_the_first_lets_go() {
        let dir = scratch();
        let (bucket, store) = (dir.join("bucket"), dir.join("store/messages.sqlite3"));
        let first = Owner::take(&bucket, &store).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(
            std::fs::read_to_string(bucket.join(BUCKET_LOCK)).unwrap(),
            format!("{pid}\n")
        );
        // flock locks belong to open files, so a second open in this process is refused too.
        let err = Owner::take(&bucket, &store).unwrap_err().to_string();
        assert!(err.contains(&format!("(PID {pid})")), "{err}");
        assert!(err.contains(&bucket.display().to_string()), "{err}");
        // The store alone, shared with another bucket, is refused as well.
        let err = Owner::take(&dir.join("other"), &store)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&store.display().to_string()), "{err}");
        drop(first);
        Owner::take(&bucket, &store).unwrap();
    }
}

//! A new empty folder for one test, removed when it is dropped: at the end of the test, and when
//! the test panics, so a failing run leaves nothing in the temporary directory.

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::Path;

use tempfile::TempDir;

/// A folder of its own for one test; it derefs to its [`Path`].
#[derive(Debug)]
pub struct Scratch(TempDir);

/// A new empty folder under the system's temporary directory.
pub fn scratch() -> Scratch {
    match tempfile::Builder::new()
        .prefix("audio-transcoder-")
        .tempdir()
    {
        Ok(dir) => Scratch(dir),
        Err(e) => panic!("no temporary folder for the test: {e}"),
    }
}

impl Scratch {
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<OsStr> for Scratch {
    fn as_ref(&self) -> &OsStr {
        self.0.path().as_os_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_folder_is_empty_its_own_and_gone_after_a_panic() {
        let (a, b) = (scratch(), scratch());
        assert_ne!(a.path(), b.path());
        assert_eq!(std::fs::read_dir(&a).unwrap().count(), 0);
        let kept = a.to_path_buf();
        let panicked = std::panic::catch_unwind(move || {
            std::fs::write(a.join("file"), b"x").unwrap();
            panic!("the test fails");
        });
        assert!(panicked.is_err());
        assert!(!kept.exists(), "{} outlived its test", kept.display());
    }
}

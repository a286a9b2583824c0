//! Names a caller may upload under: one audio file in the caller's own folder, nothing that could
//! reach outside it.

use transcoder_core::{AUDIO_EXTENSIONS, ObjectKey, is_audio};

/// The longest name accepted, in bytes (S3 keys may be 1024 bytes; the prefix and owner need room).
pub const MAX_FILENAME_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilenameError {
    #[error("the file name is empty")]
    Empty,
    #[error("the file name is longer than {MAX_FILENAME_BYTES} bytes")]
    TooLong,
    #[error("the file name contains '{0}', which could leave your folder")]
    Escapes(&'static str),
    #[error("the file name contains a control character")]
    Control,
    #[error("the file is not audio (accepted extensions: {})", AUDIO_EXTENSIONS.join(", "))]
    NotAudio,
    #[error(
        "the file name starts with '.', which makes it a hidden file that is never transcoded; rename it"
    )]
    Hidden,
}

/// Checks a requested upload name and returns it, trimmed of surrounding white space. The caller
/// normalizes it to NFC first ([`transcoder_core::nfc`]), so the limits hold for the key it becomes.
pub fn safe_filename(name: &str) -> Result<&str, FilenameError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(FilenameError::Empty);
    }
    if name.len() > MAX_FILENAME_BYTES {
        return Err(FilenameError::TooLong);
    }
    for (needle, shown) in [("/", "/"), ("\\", "\\"), ("..", "..")] {
        if name.contains(needle) {
            return Err(FilenameError::Escapes(shown));
        }
    }
    if name.chars().any(char::is_control) {
        return Err(FilenameError::Control);
    }
    match ObjectKey::new(name) {
        Ok(key) if !is_audio(&key) => Err(FilenameError::NotAudio),
        // A hidden name gets a link, then nothing: the bucket folder and its route skip it.
        Ok(_) if name.starts_with('.') => Err(FilenameError::Hidden),
        Ok(_) => Ok(name),
        Err(_) => Err(FilenameError::NotAudio),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_names_are_accepted_and_trimmed() {
        assert_eq!(
            safe_filename(" red flower (live).MP3 "),
            Ok("red flower (live).MP3")
        );
        assert_eq!(safe_filename("café.flac"), Ok("café.flac"));
    }

    #[test]
    fn names_that_escape_or_are_not_audio_are_refused() {
        assert_eq!(safe_filename(""), Err(FilenameError::Empty));
        assert_eq!(safe_filename("   "), Err(FilenameError::Empty));
        assert_eq!(
            safe_filename("../bob/song.mp3"),
            Err(FilenameError::Escapes("/"))
        );
        assert_eq!(safe_filename("..mp3"), Err(FilenameError::Escapes("..")));
        assert_eq!(
            safe_filename("bob\\song.mp3"),
            Err(FilenameError::Escapes("\\"))
        );
        assert_eq!(safe_filename("song\u{0}.mp3"), Err(FilenameError::Control));
        assert_eq!(
            safe_filename("line\nbreak.mp3"),
            Err(FilenameError::Control)
        );
        assert_eq!(safe_filename("notes.txt"), Err(FilenameError::NotAudio));
        assert_eq!(safe_filename(".mp3"), Err(FilenameError::NotAudio));
        assert_eq!(safe_filename(".hidden.mp3"), Err(FilenameError::Hidden));
        assert_eq!(safe_filename(" .a.flac"), Err(FilenameError::Hidden));
        assert_eq!(safe_filename("...mp3"), Err(FilenameError::Escapes("..")));
        assert_eq!(
            safe_filename(&format!("{}.mp3", "a".repeat(252))),
            Err(FilenameError::TooLong)
        );
        assert!(safe_filename(&format!("{}.mp3", "a".repeat(251))).is_ok());
    }
}

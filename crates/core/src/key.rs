//! Object keys: decoding them from S3 event notifications, and naming the files in them.

use std::borrow::Cow;
use std::fmt;

use icu_normalizer::ComposingNormalizerBorrowed;
use percent_encoding::percent_decode_str;

/// An S3 object key, decoded: exactly the key the object is stored under.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectKey(pub(crate) String);

impl TryFrom<String> for ObjectKey {
    type Error = KeyError;

    fn try_from(key: String) -> Result<Self, KeyError> {
        Self::new(key)
    }
}

impl From<ObjectKey> for String {
    fn from(key: ObjectKey) -> String {
        key.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the object key is empty")]
    Empty,
    #[error("the object key '{raw}' does not decode to UTF-8")]
    NotUtf8 { raw: String },
}

impl ObjectKey {
    /// Wraps a key that is already decoded (one the bucket itself reports, or one we build).
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self(key))
    }

    /// Decodes a key as S3 event notifications carry it. The key is form-URL-encoded: `+` is a
    /// space, `%2B` a literal plus, `%XX` sequences are UTF-8 bytes; tools that write `%20` for a
    /// space decode the same way.
    pub fn from_s3_event_key(raw: &str) -> Result<Self, KeyError> {
        let spaced = raw.replace('+', " ");
        let decoded = percent_decode_str(&spaced)
            .decode_utf8()
            .map_err(|_| KeyError::NotUtf8 {
                raw: raw.to_owned(),
            })?;
        Self::new(decoded)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last path segment: `song.mp3` for `media/alice/song.mp3`.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The file name's extension, if it has one that is not the whole name.
    pub fn extension(&self) -> Option<&str> {
        match self.file_name().rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => Some(ext),
            _ => None,
        }
    }
}

/// `text` in Unicode normalization form C: the one spelling of `café` (`e` and a combining accent
/// become `é`), so names that look the same are the same key.
pub fn nfc(text: &str) -> Cow<'_, str> {
    ComposingNormalizerBorrowed::new_nfc().normalize(text)
}

/// Whether `text` is already in normalization form C (see [`nfc`]).
pub fn is_nfc(text: &str) -> bool {
    ComposingNormalizerBorrowed::new_nfc().is_normalized(text)
}

/// Characters that are invisible or reorder the text around them: bidirectional controls (U+202E
/// shows `3pm.exe` as `exe.mp3`), zero-width and other format characters, line and paragraph
/// separators. A log line must show them, not obey them.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{61c}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

/// A key or any other text from outside, fit for a log line: control characters (a newline that
/// would forge a second log line, an escape sequence for the terminal) and invisible or
/// reordering ones (U+202E, a zero-width space) are written escaped, as `\n`, `\u{1b}` or
/// `\u{202e}`; everything else is written as it is.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() || is_invisible(c) {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl ObjectKey {
    /// The key for a log line, control characters escaped: `tracing::info!(key = %key.escaped())`.
    pub fn escaped(&self) -> Escaped<'_> {
        Escaped(&self.0)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(raw: &str) -> String {
        ObjectKey::from_s3_event_key(raw)
            .unwrap()
            .as_str()
            .to_owned()
    }

    #[test]
    fn plus_is_a_space_and_percent_20_too() {
        assert_eq!(
            decoded("media/alice/red+flower.mp3"),
            "media/alice/red flower.mp3"
        );
        assert_eq!(
            decoded("media/alice/red%20flower.mp3"),
            "media/alice/red flower.mp3"
        );
    }

    #[test]
    fn encoded_plus_is_a_literal_plus() {
        assert_eq!(
            decoded("media/alice/C%2B%2B+talk.mp3"),
            "media/alice/C++ talk.mp3"
        );
    }

    #[test]
    fn parentheses_and_other_reserved_characters_decode() {
        assert_eq!(
            decoded("media/alice/song+%28live%29+%5B2024%5D+%26+more%3D1.mp3"),
            "media/alice/song (live) [2024] & more=1.mp3"
        );
        // S3 leaves some characters unencoded; they must pass through untouched.
        assert_eq!(
            decoded("media/alice/song(live).mp3"),
            "media/alice/song(live).mp3"
        );
    }

    #[test]
    fn non_ascii_names_decode_from_utf8_bytes() {
        assert_eq!(
            decoded("media/alice/caf%C3%A9+d%C3%A9j%C3%A0+vu.mp3"),
            "media/alice/café déjà vu.mp3"
        );
        assert_eq!(
            decoded("media/%E3%81%82/%E9%9F%B3%E6%A5%BD.mp3"),
            "media/あ/音楽.mp3"
        );
    }

    #[test]
    fn invalid_utf8_and_empty_keys_are_errors() {
        assert_eq!(
            ObjectKey::from_s3_event_key("media/alice/%FF.mp3"),
            Err(KeyError::NotUtf8 {
                raw: "media/alice/%FF.mp3".into()
            })
        );
        assert_eq!(ObjectKey::from_s3_event_key(""), Err(KeyError::Empty));
    }

    #[test]
    fn a_stray_percent_is_kept_literally() {
        assert_eq!(
            decoded("media/alice/100%25+sure%.mp3"),
            "media/alice/100% sure%.mp3"
        );
    }

    #[test]
    fn control_characters_are_escaped_for_logs_and_nothing_else() {
        let key = ObjectKey::new("media/alice/a\nforged=1\u{1b}[31m café.mp3").unwrap();
        assert_eq!(
            key.escaped().to_string(),
            "media/alice/a\\nforged=1\\u{1b}[31m café.mp3"
        );
        assert_eq!(
            Escaped("plain (live) + 100%").to_string(),
            "plain (live) + 100%"
        );
    }

    #[test]
    fn bidi_and_invisible_characters_are_escaped_for_logs() {
        assert_eq!(
            Escaped("media/alice/\u{202e}3pm.exe").to_string(),
            "media/alice/\\u{202e}3pm.exe"
        );
        assert_eq!(
            Escaped("a\u{200b}b\u{2066}c\u{feff}d\u{2028}e").to_string(),
            "a\\u{200b}b\\u{2066}c\\u{feff}d\\u{2028}e"
        );
        // Letters of any script, accents and emoji are shown as they are.
        assert_eq!(
            Escaped("café 音楽 عربى 🎵").to_string(),
            "café 音楽 عربى 🎵"
        );
    }

    #[test]
    fn names_are_normalized_to_nfc() {
        let decomposed = "cafe\u{301}.mp3";
        assert!(!is_nfc(decomposed));
        assert_eq!(nfc(decomposed), "caf\u{e9}.mp3");
        assert!(is_nfc("caf\u{e9}.mp3"));
        assert!(matches!(nfc("plain.mp3"), Cow::Borrowed(_)));
    }

    #[test]
    fn file_name_and_extension() {
        let key = ObjectKey::new("media/alice/live.set.MP3").unwrap();
        assert_eq!(key.file_name(), "live.set.MP3");
        assert_eq!(key.extension(), Some("MP3"));
        assert_eq!(
            ObjectKey::new("media/alice/.mp3").unwrap().extension(),
            None
        );
        assert_eq!(
            ObjectKey::new("media/alice/README").unwrap().extension(),
            None
        );
    }
}

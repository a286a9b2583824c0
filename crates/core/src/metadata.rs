//! The user metadata a job carries to its completion notification: whose file it is and which
//! file it was. Elastic Transcoder accepts only `0-9 A-Z a-z space _.:/=+-%@` in metadata, so
//! every other character is percent-encoded; MediaConvert takes the same values unchanged.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::ids::UploadId;
use crate::job::TranscodeJob;

/// Metadata key: the owner of the source file.
pub const OWNER: &str = "owner";
/// Metadata key: the source object's key.
pub const SOURCE_KEY: &str = "source-key";
/// Metadata key: the upload record the job moves (its claim's token, plain hex).
pub const UPLOAD: &str = "upload";

/// Everything but the characters Elastic Transcoder allows; `%` is encoded as the escape itself.
const NOT_ALLOWED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b' ')
    .remove(b'_')
    .remove(b'.')
    .remove(b':')
    .remove(b'/')
    .remove(b'=')
    .remove(b'+')
    .remove(b'-')
    .remove(b'@');

pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, NOT_ALLOWED).to_string()
}

/// Decodes a value written by [`encode`]; `None` if it is not valid UTF-8 once decoded.
pub fn decode(value: &str) -> Option<String> {
    percent_decode_str(value)
        .decode_utf8()
        .ok()
        .map(|v| v.into_owned())
}

/// The metadata pairs for a job, values encoded: three of the ten Elastic Transcoder allows.
pub fn for_job(job: &TranscodeJob) -> [(&'static str, String); 3] {
    [
        (OWNER, encode(job.owner.as_str())),
        (SOURCE_KEY, encode(job.source.as_str())),
        (UPLOAD, encode(&UploadId::of(&job.claim()).0)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(c: char) -> bool {
        c.is_ascii_alphanumeric() || " _.:/=+-%@".contains(c)
    }

    #[test]
    fn encoded_values_use_only_allowed_characters_and_round_trip() {
        for value in [
            "media/alice/red flower.mp3",
            "media/alice/C++ (live) [2024] & more.mp3",
            "media/あ/音楽 100%.mp3",
            "0b8e6e1c-5d6f-4f3a-9d0c-2b1f1f0e9a77",
        ] {
            let encoded = encode(value);
            assert!(encoded.chars().all(allowed), "{encoded}");
            assert_eq!(decode(&encoded).as_deref(), Some(value));
        }
    }

    #[test]
    fn a_job_carries_its_owner_source_and_upload() {
        let job = crate::contract::job("alice", "song (live).mp3", "1");
        let pairs = for_job(&job);
        assert_eq!(pairs.clone().map(|(k, _)| k), [OWNER, SOURCE_KEY, UPLOAD]);
        assert_eq!(pairs[2].1, job.upload_ref().id.0);
        assert!(
            pairs.iter().all(|(_, v)| v.chars().all(allowed)),
            "{pairs:?}"
        );
    }

    #[test]
    fn plain_values_are_left_readable() {
        assert_eq!(
            encode("media/alice/red flower.mp3"),
            "media/alice/red flower.mp3"
        );
        assert_eq!(encode("50% (live)"), "50%25 %28live%29");
    }
}

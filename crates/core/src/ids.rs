//! The identities the rest of the domain names: whose file it is ([`Owner`]), which upload of it
//! ([`Claim`], whose token is the [`UploadId`]; [`UploadRef`] for all three), and the ids of its
//! job and its message. A leaf: it depends only on object keys.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::key::ObjectKey;

/// The user a file belongs to: the first folder below the input prefix (`media/{owner}/...`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Owner(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    #[error("the owner is empty")]
    Empty,
    #[error("the owner '{0}' is longer than 128 characters")]
    TooLong(String),
    #[error("the owner '{0}' contains a control character or a slash")]
    BadCharacter(String),
    #[error("the owner '{0}' names a folder relative to another ('.' or '..')")]
    Relative(String),
}

impl Owner {
    pub fn new(owner: impl Into<String>) -> Result<Self, OwnerError> {
        let owner = owner.into();
        if owner.is_empty() {
            Err(OwnerError::Empty)
        } else if owner.chars().count() > 128 {
            Err(OwnerError::TooLong(owner))
        } else if owner.chars().any(|c| c.is_control() || c == '/') {
            Err(OwnerError::BadCharacter(owner))
        } else if owner == "." || owner == ".." {
            // In S3 a literal folder name; on a disk (the local runner's bucket) a way out of it.
            Err(OwnerError::Relative(owner))
        } else {
            Ok(Self(owner))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Owner {
    type Error = OwnerError;

    fn try_from(owner: String) -> Result<Self, OwnerError> {
        Self::new(owner)
    }
}

impl From<Owner> for String {
    fn from(owner: Owner) -> String {
        owner.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One version of one uploaded object: the unit of "start exactly one job".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub bucket: String,
    pub key: ObjectKey,
    /// The event's sequencer (or the object's ETag when there is none): the same upload
    /// delivered twice has the same one; a new upload of the same key has a new one.
    pub version: String,
}

impl Claim {
    /// A stable token for this claim, usable as an idempotency token with the transcoder
    /// (at most 64 characters of `[0-9a-f]`).
    pub fn token(&self) -> String {
        // FNV-1a, twice with different offsets, for 128 stable bits without a hashing dependency.
        let text = format!("{}\n{}\n{}", self.bucket, self.key, self.version);
        let fnv = |offset: u64| {
            text.bytes().fold(offset, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            })
        };
        format!(
            "{:016x}{:016x}",
            fnv(0xcbf2_9ce4_8422_2325),
            fnv(0x6c62_272e_07bb_0142)
        )
    }
}

/// An upload's id: its claim's token, so that every writer (and every redelivery) names the
/// same record without asking anyone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UploadId(pub String);

impl UploadId {
    pub fn of(claim: &Claim) -> Self {
        Self(claim.token())
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a job's metadata carries back to the completion recorder: whose upload it is, which one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRef {
    pub owner: Owner,
    pub id: UploadId,
    pub source: ObjectKey,
}

/// A message id: the transcoder's job id, so that a notification delivered twice names the same
/// message and is stored once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub String);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The backend's identifier of an accepted job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct JobId(pub String);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_checked() {
        assert!(Owner::new("0b8e6e1c-5d6f-4f3a-9d0c-2b1f1f0e9a77").is_ok());
        assert_eq!(Owner::new(""), Err(OwnerError::Empty));
        assert!(matches!(
            Owner::new("a\u{7}b"),
            Err(OwnerError::BadCharacter(_))
        ));
        assert!(matches!(
            Owner::new("x".repeat(129)),
            Err(OwnerError::TooLong(_))
        ));
        for relative in [".", ".."] {
            assert_eq!(
                Owner::new(relative),
                Err(OwnerError::Relative(relative.into()))
            );
        }
        assert!(Owner::new("...").is_ok());
    }

    #[test]
    fn the_id_is_the_claims_token() {
        let claim = Claim {
            bucket: "b".into(),
            key: ObjectKey::new("media/alice/a.mp3").unwrap(),
            version: "1".into(),
        };
        assert_eq!(UploadId::of(&claim).0, claim.token());
    }
}

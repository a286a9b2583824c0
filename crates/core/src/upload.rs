//! Upload records: what its owner can see of an upload from the moment it lands until its outputs
//! are ready. One record per upload (bucket, key and version: the claim's identity), written by
//! the starter when it sees the upload and starts its job, and by the completion recorder on
//! progress and at the end.
//!
//! Notifications arrive late, twice and out of order, so a record only ever moves forward: each
//! state has a [`rank`](UploadRecord::rank), and a store writes a record only over one of lower
//! rank, in one conditional write. Nothing here reads before it writes. Every end state is final,
//! whichever comes first: a `superseded` upload is never `completed` by a late notification, and
//! a `completed` one is never `superseded` by a newer upload of its key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::Analysis;
use crate::ids::{Owner, UploadId, UploadRef};
use crate::outcome::{MessageOutput, Outcome};

/// Where an upload stands, in the API as `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    /// Seen by the starter; no job yet.
    Received,
    /// Its job runs.
    Transcoding,
    Completed,
    CompletedWithWarnings,
    Failed,
    /// Refused before any job: the reason says why.
    Rejected,
    /// Replaced (or deleted) by a newer upload of the same key before its job ended: the newer
    /// upload is transcoded on its own; this one never will be.
    Superseded,
}

impl UploadState {
    pub const ALL: [UploadState; 7] = [
        Self::Received,
        Self::Transcoding,
        Self::Completed,
        Self::CompletedWithWarnings,
        Self::Failed,
        Self::Rejected,
        Self::Superseded,
    ];

    /// The name the API and the stores use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Transcoding => "transcoding",
            Self::Completed => "completed",
            Self::CompletedWithWarnings => "completed_with_warnings",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Superseded => "superseded",
        }
    }

    /// Whether nothing comes after this state.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Received | Self::Transcoding)
    }
}

impl From<Outcome> for UploadState {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Completed => Self::Completed,
            Outcome::CompletedWithWarnings => Self::CompletedWithWarnings,
            Outcome::Failed => Self::Failed,
        }
    }
}

/// One upload as its owner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub id: UploadId,
    pub owner: Owner,
    /// The source file's name, as the user named it.
    pub file: String,
    /// The source object's key: what `POST /uploads` returned.
    pub key: String,
    pub state: UploadState,
    /// How far the job is, 0–100, where the transcoder says.
    pub percent: Option<u8>,
    /// Why it failed or was refused, or what to be warned of.
    pub reason: Option<String>,
    pub outputs: Vec<MessageOutput>,
    /// What the job measured of the source, where its backend measures (`lambda`, local).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// When the upload was first seen; a store keeps the first it was given.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The rank of every final state: above any progress.
const FINAL_RANK: u32 = 200;

/// Why an upload is `superseded` when a newer upload of its key replaced it while it waited or
/// transcoded.
pub const REPLACED: &str = "replaced by a newer upload of the same file";

/// Why an upload is `superseded` when its bytes were gone before they could be read: a newer
/// upload of the key replaced them (it has its own record), or the file was deleted.
pub const GONE: &str =
    "replaced by a newer upload of the same file, or deleted, before it was read";

impl UploadRecord {
    /// The record of `upload` in `state`, as of `at` (both its times).
    pub fn new(upload: &UploadRef, state: UploadState, at: DateTime<Utc>) -> Self {
        Self {
            id: upload.id.clone(),
            owner: upload.owner.clone(),
            file: upload.source.file_name().to_owned(),
            key: upload.source.to_string(),
            state,
            percent: None,
            reason: None,
            outputs: Vec::new(),
            analysis: None,
            created_at: at,
            updated_at: at,
        }
    }

    /// `transcoding`, `percent` of the way (capped at 100) if the transcoder said.
    pub fn progress(upload: &UploadRef, percent: Option<u8>, at: DateTime<Utc>) -> Self {
        Self {
            percent: percent.map(|p| p.min(100)),
            ..Self::new(upload, UploadState::Transcoding, at)
        }
    }

    /// Refused before any job, for `reason`.
    pub fn rejected(upload: &UploadRef, reason: impl Into<String>, at: DateTime<Utc>) -> Self {
        Self {
            reason: Some(reason.into()),
            ..Self::new(upload, UploadState::Rejected, at)
        }
    }

    /// Replaced by a newer upload of its key, for `reason` ([`REPLACED`] or [`GONE`]).
    pub fn superseded(upload: &UploadRef, reason: &str, at: DateTime<Utc>) -> Self {
        Self {
            reason: Some(reason.to_owned()),
            ..Self::new(upload, UploadState::Superseded, at)
        }
    }

    /// The record's place in the one-way order: `received` < `transcoding` (without a percentage,
    /// then by percentage) < every final state. A store writes a record only over one of lower
    /// rank, so a late, repeated or reordered event never moves an upload backwards; two final
    /// states rank alike, so the first one written stays.
    pub fn rank(&self) -> u32 {
        match (self.state, self.percent) {
            (UploadState::Received, _) => 0,
            (UploadState::Transcoding, None) => 1,
            (UploadState::Transcoding, Some(p)) => 2 + u32::from(p.min(100)),
            _ => FINAL_RANK,
        }
    }
}

/// One page of an owner's uploads.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadPage {
    pub uploads: Vec<UploadRecord>,
    /// Opaque: hand it back to get the next page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::ObjectKey;

    fn upload() -> UploadRef {
        UploadRef {
            owner: Owner::new("alice").unwrap(),
            id: UploadId("u1".into()),
            source: ObjectKey::new("media/alice/live/song.mp3").unwrap(),
        }
    }

    #[test]
    fn ranks_order_the_states_one_way() {
        let at = Utc::now();
        let u = upload();
        let ranks = [
            UploadRecord::new(&u, UploadState::Received, at).rank(),
            UploadRecord::progress(&u, None, at).rank(),
            UploadRecord::progress(&u, Some(0), at).rank(),
            UploadRecord::progress(&u, Some(40), at).rank(),
            UploadRecord::progress(&u, Some(100), at).rank(),
            UploadRecord::rejected(&u, "not audio", at).rank(),
        ];
        let superseded = UploadRecord::superseded(&u, REPLACED, at);
        assert_eq!(superseded.rank(), ranks[5], "an end like any other");
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
        // Past 100 is 100.
        assert_eq!(UploadRecord::progress(&u, Some(250), at).percent, Some(100));
        for state in UploadState::ALL.into_iter().filter(|s| s.is_final()) {
            assert_eq!(
                UploadRecord::new(&u, state, at).rank(),
                FINAL_RANK,
                "{state:?}"
            );
        }
    }

    #[test]
    fn a_record_names_the_file_and_its_key() {
        let r = UploadRecord::new(&upload(), UploadState::Received, Utc::now());
        assert_eq!(
            (r.file.as_str(), r.key.as_str()),
            ("song.mp3", "media/alice/live/song.mp3")
        );
        assert_eq!((r.percent, r.reason, r.outputs.len()), (None, None, 0));
    }

    #[test]
    fn states_serialize_as_the_api_names_them() {
        for state in UploadState::ALL {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::from(state.name())
            );
        }
    }
}

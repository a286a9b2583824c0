//! Messages: what a file's owner is told when its job ends.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::completion::{Completion, Outcome};
use crate::job::{OutputFormat, Owner};

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

/// One file the message offers for download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageOutput {
    /// `wav`, `flac`, `aac`, `mp3`, or the file's extension when it is none of those.
    pub format: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub owner: Owner,
    pub state: Outcome,
    pub text: String,
    /// The source file's name, as the user named it.
    pub file: String,
    pub source_key: String,
    pub outputs: Vec<MessageOutput>,
    pub created_at: DateTime<Utc>,
}

impl Message {
    /// The message for a finished job; `at` is when the service announced it.
    pub fn for_completion(completion: &Completion, at: DateTime<Utc>) -> Self {
        let file = completion.source.file_name().to_owned();
        let outputs = outputs_of(completion);
        let listing = outputs
            .iter()
            .map(|o| match o.duration_ms {
                Some(ms) => format!("{} ({}, {:.1} s)", o.key, o.format, ms as f64 / 1000.0),
                None => format!("{} ({})", o.key, o.format),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let detail = completion
            .detail
            .as_deref()
            .unwrap_or("no reason was given");
        let text = match completion.outcome {
            Outcome::Completed => format!("Your file {file} has been processed: {listing}."),
            Outcome::CompletedWithWarnings => {
                format!(
                    "Your file {file} has been processed, with a warning: {detail}. Files: {listing}."
                )
            }
            Outcome::Failed => format!("Your file {file} could not be processed: {detail}."),
        };
        Self {
            id: MessageId(completion.job_id.clone()),
            owner: completion.owner.clone(),
            state: completion.outcome,
            text,
            file,
            source_key: completion.source.to_string(),
            outputs,
            created_at: at,
        }
    }
}

/// The files a finished job offers, as its message and its upload record list them.
pub fn outputs_of(completion: &Completion) -> Vec<MessageOutput> {
    completion
        .outputs
        .iter()
        .map(|o| MessageOutput {
            format: format_of(o.key.as_str()),
            key: o.key.to_string(),
            duration_ms: o.duration_ms,
        })
        .collect()
}

fn format_of(key: &str) -> String {
    let ext = key.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    OutputFormat::ALL
        .into_iter()
        .find(|f| f.extension().eq_ignore_ascii_case(ext))
        .map(|f| f.name().to_owned())
        .unwrap_or_else(|| ext.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::completion::CompletedOutput;
    use crate::key::ObjectKey;

    fn completion(outcome: Outcome, detail: Option<&str>) -> Completion {
        Completion {
            analysis: None,
            rejected: false,
            job_id: "1700000000000-abc001".into(),
            owner: Owner::new("alice").unwrap(),
            source: ObjectKey::new("media/alice/live/red flower.mp3").unwrap(),
            outcome,
            outputs: vec![
                CompletedOutput {
                    key: ObjectKey::new("transcoded/alice/live/red flower.wav").unwrap(),
                    duration_ms: Some(6042),
                },
                CompletedOutput {
                    key: ObjectKey::new("transcoded/alice/live/red flower.m4a").unwrap(),
                    duration_ms: None,
                },
            ],
            detail: detail.map(str::to_owned),
            upload: None,
        }
    }

    #[test]
    fn a_completed_job_lists_its_files() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 8, 5, 0).unwrap();
        let m = Message::for_completion(&completion(Outcome::Completed, None), at);
        assert_eq!(m.id, MessageId("1700000000000-abc001".into()));
        assert_eq!(m.state, Outcome::Completed);
        assert_eq!(m.file, "red flower.mp3");
        assert_eq!(
            m.text,
            "Your file red flower.mp3 has been processed: transcoded/alice/live/red flower.wav (wav, 6.0 s), \
             transcoded/alice/live/red flower.m4a (aac)."
        );
        assert_eq!(m.outputs[1].format, "aac");
        assert_eq!(m.created_at, at);
    }

    #[test]
    fn warnings_and_failures_say_why_in_plain_words() {
        let at = Utc::now();
        let warned = Message::for_completion(
            &completion(Outcome::CompletedWithWarnings, Some("upsampled")),
            at,
        );
        assert_eq!(warned.state, Outcome::CompletedWithWarnings);
        assert!(warned.text.starts_with(
            "Your file red flower.mp3 has been processed, with a warning: upsampled."
        ));
        let failed = Message::for_completion(
            &completion(Outcome::Failed, Some("the file is truncated (code 1040)")),
            at,
        );
        assert_eq!(failed.state, Outcome::Failed);
        assert_eq!(
            failed.text,
            "Your file red flower.mp3 could not be processed: the file is truncated (code 1040)."
        );
    }

    #[test]
    fn states_serialize_as_the_api_names_them() {
        let names: Vec<_> = [
            Outcome::Completed,
            Outcome::CompletedWithWarnings,
            Outcome::Failed,
        ]
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
        assert_eq!(
            names,
            [
                r#""completed""#,
                r#""completed_with_warnings""#,
                r#""failed""#
            ]
        );
    }
}

//! Completions: what a transcoder says when a job ends, parsed from either notification shape
//! into one domain type. Elastic Transcoder publishes its own JSON to SNS; MediaConvert emits an
//! EventBridge "MediaConvert Job State Change" event that a rule forwards to the same topic.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::analysis::Analysis;
use crate::format::OutputFormat;
use crate::ids::{MessageId, Owner, UploadId, UploadRef};
use crate::key::ObjectKey;
use crate::message::Message;
use crate::metadata;
use crate::outcome::{MessageOutput, Outcome};
use crate::upload::{UploadRecord, UploadState};

mod elastic_transcoder;
mod mediaconvert;

use elastic_transcoder::ElasticTranscoderNotification;
use mediaconvert::MediaConvertEvent;

/// One file a finished job wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedOutput {
    pub key: ObjectKey,
    pub duration_ms: Option<u64>,
}

/// A job that reached a final state.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub job_id: String,
    pub owner: Owner,
    pub source: ObjectKey,
    pub outcome: Outcome,
    pub outputs: Vec<CompletedOutput>,
    /// What went wrong or what to be warned of, in the service's words, with its code.
    pub detail: Option<String>,
    /// The upload record the job belongs to, when its metadata names one.
    pub upload: Option<UploadId>,
    /// The job refused its file from its bytes (not audio, too long) before it encoded
    /// anything: `outcome` is `Failed` and the upload ends `rejected`, as the starter's refusals
    /// do. Our own workers' `REJECTED` state, in Elastic Transcoder's shape; no AWS service sends it.
    pub rejected: bool,
    /// What the job measured of its source: only our own ffmpeg backends measure, and say so in
    /// an `analysis` field of their Elastic Transcoder-shaped end; AWS's services never do.
    pub analysis: Option<Analysis>,
}

impl Completion {
    /// The upload record this completion ends, if the job named one.
    pub fn upload_ref(&self) -> Option<UploadRef> {
        Some(UploadRef {
            owner: self.owner.clone(),
            id: self.upload.clone()?,
            source: self.source.clone(),
        })
    }

    /// The message for this finished job; `at` is when the service announced it.
    pub fn message(&self, at: DateTime<Utc>) -> Message {
        let file = self.source.file_name().to_owned();
        let outputs = self.outputs();
        let listing = outputs
            .iter()
            .map(|o| match o.duration_ms {
                Some(ms) => format!("{} ({}, {:.1} s)", o.key, o.format, ms as f64 / 1000.0),
                None => format!("{} ({})", o.key, o.format),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let detail = self.detail.as_deref().unwrap_or("no reason was given");
        let text = match self.outcome {
            Outcome::Completed => format!("Your file {file} has been processed: {listing}."),
            Outcome::CompletedWithWarnings => {
                format!(
                    "Your file {file} has been processed, with a warning: {detail}. Files: {listing}."
                )
            }
            Outcome::Failed => format!("Your file {file} could not be processed: {detail}."),
        };
        Message {
            id: MessageId(self.job_id.clone()),
            owner: self.owner.clone(),
            state: self.outcome,
            text,
            file,
            source_key: self.source.to_string(),
            outputs,
            created_at: at,
        }
    }

    /// The end of `upload`'s record, with the outputs and the reason its message gives.
    pub fn upload_record(&self, upload: &UploadRef, at: DateTime<Utc>) -> UploadRecord {
        let state = if self.rejected {
            UploadState::Rejected
        } else {
            UploadState::from(self.outcome)
        };
        let transcoded = matches!(
            state,
            UploadState::Completed | UploadState::CompletedWithWarnings
        );
        UploadRecord {
            percent: transcoded.then_some(100),
            reason: self.detail.clone(),
            outputs: self.outputs(),
            analysis: self.analysis.clone().filter(|_| transcoded),
            ..UploadRecord::new(upload, state, at)
        }
    }

    /// The files this finished job offers, as its message and its upload record list them.
    fn outputs(&self) -> Vec<MessageOutput> {
        self.outputs
            .iter()
            .map(|o| MessageOutput {
                format: format_of(o.key.as_str()),
                key: o.key.to_string(),
                duration_ms: o.duration_ms,
            })
            .collect()
    }
}

/// The format an output's name says: `wav`, `flac`, `aac`, `mp3`, `opus`, or its extension.
fn format_of(key: &str) -> String {
    let ext = key.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    OutputFormat::ALL
        .into_iter()
        .find(|f| f.extension().eq_ignore_ascii_case(ext))
        .map(|f| f.name().to_owned())
        .unwrap_or_else(|| ext.to_ascii_lowercase())
}

/// A job that is still running, as far as the transcoder said.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub job_id: String,
    /// The service's own word: `PROGRESSING`, `STATUS_UPDATE`, …
    pub state: String,
    /// How far the job is, 0–100, if the service said (MediaConvert's `jobPercentComplete`).
    pub percent: Option<u8>,
    /// The upload record to move, when the job's metadata names one and its owner and source.
    pub upload: Option<UploadRef>,
}

/// What a notification means for the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    /// The job ended: the owner gets a message.
    Final(Completion),
    /// Progress, input information, status updates: no message, only the upload record moves.
    /// Such events can arrive after the final one and must never overwrite it.
    Progress(Progress),
    /// The job's input was replaced by a newer upload, or deleted, before its outputs were
    /// written: nothing was written and the owner gets no message (the newer upload has its own
    /// job), but the upload record ends `superseded`. Our own workers' `SUPERSEDED` state, in
    /// Elastic Transcoder's shape; no AWS service sends it.
    Superseded(Progress),
}

/// Why a notification cannot be used. All of these are poison: a retry would fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("the message is not a transcoder notification: {0}")]
    Unrecognised(String),
    #[error("job {job_id} carries no owner in its user metadata")]
    NoOwner { job_id: String },
    #[error("job {job_id} carries no source key (neither in user metadata nor in its input)")]
    NoSource { job_id: String },
    #[error("job {job_id} has an unusable {field}: {reason}")]
    Invalid {
        job_id: String,
        field: &'static str,
        reason: String,
    },
    #[error("job {job_id} reports an unknown state '{state}'")]
    UnknownState { job_id: String, state: String },
}

impl Notification {
    /// Parses an SNS `Message`: an Elastic Transcoder notification or a MediaConvert event.
    pub fn parse(message: &str) -> Result<Self, NotificationError> {
        let value: serde_json::Value = serde_json::from_str(message)
            .map_err(|e| NotificationError::Unrecognised(format!("not JSON ({e})")))?;
        if value.get("detail-type").is_some()
            || value.get("source").is_some_and(|s| s == "aws.mediaconvert")
        {
            let event: MediaConvertEvent = serde_json::from_value(value).map_err(|e| {
                NotificationError::Unrecognised(format!("not a MediaConvert event ({e})"))
            })?;
            event.into_notification()
        } else if value.get("state").is_some() && value.get("jobId").is_some() {
            let n: ElasticTranscoderNotification = serde_json::from_value(value).map_err(|e| {
                NotificationError::Unrecognised(format!(
                    "not an Elastic Transcoder notification ({e})"
                ))
            })?;
            n.into_notification()
        } else {
            Err(NotificationError::Unrecognised(
                "neither an Elastic Transcoder notification nor a MediaConvert event".into(),
            ))
        }
    }
}

/// The upload id from the job's user metadata, if it carries a usable one: a claim token, or
/// something as plain. An unusable one costs the upload record its update, never the message.
fn upload_id(metadata: &HashMap<String, String>) -> Option<UploadId> {
    metadata
        .get(metadata::UPLOAD)
        .filter(|id| {
            (1..=64).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(|id| UploadId(id.clone()))
}

/// A progress event: the upload it moves, if the metadata names one and its owner and source.
fn progress(
    job_id: String,
    state: String,
    percent: Option<u8>,
    metadata: &HashMap<String, String>,
    input_key: Option<&str>,
) -> Progress {
    let upload = upload_id(metadata).and_then(|id| {
        let (owner, source) = identify(&job_id, metadata, input_key).ok()?;
        Some(UploadRef { owner, id, source })
    });
    Progress {
        job_id,
        state,
        percent: percent.map(|p| p.min(100)),
        upload,
    }
}

/// Owner and source from the job's user metadata; Elastic Transcoder also names its input.
fn identify(
    job_id: &str,
    metadata: &HashMap<String, String>,
    input_key: Option<&str>,
) -> Result<(Owner, ObjectKey), NotificationError> {
    let invalid = |field: &'static str, reason: String| NotificationError::Invalid {
        job_id: job_id.to_owned(),
        field,
        reason,
    };
    let owner = metadata
        .get(metadata::OWNER)
        .ok_or_else(|| NotificationError::NoOwner {
            job_id: job_id.to_owned(),
        })?;
    let owner =
        metadata::decode(owner).ok_or_else(|| invalid("owner", "not UTF-8 once decoded".into()))?;
    let owner = Owner::new(owner).map_err(|e| invalid("owner", e.to_string()))?;
    let source = match metadata.get(metadata::SOURCE_KEY) {
        Some(encoded) => metadata::decode(encoded)
            .ok_or_else(|| invalid("source key", "not UTF-8 once decoded".into()))?,
        None => input_key
            .map(str::to_owned)
            .ok_or_else(|| NotificationError::NoSource {
                job_id: job_id.to_owned(),
            })?,
    };
    let source = ObjectKey::new(source).map_err(|e| invalid("source key", e.to_string()))?;
    Ok((owner, source))
}

fn with_code(detail: &str, code: Option<i64>) -> String {
    match code {
        Some(code) => format!("{} (code {code})", detail.trim()),
        None => detail.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::{Value, json};

    use super::*;

    fn finished(outcome: Outcome, detail: Option<&str>) -> Completion {
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
        let m = finished(Outcome::Completed, None).message(at);
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
        let warned = finished(Outcome::CompletedWithWarnings, Some("upsampled")).message(at);
        assert_eq!(warned.state, Outcome::CompletedWithWarnings);
        assert!(warned.text.starts_with(
            "Your file red flower.mp3 has been processed, with a warning: upsampled."
        ));
        let failed =
            finished(Outcome::Failed, Some("the file is truncated (code 1040)")).message(at);
        assert_eq!(failed.state, Outcome::Failed);
        assert_eq!(
            failed.text,
            "Your file red flower.mp3 could not be processed: the file is truncated (code 1040)."
        );
    }

    /// The `Message` of the first record of a sample SNS event.
    fn sample(file: &str) -> String {
        let path = format!("{}/../../events/{file}", env!("CARGO_MANIFEST_DIR"));
        let event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        event["Records"][0]["Sns"]["Message"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn completion(message: &str) -> Completion {
        match Notification::parse(message).unwrap() {
            Notification::Final(c) => c,
            other => panic!("expected a final state, got {other:?}"),
        }
    }

    fn keys(c: &Completion) -> Vec<(&str, Option<u64>)> {
        c.outputs
            .iter()
            .map(|o| (o.key.as_str(), o.duration_ms))
            .collect()
    }

    #[test]
    fn elastic_transcoder_completed() {
        let c = completion(&sample("sns-et-completed.json"));
        assert_eq!(c.job_id, "1700000000000-abc001");
        assert_eq!(c.outcome, Outcome::Completed);
        assert_eq!(c.owner.as_str(), "alice");
        assert_eq!(c.source.as_str(), "media/alice/red flower (live) café.mp3");
        assert_eq!(
            keys(&c),
            [
                ("transcoded/alice/red flower (live) café.wav", Some(6000)),
                ("transcoded/alice/red flower (live) café.flac", Some(6000)),
                ("transcoded/alice/red flower (live) café.m4a", Some(6000)),
            ]
        );
        assert_eq!(c.detail, None);
    }

    #[test]
    fn our_own_workers_end_carries_what_it_measured() {
        let c = completion(&sample("sns-lambda-completed.json"));
        assert_eq!(c.outcome, Outcome::Completed);
        let analysis = c.analysis.expect("an analysis");
        assert_eq!(analysis.integrated_lufs, Some(-19.4));
        assert_eq!(
            analysis.peaks.map(|k| k.to_string()),
            Some("transcoded/alice/red flower (live) café.mp3.peaks.json".into())
        );
        // Elastic Transcoder's own end has none.
        assert_eq!(completion(&sample("sns-et-completed.json")).analysis, None);
    }

    #[test]
    fn a_damaged_analysis_loses_only_itself_and_a_failed_job_has_none() {
        let mut n: Value = serde_json::from_str(&sample("sns-lambda-completed.json")).unwrap();
        n["analysis"] = json!({"duration_s": "long", "peaks": 7});
        let c = completion(&n.to_string());
        assert_eq!(
            (c.outcome, c.outputs.len(), c.analysis),
            (Outcome::Completed, 2, None)
        );
        let mut n: Value = serde_json::from_str(&sample("sns-lambda-completed.json")).unwrap();
        n["state"] = "ERROR".into();
        assert_eq!(completion(&n.to_string()).analysis, None);
    }

    #[test]
    fn elastic_transcoder_warning_keeps_the_outputs_and_the_warning() {
        let c = completion(&sample("sns-et-warning.json"));
        assert_eq!(c.outcome, Outcome::CompletedWithWarnings);
        assert_eq!(c.outputs.len(), 3);
        assert_eq!(
            c.detail.as_deref(),
            Some(
                "The input audio has a sample rate of 22050 Hz; the output was upsampled to 44100 Hz"
            )
        );
    }

    #[test]
    fn elastic_transcoder_error_has_a_reason_and_no_outputs() {
        let c = completion(&sample("sns-et-error.json"));
        assert_eq!(c.outcome, Outcome::Failed);
        assert!(c.outputs.is_empty());
        assert_eq!(
            c.detail.as_deref(),
            Some("The input file is not a supported audio or video file. (code 3002)")
        );
    }

    #[test]
    fn output_status_is_compared_case_insensitively_and_completed_is_accepted() {
        let mut n: Value = serde_json::from_str(&sample("sns-et-completed.json")).unwrap();
        n["state"] = "Completed".into();
        n["outputs"][0]["status"] = "Completed".into();
        n["outputs"][1]["status"] = "COMPLETE".into();
        n["outputs"][2].as_object_mut().unwrap().remove("duration");
        let c = completion(&n.to_string());
        assert_eq!(c.outcome, Outcome::Completed);
        assert_eq!(c.outputs.len(), 3);
        assert_eq!(c.outputs[2].duration_ms, None);
    }

    #[test]
    fn the_output_key_prefix_is_applied() {
        let mut n: Value = serde_json::from_str(&sample("sns-et-completed.json")).unwrap();
        n["outputKeyPrefix"] = "transcoded/".into();
        n["outputs"][0]["key"] = "alice/x.wav".into();
        assert_eq!(
            completion(&n.to_string()).outputs[0].key.as_str(),
            "transcoded/alice/x.wav"
        );
    }

    #[test]
    fn progress_is_not_final() {
        assert_eq!(
            Notification::parse(&sample("sns-et-progressing.json")).unwrap(),
            Notification::Progress(Progress {
                job_id: "1700000000000-abc004".into(),
                state: "PROGRESSING".into(),
                percent: None,
                upload: Some(UploadRef {
                    owner: Owner::new("alice").unwrap(),
                    id: UploadId("a1ce0000000000000000000000000004".into()),
                    source: ObjectKey::new("media/alice/red flower (live) café.mp3").unwrap(),
                }),
            })
        );
    }

    #[test]
    fn a_mediaconvert_status_update_carries_its_percentage_and_upload() {
        let Notification::Progress(progress) =
            Notification::parse(&sample("sns-mediaconvert-status-update.json")).unwrap()
        else {
            panic!("a status update is progress");
        };
        assert_eq!(
            (progress.state.as_str(), progress.percent),
            ("STATUS_UPDATE", Some(96))
        );
        let upload = progress.upload.unwrap();
        assert_eq!(upload.id.0, "b0b00000000000000000000000000001");
        assert_eq!(
            (upload.owner.as_str(), upload.source.as_str()),
            ("bob", "media/bob/Long Set.MP3")
        );
        // The same job's end names the same upload.
        let c = completion(&sample("sns-mediaconvert-complete.json"));
        assert_eq!(c.upload_ref(), Some(upload));
        // Over 100 is 100; a progress event without an upload or an owner moves no record.
        let mut e: Value =
            serde_json::from_str(&sample("sns-mediaconvert-status-update.json")).unwrap();
        e["detail"]["jobProgress"]["jobPercentComplete"] = 250.into();
        e["detail"]["userMetadata"]
            .as_object_mut()
            .unwrap()
            .remove("owner");
        let Ok(Notification::Progress(p)) = Notification::parse(&e.to_string()) else {
            panic!("still progress");
        };
        assert_eq!((p.percent, p.upload), (Some(100), None));
    }

    #[test]
    fn an_unusable_upload_id_costs_the_record_not_the_message() {
        for bad in ["", "a/b", "x y", &"f".repeat(65)] {
            let mut n: Value = serde_json::from_str(&sample("sns-et-completed.json")).unwrap();
            n["userMetadata"]["upload"] = bad.into();
            let c = completion(&n.to_string());
            assert_eq!((c.upload, c.outcome), (None, Outcome::Completed), "{bad:?}");
        }
        let c = completion(&sample("sns-et-completed.json"));
        assert_eq!(
            c.upload,
            Some(UploadId("a1ce0000000000000000000000000001".into()))
        );
        // A job started before upload records carries none, and still gets its message.
        assert_eq!(completion(&sample("sns-et-error.json")).upload, None);
    }

    #[test]
    fn mediaconvert_complete_with_output_paths() {
        let c = completion(&sample("sns-mediaconvert-complete.json"));
        assert_eq!(c.job_id, "1763885000000-mc0001");
        assert_eq!(
            (c.owner.as_str(), c.source.as_str()),
            ("bob", "media/bob/Long Set.MP3")
        );
        assert_eq!(
            keys(&c),
            [
                ("transcoded/bob/Long Set.wav", Some(3600041)),
                ("transcoded/bob/Long Set.flac", Some(3600041)),
                ("transcoded/bob/Long Set.m4a", Some(3600064)),
            ]
        );
    }

    #[test]
    fn mediaconvert_complete_where_an_output_lacks_paths() {
        let mut e: Value = serde_json::from_str(&sample("sns-mediaconvert-complete.json")).unwrap();
        e["detail"]["outputGroupDetails"][0]["outputDetails"][1]
            .as_object_mut()
            .unwrap()
            .remove("outputFilePaths");
        let c = completion(&e.to_string());
        assert_eq!(c.outcome, Outcome::Completed);
        assert_eq!(c.outputs.len(), 2);
    }

    #[test]
    fn mediaconvert_error_and_canceled() {
        let c = completion(&sample("sns-mediaconvert-error.json"));
        assert_eq!(c.outcome, Outcome::Failed);
        assert!(
            c.detail
                .unwrap()
                .ends_with("Is file truncated?] (code 1040)")
        );

        let mut e: Value = serde_json::from_str(&sample("sns-mediaconvert-error.json")).unwrap();
        e["detail"]["status"] = "CANCELED".into();
        e["detail"].as_object_mut().unwrap().remove("errorMessage");
        let c = completion(&e.to_string());
        assert_eq!(
            (c.outcome, c.detail.as_deref()),
            (Outcome::Failed, Some("the job was canceled"))
        );
    }

    #[test]
    fn mediaconvert_status_updates_are_progress() {
        for status in ["PROGRESSING", "INPUT_INFORMATION", "STATUS_UPDATE"] {
            let mut e: Value =
                serde_json::from_str(&sample("sns-mediaconvert-complete.json")).unwrap();
            e["detail"]["status"] = status.into();
            assert!(
                matches!(
                    Notification::parse(&e.to_string()),
                    Ok(Notification::Progress { .. })
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn unusable_notifications_are_errors() {
        let no_owner = json!({"state": "COMPLETED", "jobId": "j1", "input": {"key": "media/a.mp3"}, "outputs": []});
        assert_eq!(
            Notification::parse(&no_owner.to_string()),
            Err(NotificationError::NoOwner {
                job_id: "j1".into()
            })
        );
        let bad_owner = json!({"state": "ERROR", "jobId": "j2", "userMetadata": {"owner": "a%2Fb", "source-key": "k"}});
        assert!(matches!(
            Notification::parse(&bad_owner.to_string()),
            Err(NotificationError::Invalid { field: "owner", .. })
        ));
        let no_source = json!({"detail-type": "MediaConvert Job State Change", "detail": {"jobId": "j3", "status": "COMPLETE", "userMetadata": {"owner": "bob"}}});
        assert_eq!(
            Notification::parse(&no_source.to_string()),
            Err(NotificationError::NoSource {
                job_id: "j3".into()
            })
        );
        let unknown = json!({"state": "EXPLODED", "jobId": "j4", "userMetadata": {"owner": "bob"}});
        assert!(matches!(
            Notification::parse(&unknown.to_string()),
            Err(NotificationError::UnknownState { .. })
        ));
        for text in [
            "Test message from the SNS console",
            "{}",
            "[1,2]",
            r#"{"detail-type": "EC2 Instance State-change Notification", "detail": {"jobId": "x", "status": "COMPLETE"}}"#,
        ] {
            assert!(
                matches!(
                    Notification::parse(text),
                    Err(NotificationError::Unrecognised(_))
                ),
                "{text}"
            );
        }
    }
}

//! What happens when a job ends or reports progress: each SNS record becomes at most one message
//! for the file's owner, and moves the upload's record forward (never back). Progress moves only
//! the record. Notifications that can never become a message are poison: logged, counted, and not
//! retried. A store that is unavailable for a final state fails the invocation so that Lambda
//! retries it; what is already stored is not stored twice. A message links only to files in its
//! owner's output folder, whatever the notification claims.

use aws_lambda_events::sns::SnsRecord;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::completion::{Completion, Notification};

use crate::config::{self, StartConfig};
use crate::env::{ConfigError, Env};
use crate::ids::Owner;
use crate::key::{Escaped, ObjectKey};
use crate::message::Message;
use crate::outcome::Outcome;
use crate::store::{MessageStore, StoreError, UploadStore};
use crate::upload::{GONE, UploadRecord};

/// An SNS event with its records still raw, so one malformed record cannot hide the others.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawSnsEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConfig {
    /// The only topic whose notifications are accepted (`TOPIC_ARN`).
    pub topic_arn: String,
    /// Where the transcoder writes (`OUTPUT_PREFIX`, default as the starter's): a message links
    /// only to files under `{output_prefix}{owner}/`.
    pub output_prefix: String,
}

impl RecordConfig {
    /// Every variable [`RecordConfig::from_env`] reads.
    pub const VARIABLES: &[&str] = &["TOPIC_ARN", "OUTPUT_PREFIX"];

    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let topic_arn = env
            .get("TOPIC_ARN")
            .ok_or(ConfigError::Missing { name: "TOPIC_ARN" })?;
        if !topic_arn.starts_with("arn:") {
            return Err(ConfigError::invalid("TOPIC_ARN", &topic_arn, "not an ARN"));
        }
        let output_prefix = config::prefix(
            "OUTPUT_PREFIX",
            &env.get_or("OUTPUT_PREFIX", StartConfig::DEFAULT_OUTPUT_PREFIX),
        )?;
        Ok(Self {
            topic_arn,
            output_prefix,
        })
    }
}

/// Why a job that reported success gets a `failed` message: nothing it wrote is the owner's.
pub const NO_OWN_OUTPUTS: &str =
    "the transcoder reported no file in your folder; upload the file again to retry";

/// Whether `key` names a file in `owner`'s output folder: below `{prefix}{owner}/`, with no `.`
/// or `..` segment that a browser or the local file system would resolve to another folder.
fn in_owner_folder(key: &ObjectKey, prefix: &str, owner: &Owner) -> bool {
    key.as_str()
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(owner.as_str()))
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|path| {
            !path.is_empty()
                && std::iter::once(owner.as_str())
                    .chain(path.split('/'))
                    .all(|segment| segment != "." && segment != "..")
        })
}

/// Drops every output outside the owner's folder: a forged or mistaken notification must never
/// hand one user a link to another's file. A success left with nothing to download becomes a
/// failure, because a `completed` message that offers no file tells the user nothing they can act
/// on, while `failed` tells them to upload again.
fn keep_own_outputs(completion: &mut Completion, prefix: &str) {
    let (job_id, owner) = (&completion.job_id, &completion.owner);
    completion.outputs.retain(|output| {
        let own = in_owner_folder(&output.key, prefix, owner);
        if !own {
            warn!(
                job_id = %Escaped(job_id),
                owner = %Escaped(owner.as_str()),
                key = %output.key.escaped(),
                "output outside the owner's folder dropped"
            );
        }
        own
    });
    if completion.outcome != Outcome::Failed && completion.outputs.is_empty() {
        completion.outcome = Outcome::Failed;
        completion.detail = Some(NO_OWN_OUTPUTS.to_owned());
    }
}

/// What one invocation did; returned as JSON.
#[derive(Debug, Default, Serialize)]
pub struct RecordReport {
    /// Ids of messages stored now.
    pub recorded: Vec<String>,
    /// Ids of messages that were already stored: a redelivery.
    pub duplicates: Vec<String>,
    /// Progress events: no message, at most an upload record moved.
    pub progress: usize,
    /// Ids of upload records moved forward now (an event that was late or repeated moves none).
    pub uploads: Vec<String>,
    /// Poison records, with the reason.
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, Serialize)]
pub struct Rejected {
    pub record: usize,
    pub reason: String,
}

/// Some messages could not be stored; the others were. Lambda retries the event.
#[derive(Debug, thiserror::Error)]
#[error("{} of {attempted} messages could not be stored: {}", failed.len(), describe(failed))]
pub struct RecordError {
    pub attempted: usize,
    pub failed: Vec<(usize, String, StoreError)>,
}

fn describe(failed: &[(usize, String, StoreError)]) -> String {
    failed
        .iter()
        .map(|(record, job, err)| format!("record {record} (job {job}): {err}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What one SNS record announces.
enum Announced {
    /// A job's end: its message, and the upload record it ends if the job named one.
    Final(Message, Option<UploadRecord>),
    /// Progress: the upload record it moves, if the job named one.
    Progress(Option<UploadRecord>),
}

/// Turns one SNS record into what it announces.
fn announced(record: serde_json::Value, config: &RecordConfig) -> Result<Announced, String> {
    let record: SnsRecord =
        serde_json::from_value(record).map_err(|e| format!("not an SNS record: {e}"))?;
    if record.sns.topic_arn != config.topic_arn {
        return Err(format!(
            "from topic '{}', not from '{}'",
            record.sns.topic_arn, config.topic_arn
        ));
    }
    match Notification::parse(&record.sns.message).map_err(|e| e.to_string())? {
        Notification::Progress(progress) => {
            info!(job_id = %Escaped(&progress.job_id), state = %Escaped(&progress.state), percent = progress.percent, "progress event: no message");
            let at = record.sns.timestamp;
            Ok(Announced::Progress(progress.upload.map(|upload| {
                UploadRecord::progress(&upload, progress.percent, at)
            })))
        }
        Notification::Superseded(replaced) => {
            info!(job_id = %Escaped(&replaced.job_id), "input replaced or deleted before the job wrote anything: no message");
            let at = record.sns.timestamp;
            Ok(Announced::Progress(
                replaced
                    .upload
                    .map(|upload| UploadRecord::superseded(&upload, GONE, at)),
            ))
        }
        Notification::Final(mut completion) => {
            keep_own_outputs(&mut completion, &config.output_prefix);
            let at = record.sns.timestamp;
            let upload = completion
                .upload_ref()
                .map(|upload| completion.upload_record(&upload, at));
            Ok(Announced::Final(completion.message(at), upload))
        }
    }
}

/// Moves an upload record forward, if it is behind; says whether it moved.
async fn advance(
    store: &impl UploadStore,
    record: &UploadRecord,
    report: &mut RecordReport,
) -> Result<(), StoreError> {
    let moved = store.advance(record).await?;
    let (owner, id) = (Escaped(record.owner.as_str()), Escaped(&record.id.0));
    if moved {
        info!(%owner, upload = %id, state = record.state.name(), percent = record.percent, "upload record moved");
        report.uploads.push(record.id.0.clone());
    } else {
        info!(%owner, upload = %id, state = record.state.name(), percent = record.percent, "upload record already further: late or repeated event");
    }
    Ok(())
}

/// Handles one SNS event: every record, not just the first.
pub async fn record_completion(
    event: RawSnsEvent,
    config: &RecordConfig,
    store: &(impl MessageStore + UploadStore),
) -> Result<RecordReport, RecordError> {
    let mut report = RecordReport::default();
    let mut failed = Vec::new();
    let mut attempted = 0;
    for (index, raw) in event.records.into_iter().enumerate() {
        let message_id = raw
            .pointer("/Sns/MessageId")
            .and_then(|v| v.as_str())
            .unwrap_or("<none>")
            .to_owned();
        let (message, upload) = match announced(raw, config) {
            Ok(Announced::Final(message, upload)) => (message, upload),
            Ok(Announced::Progress(upload)) => {
                report.progress += 1;
                if let Some(upload) = upload
                    && let Err(err) = advance(store, &upload, &mut report).await
                {
                    // The next progress event, or the end, moves the record; a retry of this
                    // one would be late by then.
                    warn!(record = index, upload = %Escaped(&upload.id.0), error = %Escaped(&err.to_string()), "progress not written");
                }
                continue;
            }
            Err(reason) => {
                warn!(
                    record = index,
                    sns_message_id = %Escaped(&message_id),
                    reason = %Escaped(&reason),
                    "poison notification rejected"
                );
                report.rejected.push(Rejected {
                    record: index,
                    reason,
                });
                continue;
            }
        };
        attempted += 1;
        match store.insert(&message).await {
            Ok(true) => {
                info!(record = index, owner = %Escaped(message.owner.as_str()), id = %Escaped(&message.id.0), state = ?message.state, "message written");
                report.recorded.push(message.id.0.clone());
            }
            Ok(false) => {
                info!(record = index, owner = %Escaped(message.owner.as_str()), id = %Escaped(&message.id.0), "message already written: duplicate delivery");
                report.duplicates.push(message.id.0.clone());
            }
            Err(err) => {
                error!(record = index, id = %Escaped(&message.id.0), error = %Escaped(&err.to_string()), "message not written");
                failed.push((index, message.id.0, err));
                // The retry writes the message and the record; the record alone would say
                // "completed" with no message to go with it.
                continue;
            }
        }
        if let Some(upload) = upload
            && let Err(err) = advance(store, &upload, &mut report).await
        {
            // The message is kept; the retry finds it written and moves the record.
            error!(record = index, upload = %Escaped(&upload.id.0), error = %Escaped(&err.to_string()), "upload record not written");
            failed.push((index, message.id.0, err));
        }
    }
    if failed.is_empty() {
        Ok(report)
    } else {
        Err(RecordError { attempted, failed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{MessageId, Owner, UploadId};
    use crate::memory::MemoryStore;
    use crate::upload::UploadState;

    const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:audio-transcoder-completions";

    fn config() -> RecordConfig {
        RecordConfig::from_env(&[("TOPIC_ARN", TOPIC)]).unwrap()
    }

    /// `sns-et-completed.json` (alice's job) with its outputs replaced by `keys`.
    fn completed_with_outputs(keys: &[&str]) -> RawSnsEvent {
        let mut event = event("sns-et-completed.json");
        let mut message: serde_json::Value =
            serde_json::from_str(event.records[0]["Sns"]["Message"].as_str().unwrap()).unwrap();
        message["outputs"] = keys
            .iter()
            .map(|key| serde_json::json!({"key": key, "status": "Complete", "duration": 6.0}))
            .collect();
        event.records[0]["Sns"]["Message"] = message.to_string().into();
        event
    }

    fn event(file: &str) -> RawSnsEvent {
        let path = format!("{}/../../events/{file}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    async fn unread(store: &MemoryStore, owner: &str) -> Vec<Message> {
        store
            .list_unread(&Owner::new(owner).unwrap(), 100, None)
            .await
            .unwrap()
            .messages
    }

    #[tokio::test]
    async fn final_states_become_one_message_each_for_the_owner() {
        let store = MemoryStore::default();
        for (file, owner, state) in [
            ("sns-et-completed.json", "alice", Outcome::Completed),
            (
                "sns-et-warning.json",
                "alice",
                Outcome::CompletedWithWarnings,
            ),
            ("sns-et-error.json", "alice", Outcome::Failed),
            ("sns-mediaconvert-complete.json", "bob", Outcome::Completed),
            ("sns-mediaconvert-error.json", "bob", Outcome::Failed),
        ] {
            let report = record_completion(event(file), &config(), &store)
                .await
                .unwrap();
            assert_eq!(report.recorded.len(), 1, "{file}");
            let id = MessageId(report.recorded[0].clone());
            let messages = unread(&store, owner).await;
            let message = messages.iter().find(|m| m.id == id).unwrap();
            assert_eq!(message.state, state, "{file}");
        }
        assert_eq!(unread(&store, "alice").await.len(), 3);
        assert_eq!(unread(&store, "bob").await.len(), 2);
        assert!(unread(&store, "mallory").await.is_empty());
    }

    #[tokio::test]
    async fn the_same_notification_twice_is_one_message() {
        let store = MemoryStore::default();
        let report = record_completion(event("sns-duplicate.json"), &config(), &store)
            .await
            .unwrap();
        assert_eq!(report.recorded, ["1700000000000-abc005"]);
        assert_eq!(report.duplicates, ["1700000000000-abc005"]);
        // And again, as a whole redelivered event.
        let again = record_completion(event("sns-duplicate.json"), &config(), &store)
            .await
            .unwrap();
        assert!(again.recorded.is_empty());
        assert_eq!(unread(&store, "alice").await.len(), 1);
    }

    #[tokio::test]
    async fn a_late_progress_event_changes_nothing() {
        let store = MemoryStore::default();
        record_completion(event("sns-et-completed.json"), &config(), &store)
            .await
            .unwrap();
        let before = unread(&store, "alice").await;
        let mut late = event("sns-et-progressing.json");
        let mut message: serde_json::Value =
            serde_json::from_str(late.records[0]["Sns"]["Message"].as_str().unwrap()).unwrap();
        message["jobId"] = "1700000000000-abc001".into();
        late.records[0]["Sns"]["Message"] = message.to_string().into();
        let report = record_completion(late, &config(), &store).await.unwrap();
        assert_eq!(report.progress, 1);
        assert_eq!(unread(&store, "alice").await, before);
    }

    #[tokio::test]
    async fn poison_is_rejected_and_the_other_records_are_still_recorded() {
        let store = MemoryStore::default();
        let mut combined = event("sns-foreign-topic.json");
        combined.records.extend(event("sns-not-json.json").records);
        combined
            .records
            .push(serde_json::json!({"not": "an sns record"}));
        let mut no_owner = event("sns-et-completed.json").records.remove(0);
        no_owner["Sns"]["Message"] =
            r#"{"state":"COMPLETED","jobId":"j-no-owner","input":{"key":"media/a.mp3"}}"#.into();
        combined.records.push(no_owner);
        combined
            .records
            .extend(event("sns-et-completed.json").records);

        let report = record_completion(combined, &config(), &store)
            .await
            .unwrap();
        let reasons: Vec<_> = report
            .rejected
            .iter()
            .map(|r| (r.record, r.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 4);
        assert!(reasons[0].1.contains("someone-elses-topic"), "{reasons:?}");
        assert!(
            reasons[1]
                .1
                .starts_with("the message is not a transcoder notification"),
            "{reasons:?}"
        );
        assert!(reasons[2].1.starts_with("not an SNS record"), "{reasons:?}");
        assert_eq!(
            reasons[3],
            (3, "job j-no-owner carries no owner in its user metadata")
        );
        assert_eq!(report.recorded, ["1700000000000-abc001"]);
    }

    #[tokio::test]
    async fn an_unavailable_store_fails_the_invocation_and_the_retry_loses_nothing() {
        let store = MemoryStore::default();
        store.fail_message_writes(true);
        let err = record_completion(event("sns-et-completed.json"), &config(), &store)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "1 of 1 messages could not be stored: record 0 (job 1700000000000-abc001): \
             the store is unavailable: connection refused"
        );
        store.fail_message_writes(false);
        let report = record_completion(event("sns-et-completed.json"), &config(), &store)
            .await
            .unwrap();
        assert_eq!(report.recorded, ["1700000000000-abc001"]);
    }

    /// `record_completion` of the sample event `file`, which must succeed.
    async fn record(store: &MemoryStore, file: &str) -> RecordReport {
        record_completion(event(file), &config(), store)
            .await
            .unwrap()
    }

    async fn upload_of(store: &impl UploadStore, owner: &str, id: &str) -> Option<UploadRecord> {
        let owner = Owner::new(owner).unwrap();
        store.upload(&owner, &UploadId(id.into())).await.unwrap()
    }

    const BOBS_UPLOAD: &str = "b0b00000000000000000000000000001";

    #[tokio::test]
    async fn progress_moves_the_upload_record_and_nothing_moves_it_back() {
        let store = MemoryStore::default();
        let report = record(&store, "sns-mediaconvert-status-update.json").await;
        assert_eq!(report.progress, 1);
        assert_eq!(report.uploads, [BOBS_UPLOAD]);
        assert!(report.recorded.is_empty(), "progress writes no message");
        assert!(unread(&store, "bob").await.is_empty());
        let seen = upload_of(&store, "bob", BOBS_UPLOAD).await.unwrap();
        assert_eq!(
            (seen.state, seen.percent),
            (UploadState::Transcoding, Some(96))
        );
        assert_eq!(
            (seen.file.as_str(), seen.key.as_str()),
            ("Long Set.MP3", "media/bob/Long Set.MP3")
        );

        record(&store, "sns-mediaconvert-complete.json").await;
        let done = upload_of(&store, "bob", BOBS_UPLOAD).await.unwrap();
        assert_eq!(
            (done.state, done.percent),
            (UploadState::Completed, Some(100))
        );
        let keys: Vec<_> = done.outputs.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "transcoded/bob/Long Set.wav",
                "transcoded/bob/Long Set.flac",
                "transcoded/bob/Long Set.m4a"
            ]
        );
        assert_eq!(done.created_at, seen.created_at);

        // The status update again, late; and the end again: nothing moves.
        for late in [
            "sns-mediaconvert-status-update.json",
            "sns-mediaconvert-complete.json",
        ] {
            let report = record(&store, late).await;
            assert!(report.uploads.is_empty(), "{late}");
        }
        assert_eq!(upload_of(&store, "bob", BOBS_UPLOAD).await, Some(done));
        assert_eq!(unread(&store, "bob").await.len(), 1);
    }

    #[tokio::test]
    async fn a_superseded_upload_is_not_moved_by_its_old_jobs_late_notifications() {
        let store = MemoryStore::default();
        let upload = crate::ids::UploadRef {
            owner: Owner::new("bob").unwrap(),
            id: UploadId(BOBS_UPLOAD.into()),
            source: crate::ObjectKey::new("media/bob/Long Set.MP3").unwrap(),
        };
        let replaced = crate::upload::REPLACED;
        let superseded = UploadRecord::superseded(&upload, replaced, chrono::Utc::now());
        assert!(store.advance(&superseded).await.unwrap());
        for late in [
            "sns-mediaconvert-status-update.json",
            "sns-mediaconvert-complete.json",
        ] {
            let report = record(&store, late).await;
            assert!(report.uploads.is_empty(), "{late} moved the record");
        }
        assert_eq!(
            upload_of(&store, "bob", BOBS_UPLOAD).await,
            Some(superseded)
        );
    }

    #[tokio::test]
    async fn a_job_whose_input_was_replaced_ends_its_upload_superseded_with_no_message() {
        let store = MemoryStore::default();
        let alices = "a1ce0000000000000000000000000001";
        let report = record(&store, "sns-lambda-superseded.json").await;
        assert_eq!((report.recorded.len(), report.progress), (0, 1));
        assert_eq!(report.uploads, [alices]);
        assert!(unread(&store, "alice").await.is_empty());
        let ended = upload_of(&store, "alice", alices).await.unwrap();
        assert_eq!(ended.state, UploadState::Superseded);
        assert_eq!(ended.reason.as_deref(), Some(crate::upload::GONE));
        // A redelivery moves nothing and tells nobody.
        let again = record(&store, "sns-lambda-superseded.json").await;
        assert!(again.uploads.is_empty() && again.recorded.is_empty());
    }

    #[tokio::test]
    async fn a_file_the_worker_refused_from_its_bytes_ends_its_upload_rejected_with_a_message() {
        let store = MemoryStore::default();
        let alices = "a1ce0000000000000000000000000001";
        let report = record(&store, "sns-lambda-rejected.json").await;
        assert_eq!(report.recorded, ["audio-a1ce0000000000000000000000000001"]);
        let ended = upload_of(&store, "alice", alices).await.unwrap();
        assert_eq!((ended.state, ended.percent), (UploadState::Rejected, None));
        let reason = ended.reason.unwrap();
        assert!(reason.starts_with("the file is too long"), "{reason}");
        let messages = unread(&store, "alice").await;
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].state, Outcome::Failed);
        assert!(
            messages[0].text.contains("MediaConvert"),
            "{:?}",
            messages[0]
        );
    }

    #[tokio::test]
    async fn a_measured_job_keeps_its_analysis_on_the_upload_record() {
        let store = MemoryStore::default();
        let alices = "a1ce0000000000000000000000000001";
        record(&store, "sns-lambda-completed.json").await;
        let ended = upload_of(&store, "alice", alices).await.unwrap();
        assert_eq!(ended.state, UploadState::Completed);
        let analysis = ended.analysis.expect("the worker measured the source");
        assert_eq!(
            (
                analysis.duration_s,
                analysis.integrated_lufs,
                analysis.true_peak_dbtp,
                analysis.loudness_range_lu
            ),
            (184.32, Some(-19.4), Some(-0.3), Some(6.2))
        );
        assert_eq!(
            analysis.peaks.as_ref().map(ObjectKey::as_str),
            Some("transcoded/alice/red flower (live) café.mp3.peaks.json")
        );
        // AWS's transcoders measure nothing.
        record(&store, "sns-mediaconvert-complete.json").await;
        let bobs = store
            .list_uploads(&Owner::new("bob").unwrap(), 10, None)
            .await
            .unwrap();
        assert!(
            bobs.uploads.iter().all(|u| u.analysis.is_none()),
            "{bobs:?}"
        );
    }

    #[tokio::test]
    async fn an_unavailable_upload_record_keeps_the_message_and_the_retry_moves_it() {
        let store = MemoryStore::default();
        store.fail_upload_writes(&UploadState::ALL);
        // Progress that cannot be written fails nothing: the next event moves the record.
        let report = record(&store, "sns-mediaconvert-status-update.json").await;
        assert_eq!((report.progress, report.uploads.len()), (1, 0));
        // The end is retried, but its message is written at once.
        let err = record_completion(event("sns-mediaconvert-complete.json"), &config(), &store)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("upload records are throttled"),
            "{err}"
        );
        assert_eq!(unread(&store, "bob").await.len(), 1);
        assert_eq!(upload_of(&store, "bob", BOBS_UPLOAD).await, None);
        store.fail_upload_writes(&[]);
        let retry = record(&store, "sns-mediaconvert-complete.json").await;
        assert_eq!(retry.duplicates, ["1763885000000-mc0001"]);
        assert_eq!(retry.uploads, [BOBS_UPLOAD]);
        let done = upload_of(&store, "bob", BOBS_UPLOAD).await.unwrap();
        assert_eq!(done.state, UploadState::Completed);
    }

    #[test]
    fn only_keys_in_the_owners_output_folder_are_the_owners() {
        let alice = Owner::new("alice").unwrap();
        for (key, own) in [
            ("transcoded/alice/song.mp3.wav", true),
            ("transcoded/alice/live/set.mp3.flac", true),
            ("transcoded/alice/a\nforged=1.mp3.wav", true),
            // Another user's folder, and one whose name merely starts with "alice".
            ("transcoded/bob/song.mp3.wav", false),
            ("transcoded/alice2/song.mp3.wav", false),
            ("transcoded/alice", false),
            ("transcoded/alice/", false),
            // The input prefix: the user's own upload, or anyone's.
            ("media/alice/song.mp3", false),
            ("media/bob/song.mp3", false),
            // Segments a browser or a file system resolves to another folder.
            ("transcoded/alice/../bob/song.mp3.wav", false),
            ("transcoded/alice/./song.mp3.wav", false),
            ("transcoded/alice/..", false),
            ("transcoded/../transcoded/alice/song.mp3.wav", false),
            // A newline in a key that belongs elsewhere changes nothing.
            ("transcoded/bob/a\ntranscoded/alice/x.wav", false),
            ("other/transcoded/alice/song.mp3.wav", false),
        ] {
            let key = ObjectKey::new(key).unwrap();
            assert_eq!(
                in_owner_folder(&key, "transcoded/", &alice),
                own,
                "{}",
                key.escaped()
            );
        }
        // No owner is called "..": the notification naming one is poison before it gets here.
        assert!(Owner::new("..").is_err());
    }

    #[tokio::test]
    async fn outputs_outside_the_owners_folder_are_left_out_of_the_message() {
        let store = MemoryStore::default();
        let event = completed_with_outputs(&[
            "transcoded/alice/song.mp3.wav",
            "transcoded/bob/secret.mp3.wav",
            "transcoded/alice/../bob/secret.mp3.flac",
            "media/bob/secret.mp3",
        ]);
        let report = record_completion(event, &config(), &store).await.unwrap();
        assert_eq!(report.recorded, ["1700000000000-abc001"]);
        let message = &unread(&store, "alice").await[0];
        assert_eq!(message.state, Outcome::Completed);
        let keys: Vec<_> = message.outputs.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["transcoded/alice/song.mp3.wav"]);
        assert!(!message.text.contains("bob"), "{}", message.text);
    }

    #[tokio::test]
    async fn a_success_with_no_output_of_the_owners_is_a_failure_that_says_why() {
        for outputs in [&["transcoded/bob/song.mp3.wav"][..], &[]] {
            let store = MemoryStore::default();
            record_completion(completed_with_outputs(outputs), &config(), &store)
                .await
                .unwrap();
            let message = &unread(&store, "alice").await[0];
            assert_eq!(message.state, Outcome::Failed, "{outputs:?}");
            assert!(message.outputs.is_empty());
            assert_eq!(
                message.text,
                format!(
                    "Your file red flower (live) café.mp3 could not be processed: {NO_OWN_OUTPUTS}."
                )
            );
        }
    }

    #[tokio::test]
    async fn the_output_prefix_is_configurable() {
        let store = MemoryStore::default();
        let config =
            RecordConfig::from_env(&[("TOPIC_ARN", TOPIC), ("OUTPUT_PREFIX", "out")]).unwrap();
        assert_eq!(config.output_prefix, "out/");
        let event = completed_with_outputs(&["out/alice/a.mp3.wav", "transcoded/alice/a.mp3.wav"]);
        record_completion(event, &config, &store).await.unwrap();
        let message = &unread(&store, "alice").await[0];
        let keys: Vec<_> = message.outputs.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["out/alice/a.mp3.wav"]);
    }

    #[test]
    fn the_output_prefix_defaults_to_the_starters_and_is_checked() {
        assert_eq!(config().output_prefix, StartConfig::DEFAULT_OUTPUT_PREFIX);
        for bad in ["/", "/transcoded/"] {
            let err = RecordConfig::from_env(&[("TOPIC_ARN", TOPIC), ("OUTPUT_PREFIX", bad)])
                .unwrap_err();
            assert!(err.to_string().starts_with("OUTPUT_PREFIX"), "{err}");
        }
    }

    #[test]
    fn the_topic_is_required() {
        assert!(
            RecordConfig::from_env(&[])
                .unwrap_err()
                .to_string()
                .contains("TOPIC_ARN is required")
        );
        assert!(RecordConfig::from_env(&[("TOPIC_ARN", "completions")]).is_err());
    }
}

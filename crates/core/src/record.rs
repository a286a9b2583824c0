//! What happens when a job ends or reports progress: each SNS record becomes at most one message
//! for the file's owner, and moves the upload's record forward (never back). Progress moves only
//! the record. Notifications that can never become a message are poison: logged, counted, and not
//! retried. A store that is unavailable for a final state fails the invocation so that Lambda
//! retries it; what is already stored is not stored twice. A message links only to files in its
//! owner's output folder, whatever the notification claims.

use aws_lambda_events::sns::SnsRecord;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, error, info, info_span, warn};

use crate::completion::{Completion, Notification};

use crate::config::{self, StartConfig};
use crate::env::{ConfigError, Env};
use crate::error::Chain;
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
        .map(|(record, job, err)| format!("record {record} (job {job}): {}", Chain(err)))
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
            .unwrap_or("<none>");
        // Every line about this record carries these two.
        let span = info_span!("record", record = index, sns_message_id = %Escaped(message_id));
        let recorded = record_one(index, raw, config, store, &mut report)
            .instrument(span)
            .await;
        match recorded {
            Recorded::Ended(unwritten) => {
                attempted += 1;
                failed.extend(unwritten.map(|(id, err)| (index, id, err)));
            }
            Recorded::Passed => {}
        }
    }
    if failed.is_empty() {
        Ok(report)
    } else {
        Err(RecordError { attempted, failed })
    }
}

/// What became of one SNS record.
enum Recorded {
    /// It announced a job's end: its message and record were written, or the message's id and
    /// why one of them was not.
    Ended(Option<(String, StoreError)>),
    /// Progress, or a notification refused: nothing to retry.
    Passed,
}

/// Writes what SNS record `index` announces, noting it in `report`.
async fn record_one(
    index: usize,
    raw: serde_json::Value,
    config: &RecordConfig,
    store: &(impl MessageStore + UploadStore),
    report: &mut RecordReport,
) -> Recorded {
    let (message, upload) = match announced(raw, config) {
        Ok(Announced::Final(message, upload)) => (message, upload),
        Ok(Announced::Progress(upload)) => {
            report.progress += 1;
            if let Some(upload) = upload
                && let Err(err) = advance(store, &upload, report).await
            {
                // The next progress event, or the end, moves the record; a retry of this one
                // would be late by then.
                warn!(upload = %Escaped(&upload.id.0), error = %Chain(&err), "progress not written");
            }
            return Recorded::Passed;
        }
        Err(reason) => {
            warn!(reason = %Escaped(&reason), "poison notification rejected");
            report.rejected.push(Rejected {
                record: index,
                reason,
            });
            return Recorded::Passed;
        }
    };
    let (owner, id) = (Escaped(message.owner.as_str()), Escaped(&message.id.0));
    match store.insert(&message).await {
        Ok(true) => {
            info!(%owner, %id, state = ?message.state, "message written");
            report.recorded.push(message.id.0.clone());
        }
        Ok(false) => {
            info!(%owner, %id, "message already written: duplicate delivery");
            report.duplicates.push(message.id.0.clone());
        }
        Err(err) => {
            error!(%id, error = %Chain(&err), "message not written");
            // The retry writes the message and the record; the record alone would say
            // "completed" with no message to go with it.
            return Recorded::Ended(Some((message.id.0.clone(), err)));
        }
    }
    if let Some(upload) = upload
        && let Err(err) = advance(store, &upload, report).await
    {
        // The message is kept; the retry finds it written and moves the record.
        error!(upload = %Escaped(&upload.id.0), error = %Chain(&err), "upload record not written");
        return Recorded::Ended(Some((message.id.0.clone(), err)));
    }
    Recorded::Ended(None)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! What happens when a file lands: every record of an S3 event becomes one transcode job, or is
//! skipped with a reason in the log, or (when its bytes are not audio) is refused with a `failed`
//! message to its owner. Each upload that gets this far has an upload record its owner can see:
//! `received` first, then `transcoding` once its job started, or `rejected`, or `superseded` when
//! its bytes were replaced by a newer upload (or deleted) before they could be read. Jobs are
//! submitted concurrently, up to a bound.

use aws_lambda_events::s3::S3EventRecord;
use chrono::Utc;
use futures::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use tracing::field::{Empty, display};
use tracing::{Instrument, error, info, info_span, warn};

use crate::choice::{Choice, LOUDNESS_KEY, OUTPUTS_KEY, Outputs};
use crate::completion::Completion;
use crate::config::{Location, StartConfig};
use crate::error::Chain;
use crate::ids::{Claim, JobId, MessageId, Owner, OwnerError};
use crate::job::{AUDIO_EXTENSIONS, TranscodeJob, is_audio};
use crate::key::{Escaped, KeyError, ObjectKey};
use crate::message::Message;
use crate::outcome::Outcome;
use crate::sniff::{AudioFormat, NotAudio};
use crate::source::{Examined, SourceError, SourceObject, SourceReader, UserMetadata, examine};
use crate::store::{ClaimOutcome, ClaimStore, MessageStore, StoreError, UploadStore};
use crate::transcoder::{Transcoder, TranscoderError};
use crate::upload::{GONE, UploadRecord, UploadState};

/// An S3 event with its records still raw, so that one malformed record cannot make the whole
/// event undeliverable: each record is parsed on its own.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawS3Event {
    #[serde(rename = "Records", default)]
    pub records: Vec<serde_json::Value>,
}

/// Why a record starts no job. None of these is worth a retry: the same record would be skipped
/// again.
#[derive(Debug, thiserror::Error)]
pub enum Skip {
    #[error("the record is not an S3 event record: {0}")]
    Malformed(String),
    #[error("the object key cannot be used: {0}")]
    BadKey(#[from] KeyError),
    #[error("the owner folder cannot be used: {0}")]
    BadOwner(#[from] OwnerError),
    #[error("'{0}' is not an object-created event")]
    NotCreated(String),
    #[error("the key is outside the input prefix '{0}'")]
    OutsideInput(String),
    #[error("the key is inside the output prefix '{0}', where the pipeline writes")]
    InsideOutput(String),
    #[error("not an audio file (accepted extensions: {})", AUDIO_EXTENSIONS.join(", "))]
    NotAudio,
    #[error("the object is empty")]
    Empty,
}

impl Skip {
    /// Skips that mean something upstream is wrong, rather than a file we simply do not handle.
    fn is_malformed(&self) -> bool {
        matches!(
            self,
            Self::Malformed(_) | Self::BadKey(_) | Self::BadOwner(_)
        )
    }
}

/// Turns one record into the job it asks for.
pub fn plan(record: &S3EventRecord, config: &StartConfig) -> Result<TranscodeJob, Skip> {
    let event_name = record.event_name.as_deref().unwrap_or_default();
    if !event_name.starts_with("ObjectCreated:") {
        return Err(Skip::NotCreated(event_name.to_owned()));
    }
    let bucket = record
        .s3
        .bucket
        .name
        .as_deref()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Skip::Malformed("no bucket name".into()))?;
    let raw_key = record
        .s3
        .object
        .key
        .as_deref()
        .ok_or_else(|| Skip::Malformed("no object key".into()))?;
    let key = ObjectKey::from_s3_event_key(raw_key)?;
    let (owner, path) = match config.prefixes.locate(&key) {
        Location::Output => return Err(Skip::InsideOutput(config.prefixes.output().into())),
        Location::Outside => return Err(Skip::OutsideInput(config.prefixes.input().into())),
        Location::Input { owner, path } => (owner, path),
    };
    if !is_audio(&key) {
        return Err(Skip::NotAudio);
    }
    if record.s3.object.size == Some(0) {
        return Err(Skip::Empty);
    }
    let owner = match owner {
        Some(owner) => Owner::new(owner)?,
        None => config.default_owner.clone(),
    };
    let path = path.to_owned();
    // S3 always sends a sequencer with ObjectCreated; hand-written events may only have an ETag.
    let object = &record.s3.object;
    let version = object
        .sequencer
        .as_deref()
        .or(object.e_tag.as_deref())
        .unwrap_or("unversioned");
    let mut job = TranscodeJob::plan(
        bucket,
        key,
        version,
        owner,
        &path,
        config.prefixes.output(),
        &config.outputs.formats().collect::<Vec<_>>(),
    )
    .at_bitrates(&config.outputs);
    job.etag = object.e_tag.clone().filter(|etag| !etag.is_empty());
    Ok(job)
}

/// The job `job` (planned with the deployment's defaults) becomes with the choice its upload's
/// metadata carries. Nothing chosen: the defaults. A value that is no choice, or one this
/// deployment's backend cannot honour (a header tampered with, or written by hand), gets the
/// defaults too, with a warning that names its key: never a job nobody asked for.
pub fn choose(job: &TranscodeJob, metadata: &UserMetadata, config: &StartConfig) -> TranscodeJob {
    let ignored = |key: &str, reason: &dyn std::fmt::Display| {
        warn!(key = %job.source.escaped(), metadata = key, %reason, "the upload's choice is ignored: it gets the defaults");
        job.clone()
    };
    let choice = match Choice::from_metadata(metadata) {
        Ok(choice) => choice,
        Err(bad) => return ignored(bad.key, &bad),
    };
    let outputs: &Outputs = choice.outputs.as_ref().unwrap_or(&config.outputs);
    if let Err(cannot) = config.backend.honours(outputs, None) {
        return ignored(OUTPUTS_KEY, &cannot);
    }
    if let Some(Err(cannot)) = choice.loudness.map(|l| config.backend.normalizes(l)) {
        return ignored(LOUDNESS_KEY, &cannot);
    }
    let Location::Input { path, .. } = config.prefixes.locate(&job.source) else {
        return job.clone();
    };
    let mut chosen = TranscodeJob::plan(
        &job.bucket,
        job.source.clone(),
        &job.version,
        job.owner.clone(),
        path,
        config.prefixes.output(),
        &outputs.formats().collect::<Vec<_>>(),
    )
    .at_bitrates(outputs);
    chosen.etag = job.etag.clone();
    chosen.loudness = choice.loudness;
    chosen
}

/// What one invocation did; returned to the caller as JSON.
#[derive(Debug, Default, Serialize)]
pub struct StartReport {
    pub started: Vec<Started>,
    /// Redeliveries of uploads whose job was already started.
    pub duplicates: Vec<Started>,
    pub skipped: Vec<Skipped>,
    /// Uploads whose bytes are not audio: no job, and a `failed` message to the owner.
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, Serialize)]
pub struct Started {
    pub record: usize,
    pub key: String,
    pub job_id: JobId,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub record: usize,
    /// The key as the event carried it, when there was one.
    pub key: Option<String>,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Rejected {
    pub record: usize,
    pub key: String,
    /// The owner's message that says why.
    pub message_id: MessageId,
    pub reason: String,
}

/// Why a job was not started. Each is worth a retry of the event.
#[derive(Debug, thiserror::Error)]
pub enum NotStarted {
    #[error(transparent)]
    Refused(#[from] TranscoderError),
    #[error("duplicate protection failed")]
    Claims(#[from] StoreError),
    #[error("another invocation is starting the job for this upload right now")]
    Held,
    #[error(transparent)]
    Unreadable(SourceError),
    #[error("the file is not audio, but its owner could not be told")]
    Untold(#[source] StoreError),
    #[error("the upload's record could not be written")]
    Unrecorded(#[source] StoreError),
}

/// Some jobs were not started. Every other record was handled first; the invocation fails so
/// that Lambda retries the event, and the claims make the retry start only what is missing.
#[derive(Debug, thiserror::Error)]
#[error("{} of {attempted} transcode jobs could not be started: {}", failed.len(), describe(failed))]
pub struct StartError {
    pub attempted: usize,
    pub failed: Vec<(usize, ObjectKey, NotStarted)>,
}

fn describe(failed: &[(usize, ObjectKey, NotStarted)]) -> String {
    failed
        .iter()
        .map(|(record, key, err)| format!("record {record} '{key}': {}", Chain(err)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What became of one planned job.
enum Attempt {
    /// Started, with the outputs it writes (`mp3:128,opus:96`).
    New(JobId, AudioFormat, String),
    /// A job was started, or the upload refused, by an earlier delivery (the id says which).
    Duplicate(JobId),
    Rejected(Message, NotAudio),
    /// Deleted or replaced before it was read: its record ends `superseded`, and the newer
    /// upload has its own event.
    Gone(SourceError),
}

/// A refused upload's message id, and what its claim records in place of a job id, so that a
/// redelivery finds it: the same upload always gets the same id, and its owner one message.
const REJECTED: &str = "rejected-";

/// Starts one job under its claim: a redelivered upload finds the claim taken and starts nothing;
/// a job the transcoder refused gives its claim back so that the retry can start it. The bytes
/// are read only under the claim, so a redelivery costs no read.
async fn start_once(
    job: &TranscodeJob,
    (etag, size): (Option<String>, Option<u64>),
    config: &StartConfig,
    source: &impl SourceReader,
    transcoder: &impl Transcoder,
    store: &(impl ClaimStore + MessageStore + UploadStore),
) -> Result<Attempt, NotStarted> {
    let claim = job.claim();
    let upload = job.upload_ref();
    // Seen, before anything is claimed or read: if this write fails, the retry starts over and
    // nothing is lost; a redelivery's write changes nothing.
    let seen = UploadRecord::new(&upload, UploadState::Received, Utc::now());
    store.advance(&seen).await.map_err(NotStarted::Unrecorded)?;
    match store.claim(&claim, Utc::now()).await? {
        ClaimOutcome::Claimed => {}
        ClaimOutcome::AlreadyStarted { job_id } => return Ok(Attempt::Duplicate(JobId(job_id))),
        ClaimOutcome::Held => return Err(NotStarted::Held),
    }
    let object = SourceObject {
        bucket: job.bucket.clone(),
        key: job.source.clone(),
        etag,
        size,
    };
    let (format, metadata) = match examine(source, &object).await {
        Ok(Examined {
            format: Ok(format),
            metadata,
        }) => (format, metadata),
        Ok(Examined {
            format: Err(reason),
            ..
        }) => return reject(job, &claim, reason, store).await,
        Err(gone @ SourceError::Gone { .. }) => {
            release(store, &claim).await;
            // Its owner sees it end; if this write fails, the retry reads, and ends it, again.
            let superseded = UploadRecord::superseded(&upload, GONE, Utc::now());
            store
                .advance(&superseded)
                .await
                .map_err(NotStarted::Unrecorded)?;
            return Ok(Attempt::Gone(gone));
        }
        Err(unavailable) => {
            release(store, &claim).await;
            return Err(NotStarted::Unreadable(unavailable));
        }
    };
    let job = &choose(job, &metadata, config);
    match transcoder.start_job(job).await {
        Ok(job_id) => {
            if let Err(err) = store.record_job(&claim, &job_id.0).await {
                // The job runs; only a redelivery after the claim's lease could start it again.
                error!(%job_id, error = %Chain(&err), "job started but not recorded in its claim");
            }
            let started = UploadRecord::progress(&upload, None, Utc::now());
            if let Err(err) = store.advance(&started).await {
                // The job runs, and its progress and end move the record on from `received`.
                warn!(%job_id, error = %Chain(&err), "job started but its upload record not moved");
            }
            let outputs = job
                .outputs
                .iter()
                .map(|o| match o.bitrate_kbps {
                    Some(kbps) => format!("{}:{kbps}", o.format),
                    None => o.format.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",");
            Ok(Attempt::New(job_id, format, outputs))
        }
        Err(refused) => {
            release(store, &claim).await;
            Err(refused.into())
        }
    }
}

/// Tells the owner their file is not audio, and closes the claim so that no delivery of this
/// upload looks at it again. If the message cannot be written, the claim is given back and the
/// event retried: a refusal nobody hears of is a lost upload.
async fn reject(
    job: &TranscodeJob,
    claim: &Claim,
    reason: NotAudio,
    store: &(impl ClaimStore + MessageStore + UploadStore),
) -> Result<Attempt, NotStarted> {
    let upload = job.upload_ref();
    let completion = Completion {
        analysis: None,
        upload: Some(upload.id.clone()),
        job_id: format!("{REJECTED}{}", claim.token()),
        owner: job.owner.clone(),
        source: job.source.clone(),
        outcome: Outcome::Failed,
        outputs: Vec::new(),
        detail: Some(reason.to_string()),
        rejected: true,
    };
    let message = completion.message(Utc::now());
    let rejected = UploadRecord::rejected(&upload, reason.to_string(), message.created_at);
    if let Err(err) = store.insert(&message).await {
        release(store, claim).await;
        return Err(NotStarted::Untold(err));
    }
    if let Err(err) = store.advance(&rejected).await {
        // The retry reads the bytes again, finds the message written and writes the record.
        release(store, claim).await;
        return Err(NotStarted::Untold(err));
    }
    if let Err(err) = store.record_job(claim, &message.id.0).await {
        // The owner was told; a redelivery after the lease writes the same message id, once.
        warn!(error = %Chain(&err), "refusal not recorded in its claim");
    }
    Ok(Attempt::Rejected(message, reason))
}

/// What an abandoned upload's message id and claim start with (see [`abandon`]).
const ABANDONED: &str = "abandoned-";

/// Ends the upload of `job`, whose event reached the intake queue's dead-letter queue: it could
/// not be started in all the receives its queue allows. Under its claim, so that a late delivery
/// starts no job after the owner was told; nothing is done if a job was started meanwhile.
pub(crate) async fn abandon(
    job: &TranscodeJob,
    reason: &str,
    store: &(impl ClaimStore + MessageStore + UploadStore),
) -> Result<(), NotStarted> {
    let claim = job.claim();
    match store.claim(&claim, Utc::now()).await? {
        ClaimOutcome::Claimed => {}
        ClaimOutcome::AlreadyStarted { job_id } => {
            info!(%job_id, "dead-lettered upload already started: nothing to tell");
            return Ok(());
        }
        ClaimOutcome::Held => return Err(NotStarted::Held),
    }
    let upload = job.upload_ref();
    let completion = Completion {
        analysis: None,
        upload: Some(upload.id.clone()),
        job_id: format!("{ABANDONED}{}", claim.token()),
        owner: job.owner.clone(),
        source: job.source.clone(),
        outcome: Outcome::Failed,
        outputs: Vec::new(),
        detail: Some(reason.to_owned()),
        rejected: false,
    };
    let message = completion.message(Utc::now());
    let ended = completion.upload_record(&upload, message.created_at);
    if let Err(err) = store.insert(&message).await {
        release(store, &claim).await;
        return Err(NotStarted::Untold(err));
    }
    if let Err(err) = store.advance(&ended).await {
        release(store, &claim).await;
        return Err(NotStarted::Untold(err));
    }
    if let Err(err) = store.record_job(&claim, &message.id.0).await {
        warn!(error = %Chain(&err), "abandonment not recorded in its claim");
    }
    Ok(())
}

/// Gives back a claim whose upload started nothing, so that a retry can take it.
async fn release(store: &impl ClaimStore, claim: &Claim) {
    if let Err(err) = store.release(claim).await {
        warn!(error = %Chain(&err), "claim not released; the retry waits for its lease");
    }
}

/// Handles one S3 event: every record, not just the first. `source` reads the uploads' first
/// bytes; `store` holds the claims and the messages of refused uploads.
pub async fn start_transcode(
    event: RawS3Event,
    config: &StartConfig,
    source: &impl SourceReader,
    transcoder: &impl Transcoder,
    store: &(impl ClaimStore + MessageStore + UploadStore),
) -> Result<StartReport, StartError> {
    let mut report = StartReport::default();
    let mut jobs = Vec::new();
    for (index, raw) in event.records.into_iter().enumerate() {
        let raw_key = raw
            .pointer("/s3/object/key")
            .and_then(|k| k.as_str())
            .map(str::to_owned);
        // Every line about this record, here and in the job's start, carries these two: the
        // key as the job names it, or as the event spelled it if it names no job.
        let span = info_span!("record", record = index, key = Empty);
        let planned = serde_json::from_value::<S3EventRecord>(raw)
            .map_err(|e| Skip::Malformed(e.to_string()))
            .and_then(|record| {
                let object = &record.s3.object;
                let size = object.size.and_then(|s| u64::try_from(s).ok());
                Ok((plan(&record, config)?, (object.e_tag.clone(), size)))
            });
        match planned {
            Ok((job, version)) => {
                span.record("key", display(job.source.escaped()));
                jobs.push((index, job, version, span));
            }
            Err(skip) => {
                span.record(
                    "key",
                    display(Escaped(raw_key.as_deref().unwrap_or("<none>"))),
                );
                let _in = span.enter();
                if skip.is_malformed() {
                    warn!(reason = %skip, "record skipped");
                } else {
                    info!(reason = %skip, "record skipped");
                }
                report.skipped.push(Skipped {
                    record: index,
                    key: raw_key,
                    reason: skip.to_string(),
                });
            }
        }
    }

    let attempted = jobs.len();
    let results: Vec<_> = stream::iter(jobs)
        .map(|(index, job, version, span)| async move {
            let result = start_once(&job, version, config, source, transcoder, store)
                .instrument(span.clone())
                .await;
            (index, job, result, span)
        })
        .buffered(config.max_concurrent_jobs)
        .collect()
        .await;

    let mut failed = Vec::new();
    for (index, job, result, span) in results {
        let _in = span.enter();
        match result {
            Ok(Attempt::New(job_id, format, outputs)) => {
                info!(owner = %Escaped(job.owner.as_str()), %format, %outputs, %job_id, "job started");
                report.started.push(Started {
                    record: index,
                    key: job.source.to_string(),
                    job_id,
                });
            }
            Ok(Attempt::Duplicate(job_id)) => {
                let done = if job_id.0.starts_with(REJECTED) {
                    "upload already refused"
                } else {
                    "job already started"
                };
                info!(%job_id, "duplicate delivery: {done}");
                report.duplicates.push(Started {
                    record: index,
                    key: job.source.to_string(),
                    job_id,
                });
            }
            Ok(Attempt::Rejected(message, reason)) => {
                info!(owner = %job.owner, message_id = %message.id, %reason, "upload refused: owner told");
                report.rejected.push(Rejected {
                    record: index,
                    key: job.source.to_string(),
                    message_id: message.id,
                    reason: reason.to_string(),
                });
            }
            Ok(Attempt::Gone(gone)) => {
                info!(reason = %Chain(&gone), "record skipped");
                report.skipped.push(Skipped {
                    record: index,
                    key: Some(job.source.to_string()),
                    reason: Chain(&gone).to_string(),
                });
            }
            Err(err) => {
                error!(error = %Chain(&err), "job not started");
                failed.push((index, job.source, err));
            }
        }
    }
    if failed.is_empty() {
        Ok(report)
    } else {
        Err(StartError { attempted, failed })
    }
}

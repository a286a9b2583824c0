//! One job of the jobs queue, from its message to its end on the completion topic: the source
//! is read to local storage pinned to the ETag its event named, identified by its bytes, probed
//! and transcoded by one ffmpeg run (the same `transcoder_ffmpeg` code as the local runner), and
//! its outputs are written under the output prefix with the names every backend uses.
//!
//! What may be retried is retried: a message whose job hit an error that is not the file's fault
//! (S3 or SNS unavailable, storage full) is reported as a batch-item failure and comes back after
//! the queue's visibility timeout. On its last receive such an error ends the job `failed`, so
//! only a crash (out of memory, the function's own time limit) takes a message to the dead-letter
//! queue, and a message delivered from there ends its job `failed` too: no upload stays
//! `transcoding`. A job's end depends only on the job and the source's bytes, so a message
//! delivered twice, or run by two workers at once, writes the same outputs and announces the same
//! end, which `record-completion` records once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::error::display::DisplayErrorContext;
use serde::Deserialize;
use serde_json::Value;
use tracing::field::{Empty, display};
use tracing::{Instrument, Span, error, info, info_span, warn};
use transcoder_aws::S3Source;
use transcoder_core::{Chain, Escaped, JobId, JobMessage, SourceError, SourceObject, TranscodeJob};
use transcoder_ffmpeg::{Done, Failure, Limits, Output};

use crate::config::WorkerConfig;

/// The `pipelineId` of this worker's final notifications, and the `source` of its progress.
pub const PIPELINE: &str = "lambda-ffmpeg";
pub const PROGRESS_SOURCE: &str = "lambda.ffmpeg";

/// What is kept of the invocation's time (at most a quarter of it) for writing the outputs and
/// announcing the end once ffmpeg has finished: a run that would take longer is stopped, and the
/// job fails saying why.
const WRAP_UP: Duration = Duration::from_secs(60);

/// What the reason for a file that is too long adds: where a longer one can go.
const LONGER_FILES: &str = "; a deployment with the MediaConvert backend takes longer files";

/// An SQS event with its records still raw, so that one malformed record cannot hide the others.
#[derive(Debug, Default, Deserialize)]
pub struct RawSqsEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<Value>,
}

/// The worker's clients and configuration, built once per cold start.
pub struct Worker {
    config: WorkerConfig,
    source: S3Source,
    s3: aws_sdk_s3::Client,
    sns: aws_sdk_sns::Client,
    /// Where jobs keep their source and outputs while they run (`/tmp/jobs` on Lambda).
    scratch: PathBuf,
}

/// How a job ended, as its owner hears of it.
#[derive(Debug)]
enum Ended {
    Completed(Done),
    Failed(String),
    /// Refused from its bytes (not audio, too long, too big) before anything was encoded: the
    /// upload ends `rejected`, as the starter's refusals do, with a `failed` message.
    Rejected(String),
    /// A newer upload replaced the source, or it was deleted: nothing was written.
    Superseded,
}

/// Why a job could not end now: not the file's fault, so its message is received again.
#[derive(Debug)]
struct Retry(String);

impl Worker {
    pub fn new(config: WorkerConfig, sdk: &aws_config::SdkConfig, scratch: PathBuf) -> Self {
        Self {
            config,
            source: S3Source::from_sdk(sdk),
            s3: aws_sdk_s3::Client::new(sdk),
            sns: aws_sdk_sns::Client::new(sdk),
            scratch,
        }
    }

    /// Runs every job of `event`, one after another (the event-source mapping's batch size is
    /// 1), and names those whose message is to be received again. `deadline` is when Lambda
    /// stops the invocation.
    pub async fn handle(&self, event: RawSqsEvent, deadline: Option<Instant>) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for (index, raw) in event.records.into_iter().enumerate() {
            let message: SqsMessage = match serde_json::from_value(raw) {
                Ok(message) => message,
                Err(e) => {
                    error!(record = index, error = %e, "not an SQS message: acknowledged");
                    continue;
                }
            };
            let message_id = message.message_id.clone().unwrap_or_default();
            // Every line about this message carries these, the job's once it is read.
            let span = info_span!("record", record = index, sqs_message_id = %Escaped(&message_id), job_id = Empty, key = Empty);
            let ran = self.run(&message, deadline).instrument(span.clone()).await;
            if let Err(Retry(reason)) = ran {
                let _in = span.enter();
                warn!(reason = %Escaped(&reason), "job not ended: its message comes back");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    async fn run(&self, message: &SqsMessage, deadline: Option<Instant>) -> Result<(), Retry> {
        let body = message.body.as_deref().unwrap_or_default();
        let JobMessage { job_id, job } = match self.parse(body) {
            Ok(job) => job,
            Err(reason) => {
                // Only the starter may send to the queue: this is a bug or a forgery, for an
                // operator to read; a retry would refuse it the same way.
                error!(reason = %Escaped(&reason), "poison job message: acknowledged");
                return Ok(());
            }
        };
        Span::current()
            .record("job_id", display(Escaped(&job_id)))
            .record("key", display(job.source.escaped()));
        let receives: u32 = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let dead = self.config.dead_letter_queue_arn.is_some()
            && message.event_source_arn == self.config.dead_letter_queue_arn;
        let ended = if dead {
            error!(
                receives,
                "job reached the dead-letter queue: its owner is told it failed"
            );
            Ended::Failed(format!(
                "transcoding stopped before it finished, {} times (the function ran out of time or memory): try a shorter file, or a deployment with the MediaConvert backend",
                self.config.max_receives
            ))
        } else {
            match self.transcode(&job_id, &job, deadline).await {
                Ok(ended) => ended,
                Err(Retry(reason)) if receives >= self.config.max_receives => {
                    Ended::Failed(format!("{reason} (tried {receives} times)"))
                }
                Err(retry) => return Err(retry),
            }
        };
        let notification = match ended {
            Ended::Completed(done) => {
                transcoder_ffmpeg::final_notification(PIPELINE, &job_id, &job, &Ok(done))
            }
            Ended::Failed(reason) => {
                transcoder_ffmpeg::final_notification(PIPELINE, &job_id, &job, &Err(reason))
            }
            Ended::Rejected(reason) => own_end("REJECTED", &job_id, &job, reason),
            Ended::Superseded => own_end("SUPERSEDED", &job_id, &job, SUPERSEDED.into()),
        };
        self.publish(&notification).await?;
        info!(state = %notification["state"], "job ended and announced");
        Ok(())
    }

    /// The job a message carries, if it is one this worker may run: its id is a plain word and
    /// its files are where the configuration allows, whatever IAM would permit.
    fn parse(&self, body: &str) -> Result<JobMessage, String> {
        let message: JobMessage =
            serde_json::from_str(body).map_err(|e| format!("not a job message: {e}"))?;
        let id_ok = (1..=128).contains(&message.job_id.len())
            && message
                .job_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !id_ok {
            return Err(format!("unusable job id '{}'", Escaped(&message.job_id)));
        }
        let job = &message.job;
        let input = format!("{}{}/", self.config.prefixes.input(), job.owner);
        let output = format!("{}{}/", self.config.prefixes.output(), job.owner);
        if !job.source.as_str().starts_with(&input) {
            return Err(format!(
                "source {} is outside {input}",
                job.source.escaped()
            ));
        }
        if job.outputs.is_empty() {
            return Err("the job has no outputs".into());
        }
        let files = job.outputs.iter().map(|o| &o.key).chain(&job.peaks);
        if let Some(stray) = files
            .into_iter()
            .find(|k| !k.as_str().starts_with(&output) || k.as_str().split('/').any(|s| s == ".."))
        {
            return Err(format!("output {} is outside {output}", stray.escaped()));
        }
        Ok(message)
    }

    fn limits(&self) -> Limits {
        Limits::new(self.config.max_duration)
    }

    /// Reads, checks and transcodes the source, and writes the outputs.
    async fn transcode(
        &self,
        job_id: &str,
        job: &TranscodeJob,
        deadline: Option<Instant>,
    ) -> Result<Ended, Retry> {
        // One invocation at a time per sandbox: whatever is here was left by one that was
        // stopped, and would only fill the storage.
        let _ = tokio::fs::remove_dir_all(&self.scratch).await;
        let dir = Scratch::create(self.scratch.join(job_id)).await?;
        let upload = SourceObject {
            bucket: job.bucket.clone(),
            key: job.source.clone(),
            etag: job.etag.clone(),
            size: None,
        };
        let input = dir.0.join("source");
        let size = match self.source.download(&upload, &input).await {
            Ok(size) => size,
            Err(SourceError::Gone { .. }) => return Ok(Ended::Superseded),
            Err(err @ SourceError::Unavailable { .. }) => {
                return Err(Retry(format!(
                    "the file could not be read: {}",
                    Chain(&err)
                )));
            }
        };
        let upload = SourceObject {
            size: Some(size),
            ..upload
        };
        let limits = self.limits();
        let inspected = match transcoder_ffmpeg::inspect(&input, &upload, &limits).await {
            Ok(inspected) => inspected,
            Err(failure) => return ended_by(failure, Stage::Inspect),
        };
        // Known before anything is encoded, from the probed duration: a job that cannot fit in
        // the function's storage fails now, for this deployment, instead of filling it three times.
        let needed = limits.job_bytes(&job.outputs, inspected.duration);
        let free = transcoder_ffmpeg::free_bytes(&dir.0);
        if let Some(reason) = no_room(needed, free, inspected.duration) {
            return Ok(Ended::Rejected(reason));
        }
        let outputs: Vec<Output> = job
            .outputs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                Output::of(
                    o,
                    dir.0.join(format!("output-{i}.{}", o.format.extension())),
                )
            })
            .collect();

        let (progress, percents) = tokio::sync::mpsc::unbounded_channel();
        let announcer = self.announce_progress(job_id, job, percents);
        let allowed = deadline.map_or(Duration::MAX, |d| {
            let left = d.saturating_duration_since(Instant::now());
            left - WRAP_UP.min(left / 4)
        });
        let encode = transcoder_ffmpeg::measure_and_encode(
            job_id,
            job,
            &input,
            &inspected,
            &outputs,
            &limits,
            Some(progress),
        );
        let started = Instant::now();
        let (encoded, ()) = tokio::join!(tokio::time::timeout(allowed, encode), announcer);
        // What an operator sizes the function by (and `make bench SECTION=lambda` reads).
        info!(
            audio_seconds = inspected.duration,
            encode_ms = started.elapsed().as_millis() as u64,
            "ffmpeg finished"
        );
        let encoded = match encoded {
            Ok(Ok(encoded)) => encoded,
            Ok(Err(failure)) => return ended_by(failure, Stage::Encode),
            Err(_) => {
                return Ok(Ended::Failed(format!(
                    "transcoding {} of audio did not finish within the function's time limit: try a shorter file, or a deployment with the MediaConvert backend",
                    transcoder_ffmpeg::span(inspected.duration)
                )));
            }
        };
        let probed =
            transcoder_ffmpeg::probe_outputs(&outputs, limits.time_for(inspected.duration)).await;
        // A newer upload has its own job: these outputs would overwrite its outputs with the
        // older audio if that job finished first.
        match self.source.still_current(&upload).await {
            Ok(()) => {}
            Err(SourceError::Gone { .. }) => return Ok(Ended::Superseded),
            Err(err @ SourceError::Unavailable { .. }) => {
                return Err(Retry(format!(
                    "the file could not be checked: {}",
                    Chain(&err)
                )));
            }
        }
        for (output, file) in job.outputs.iter().zip(&outputs) {
            let content_type = output.format.content_type();
            self.put(&job.bucket, output.key.as_str(), content_type, &file.path)
                .await?;
        }
        let mut analysis = encoded.analysis;
        if let Some(key) = &job.peaks {
            let path = dir.0.join("peaks.json");
            tokio::fs::write(&path, encoded.peaks.to_json())
                .await
                .map_err(|e| Retry(format!("the peaks cannot be written: {e}")))?;
            self.put(&job.bucket, key.as_str(), "application/json", &path)
                .await?;
            analysis.peaks = Some(key.clone());
        }
        Ok(Ended::Completed(Done {
            warning: encoded.warning,
            outputs: probed,
            analysis: Some(analysis),
        }))
    }

    /// Publishes each progress percentage as it comes, until the run drops its sender. A lost
    /// one is logged: the next one, or the end, moves the upload on.
    async fn announce_progress(
        &self,
        job_id: &str,
        job: &TranscodeJob,
        mut percents: tokio::sync::mpsc::UnboundedReceiver<u8>,
    ) {
        let id = JobId(job_id.to_owned());
        while let Some(percent) = percents.recv().await {
            let notification =
                transcoder_ffmpeg::progress_notification(PROGRESS_SOURCE, &id, job, percent);
            if let Err(Retry(reason)) = self.publish(&notification).await {
                warn!(percent, reason = %Escaped(&reason), "progress not announced");
            }
        }
    }

    async fn publish(&self, notification: &Value) -> Result<(), Retry> {
        self.sns
            .publish()
            .topic_arn(&self.config.topic_arn)
            .message(notification.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Retry(format!("SNS refused Publish: {}", DisplayErrorContext(e))))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        path: &Path,
    ) -> Result<(), Retry> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| Retry(format!("output {} cannot be read back: {e}", Escaped(key))))?;
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                Retry(format!(
                    "S3 refused PutObject of {}: {}",
                    Escaped(key),
                    DisplayErrorContext(e)
                ))
            })
    }
}

/// Where in a job a run failed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    /// Identifying and probing the source: nothing encoded yet.
    Inspect,
    Encode,
}

/// The end a run's failure comes to: the file's fault ends the job (`rejected` before
/// encoding, a too-long file told where a longer one can go; `failed` after); a full storage is
/// retried.
fn ended_by(failure: Failure, stage: Stage) -> Result<Ended, Retry> {
    match (failure, stage) {
        (Failure::Reason(reason), Stage::Inspect) if reason.starts_with("the file is too long") => {
            Ok(Ended::Rejected(format!("{reason}{LONGER_FILES}")))
        }
        (Failure::Reason(reason), Stage::Inspect) => Ok(Ended::Rejected(reason)),
        (Failure::Reason(reason), Stage::Encode) => Ok(Ended::Failed(reason)),
        (Failure::NoSpace(complaint), _) => Err(Retry(format!(
            "the function's temporary storage is full ({complaint}): raise WorkerEphemeralStorageMB"
        ))),
    }
}

/// Why outputs of `needed` bytes (of `seconds` of audio) cannot be written where `free` bytes are
/// left, if they cannot; nothing if the disk cannot be asked (then only a write can say).
fn no_room(needed: u64, free: Option<u64>, seconds: f64) -> Option<String> {
    let free = free.filter(|&free| needed > free)?;
    Some(format!(
        "the outputs of its {} of audio would be {}, more than the {} free in the function's temporary storage: a deployment with a larger WorkerEphemeralStorageMB, or the MediaConvert backend, takes it",
        transcoder_ffmpeg::span(seconds),
        transcoder_ffmpeg::bytes(needed),
        transcoder_ffmpeg::bytes(free)
    ))
}

/// Why a job whose source was replaced or deleted wrote nothing.
const SUPERSEDED: &str =
    "the file was replaced by a newer upload, or deleted, before its outputs were written";

/// The end of a job that wrote nothing, for `reason`, in Elastic Transcoder's shape with one of
/// our own states: `SUPERSEDED` (the upload ends `superseded`, no message) or `REJECTED` (it
/// ends `rejected`, and its owner is told why).
fn own_end(state: &str, job_id: &str, job: &TranscodeJob, reason: String) -> Value {
    let mut notification =
        transcoder_ffmpeg::final_notification(PIPELINE, job_id, job, &Err(reason));
    notification["state"] = state.into();
    notification["outputs"] = Value::Array(Vec::new());
    notification
}

/// A job's own folder, removed with everything in it however the job ends.
struct Scratch(PathBuf);

impl Scratch {
    async fn create(path: PathBuf) -> Result<Self, Retry> {
        tokio::fs::create_dir_all(&path).await.map_err(|e| {
            Retry(format!(
                "the function's temporary storage cannot be used ({e})"
            ))
        })?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transcoder_core::{Env, ObjectKey, OutputFormat, Owner};

    fn worker(env: &impl Env) -> Worker {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        Worker::new(
            WorkerConfig::from_env(env).unwrap(),
            &sdk,
            "/tmp/jobs".into(),
        )
    }

    const TOPIC: (&str, &str) = (
        "TOPIC_ARN",
        "arn:aws:sns:eu-west-1:123456789012:completions",
    );

    fn job(owner: &str, source: &str) -> TranscodeJob {
        TranscodeJob::plan(
            "bucket",
            ObjectKey::new(source).unwrap(),
            "0062E99A88DC407460",
            Owner::new(owner).unwrap(),
            source.rsplit('/').next().unwrap(),
            "transcoded/",
            &OutputFormat::DEFAULT,
        )
    }

    fn body(job_id: &str, job: &TranscodeJob) -> String {
        serde_json::to_string(&JobMessage {
            job_id: job_id.into(),
            job: job.clone(),
        })
        .unwrap()
    }

    #[test]
    fn a_job_is_run_only_with_its_files_where_the_configuration_allows() {
        let worker = worker(&[TOPIC]);
        let good = job("alice", "media/alice/song.mp3");
        assert!(worker.parse(&body("audio-1", &good)).is_ok());

        let elsewhere = job("alice", "media/bob/song.mp3");
        let mut stray = good.clone();
        stray.outputs[1].key = ObjectKey::new("transcoded/bob/song.mp3.flac").unwrap();
        let mut climbing = good.clone();
        climbing.outputs[0].key = ObjectKey::new("transcoded/alice/../bob/x.wav").unwrap();
        let mut none = good.clone();
        none.outputs.clear();
        for (body, reason) in [
            (body("audio-1", &elsewhere), "outside media/alice/"),
            (body("audio-1", &stray), "outside transcoded/alice/"),
            (body("audio-1", &climbing), "outside transcoded/alice/"),
            (body("audio-1", &none), "no outputs"),
            (body("../../x", &good), "unusable job id"),
            (body("", &good), "unusable job id"),
            ("{\"job_id\": 1}".into(), "not a job message"),
            ("not json".into(), "not a job message"),
        ] {
            let err = worker.parse(&body).unwrap_err();
            assert!(err.contains(reason), "{body}: {err}");
        }
    }

    #[test]
    fn a_superseded_end_is_our_own_state_and_names_no_output() {
        let job = job("alice", "media/alice/song.mp3");
        let notification = own_end("SUPERSEDED", "audio-1", &job, SUPERSEDED.into());
        match transcoder_core::Notification::parse(&notification.to_string()) {
            Ok(transcoder_core::Notification::Superseded(p)) => {
                assert_eq!(p.job_id, "audio-1");
                assert_eq!(p.upload, Some(job.upload_ref()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_rejected_end_is_our_own_state_and_a_failure_with_its_reason() {
        let job = job("alice", "media/alice/song.mp3");
        let notification = own_end("REJECTED", "audio-1", &job, "not an audio file".into());
        match transcoder_core::Notification::parse(&notification.to_string()) {
            Ok(transcoder_core::Notification::Final(c)) => {
                assert!(c.rejected);
                assert_eq!(c.outcome, transcoder_core::Outcome::Failed);
                assert_eq!(c.detail.as_deref(), Some("not an audio file"));
                assert!(c.outputs.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_job_too_big_for_the_storage_fails_saying_what_would_take_it() {
        let reason = no_room(1_400_000_000, Some(500 << 20), 3600.0).unwrap();
        assert_eq!(
            reason,
            "the outputs of its 1 h 0 min of audio would be 1.3 GiB, more than the 500 MiB free in the function's temporary storage: a deployment with a larger WorkerEphemeralStorageMB, or the MediaConvert backend, takes it"
        );
        assert_eq!(no_room(100, Some(100), 1.0), None);
        assert_eq!(no_room(u64::MAX, None, 1.0), None);
    }

    #[test]
    fn only_a_full_storage_is_retried_and_only_a_refusal_before_encoding_is_a_rejection() {
        for stage in [Stage::Inspect, Stage::Encode] {
            assert!(matches!(
                ended_by(Failure::NoSpace("No space left on device".into()), stage),
                Err(Retry(r)) if r.contains("WorkerEphemeralStorageMB")
            ));
        }
        assert!(matches!(
            ended_by(Failure::Reason("the file is too long: 3 h".into()), Stage::Inspect),
            Ok(Ended::Rejected(r)) if r == format!("the file is too long: 3 h{LONGER_FILES}")
        ));
        assert!(matches!(
            ended_by(Failure::Reason("not an audio file".into()), Stage::Inspect),
            Ok(Ended::Rejected(r)) if r == "not an audio file"
        ));
        assert!(matches!(
            ended_by(Failure::Reason("ffmpeg failed".into()), Stage::Encode),
            Ok(Ended::Failed(r)) if r == "ffmpeg failed"
        ));
    }
}

//! `start-transcode`'s event in every shape it is given: a batch of the intake queue, whose
//! message bodies are S3 notifications (each with one or more records, or S3's `s3:TestEvent`),
//! or a plain S3 event (S3 invoking the function, `sam local invoke`, `cargo lambda invoke`).
//!
//! A queue batch never fails as a whole: the messages whose jobs could not be started now
//! (throttled, a store or the source unavailable) are its `batchItemFailures`, and come back after
//! the visibility timeout with their claims given back; the rest are acknowledged, their jobs
//! started once. A message that is not an S3 notification is poison: logged, and acknowledged.

use aws_lambda_events::s3::S3EventRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{Instrument, info, info_span, warn};

use crate::config::StartConfig;
use crate::error::Chain;
use crate::key::Escaped;
use crate::source::SourceReader;
use crate::start::{RawS3Event, StartError, StartReport, abandon, plan, start_transcode};
use crate::store::{ClaimStore, MessageStore, UploadStore};
use crate::transcoder::Transcoder;

/// The event, its records still raw: which shape it is, is decided from them.
#[derive(Debug, Default, Deserialize)]
pub struct StartEvent {
    #[serde(rename = "Records", default)]
    records: Vec<Value>,
    /// S3's `s3:TestEvent`, when it is given as the whole event.
    #[serde(rename = "Event", default)]
    event: Option<String>,
}

/// What the function answers an intake batch with: the shape Lambda reads with
/// `ReportBatchItemFailures`, and nothing else.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct BatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// What became of an event.
#[derive(Debug)]
pub enum Handled {
    /// A batch of the intake queue: its answer to Lambda.
    Batch(BatchResponse),
    /// A plain S3 event, as before the queue: its report, or the error that has Lambda retry it.
    Direct(Result<StartReport, StartError>),
}

impl StartEvent {
    /// Whether this is a batch of an SQS queue: its records are SQS messages.
    fn is_batch(&self) -> bool {
        self.records
            .first()
            .and_then(|r| r.get("eventSource"))
            .is_some_and(|source| source == "aws:sqs")
    }
}

/// Handles `event` in whichever shape it came.
pub async fn start_from_event(
    event: StartEvent,
    config: &StartConfig,
    source: &impl SourceReader,
    transcoder: &impl Transcoder,
    store: &(impl ClaimStore + MessageStore + UploadStore),
) -> Handled {
    if event.is_batch() {
        return Handled::Batch(start_batch(event.records, config, source, transcoder, store).await);
    }
    if let Some(test) = event.event.as_deref() {
        info!(event = %Escaped(test), "S3's test of the notification: nothing to start");
    }
    let records = RawS3Event {
        records: event.records,
    };
    Handled::Direct(start_transcode(records, config, source, transcoder, store).await)
}

/// What the owner of an upload whose event reached the dead-letter queue is told.
pub const ABANDONED_REASON: &str = "it could not be started: the transcoder was too busy or unavailable every time it was tried, for about an hour; upload it again";

/// What one queue message carries.
enum Body {
    /// S3 notification records, to start jobs for.
    Records(Vec<Value>),
    /// Nothing to do: S3's test event.
    Test,
}

/// The records of one queue message's body, or why it has none to start.
fn body_of(message: &Value) -> Result<Body, String> {
    let body = message
        .get("body")
        .and_then(Value::as_str)
        .ok_or("the message has no body")?;
    let body: Value =
        serde_json::from_str(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    if body.get("Event").is_some_and(|e| e == "s3:TestEvent") {
        return Ok(Body::Test);
    }
    match body.get("Records").and_then(Value::as_array) {
        Some(records) if !records.is_empty() => Ok(Body::Records(records.clone())),
        _ => Err("the body is not an S3 notification (it has no Records)".into()),
    }
}

/// Starts the jobs of every message of an intake batch, all at once (at most
/// `MAX_CONCURRENT_JOBS`), and names the messages to be received again.
async fn start_batch(
    messages: Vec<Value>,
    config: &StartConfig,
    source: &impl SourceReader,
    transcoder: &impl Transcoder,
    store: &(impl ClaimStore + MessageStore + UploadStore),
) -> BatchResponse {
    // Every record of every message, and which message each came from; those of the
    // dead-letter queue apart, to be told instead of started.
    let mut records = Vec::new();
    let mut owners: Vec<(String, u32)> = Vec::new();
    let mut abandoned: Vec<(String, Value)> = Vec::new();
    let dead_letters = config.dead_letter_queue_arn.as_deref();
    for (index, message) in messages.iter().enumerate() {
        let id = message.get("messageId").and_then(Value::as_str);
        match (id, body_of(message)) {
            (None, _) => {
                warn!(
                    message = index,
                    "an intake message with no messageId: acknowledged"
                );
            }
            (Some(id), Ok(Body::Test)) => {
                info!(message = index, sqs_message_id = %Escaped(id), "S3's test of the notification: acknowledged");
            }
            (Some(id), Ok(Body::Records(body))) => {
                let source = message.get("eventSourceARN").and_then(Value::as_str);
                let receives = receive_count(message);
                for record in body {
                    if dead_letters.is_some() && source == dead_letters {
                        abandoned.push((id.to_owned(), record));
                    } else {
                        records.push(record);
                        owners.push((id.to_owned(), receives));
                    }
                }
            }
            (Some(id), Err(reason)) => {
                warn!(message = index, sqs_message_id = %Escaped(id), reason = %Escaped(&reason), "poison intake message: acknowledged");
            }
        }
    }
    let raw = records.clone();
    let failed =
        match start_transcode(RawS3Event { records }, config, source, transcoder, store).await {
            Ok(_) => Vec::new(),
            Err(StartError { failed, .. }) => failed,
        };
    let mut failed_ids: Vec<&String> = Vec::new();
    for (record, _, err) in &failed {
        let (Some((id, receives)), Some(raw)) = (owners.get(*record), raw.get(*record)) else {
            continue;
        };
        // Its message goes to the dead-letter queue after this receive, for the operator to
        // see; its owner is told now, with the error that kept it from starting.
        if config
            .intake_max_receives
            .is_some_and(|last| *receives >= last)
        {
            let reason = format!(
                "it could not be started in {receives} tries over about an hour; the last error: {}; upload it again",
                Chain(err)
            );
            tell_abandoned(id, raw, &reason, config, store).await;
        }
        failed_ids.push(id);
    }
    for (id, record) in &abandoned {
        if !tell_abandoned(id, record, ABANDONED_REASON, config, store).await {
            failed_ids.push(id);
        }
    }
    let mut response = BatchResponse::default();
    for id in failed_ids {
        if !response
            .batch_item_failures
            .iter()
            .any(|f| &f.item_identifier == id)
        {
            response.batch_item_failures.push(ItemFailure {
                item_identifier: id.clone(),
            });
        }
    }
    response
}

/// How many times SQS has delivered `message` (`attributes.ApproximateReceiveCount`), 1 if it
/// does not say.
fn receive_count(message: &Value) -> u32 {
    message
        .pointer("/attributes/ApproximateReceiveCount")
        .and_then(Value::as_str)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Ends the upload of `record`, which could not be started, `failed` for `reason`, and tells its
/// owner. Whether it is done with: `false` if the owner could not be told yet, so that the
/// message comes back.
async fn tell_abandoned(
    id: &str,
    record: &Value,
    reason: &str,
    config: &StartConfig,
    store: &(impl ClaimStore + MessageStore + UploadStore),
) -> bool {
    let job = match serde_json::from_value::<S3EventRecord>(record.clone()) {
        Ok(record) => plan(&record, config).map_err(|skip| skip.to_string()),
        Err(e) => Err(format!("not an S3 event record: {e}")),
    };
    match job {
        Ok(job) => {
            let span =
                info_span!("abandoned", sqs_message_id = %Escaped(id), key = %job.source.escaped());
            // Boxed: inline, this future's nesting (down through the SDK's) is deeper than the
            // compiler lays out by default in the binary that calls it.
            let told = Box::pin(abandon(&job, reason, store).instrument(span.clone())).await;
            let _in = span.enter();
            match told {
                Ok(()) => {
                    warn!(owner = %job.owner, reason = %Escaped(reason), "upload never started: its owner is told it failed");
                    true
                }
                Err(err) => {
                    warn!(error = %Chain(&err), "upload that could not be started not told yet: its message comes back");
                    false
                }
            }
        }
        Err(reason) => {
            warn!(sqs_message_id = %Escaped(id), reason = %Escaped(&reason), "abandoned record skipped");
            true
        }
    }
}

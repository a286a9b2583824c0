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
use tracing::{info, warn};

use crate::config::StartConfig;
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
                "it could not be started in {receives} tries over about an hour; the last error: {err}; upload it again"
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
        Ok(job) => match abandon(&job, reason, store).await {
            Ok(()) => {
                warn!(sqs_message_id = %Escaped(id), key = %job.source.escaped(), owner = %job.owner, reason = %Escaped(reason), "upload never started: its owner is told it failed");
                true
            }
            Err(err) => {
                warn!(sqs_message_id = %Escaped(id), key = %job.source.escaped(), error = %err, "upload that could not be started not told yet: its message comes back");
                false
            }
        },
        Err(reason) => {
            warn!(sqs_message_id = %Escaped(id), reason = %Escaped(&reason), "abandoned record skipped");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::memory::MemoryStore;
    use crate::source::MemorySource;
    use crate::store::{MessageStore, UploadStore};
    use crate::test_support::FakeTranscoder;
    use crate::upload::UploadState;

    fn config() -> StartConfig {
        let no_variables: [(&str, &str); 0] = [];
        StartConfig::from_env(&no_variables).unwrap()
    }

    fn sample(name: &str) -> StartEvent {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    async fn handle(event: StartEvent, t: &FakeTranscoder, store: &MemoryStore) -> Handled {
        start_from_event(event, &config(), &MemorySource::audio(), t, store).await
    }

    /// The batch-item failures of `messages` handled under `config`.
    async fn failures_under(
        config: &StartConfig,
        messages: Vec<Value>,
        t: &FakeTranscoder,
        store: &MemoryStore,
    ) -> Vec<String> {
        batch(start_from_event(event_of(messages), config, &MemorySource::audio(), t, store).await)
    }

    fn batch(handled: Handled) -> Vec<String> {
        match handled {
            Handled::Batch(response) => response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            Handled::Direct(other) => panic!("not handled as a batch: {other:?}"),
        }
    }

    /// An intake message whose body is S3's notification of `key` (events/s3-put.json's record,
    /// for another key and version).
    fn message(id: usize, key: &str) -> Value {
        let path = format!("{}/../../events/s3-put.json", env!("CARGO_MANIFEST_DIR"));
        let mut body: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let object = &mut body["Records"][0]["s3"]["object"];
        object["key"] = key.into();
        object["eTag"] = format!("e{id}").into();
        object["sequencer"] = format!("{id:018X}").into();
        json!({"messageId": format!("m{id}"), "body": body.to_string(), "eventSource": "aws:sqs"})
    }

    fn event_of(messages: Vec<Value>) -> StartEvent {
        serde_json::from_value(json!({ "Records": messages })).unwrap()
    }

    #[tokio::test]
    async fn the_sample_batch_acknowledges_s3s_test_and_starts_every_record_of_every_message() {
        let (t, store) = (FakeTranscoder::default(), MemoryStore::default());
        let failures = batch(handle(sample("sqs-intake.json"), &t, &store).await);
        assert_eq!(failures, Vec::<String>::new());
        assert_eq!(
            t.keys(),
            [
                "media/alice/song.mp3",
                "media/bob/live set.flac",
                "media/bob/talk.wav"
            ]
        );
        // The same batch again (SQS delivers at least once): no job twice.
        let failures = batch(handle(sample("sqs-intake.json"), &t, &store).await);
        assert!(failures.is_empty());
        assert_eq!(t.jobs.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn throttled_jobs_are_exactly_the_batch_item_failures_and_their_redelivery_starts_them_once()
     {
        let store = MemoryStore::default();
        let keys_of = |n: usize| {
            (0..n)
                .map(|i| {
                    let name = if i < 7 { "throttled" } else { "song" };
                    format!("media/alice/{name}-{i}.mp3")
                })
                .collect::<Vec<_>>()
        };
        let messages: Vec<Value> = keys_of(10)
            .iter()
            .enumerate()
            .map(|(i, k)| message(i, k))
            .collect();
        let throttling = FakeTranscoder {
            fail_on: Some("throttled"),
            ..FakeTranscoder::default()
        };
        let mut failures = batch(handle(event_of(messages.clone()), &throttling, &store).await);
        failures.sort();
        assert_eq!(failures, ["m0", "m1", "m2", "m3", "m4", "m5", "m6"]);
        assert_eq!(throttling.jobs.lock().unwrap().len(), 3);

        // The whole batch comes back (the failed messages, and the others once more): only the
        // seven throttled start, once each; the claims of the throttled were given back.
        let recovered = FakeTranscoder::default();
        let failures = batch(handle(event_of(messages), &recovered, &store).await);
        assert!(failures.is_empty(), "{failures:?}");
        let started = recovered.keys();
        assert_eq!(started.len(), 7, "{started:?}");
        assert!(started.iter().all(|k| k.contains("throttled")));
    }

    #[tokio::test]
    async fn poison_messages_are_acknowledged_and_never_block_the_batch() {
        let (t, store) = (FakeTranscoder::default(), MemoryStore::default());
        let poison = vec![
            json!({"messageId": "no-json", "body": "{not json", "eventSource": "aws:sqs"}),
            json!({"messageId": "not-s3", "body": "{\"hello\": 1}", "eventSource": "aws:sqs"}),
            json!({"messageId": "no-body", "eventSource": "aws:sqs"}),
            json!({"body": "{}", "eventSource": "aws:sqs"}),
            json!({"messageId": "bad-record", "body": "{\"Records\": [{\"s3\": 5}]}", "eventSource": "aws:sqs"}),
            message(1, "media/alice/song.mp3"),
        ];
        let failures = batch(handle(event_of(poison), &t, &store).await);
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(t.keys(), ["media/alice/song.mp3"]);
    }

    const DEAD_LETTERS: &str = "arn:aws:sqs:eu-west-1:123456789012:intake-dead-letters";

    #[tokio::test]
    async fn on_its_last_receive_an_upload_that_cannot_start_ends_failed_with_the_last_error() {
        let store = MemoryStore::default();
        let config = StartConfig::from_env(&[
            ("INTAKE_DEAD_LETTER_QUEUE_ARN", DEAD_LETTERS),
            ("INTAKE_MAX_RECEIVES", "3"),
        ])
        .unwrap();
        let throttling = FakeTranscoder {
            fail_on: Some("busy"),
            ..FakeTranscoder::default()
        };
        let alice = crate::ids::Owner::new("alice").unwrap();
        let mut message = message(1, "media/alice/busy.mp3");
        let mut states = Vec::new();
        for receives in ["2", "3"] {
            message["attributes"] = json!({"ApproximateReceiveCount": receives});
            let handled = failures_under(&config, vec![message.clone()], &throttling, &store).await;
            // Still a failure on the last receive, so that the operator finds it in the queue.
            assert_eq!(handled, ["m1"]);
            let uploads = store.list_uploads(&alice, 10, None).await.unwrap().uploads;
            states.push((uploads[0].state, uploads[0].reason.clone()));
        }
        assert_eq!(states[0], (UploadState::Received, None));
        let (state, reason) = states[1].clone();
        assert_eq!(state, UploadState::Failed);
        let reason = reason.unwrap();
        assert!(
            reason.contains("3 tries") && reason.contains("service unavailable"),
            "{reason}"
        );
        // Then from the dead-letter queue: the owner was told already, once.
        message["eventSourceARN"] = DEAD_LETTERS.into();
        let handled = failures_under(&config, vec![message], &throttling, &store).await;
        assert!(handled.is_empty());
        let page = store.list_unread(&alice, 10, None).await.unwrap();
        assert_eq!(page.messages.len(), 1, "{:?}", page.messages);
        assert!(page.messages[0].text.contains("service unavailable"));
        assert!(throttling.jobs.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_upload_whose_event_reached_the_dead_letter_queue_ends_failed_for_its_owner_once() {
        let (t, store) = (FakeTranscoder::default(), MemoryStore::default());
        let config =
            StartConfig::from_env(&[("INTAKE_DEAD_LETTER_QUEUE_ARN", DEAD_LETTERS)]).unwrap();
        let mut dead = message(1, "media/alice/never.mp3");
        dead["eventSourceARN"] = DEAD_LETTERS.into();
        // One that did start on its last receive, whose message was not deleted in time.
        let started = message(2, "media/alice/started.mp3");
        failures_under(&config, vec![started.clone()], &t, &store).await;
        let mut late = started;
        late["eventSourceARN"] = DEAD_LETTERS.into();
        for _ in 0..2 {
            let handled =
                failures_under(&config, vec![dead.clone(), late.clone()], &t, &store).await;
            assert!(handled.is_empty());
        }
        // No job for the dead-lettered upload, one message, its upload failed with the reason.
        assert_eq!(t.keys(), ["media/alice/started.mp3"]);
        let alice = crate::ids::Owner::new("alice").unwrap();
        let page = store.list_unread(&alice, 10, None).await.unwrap();
        assert_eq!(page.messages.len(), 1, "{:?}", page.messages);
        assert_eq!(page.messages[0].file, "never.mp3");
        assert!(page.messages[0].text.contains("could not be started"));
        let uploads = store.list_uploads(&alice, 10, None).await.unwrap().uploads;
        let state_of = |key: &str| {
            let upload = uploads.iter().find(|u| u.key == key).unwrap();
            (upload.state, upload.reason.clone())
        };
        assert_eq!(
            state_of("media/alice/never.mp3"),
            (UploadState::Failed, Some(ABANDONED_REASON.to_owned()))
        );
        assert_eq!(
            state_of("media/alice/started.mp3").0,
            UploadState::Transcoding
        );
    }

    #[tokio::test]
    async fn a_plain_s3_event_is_handled_as_before_the_queue() {
        let (t, store) = (FakeTranscoder::default(), MemoryStore::default());
        match handle(sample("s3-put.json"), &t, &store).await {
            Handled::Direct(Ok(report)) => assert_eq!(report.started.len(), 1),
            other => panic!("{other:?}"),
        }
        let refusing = FakeTranscoder {
            fail_on: Some("song"),
            ..FakeTranscoder::default()
        };
        let other = MemoryStore::default();
        assert!(matches!(
            handle(sample("s3-put.json"), &refusing, &other).await,
            Handled::Direct(Err(_))
        ));
    }
}

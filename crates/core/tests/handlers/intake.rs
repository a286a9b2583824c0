//! `start_from_event`: the intake queue's batches, S3's test event, and the batch item failures
//! that bring back exactly the jobs that could not start.

use serde_json::{Value, json};
use transcoder_core::*;
use transcoder_testkit::*;

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
    let mut body: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
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
    let alice = transcoder_core::Owner::new("alice").unwrap();
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
    let config = StartConfig::from_env(&[("INTAKE_DEAD_LETTER_QUEUE_ARN", DEAD_LETTERS)]).unwrap();
    let mut dead = message(1, "media/alice/never.mp3");
    dead["eventSourceARN"] = DEAD_LETTERS.into();
    // One that did start on its last receive, whose message was not deleted in time.
    let started = message(2, "media/alice/started.mp3");
    failures_under(&config, vec![started.clone()], &t, &store).await;
    let mut late = started;
    late["eventSourceARN"] = DEAD_LETTERS.into();
    for _ in 0..2 {
        let handled = failures_under(&config, vec![dead.clone(), late.clone()], &t, &store).await;
        assert!(handled.is_empty());
    }
    // No job for the dead-lettered upload, one message, its upload failed with the reason.
    assert_eq!(t.keys(), ["media/alice/started.mp3"]);
    let alice = transcoder_core::Owner::new("alice").unwrap();
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

//! `start-transcode` on its intake queue, through the built binary: a batch of S3 notifications
//! whose throttled jobs are exactly its batch-item failures, a redelivery that starts only those,
//! poison messages that never block a batch, and a message from the dead-letter queue that still
//! tells its owner.

use serde_json::{Value, json};
use system_tests::dynamodb_local::DynamoDbLocal;
use system_tests::functions::{
    THROTTLED_ATTEMPTS, TranscoderStub, create_jobs, sources, table, unread,
};
use system_tests::s3::{self, Object};
use system_tests::{Function, sample_event};
use transcoder_aws::DynamoStore;
use transcoder_core::{ABANDONED_REASON, Owner, UploadState, UploadStore};

use crate::starter::{assert_told_not_audio, mediaconvert_on};

/// An intake message: S3's notification of `key` as its body (events/s3-put.json's record, for
/// another key and version), in the shape of events/sqs-intake.json's messages.
fn message(id: usize, key: &str) -> Value {
    let mut body = sample_event("s3-put.json");
    let object = &mut body["Records"][0]["s3"]["object"];
    object["key"] = key.into();
    object["eTag"] = format!("{id:032x}").into();
    object["sequencer"] = format!("{id:018X}").into();
    let mut message = sample_event("sqs-intake.json")["Records"][1].clone();
    message["messageId"] = format!("message-{id}").into();
    message["body"] = body.to_string().into();
    message
}

fn batch(messages: Vec<Value>) -> Value {
    json!({ "Records": messages })
}

fn failures(response: &Value) -> Vec<String> {
    let mut ids: Vec<String> = response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {response}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

/// start-transcode on MediaConvert's stub, reading `bucket`, on a fresh table, with `env`
/// besides its role.
async fn starter(
    db: &DynamoDbLocal,
    bucket: &system_tests::Stub,
    env: &[(&str, &str)],
) -> (TranscoderStub, Function, String) {
    let table = table(db).await;
    let (transcoder, function) = mediaconvert_on(&bucket.url(), db, &table, env).await;
    (transcoder, function, table)
}

#[tokio::test]
async fn throttled_jobs_of_a_batch_are_its_item_failures_and_the_redelivery_starts_only_them() {
    let db = DynamoDbLocal::start().await;
    let bucket = s3::bucket(Vec::new()).await;
    let (transcoder, mut starter, _) = starter(&db, &bucket, &[]).await;
    let keys: Vec<String> = (0..10)
        .map(|i| match i {
            0..7 => format!("media/alice/throttled-{i}.mp3"),
            _ => format!("media/alice/song-{i}.mp3"),
        })
        .collect();
    let event = batch(
        keys.iter()
            .enumerate()
            .map(|(i, k)| message(i, k))
            .collect(),
    );

    let response = starter.invoke(&event).await.response();
    let throttled: Vec<String> = (0..7).map(|i| format!("message-{i}")).collect();
    assert_eq!(failures(&response), throttled, "{response}");
    // Nothing else in the answer: Lambda reads exactly this shape.
    assert_eq!(response.as_object().map(|o| o.len()), Some(1), "{response}");
    assert_eq!(
        sources(&create_jobs(&transcoder)).len(),
        7 * THROTTLED_ATTEMPTS + 3
    );

    // The whole batch again, as SQS would redeliver it: the seven start, once each.
    let response = starter.invoke(&event).await.response();
    assert_eq!(failures(&response), Vec::<String>::new(), "{response}");
    // Each throttled key was asked for three times and accepted on the fourth; each other key
    // accepted at once: ten jobs, none twice.
    let requests = sources(&create_jobs(&transcoder));
    for key in &keys {
        let asked = requests.iter().filter(|k| *k == key).count();
        let expected = if key.contains("throttled") {
            THROTTLED_ATTEMPTS + 1
        } else {
            1
        };
        assert_eq!(asked, expected, "{key}: {requests:?}");
    }
}

#[tokio::test]
async fn poison_messages_are_acknowledged_and_a_refused_upload_is_rejected_for_its_owner() {
    let db = DynamoDbLocal::start().await;
    let page = b"<!doctype html><html><body>not audio</body></html>";
    let bucket = s3::bucket(vec![("media/alice/page.mp3", Object::from(&page[..]))]).await;
    let (transcoder, mut starter, table) = starter(&db, &bucket, &[]).await;
    let mut poison = Vec::new();
    for (id, body) in [
        ("not-json", "{not json".to_owned()),
        ("not-s3", json!({"hello": "world"}).to_string()),
        ("bad-record", json!({"Records": [{"s3": 5}]}).to_string()),
    ] {
        let mut message = message(90, "media/alice/x.mp3");
        message["messageId"] = id.into();
        message["body"] = body.into();
        poison.push(message);
    }
    let mut event = sample_event("sqs-intake.json");
    let records = event["Records"].as_array_mut().unwrap();
    records.extend(poison);
    records.push(message(91, "media/alice/page.mp3"));

    let response = starter.invoke(&event).await.response();
    assert_eq!(failures(&response), Vec::<String>::new(), "{response}");
    assert!(starter.logged(&["poison intake message", "not-json"]));
    assert!(starter.logged(&["poison intake message", "not-s3"]));
    assert!(starter.logged(&["S3's test of the notification"]));
    // The sample's three uploads started; the page named .mp3 refused, and its owner told.
    assert_eq!(
        sources(&create_jobs(&transcoder)),
        [
            "media/alice/song.mp3",
            "media/bob/live set.flac",
            "media/bob/talk.wav"
        ]
    );
    assert_told_not_audio(&db, &table, "alice").await;
}

#[tokio::test]
async fn on_the_last_receive_an_upload_still_refused_ends_failed_with_the_error() {
    let db = DynamoDbLocal::start().await;
    let bucket = s3::bucket(Vec::new()).await;
    let (_, mut starter, table) = starter(&db, &bucket, &[("INTAKE_MAX_RECEIVES", "2")]).await;
    let store = DynamoStore::new(db.client(), &table, 30);
    // The stub refuses it every time (503).
    let mut last = message(1, "media/alice/refuse-late.mp3");
    let mut told = Vec::new();
    for receives in ["1", "2"] {
        last["attributes"]["ApproximateReceiveCount"] = receives.into();
        let response = starter.invoke(&batch(vec![last.clone()])).await.response();
        // A failure both times: after the last, SQS moves it to the dead-letter queue.
        assert_eq!(failures(&response), ["message-1"], "{response}");
        told.push(unread(&store, "alice").await);
    }
    assert!(
        told[0].is_empty(),
        "told before the last receive: {:?}",
        told[0]
    );
    assert_eq!(told[1].len(), 1, "{:?}", told[1]);
    let text = &told[1][0].text;
    assert!(
        text.contains("2 tries") && text.contains("the last error: ") && text.contains("503"),
        "{text}"
    );
}

#[tokio::test]
async fn an_instance_paced_below_its_batch_starts_its_share_and_gives_back_the_rest() {
    let db = DynamoDbLocal::start().await;
    let bucket = s3::bucket(Vec::new()).await;
    // One job every 40 s for this instance (0.1 a second shared by 4): the first starts now,
    // the others' turns are past the 10 s a job may wait, so they go back to the queue at once.
    let env = [
        ("JOBS_PER_SECOND", "0.1"),
        ("START_MAX_CONCURRENCY", "4"),
        ("MAX_CONCURRENT_JOBS", "1"),
    ];
    let (transcoder, mut starter, _) = starter(&db, &bucket, &env).await;
    let messages = (0..3)
        .map(|i| message(i, &format!("media/alice/song-{i}.mp3")))
        .collect();
    let response = starter.invoke(&batch(messages)).await.response();
    assert_eq!(failures(&response).len(), 2, "{response}");
    assert_eq!(sources(&create_jobs(&transcoder)).len(), 1);
    assert!(starter.logged(&["jobs a second are being started already"]));
}

#[tokio::test]
async fn a_message_from_the_dead_letter_queue_ends_its_upload_failed_and_tells_its_owner_once() {
    let db = DynamoDbLocal::start().await;
    let bucket = s3::bucket(Vec::new()).await;
    let sample = sample_event("sqs-intake-dead-letter.json");
    let dead_letters = sample["Records"][0]["eventSourceARN"].as_str().unwrap();
    let env = [("INTAKE_DEAD_LETTER_QUEUE_ARN", dead_letters)];
    let (transcoder, mut starter, table) = starter(&db, &bucket, &env).await;
    let store = DynamoStore::new(db.client(), &table, 30);

    // SQS delivers at least once: the second delivery changes nothing.
    for _ in 0..2 {
        let response = starter
            .invoke_sample("sqs-intake-dead-letter.json")
            .await
            .response();
        assert_eq!(failures(&response), Vec::<String>::new(), "{response}");
    }
    // Nothing is started from the dead-letter queue: the upload's hour is over.
    assert_eq!(sources(&create_jobs(&transcoder)), Vec::<String>::new());
    let told = unread(&store, "alice").await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].file, "song.mp3");
    assert!(
        told[0].text.contains("could not be started"),
        "{}",
        told[0].text
    );
    let alice = Owner::new("alice").unwrap();
    let uploads = store.list_uploads(&alice, 10, None).await.unwrap().uploads;
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(
        (uploads[0].state, uploads[0].reason.as_deref()),
        (UploadState::Failed, Some(ABANDONED_REASON))
    );
}

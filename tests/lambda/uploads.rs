//! Upload records through the built functions: `start-transcode` against a stubbed transcoder and
//! bucket, `record-completion` fed the transcoders' notifications, `messages-api` answering the
//! sample API Gateway events, all on one table of DynamoDB Local. An upload is visible from the
//! moment it is seen until its outputs are ready, only ever moves forward, and only to its owner.

use serde_json::{Value, json};
use system_tests::dynamodb_local::DynamoDbLocal;
use system_tests::functions::Backend::ElasticTranscoder;
use system_tests::functions::{
    self, TranscoderStub, create_jobs, http, ids, messages_api, record_completion, table, unread,
};
use system_tests::{Function, s3, sample_event};
use transcoder_aws::DynamoStore;
use transcoder_core::{Owner, UploadId, UploadState, UploadStore};

/// Alice's `song.mp3` of `events/s3-put.json`: the upload the `http-get-upload-*` events ask for.
const ALICES_SONG: &str = "e65250d25ffa57fda702cff23cce940a";
/// Bob's `Long Set.MP3`, the upload of the sample MediaConvert events.
const BOBS_SET: &str = "b0b00000000000000000000000000001";

/// `events/s3-put.json` for the key `key` instead of `media/alice/song.mp3`.
fn put(key: &str) -> Value {
    let mut event = sample_event("s3-put.json");
    event["Records"][0]["s3"]["object"]["key"] = key.into();
    event
}

/// A sample SNS event whose notification (`Message`) is `change`d.
fn notification(file: &str, change: impl FnOnce(&mut Value)) -> Value {
    let mut event = sample_event(file);
    let mut message: Value =
        serde_json::from_str(event["Records"][0]["Sns"]["Message"].as_str().unwrap()).unwrap();
    change(&mut message);
    event["Records"][0]["Sns"]["Message"] = message.to_string().into();
    event
}

/// What `messages-api` answers to the sample event `file`: status and body.
async fn api(function: &mut Function, file: &str) -> (u64, Value) {
    http(function.invoke_sample(file).await.response())
}

/// The (file, state, percent) of each upload in a `GET /uploads` body.
fn listed(body: &Value) -> Vec<(String, String, Value)> {
    body["uploads"]
        .as_array()
        .unwrap_or_else(|| panic!("no uploads in {body}"))
        .iter()
        .map(|u| {
            let text = |f: &str| u[f].as_str().unwrap().to_owned();
            (text("file"), text("state"), u["percent"].clone())
        })
        .collect()
}

#[tokio::test]
async fn an_upload_is_visible_from_received_to_completed_and_only_to_its_owner() {
    let db = DynamoDbLocal::start().await;
    let table = table(&db).await;
    let transcoder: TranscoderStub = ElasticTranscoder.stub().await;
    let bucket = s3::bucket(Vec::new()).await;
    let pipeline = [("PIPELINE_ID", functions::PIPELINE)];
    let mut starter = transcoder.start_on(&bucket, &db, &table, &pipeline).await;
    let mut recorder = record_completion(&db, &table).await;
    let mut reader = messages_api(&db, &table).await;

    // The transcoder refuses one upload's job: it is `received`, visible before any job.
    let (kind, _) = starter.invoke(&put("media/alice/refuse.mp3")).await.error();
    assert_eq!(kind, "JobsNotStarted");
    let (status, page) = api(&mut reader, "http-list-uploads-alice.json").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        listed(&page),
        [("refuse.mp3".into(), "received".into(), Value::Null)]
    );

    // Another is started: `transcoding`, newest first, and its job carries the record's id.
    starter.invoke_sample("s3-put.json").await.response();
    let (_, page) = api(&mut reader, "http-list-uploads-alice.json").await;
    assert_eq!(
        listed(&page),
        [
            ("song.mp3".into(), "transcoding".into(), Value::Null),
            ("refuse.mp3".into(), "received".into(), Value::Null)
        ]
    );
    assert_eq!(page["uploads"][0]["key"], "media/alice/song.mp3");
    let jobs = create_jobs(&transcoder);
    let job = jobs.last().unwrap();
    assert_eq!(job.body["UserMetadata"]["upload"], ALICES_SONG);
    let (status, song) = api(&mut reader, "http-get-upload-alice.json").await;
    assert_eq!((status, &song["state"]), (200, &json!("transcoding")));
    assert!(
        unread(&DynamoStore::new(db.client(), &table, 30), "alice")
            .await
            .is_empty()
    );

    // The job's progress (Elastic Transcoder gives no percentage), then its end.
    let metadata = job.body["UserMetadata"].clone();
    let of_this_job = |m: &mut Value| {
        m["jobId"] = "1700000000000-job001".into();
        m["userMetadata"] = metadata.clone();
    };
    let progressing = notification("sns-et-progressing.json", of_this_job);
    let completed = notification("sns-et-completed.json", of_this_job);
    let report = recorder.invoke(&progressing).await.response();
    // Already `transcoding` since its job started: nothing further to say.
    assert_eq!(
        (report["progress"].as_u64(), ids(&report, "uploads")),
        (Some(1), vec![])
    );
    let report = recorder.invoke(&completed).await.response();
    assert_eq!(ids(&report, "recorded"), ["1700000000000-job001"]);
    assert_eq!(ids(&report, "uploads"), [ALICES_SONG]);
    let (_, song) = api(&mut reader, "http-get-upload-alice.json").await;
    assert_eq!(
        (&song["state"], &song["percent"]),
        (&json!("completed"), &json!(100))
    );
    assert_eq!(song["outputs"].as_array().unwrap().len(), 3);
    let url = song["outputs"][0]["url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    // The message is there too, as before.
    let messages = unread(&DynamoStore::new(db.client(), &table, 30), "alice").await;
    assert_eq!(messages.len(), 1);

    // The progress again, late, and the end again: nothing moves.
    for late in [&progressing, &completed] {
        let report = recorder.invoke(late).await.response();
        assert!(ids(&report, "uploads").is_empty(), "{report}");
    }
    let (_, again) = api(&mut reader, "http-get-upload-alice.json").await;
    assert_eq!(again, song);

    // Bob sees none of it: his list is empty, and Alice's upload does not exist for him.
    let (status, bobs) = api(&mut reader, "http-list-uploads-bob.json").await;
    assert_eq!((status, listed(&bobs)), (200, vec![]));
    let (status, body) = api(&mut reader, "http-get-upload-foreign-bob.json").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("upload_not_found"))
    );
}

#[tokio::test]
async fn a_refused_upload_is_rejected_with_its_reason() {
    let db = DynamoDbLocal::start().await;
    let table = table(&db).await;
    let transcoder = ElasticTranscoder.stub().await;
    let playlist: &[u8] = b"#EXTM3U\n#EXTINF:5.0,\n/etc/passwd\n";
    let bucket = s3::bucket(vec![("media/alice/song.mp3", playlist.into())]).await;
    let pipeline = [("PIPELINE_ID", functions::PIPELINE)];
    let mut starter = transcoder.start_on(&bucket, &db, &table, &pipeline).await;
    let mut reader = messages_api(&db, &table).await;

    let report = starter.invoke_sample("s3-put.json").await.response();
    assert_eq!(report["rejected"].as_array().unwrap().len(), 1);
    assert!(create_jobs(&transcoder).is_empty());
    let (status, song) = api(&mut reader, "http-get-upload-alice.json").await;
    assert_eq!(status, 200, "{song}");
    assert_eq!(song["state"], "rejected");
    assert_eq!(
        song["reason"],
        "not an audio file: it is text (a playlist, a web page or a document)"
    );
    assert_eq!(song["outputs"], json!([]));
    // A redelivery changes nothing.
    starter.invoke_sample("s3-put.json").await.response();
    let (_, again) = api(&mut reader, "http-get-upload-alice.json").await;
    assert_eq!(again, song);
}

/// The order `seed` shuffles `n` deliveries into (a small linear congruential generator: the
/// same seed, the same order, so a failure can be replayed).
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    for i in (1..n).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        order.swap(i, (state >> 33) as usize % (i + 1));
    }
    order
}

#[tokio::test]
async fn mediaconvert_progress_delivered_late_twice_and_shuffled_never_moves_an_upload_back() {
    let db = DynamoDbLocal::start().await;
    let first = table(&db).await;
    let mut recorder_of = record_completion(&db, &first).await;
    let mut reader = messages_api(&db, &first).await;

    // In order, the percentage shows; a lower one, late, does not replace it.
    let at = |percent: u64| {
        notification("sns-mediaconvert-status-update.json", |m| {
            m["detail"]["jobProgress"]["jobPercentComplete"] = percent.into();
        })
    };
    let mut bobs = async |event: &Value| {
        recorder_of.invoke(event).await.response();
        let (_, page) = api(&mut reader, "http-list-uploads-bob.json").await;
        listed(&page)
    };
    let transcoding = |p: u64| {
        vec![(
            "Long Set.MP3".to_owned(),
            "transcoding".to_owned(),
            json!(p),
        )]
    };
    assert_eq!(bobs(&at(40)).await, transcoding(40));
    assert_eq!(
        bobs(&sample_event("sns-mediaconvert-status-update.json")).await,
        transcoding(96)
    );
    assert_eq!(bobs(&at(40)).await, transcoding(96));
    let done = vec![(
        "Long Set.MP3".to_owned(),
        "completed".to_owned(),
        json!(100),
    )];
    assert_eq!(
        bobs(&sample_event("sns-mediaconvert-complete.json")).await,
        done
    );
    assert_eq!(
        bobs(&sample_event("sns-mediaconvert-status-update.json")).await,
        done
    );

    // Every shuffle of the job's life, each event twice, in one SNS event per shuffle: the upload
    // always ends completed, and Bob has one message for it.
    let life = [
        at(5),
        at(40),
        sample_event("sns-mediaconvert-status-update.json"),
        sample_event("sns-mediaconvert-complete.json"),
    ];
    for seed in 0..6 {
        let table = table(&db).await;
        let mut recorder = record_completion(&db, &table).await;
        let deliveries: Vec<Value> = shuffled(life.len() * 2, seed)
            .into_iter()
            .map(|i| life[i % life.len()]["Records"][0].clone())
            .collect();
        recorder
            .invoke(&json!({"Records": deliveries}))
            .await
            .response();
        let store = DynamoStore::new(db.client(), &table, 30);
        let bob = Owner::new("bob").unwrap();
        let upload = store
            .upload(&bob, &UploadId(BOBS_SET.into()))
            .await
            .unwrap();
        let upload = upload.unwrap_or_else(|| panic!("seed {seed}: no upload"));
        assert_eq!(
            (upload.state, upload.percent),
            (UploadState::Completed, Some(100)),
            "seed {seed}"
        );
        assert_eq!(unread(&store, "bob").await.len(), 1, "seed {seed}");
    }
}

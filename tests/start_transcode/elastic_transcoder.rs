//! `start-transcode` as Lambda runs it: the built binary, fed the sample events through the
//! Runtime API, with Elastic Transcoder and S3 replaced by recording stubs on loopback and its
//! claims and messages in DynamoDB Local.

use serde_json::{Value, json};
use system_tests::dynamodb_local::DynamoDbLocal;
use system_tests::functions::Backend::ElasticTranscoder;
use system_tests::functions::{PIPELINE, create_jobs, sources, table, unread};
use system_tests::{s3, sample_event};
use transcoder_aws::DynamoStore;
use transcoder_core::{Message, Outcome, UploadState, UploadStore};

use crate::starter::{
    Starter, assert_a_refused_job_fails_after_the_others_started,
    assert_each_sample_starts_its_jobs, assert_signed_for, assert_the_sample_put_starts_one_job,
    sample_upload_token,
};

/// What an Elastic Transcoder starter cannot start without.
const PIPELINE_ID: [(&str, &str); 1] = [("PIPELINE_ID", PIPELINE)];

#[tokio::test]
async fn a_put_sends_the_exact_create_job_request() {
    let mut starter = Starter::start(ElasticTranscoder, &PIPELINE_ID).await;

    let request = assert_the_sample_put_starts_one_job(&mut starter, "1700000000000-job001").await;
    // The upload's id, which record-completion needs to find its record: the claim's token.
    let upload = sample_upload_token();
    assert_eq!(
        request.body,
        json!({
            "PipelineId": PIPELINE,
            "Input": {"Key": "media/alice/song.mp3"},
            "Outputs": [
                {"Key": "transcoded/alice/song.mp3.wav", "PresetId": "1351620000001-300300"},
                {"Key": "transcoded/alice/song.mp3.flac", "PresetId": "1351620000001-300110"},
                {"Key": "transcoded/alice/song.mp3.m4a", "PresetId": "1351620000001-100110"}
            ],
            "UserMetadata": {"owner": "alice", "source-key": "media/alice/song.mp3", "upload": upload}
        })
    );
    assert_signed_for(&request, "elastictranscoder");
}

#[tokio::test]
async fn every_sample_event_starts_exactly_the_jobs_it_should() {
    let env = [PIPELINE_ID[0], ("AWS_LAMBDA_LOG_FORMAT", "JSON")];
    let mut starter = Starter::start(ElasticTranscoder, &env).await;
    assert_each_sample_starts_its_jobs(&mut starter).await;

    // Skips are log lines in the span that names the record and its key, in Lambda's JSON log
    // format: the line's own fields say why.
    let skipped: Vec<Value> = starter
        .function
        .output()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "record skipped")
        .collect();
    let named = |key: &str| skipped.iter().find(|l| l["span"]["key"] == key).cloned();
    let output =
        named("transcoded/alice/song.wav").expect("the output-prefix key is logged as skipped");
    assert_eq!(output["span"]["name"], "record");
    assert_eq!(output["span"]["record"], 0);
    assert!(
        output["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("output prefix")
    );
    assert!(named("media/alice/cover.jpg").is_some());
    assert!(named("media/alice/notes.txt").is_some());
    assert!(named("media/alice/empty.mp3").is_some());
}

#[tokio::test]
async fn a_refused_job_fails_the_invocation_after_the_other_records_started() {
    let mut starter = Starter::start(ElasticTranscoder, &PIPELINE_ID).await;
    assert_a_refused_job_fails_after_the_others_started(&mut starter).await;
    let refused = create_jobs(&starter.stub)
        .iter()
        .filter(|r| r.body["Input"]["Key"] == "media/bob/refuse me.mp3")
        .count();
    assert!(
        refused > 1,
        "the SDK retries a 503 before giving up (saw {refused} attempt)"
    );
}

#[tokio::test]
async fn a_pipeline_name_is_looked_up_once_per_cold_start() {
    let mut starter =
        Starter::start(ElasticTranscoder, &[("PIPELINE_NAME", "audio-transcoder")]).await;
    starter
        .function
        .invoke_sample("s3-put.json")
        .await
        .response();
    starter
        .function
        .invoke_sample("s3-multipart-upload.json")
        .await
        .response();

    let lookups = starter
        .stub
        .requests()
        .iter()
        .filter(|r| r.path == "/2012-09-25/pipelines")
        .count();
    assert_eq!(lookups, 1);
    let pipelines: Vec<_> = create_jobs(&starter.stub)
        .iter()
        .map(|r| r.body["PipelineId"].clone())
        .collect();
    assert_eq!(pipelines, [PIPELINE, PIPELINE]);
}

#[tokio::test]
async fn bad_configuration_is_refused_at_start_up_with_a_clear_error() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("PIPELINE_ID", PIPELINE), ("TABLE_NAME", "")],
            "TABLE_NAME is required",
        ),
        (
            &[
                ("PIPELINE_ID", PIPELINE),
                ("INPUT_PREFIX", "media/"),
                ("OUTPUT_PREFIX", "media/out/"),
            ],
            "overlap",
        ),
        (
            &[("PIPELINE_ID", PIPELINE), ("TRANSCODER", "handbrake")],
            "TRANSCODER='handbrake'",
        ),
        (&[], "set PIPELINE_ID, or PIPELINE_NAME"),
        (
            &[("PIPELINE_NAME", "no-such-pipeline")],
            "no Elastic Transcoder pipeline is named 'no-such-pipeline'",
        ),
    ];
    let db = DynamoDbLocal::start().await;
    for (env, expected) in cases {
        let stub = ElasticTranscoder.stub().await;
        let mut function = stub.start(&db, env).await;
        function.assert_refused_at_start_up(expected).await;
        assert!(create_jobs(&stub).is_empty());
    }
}

#[tokio::test]
async fn duplicate_deliveries_start_exactly_one_job() {
    let mut starter = Starter::start(ElasticTranscoder, &PIPELINE_ID).await;

    let first = starter
        .function
        .invoke_sample("s3-several-records.json")
        .await
        .response();
    let again = starter
        .function
        .invoke_sample("s3-several-records.json")
        .await
        .response();
    let put_twice = starter
        .function
        .invoke_sample("s3-put.json")
        .await
        .response();
    let put_again = starter
        .function
        .invoke_sample("s3-put.json")
        .await
        .response();

    assert_eq!(
        sources(&create_jobs(&starter.stub)),
        [
            "media/alice/one.mp3",
            "media/alice/song.mp3",
            "media/bob/two.flac",
            "media/loose file.mp3"
        ]
    );
    assert_eq!(first["started"].as_array().unwrap().len(), 3);
    assert!(again["started"].as_array().unwrap().is_empty());
    assert_eq!(again["duplicates"].as_array().unwrap().len(), 3);
    assert_eq!(
        put_twice["started"][0]["job_id"],
        put_again["duplicates"][0]["job_id"]
    );
}

/// Playlists named like audio: one pointing at a file on the machine, one at another user's
/// upload, one repeating a segment to make hours of output from a few bytes.
const PLAYLISTS: [(&str, &[u8]); 3] = [
    (
        "media/alice/absolute.mp3",
        b"#EXTM3U\n#EXTINF:5.0,\n/etc/passwd\n",
    ),
    (
        "media/alice/relative.mp3",
        b"#EXTM3U\n#EXTINF:5.0,\n../bob/song.mp3\n",
    ),
    (
        "media/alice/repeated.mp3",
        b"#EXTM3U\n#EXTINF:5.0,\nsong.mp3\n#EXTINF:5.0,\nsong.mp3\n#EXTINF:5.0,\nsong.mp3\n",
    ),
];

const ETAG: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// One event with a record per key, each shaped like the sample upload.
fn uploads(keys: &[&str]) -> Value {
    let mut event = sample_event("s3-put.json");
    let record = event["Records"][0].clone();
    event["Records"] = keys
        .iter()
        .map(|key| {
            let mut r = record.clone();
            r["s3"]["object"]["key"] = (*key).into();
            r
        })
        .collect();
    event
}

async fn messages_of(db: &DynamoDbLocal, table: &str, owner: &str) -> Vec<Message> {
    unread(&DynamoStore::new(db.client(), table, 30), owner).await
}

#[tokio::test]
async fn playlists_named_mp3_start_no_job_and_their_owner_is_told_once() {
    let stub = ElasticTranscoder.stub().await;
    let objects = PLAYLISTS
        .iter()
        .map(|(key, bytes)| (*key, s3::Object::from(*bytes)))
        .collect();
    let bucket = s3::bucket(objects).await;
    let db = DynamoDbLocal::start().await;
    let table = table(&db).await;
    let mut function = stub.start_on(&bucket, &db, &table, &PIPELINE_ID).await;
    let keys = [
        PLAYLISTS[0].0,
        PLAYLISTS[1].0,
        PLAYLISTS[2].0,
        "media/alice/song.mp3",
    ];

    let response = function.invoke(&uploads(&keys)).await.response();
    assert_eq!(sources(&create_jobs(&stub)), ["media/alice/song.mp3"]);
    let rejected: Vec<_> = response["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rejected, &keys[..3]);
    // One ranged read of the first bytes per upload, of exactly the version the event named.
    let mut gets = s3::gets(&bucket);
    gets.sort();
    let mut expected: Vec<_> = keys
        .iter()
        .map(|k| (k.to_string(), "bytes=0-8191".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(gets, expected);
    let pinned = bucket
        .requests()
        .iter()
        .all(|r| r.headers["if-match"] == format!("\"{ETAG}\"").as_str());
    assert!(pinned, "every GET names the event's ETag");

    let told = messages_of(&db, &table, "alice").await;
    let mut files: Vec<_> = told.iter().map(|m| m.file.as_str()).collect();
    files.sort();
    assert_eq!(files, ["absolute.mp3", "relative.mp3", "repeated.mp3"]);
    for message in &told {
        assert_eq!(message.state, Outcome::Failed);
        assert!(message.outputs.is_empty());
        assert!(
            message.text.starts_with(&format!(
                "Your file {} could not be processed: not an audio file: it is text",
                message.file
            )),
            "{}",
            message.text
        );
    }

    // Redelivered: nothing read, started or told again.
    let again = function.invoke(&uploads(&keys)).await.response();
    assert_eq!(again["duplicates"].as_array().unwrap().len(), 4);
    assert!(again["rejected"].as_array().unwrap().is_empty());
    assert_eq!(create_jobs(&stub).len(), 1);
    assert_eq!(s3::gets(&bucket).len(), 4);
    assert_eq!(messages_of(&db, &table, "alice").await.len(), 3);
}

#[tokio::test]
async fn an_upload_replaced_before_it_is_read_starts_nothing_and_is_not_retried() {
    let stub = ElasticTranscoder.stub().await;
    let newer = s3::Object {
        bytes: transcoder_testkit::mp3_frames(8),
        etag: Some("a-newer-upload".into()),
    };
    let bucket = s3::bucket(vec![("media/alice/song.mp3", newer)]).await;
    let db = DynamoDbLocal::start().await;
    let table = table(&db).await;
    let mut function = stub.start_on(&bucket, &db, &table, &PIPELINE_ID).await;

    let response = function.invoke_sample("s3-put.json").await.response();
    assert!(create_jobs(&stub).is_empty());
    let reason = response["skipped"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("replaced by a newer one"), "{reason}");
    assert!(messages_of(&db, &table, "alice").await.is_empty());
    // Its owner sees it end, not wait `received` for ever.
    let store = DynamoStore::new(db.client(), &table, 30);
    let owner = transcoder_core::Owner::new("alice").unwrap();
    let uploads = store.list_uploads(&owner, 10, None).await.unwrap().uploads;
    assert_eq!(uploads.len(), 1);
    assert_eq!(
        (uploads[0].state, uploads[0].reason.as_deref()),
        (UploadState::Superseded, Some(transcoder_core::GONE))
    );
}

#[tokio::test]
async fn an_unreadable_upload_fails_the_invocation_so_that_it_is_retried() {
    let stub = ElasticTranscoder.stub().await;
    let bucket = s3::unavailable().await;
    let db = DynamoDbLocal::start().await;
    let table = table(&db).await;
    let mut function = stub.start_on(&bucket, &db, &table, &PIPELINE_ID).await;

    let (error_type, message) = function.invoke_sample("s3-put.json").await.error();
    assert_eq!(error_type, "JobsNotStarted");
    assert!(
        message.contains("the upload cannot be read right now"),
        "{message}"
    );
    assert!(create_jobs(&stub).is_empty());

    // The claim was given back: once the bucket answers, the retry starts the job.
    let recovered = s3::bucket(Vec::new()).await;
    let mut function = stub.start_on(&recovered, &db, &table, &PIPELINE_ID).await;
    let retry = function.invoke_sample("s3-put.json").await.response();
    assert_eq!(retry["started"].as_array().unwrap().len(), 1);
    assert_eq!(sources(&create_jobs(&stub)), ["media/alice/song.mp3"]);
}

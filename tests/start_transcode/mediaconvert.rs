//! `start-transcode` with `TRANSCODER=mediaconvert` as Lambda runs it: the built binary, fed the
//! sample events through the Runtime API, with MediaConvert's regional REST API replaced by a
//! recording stub on loopback and its claims in DynamoDB Local.

use serde_json::{Value, json};
use system_tests::dynamodb_local::DynamoDbLocal;
use system_tests::functions::Backend::MediaConvert;
use system_tests::functions::create_jobs;

use crate::starter::{
    MEDIACONVERT, ROLE, Starter, assert_a_refused_job_fails_after_the_others_started,
    assert_each_sample_starts_its_jobs, assert_signed_for, assert_the_sample_put_starts_one_job,
    sample_upload_token,
};

const QUEUE: &str = "arn:aws:mediaconvert:eu-west-1:123456789012:queues/audio";

/// One FILE_GROUP output group as it goes on the wire: the key without its extension as the
/// destination, the extension on the output.
fn group(name: &str, container: &str, codec: Value, extension: &str) -> Value {
    json!({
        "name": name,
        "outputGroupSettings": {
            "type": "FILE_GROUP_SETTINGS",
            "fileGroupSettings": {"destination": "s3://audio-transcoder-media/transcoded/alice/song.mp3"}
        },
        "outputs": [{
            "containerSettings": {"container": container},
            "audioDescriptions": [{"audioSourceName": "Audio Selector 1", "codecSettings": codec}],
            "extension": extension
        }]
    })
}

#[tokio::test]
async fn a_put_sends_the_exact_create_job_request() {
    let env = [
        MEDIACONVERT[0],
        ("MEDIACONVERT_QUEUE_ARN", QUEUE),
        ("JOB_TAG", "audio-transcoder-prod"),
    ];
    let mut starter = Starter::start(MediaConvert, &env).await;

    let request = assert_the_sample_put_starts_one_job(&mut starter, "1763885000000-mc0001").await;
    // The idempotency token is the upload's claim: the same upload, the same token.
    let token = sample_upload_token();
    assert_eq!(
        request.body,
        json!({
            "role": ROLE,
            "queue": QUEUE,
            "clientRequestToken": token,
            "userMetadata": {
                "app": "audio-transcoder-prod",
                "owner": "alice",
                "source-key": "media/alice/song.mp3",
                "upload": token
            },
            "settings": {
                "inputs": [{
                    "fileInput": "s3://audio-transcoder-media/media/alice/song.mp3",
                    "audioSelectors": {"Audio Selector 1": {"defaultSelection": "DEFAULT"}}
                }],
                "outputGroups": [
                    group("wav", "RAW", json!({"codec": "WAV", "wavSettings":
                        {"format": "RIFF", "bitDepth": 16, "channels": 2, "sampleRate": 44100}}), "wav"),
                    group("flac", "RAW", json!({"codec": "FLAC", "flacSettings":
                        {"bitDepth": 16, "channels": 2, "sampleRate": 44100}}), "flac"),
                    group("aac", "MP4", json!({"codec": "AAC", "aacSettings":
                        {"codecProfile": "LC", "codingMode": "CODING_MODE_2_0", "rateControlMode": "CBR",
                         "bitrate": 256000, "sampleRate": 44100}}), "m4a"),
                ]
            }
        })
    );
    assert_signed_for(&request, "mediaconvert");
}

#[tokio::test]
async fn every_sample_event_starts_exactly_the_jobs_it_should_and_a_redelivery_none() {
    let mut starter = Starter::start(MediaConvert, &MEDIACONVERT).await;
    assert_each_sample_starts_its_jobs(&mut starter).await;
    let sent = create_jobs(&starter.stub);
    let encoded = sent
        .iter()
        .find(|r| r.body["userMetadata"]["owner"] == "alice" && r.body.to_string().contains("café"))
        .unwrap();
    assert_eq!(
        encoded.body["settings"]["outputGroups"][2]["outputGroupSettings"]["fileGroupSettings"]["destination"],
        "s3://audio-transcoder-media/transcoded/alice/red flower (live) café C++.mp3"
    );
    assert_eq!(
        encoded.body["userMetadata"]["source-key"],
        "media/alice/red flower %28live%29 caf%C3%A9 C++.mp3"
    );
    // Without JOB_TAG and MEDIACONVERT_QUEUE_ARN: the default tag, the default queue.
    assert!(
        sent.iter()
            .all(|r| r.body["userMetadata"]["app"] == "audio-transcoder"
                && r.body["queue"].is_null())
    );

    // Redelivered: the claims in DynamoDB start nothing, and name the jobs already started.
    let again = starter
        .function
        .invoke_sample("s3-several-records.json")
        .await
        .response();
    assert!(again["started"].as_array().unwrap().is_empty());
    assert_eq!(again["duplicates"].as_array().unwrap().len(), 3);
    assert_eq!(create_jobs(&starter.stub).len(), sent.len());
}

#[tokio::test]
async fn a_refused_job_fails_the_invocation_after_the_other_records_started() {
    let mut starter = Starter::start(MediaConvert, &MEDIACONVERT).await;
    let message = assert_a_refused_job_fails_after_the_others_started(&mut starter).await;
    assert!(
        message.contains("'media/bob/refuse me.mp3': MediaConvert refused CreateJob"),
        "{message}"
    );
}

#[tokio::test]
async fn bad_mediaconvert_configuration_is_refused_at_start_up() {
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "TRANSCODER=mediaconvert needs MEDIACONVERT_ROLE_ARN"),
        (
            &[("MEDIACONVERT_ROLE_ARN", "MediaConvertRole")],
            "MEDIACONVERT_ROLE_ARN='MediaConvertRole' is invalid",
        ),
        (
            &[
                ("MEDIACONVERT_ROLE_ARN", ROLE),
                ("MEDIACONVERT_QUEUE_ARN", "Default"),
            ],
            "MEDIACONVERT_QUEUE_ARN='Default' is invalid",
        ),
    ];
    let db = DynamoDbLocal::start().await;
    for (env, expected) in cases {
        let stub = MediaConvert.stub().await;
        let mut function = stub.start(&db, env).await;
        function.assert_refused_at_start_up(expected).await;
        assert!(stub.requests().is_empty());
    }
}

//! `start-transcode` and `messages-api` against S3 itself, as moto's server mode serves it: an
//! upload link from `messages-api`, a PUT of real audio through it, S3's own notification of
//! that PUT (after its `s3:TestEvent`), and `start-transcode` reading the object's bytes by
//! ranged GET before it starts one MediaConvert job (a recording stub: it has no emulator).

use system_tests::cloud::{put, upload_link, upload_link_choosing};
use system_tests::dynamodb_local::DynamoDbLocal;
use system_tests::functions::{
    BUCKET, TranscoderStub, create_jobs, messages_api_with, sources, table,
};
use system_tests::moto::{Moto, as_s3_sends};
use system_tests::{Function, local};

use crate::starter::{assert_told_not_audio, mediaconvert_on};

/// moto's bucket notifying its intake queue, `messages-api` signing links to it and
/// `start-transcode` reading from it, both on one table of DynamoDB Local, with MediaConvert's stub.
struct Stack {
    moto: Moto,
    intake: String,
    db: DynamoDbLocal,
    table: String,
    transcoder: TranscoderStub,
    api: Function,
    starter: Function,
}

impl Stack {
    async fn start() -> Self {
        let moto = Moto::start().await;
        let intake = moto.bucket_notifying_queue(BUCKET, "media/").await;
        let db = DynamoDbLocal::start().await;
        let table = table(&db).await;
        let s3 = moto.endpoint();
        let api = messages_api_with(&db, &table, &[("AWS_ENDPOINT_URL_S3", &s3)]).await;
        let (transcoder, starter) = mediaconvert_on(&s3, &db, &table, &[]).await;
        Self {
            moto,
            intake,
            db,
            table,
            transcoder,
            api,
            starter,
        }
    }
}

#[tokio::test]
async fn an_upload_through_its_link_into_s3_starts_one_job_from_s3s_own_notification() {
    let Stack {
        moto,
        intake,
        transcoder,
        mut api,
        mut starter,
        // Held, not used: DynamoDB Local lives as long as this binding.
        db: _db,
        table: _,
    } = Stack::start().await;

    // S3 first tests the notification: a message with no records, which a consumer must skip.
    let test_event = moto.take_messages(&intake, 1).await;
    assert_eq!(test_event[0]["Event"], "s3:TestEvent", "{test_event:?}");

    let dir = local::scratch();
    let song = dir.join("Café Song.mp3");
    local::tone(&song, 3.0).await;
    let size = std::fs::metadata(&song).unwrap().len() as usize;
    let link = upload_link(&mut api, "Café Song.mp3", size, "audio/mpeg").await;
    assert_eq!(link["key"], "media/alice/Café Song.mp3");
    put(&link, &song).await;

    // S3's own event for the PUT, its key URL-encoded with `+` for a space, as S3 sends it.
    let event = as_s3_sends(moto.take_messages(&intake, 1).await.remove(0));
    let key = event["Records"][0]["s3"]["object"]["key"].as_str().unwrap();
    assert_eq!(key, "media%2Falice%2FCaf%C3%A9+Song.mp3");
    let response = starter.invoke(&event).await.response();
    assert_eq!(
        response["started"][0]["key"], "media/alice/Café Song.mp3",
        "{response}"
    );
    // The same event again (S3 delivers at least once): still one job.
    starter.invoke(&event).await.response();
    let jobs = create_jobs(&transcoder);
    assert_eq!(sources(&jobs), ["media/alice/Café Song.mp3"]);
}

#[tokio::test]
async fn the_choice_signed_into_the_link_travels_with_the_object_to_the_job() {
    let Stack {
        moto,
        intake,
        transcoder,
        mut api,
        mut starter,
        db: _db,
        table: _,
    } = Stack::start().await;
    moto.take_messages(&intake, 1).await;

    let dir = local::scratch();
    let song = dir.join("talk.mp3");
    local::tone(&song, 3.0).await;
    let size = std::fs::metadata(&song).unwrap().len() as usize;
    let choice = serde_json::json!({
        "outputs": [{"format": "mp3", "bitrate_kbps": 128}, {"format": "opus", "bitrate_kbps": 64}],
        "loudness": "podcast"
    });
    let link = upload_link_choosing(&mut api, "talk.mp3", size, "audio/mpeg", choice).await;
    assert_eq!(link["headers"]["x-amz-meta-outputs"], "mp3:128,opus:64");
    assert_eq!(link["headers"]["x-amz-meta-loudness"], "podcast");
    put(&link, &song).await;

    let event = as_s3_sends(moto.take_messages(&intake, 1).await.remove(0));
    let response = starter.invoke(&event).await.response();
    assert_eq!(
        response["started"][0]["key"], "media/alice/talk.mp3",
        "{response}"
    );
    let jobs = create_jobs(&transcoder);
    assert_eq!(jobs.len(), 1);
    let groups = jobs[0].body["settings"]["outputGroups"].as_array().unwrap();
    let audio = |group: &serde_json::Value| group["outputs"][0]["audioDescriptions"][0].clone();
    let names: Vec<_> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mp3", "opus"]);
    assert_eq!(
        audio(&groups[0])["codecSettings"]["mp3Settings"]["bitrate"],
        128_000
    );
    assert_eq!(
        audio(&groups[1])["codecSettings"]["opusSettings"]["bitrate"],
        64_000
    );
    for group in groups {
        let normalization = &audio(group)["audioNormalizationSettings"];
        assert_eq!(normalization["targetLkfs"], -16.0, "{normalization}");
        assert_eq!(
            normalization["truePeakLimiterThreshold"], -1.0,
            "{normalization}"
        );
        assert_eq!(
            normalization["algorithm"], "ITU_BS_1770_3",
            "{normalization}"
        );
    }
}

#[tokio::test]
async fn a_playlist_named_mp3_in_s3_is_rejected_from_its_bytes_and_its_owner_told() {
    let Stack {
        moto,
        intake,
        db,
        table,
        transcoder,
        mut api,
        mut starter,
    } = Stack::start().await;
    moto.take_messages(&intake, 1).await;

    let dir = local::scratch();
    let playlist = dir.join("song.mp3");
    std::fs::write(&playlist, local::hls_playlist("http://127.0.0.1:9/a.ts", 3)).unwrap();
    let size = std::fs::metadata(&playlist).unwrap().len() as usize;
    let link = upload_link(&mut api, "song.mp3", size, "audio/mpeg").await;
    put(&link, &playlist).await;
    let event = as_s3_sends(moto.take_messages(&intake, 1).await.remove(0));
    starter.invoke(&event).await.response();

    assert!(create_jobs(&transcoder).is_empty());
    assert_told_not_audio(&db, &table, "alice").await;
}

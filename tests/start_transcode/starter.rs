//! What the tests of this binary share: `start-transcode` started on a transcoder's stub and
//! DynamoDB Local, and the checks that every backend must pass alike. One place, so that the
//! backends' tests start the function the same way and hold it to the same things.

use system_tests::dynamodb_local::DynamoDbLocal;
use system_tests::functions::Backend::MediaConvert;
use system_tests::functions::{
    self, BUCKET, Backend, TranscoderStub, create_jobs, sources, unread,
};
use system_tests::{Function, Recorded, SAMPLE_UPLOADS, sample_event};
use transcoder_aws::DynamoStore;
use transcoder_core::{Claim, ObjectKey};

/// The role MediaConvert's starters pass to their jobs.
pub const ROLE: &str = "arn:aws:iam::123456789012:role/audio-transcoder-MediaConvertRole-1A2B3C";
/// What a MediaConvert starter cannot start without.
pub const MEDIACONVERT: [(&str, &str); 1] = [("MEDIACONVERT_ROLE_ARN", ROLE)];

/// `start-transcode` with what it talks to: its transcoder's stub, and DynamoDB Local for its
/// claims (a fresh table) behind a bucket stub in which every upload is audio.
pub struct Starter {
    pub stub: TranscoderStub,
    pub function: Function,
    /// Held, not read: DynamoDB Local lives as long as the starter.
    _db: DynamoDbLocal,
}

impl Starter {
    /// Sending its jobs to `backend`'s stub, with `env` besides the endpoints and the table.
    pub async fn start(backend: Backend, env: &[(&str, &str)]) -> Self {
        let stub = backend.stub().await;
        let db = DynamoDbLocal::start().await;
        let function = stub.start(&db, env).await;
        Self {
            stub,
            function,
            _db: db,
        }
    }
}

/// A MediaConvert starter reading uploads from the S3 endpoint `s3` (a bucket stub's or moto's),
/// on `table` of `db`, with `env` besides its role.
pub async fn mediaconvert_on(
    s3: &str,
    db: &DynamoDbLocal,
    table: &str,
    env: &[(&str, &str)],
) -> (TranscoderStub, Function) {
    let transcoder = MediaConvert.stub().await;
    let env = [&MEDIACONVERT[..], env].concat();
    let function = functions::start_transcode(MediaConvert, &transcoder, s3, db, table, &env).await;
    (transcoder, function)
}

/// The claim token of events/s3-put.json's upload: its id, which travels with its job.
pub fn sample_upload_token() -> String {
    Claim {
        bucket: BUCKET.into(),
        key: ObjectKey::new("media/alice/song.mp3").unwrap(),
        version: "0062E99A88DC407460".into(),
    }
    .token()
}

/// events/s3-put.json starts one job, numbered `job_id` by the stub: returns its CreateJob.
pub async fn assert_the_sample_put_starts_one_job(starter: &mut Starter, job_id: &str) -> Recorded {
    let response = starter
        .function
        .invoke_sample("s3-put.json")
        .await
        .response();
    assert_eq!(response["started"][0]["job_id"], job_id, "{response}");
    assert_eq!(response["started"][0]["key"], "media/alice/song.mp3");
    let mut requests = create_jobs(&starter.stub);
    assert_eq!(requests.len(), 1);
    requests.remove(0)
}

/// `request` is signed with the tests' credentials for `service` in eu-west-1.
pub fn assert_signed_for(request: &Recorded, service: &str) {
    let authorization = request.headers["authorization"].to_str().unwrap();
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDLOCALTEST/"),
        "{authorization}"
    );
    assert!(
        authorization.contains(&format!("/eu-west-1/{service}/aws4_request")),
        "{authorization}"
    );
}

/// Each sample upload event starts exactly the jobs [`SAMPLE_UPLOADS`] names, and says so.
pub async fn assert_each_sample_starts_its_jobs(starter: &mut Starter) {
    for (file, expected) in SAMPLE_UPLOADS {
        let before = create_jobs(&starter.stub).len();
        let response = starter.function.invoke_sample(file).await.response();
        assert_eq!(
            sources(&create_jobs(&starter.stub)[before..]),
            expected,
            "{file}"
        );
        assert_eq!(
            response["started"].as_array().unwrap().len(),
            expected.len(),
            "{file}"
        );
    }
}

/// events/s3-several-records.json with its second upload one the transcoder refuses: the
/// invocation fails naming that record, after the other two started. Returns the error message.
pub async fn assert_a_refused_job_fails_after_the_others_started(starter: &mut Starter) -> String {
    let mut event = sample_event("s3-several-records.json");
    event["Records"][1]["s3"]["object"]["key"] = "media/bob/refuse+me.mp3".into();

    let (error_type, message) = starter.function.invoke(&event).await.error();
    assert_eq!(error_type, "JobsNotStarted");
    assert!(
        message.starts_with(
            "1 of 3 transcode jobs could not be started: record 1 'media/bob/refuse me.mp3'"
        ),
        "{message}"
    );
    let accepted: Vec<_> = sources(&create_jobs(&starter.stub))
        .into_iter()
        .filter(|k| !k.contains("refuse"))
        .collect();
    assert_eq!(accepted, ["media/alice/one.mp3", "media/loose file.mp3"]);
    message
}

/// `owner` has been told, once, that an upload is not an audio file.
pub async fn assert_told_not_audio(db: &DynamoDbLocal, table: &str, owner: &str) {
    let messages = unread(&DynamoStore::new(db.client(), table, 30), owner).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].text.contains("not an audio file"),
        "{:?}",
        messages[0]
    );
}

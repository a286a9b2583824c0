//! Faults, through the built binaries: a transcoder that throttles or fails for a while, one that
//! is down for good and then recovers, and DynamoDB going away mid-run and coming back with its
//! data. In each case the invocation either succeeds having done its work exactly once, or fails
//! so that Lambda retries it, and the retry does exactly what is missing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value, json};
use system_tests::dynamodb_local::DynamoDbLocal;
use system_tests::functions::Backend::ElasticTranscoder;
use system_tests::functions::{self, PIPELINE, ids};
use system_tests::{Function, Recorded, Stub, sample_event};
use transcoder_aws::DynamoStore;
use transcoder_testkit::scratch;

/// How Elastic Transcoder (REST JSON) says no.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// 503, as when the service is overloaded or down: the SDK retries it.
    Unavailable,
    /// 400 with `__type: ThrottlingException`: the SDK classifies it as throttling and retries.
    Throttling,
    /// 400 with `__type: ValidationException`: the request itself is wrong; never retried.
    Invalid,
}

impl Fault {
    fn answer(self) -> (u16, Value) {
        match self {
            Self::Unavailable => (503, json!({"message": "Service Unavailable"})),
            Self::Throttling => (
                400,
                json!({"__type": "ThrottlingException", "message": "Rate exceeded"}),
            ),
            Self::Invalid => (
                400,
                json!({"__type": "ValidationException", "message": "1 validation error detected"}),
            ),
        }
    }
}

/// Elastic Transcoder's CreateJob, failing with `fault` while `failing` says so: for the first
/// `fail_first` calls, or for as long as `down` is set.
struct FlakyTranscoder {
    stub: Stub,
    down: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
}

impl FlakyTranscoder {
    async fn start(fault: Fault, fail_first: usize) -> Self {
        let down = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let calls = AtomicUsize::new(0);
        let (is_down, jobs) = (down.clone(), accepted.clone());
        let stub = Stub::start(move |req: &Recorded| {
            if (req.method.as_str(), req.path.as_str()) != ("POST", "/2012-09-25/jobs") {
                return (404, json!({"message": "not stubbed"}));
            }
            let call = calls.fetch_add(1, Ordering::SeqCst);
            if call < fail_first || is_down.load(Ordering::SeqCst) {
                return fault.answer();
            }
            let n = jobs.fetch_add(1, Ordering::SeqCst) + 1;
            (
                201,
                json!({"Job": {"Id": format!("1700000000000-job{n:03}"), "Status": "Submitted"}}),
            )
        })
        .await;
        Self {
            stub,
            down,
            accepted,
        }
    }

    /// The source key of every CreateJob that reached the stub, accepted or not.
    fn attempts(&self) -> Vec<String> {
        self.stub
            .requests()
            .iter()
            .filter(|r| r.path == "/2012-09-25/jobs")
            .map(|r| {
                r.body["Input"]["Key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Every upload is audio: the faults under test are the transcoder's and the store's.
async fn start_transcode(
    transcoder: &FlakyTranscoder,
    db: &DynamoDbLocal,
    table: &str,
) -> Function {
    let bucket = system_tests::s3::bucket(Vec::new()).await;
    let env = [("PIPELINE_ID", PIPELINE)];
    functions::start_transcode(
        ElasticTranscoder,
        &transcoder.stub,
        &bucket.url(),
        db,
        table,
        &env,
    )
    .await
}

fn names(response: &Value, field: &str) -> Vec<String> {
    let mut keys: Vec<String> = response[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_transcoder_that_throttles_or_fails_twice_still_starts_the_job_exactly_once() {
    let db = DynamoDbLocal::start().await;
    for (n, fault) in [Fault::Unavailable, Fault::Throttling]
        .into_iter()
        .enumerate()
    {
        let table = format!("claims-{n}");
        db.create_table(&table).await;
        // The SDK makes three attempts: two refused, the third accepted.
        let transcoder = FlakyTranscoder::start(fault, 2).await;
        let mut function = start_transcode(&transcoder, &db, &table).await;

        let first = function.invoke_sample("s3-put.json").await.response();
        assert_eq!(
            names(&first, "started"),
            ["media/alice/song.mp3"],
            "{fault:?}"
        );
        assert_eq!(
            transcoder.attempts(),
            ["media/alice/song.mp3"; 3],
            "{fault:?}"
        );
        assert_eq!(transcoder.accepted(), 1, "{fault:?}");

        let again = function.invoke_sample("s3-put.json").await.response();
        assert_eq!(
            names(&again, "duplicates"),
            ["media/alice/song.mp3"],
            "{fault:?}"
        );
        assert_eq!(
            again["duplicates"][0]["job_id"],
            first["started"][0]["job_id"]
        );
        assert_eq!(
            transcoder.attempts().len(),
            3,
            "{fault:?}: no new CreateJob"
        );
    }
}

#[tokio::test]
async fn a_request_the_transcoder_rejects_as_invalid_is_not_retried_by_the_sdk() {
    let db = DynamoDbLocal::start().await;
    db.create_table("claims").await;
    let transcoder = FlakyTranscoder::start(Fault::Invalid, usize::MAX).await;
    let mut function = start_transcode(&transcoder, &db, "claims").await;
    let (error_type, message) = function.invoke_sample("s3-put.json").await.error();
    assert_eq!(error_type, "JobsNotStarted");
    assert!(message.contains("ValidationException"), "{message}");
    assert_eq!(transcoder.attempts(), ["media/alice/song.mp3"]);
}

#[tokio::test]
async fn a_transcoder_down_for_good_fails_the_invocation_and_the_retry_after_it_recovers_starts_each_job_once()
 {
    let db = DynamoDbLocal::start().await;
    db.create_table("claims").await;
    let transcoder = FlakyTranscoder::start(Fault::Unavailable, 0).await;
    transcoder.down.store(true, Ordering::SeqCst);
    let mut function = start_transcode(&transcoder, &db, "claims").await;
    let event = sample_event("s3-several-records.json");
    let expected = [
        "media/alice/one.mp3",
        "media/bob/two.flac",
        "media/loose file.mp3",
    ];

    let (error_type, message) = function.invoke(&event).await.error();
    assert_eq!(error_type, "JobsNotStarted");
    assert!(
        message.starts_with("3 of 3 transcode jobs could not be started"),
        "{message}"
    );
    assert_eq!(transcoder.accepted(), 0);
    let refused = transcoder.attempts().len();
    assert!(
        refused > 3,
        "the SDK retried each refused CreateJob ({refused} attempts)"
    );

    // Lambda retries the event once the service is back: the released claims let each job start.
    transcoder.down.store(false, Ordering::SeqCst);
    let retry = function.invoke(&event).await.response();
    assert_eq!(names(&retry, "started"), expected);
    assert_eq!(transcoder.accepted(), 3);

    // And the retry after that (or a late redelivery) starts nothing more.
    let again = function.invoke(&event).await.response();
    assert_eq!(names(&again, "duplicates"), expected);
    assert_eq!(transcoder.accepted(), 3);
    assert_eq!(transcoder.attempts().len(), refused + 3);
}

#[tokio::test]
async fn a_claim_store_that_is_down_starts_nothing_and_the_retry_starts_the_job_once() {
    let dir = scratch();
    let mut db = DynamoDbLocal::start_persistent(&dir).await;
    db.create_table("claims").await;
    let transcoder = FlakyTranscoder::start(Fault::Unavailable, 0).await;
    let mut function = start_transcode(&transcoder, &db, "claims").await;

    db.stop().await;
    let (error_type, message) = function.invoke_sample("s3-put.json").await.error();
    assert_eq!(error_type, "JobsNotStarted");
    // The first write to the table, the upload's `received` record, is the one that fails: before
    // any claim is taken, so the retry has nothing to wait out.
    assert!(
        message.contains("the upload's record could not be written"),
        "{message}"
    );
    // Without a claim, no job: an unprotected start could run twice.
    assert!(transcoder.attempts().is_empty());

    db.restart().await;
    let retry = function.invoke_sample("s3-put.json").await.response();
    assert_eq!(names(&retry, "started"), ["media/alice/song.mp3"]);
    let again = function.invoke_sample("s3-put.json").await.response();
    assert_eq!(names(&again, "duplicates"), ["media/alice/song.mp3"]);
    assert_eq!(transcoder.accepted(), 1);

    db.stop().await;
}

#[tokio::test]
async fn dynamodb_stopped_mid_run_fails_record_completion_and_the_retry_loses_no_message() {
    let dir = scratch();
    let mut db = DynamoDbLocal::start_persistent(&dir).await;
    db.create_table("messages").await;
    let mut function = functions::record_completion(&db, "messages").await;

    let before = function
        .invoke_sample("sns-et-completed.json")
        .await
        .response();
    assert_eq!(ids(&before, "recorded"), ["1700000000000-abc001"]);

    db.stop().await;
    let (error_type, message) = function.invoke_sample("sns-et-warning.json").await.error();
    assert_eq!(error_type, "MessagesNotStored");
    assert!(
        message.starts_with(
            "1 of 1 messages could not be stored: record 0 (job 1700000000000-abc002)"
        ),
        "{message}"
    );

    // DynamoDB comes back with its data; Lambda retries the same event.
    db.restart().await;
    let retry = function
        .invoke_sample("sns-et-warning.json")
        .await
        .response();
    assert_eq!(ids(&retry, "recorded"), ["1700000000000-abc002"]);
    let again = function
        .invoke_sample("sns-et-warning.json")
        .await
        .response();
    assert_eq!(ids(&again, "duplicates"), ["1700000000000-abc002"]);

    let store = DynamoStore::new(db.client(), "messages", 30);
    let unread = functions::unread(&store, "alice").await;
    let mut listed: Vec<_> = unread.iter().map(|m| m.id.0.as_str()).collect();
    listed.sort_unstable();
    assert_eq!(listed, ["1700000000000-abc001", "1700000000000-abc002"]);

    db.stop().await;
}

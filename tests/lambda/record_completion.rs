//! `record-completion` as Lambda runs it: the built binary, fed the sample SNS events through the
//! Runtime API, writing to DynamoDB Local.

use serde_json::Value;
use system_tests::dynamodb_local::DynamoDbLocal;
use system_tests::functions::{self, TOPIC, ids, record_completion};
use system_tests::{Function, sample_event};
use transcoder_aws::DynamoStore;

async fn unread(store: &DynamoStore, owner: &str) -> Vec<(String, String, String)> {
    functions::unread(store, owner)
        .await
        .into_iter()
        .map(|m| {
            (
                m.id.0,
                serde_json::to_value(m.state)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
                m.text,
            )
        })
        .collect()
}

#[tokio::test]
async fn every_sample_notification_is_recorded_or_rejected_as_it_should() {
    let db = DynamoDbLocal::start().await;
    db.create_table("messages").await;
    let store = DynamoStore::new(db.client(), "messages", 30);
    let mut function = record_completion(&db, "messages").await;

    for (file, recorded) in [
        ("sns-et-completed.json", &["1700000000000-abc001"][..]),
        ("sns-et-warning.json", &["1700000000000-abc002"]),
        ("sns-et-error.json", &["1700000000000-abc003"]),
        ("sns-et-progressing.json", &[]),
        ("sns-mediaconvert-complete.json", &["1763885000000-mc0001"]),
        ("sns-mediaconvert-error.json", &["1763885000000-mc0002"]),
        ("sns-duplicate.json", &["1700000000000-abc005"]),
        ("sns-foreign-topic.json", &[]),
        ("sns-not-json.json", &[]),
    ] {
        let response = function.invoke_sample(file).await.response();
        assert_eq!(ids(&response, "recorded"), recorded, "{file}");
    }

    let alice = unread(&store, "alice").await;
    let states: Vec<_> = alice
        .iter()
        .map(|(id, state, _)| (id.as_str(), state.as_str()))
        .collect();
    assert_eq!(states.len(), 4);
    for expected in [
        ("1700000000000-abc001", "completed"),
        ("1700000000000-abc002", "completed_with_warnings"),
        ("1700000000000-abc003", "failed"),
        ("1700000000000-abc005", "completed"),
    ] {
        assert!(states.contains(&expected), "{expected:?} in {states:?}");
    }
    let failed = alice
        .iter()
        .find(|(id, ..)| id == "1700000000000-abc003")
        .unwrap();
    assert_eq!(
        failed.2,
        "Your file red flower (live) café.mp3 could not be processed: \
         The input file is not a supported audio or video file. (code 3002)."
    );
    let bob: Vec<_> = unread(&store, "bob")
        .await
        .into_iter()
        .map(|(id, state, _)| (id, state))
        .collect();
    assert_eq!(bob.len(), 2);
    assert!(bob.contains(&("1763885000000-mc0001".into(), "completed".into())));

    // Poison is a log line naming the record, and the invocation still succeeds.
    assert!(function.logged(&["poison notification rejected", "someone-elses-topic"]));
    assert!(function.logged(&["poison notification rejected", "not JSON"]));
}

#[tokio::test]
async fn the_same_notification_delivered_twice_is_one_message() {
    let db = DynamoDbLocal::start().await;
    db.create_table("messages").await;
    let store = DynamoStore::new(db.client(), "messages", 30);
    let mut function = record_completion(&db, "messages").await;

    let first = function
        .invoke_sample("sns-duplicate.json")
        .await
        .response();
    let second = function
        .invoke_sample("sns-duplicate.json")
        .await
        .response();
    assert_eq!(ids(&first, "recorded"), ["1700000000000-abc005"]);
    assert_eq!(ids(&first, "duplicates"), ["1700000000000-abc005"]);
    assert!(ids(&second, "recorded").is_empty());
    assert_eq!(unread(&store, "alice").await.len(), 1);
}

#[tokio::test]
async fn an_unreachable_table_fails_the_invocation_so_lambda_retries() {
    let db = DynamoDbLocal::start().await;
    // No table: every write fails the way an unavailable DynamoDB does, as a retryable error.
    let mut function = record_completion(&db, "no-such-table").await;
    let (error_type, message) = function
        .invoke_sample("sns-et-completed.json")
        .await
        .error();
    assert_eq!(error_type, "MessagesNotStored");
    assert!(
        message.starts_with(
            "1 of 1 messages could not be stored: record 0 (job 1700000000000-abc001)"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_topic_is_refused_at_start_up() {
    let mut function = Function::start("record-completion", &[("TABLE_NAME", "messages")]).await;
    function
        .assert_refused_at_start_up("TOPIC_ARN is required")
        .await;
}

/// The one message of `owner` with id `id`, whole.
async fn message(store: &DynamoStore, owner: &str, id: &str) -> transcoder_core::Message {
    functions::unread(store, owner)
        .await
        .into_iter()
        .find(|m| m.id.0 == id)
        .unwrap_or_else(|| panic!("{owner} has no message {id}"))
}

#[tokio::test]
async fn mediaconvert_job_states_as_they_arrive_through_sns() {
    let db = DynamoDbLocal::start().await;
    db.create_table("messages").await;
    let store = DynamoStore::new(db.client(), "messages", 30);
    let mut function = record_completion(&db, "messages").await;
    let mut invoke = async |file: &str| function.invoke_sample(file).await.response();

    // COMPLETE, then a STATUS_UPDATE of the same job that arrives late: the final message stays.
    let complete = invoke("sns-mediaconvert-complete.json").await;
    assert_eq!(ids(&complete, "recorded"), ["1763885000000-mc0001"]);
    let before = message(&store, "bob", "1763885000000-mc0001").await;
    let late = invoke("sns-mediaconvert-status-update.json").await;
    assert!(ids(&late, "recorded").is_empty());
    assert!(late["rejected"].as_array().unwrap().is_empty());
    assert_eq!(late["progress"], 1);
    let after = message(&store, "bob", "1763885000000-mc0001").await;
    assert_eq!(after, before);
    assert_eq!(
        after.text,
        "Your file Long Set.MP3 has been processed: transcoded/bob/Long Set.wav (wav, 3600.0 s), \
         transcoded/bob/Long Set.flac (flac, 3600.0 s), transcoded/bob/Long Set.m4a (aac, 3600.1 s)."
    );

    // COMPLETE where one output group reports no file: the files that were reported are listed.
    let partial = invoke("sns-mediaconvert-complete-missing-paths.json").await;
    assert_eq!(ids(&partial, "recorded"), ["1763885000000-mc0003"]);
    let partial = message(&store, "alice", "1763885000000-mc0003").await;
    assert_eq!(
        serde_json::to_value(partial.state).unwrap(),
        serde_json::json!("completed")
    );
    assert_eq!(
        partial.text,
        "Your file song.mp3 has been processed: transcoded/alice/song.wav (wav, 6.0 s), \
         transcoded/alice/song.m4a (aac, 6.0 s)."
    );
    assert_eq!(partial.outputs.len(), 2);

    // ERROR with its code and message; CANCELED, which carries neither.
    let error = invoke("sns-mediaconvert-error.json").await;
    assert_eq!(ids(&error, "recorded"), ["1763885000000-mc0002"]);
    assert_eq!(
        message(&store, "bob", "1763885000000-mc0002").await.text,
        "Your file Long Set.MP3 could not be processed: Demuxer: [ReadPacketData File read failed \
         - end of file hit at length [1048576]. Is file truncated?] (code 1040)."
    );
    let canceled = invoke("sns-mediaconvert-canceled.json").await;
    assert_eq!(ids(&canceled, "recorded"), ["1763885000000-mc0004"]);
    let canceled = message(&store, "alice", "1763885000000-mc0004").await;
    assert_eq!(
        (
            serde_json::to_value(canceled.state).unwrap(),
            canceled.text.as_str()
        ),
        (
            serde_json::json!("failed"),
            "Your file one.mp3 could not be processed: the job was canceled."
        )
    );
    assert!(canceled.outputs.is_empty());
}

/// `sns-et-completed.json` as job `job_id` of alice's, announcing the outputs `keys`.
fn alice_completed(job_id: &str, keys: &[&str]) -> Value {
    let mut event = sample_event("sns-et-completed.json");
    let message = event["Records"][0]["Sns"]["Message"].as_str().unwrap();
    let mut message: Value = serde_json::from_str(message).unwrap();
    message["jobId"] = job_id.into();
    message["outputs"] = keys
        .iter()
        .map(|key| serde_json::json!({"key": key, "status": "Complete", "duration": 6.0}))
        .collect();
    event["Records"][0]["Sns"]["Message"] = message.to_string().into();
    event
}

#[tokio::test]
async fn an_output_in_another_users_folder_never_reaches_the_owners_message() {
    let db = DynamoDbLocal::start().await;
    db.create_table("messages").await;
    let store = DynamoStore::new(db.client(), "messages", 30);
    let mut function = record_completion(&db, "messages").await;
    let bobs = "transcoded/bob/diary\nforged=1.mp3.wav";

    // One output of alice's and one in bob's folder: alice is offered hers alone.
    let mixed = alice_completed("job-mixed", &["transcoded/alice/song.mp3.wav", bobs]);
    let response = function.invoke(&mixed).await.response();
    assert_eq!(ids(&response, "recorded"), ["job-mixed"]);
    let mixed = message(&store, "alice", "job-mixed").await;
    let keys: Vec<_> = mixed.outputs.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["transcoded/alice/song.mp3.wav"]);
    assert!(!mixed.text.contains("bob"), "{}", mixed.text);
    // The dropped key is logged on one line, its newline escaped.
    assert!(
        function.logged(&[
            "output outside the owner's folder dropped",
            "job-mixed",
            r"transcoded/bob/diary\nforged=1.mp3.wav",
        ]),
        "{:?}",
        function.output()
    );
    assert!(
        !function
            .output()
            .iter()
            .any(|line| line.starts_with("forged=1"))
    );

    // Only bob's output, reached through '..': nothing to offer, so alice is told it failed.
    let only_bobs = alice_completed("job-only-bobs", &["transcoded/alice/../bob/diary.mp3.wav"]);
    function.invoke(&only_bobs).await.response();
    let failed = message(&store, "alice", "job-only-bobs").await;
    assert_eq!(serde_json::to_value(failed.state).unwrap(), "failed");
    assert!(failed.outputs.is_empty());
    assert!(
        failed
            .text
            .ends_with(&format!("{}.", transcoder_core::NO_OWN_OUTPUTS)),
        "{}",
        failed.text
    );
    assert!(unread(&store, "bob").await.is_empty());
}

#[tokio::test]
async fn a_bad_output_prefix_is_refused_at_start_up() {
    let mut function = Function::start(
        "record-completion",
        &[
            ("TABLE_NAME", "messages"),
            ("TOPIC_ARN", TOPIC),
            ("OUTPUT_PREFIX", "/transcoded/"),
        ],
    )
    .await;
    function
        .assert_refused_at_start_up("OUTPUT_PREFIX='/transcoded/' is invalid")
        .await;
}

//! `record_completion`: each transcoder's notification moves the upload forward and tells its
//! owner, once, whatever the order and however often it arrives.

use transcoder_core::*;
use transcoder_testkit::*;

const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:audio-transcoder-completions";

fn config() -> RecordConfig {
    RecordConfig::from_env(&[("TOPIC_ARN", TOPIC)]).unwrap()
}

/// `sns-et-completed.json` (alice's job) with its outputs replaced by `keys`.
fn completed_with_outputs(keys: &[&str]) -> RawSnsEvent {
    let mut event = event("sns-et-completed.json");
    let mut message: serde_json::Value =
        serde_json::from_str(event.records[0]["Sns"]["Message"].as_str().unwrap()).unwrap();
    message["outputs"] = keys
        .iter()
        .map(|key| serde_json::json!({"key": key, "status": "Complete", "duration": 6.0}))
        .collect();
    event.records[0]["Sns"]["Message"] = message.to_string().into();
    event
}

fn event(file: &str) -> RawSnsEvent {
    let path = format!("{}/../../events/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn unread(store: &MemoryStore, owner: &str) -> Vec<Message> {
    store
        .list_unread(&Owner::new(owner).unwrap(), 100, None)
        .await
        .unwrap()
        .messages
}

#[tokio::test]
async fn final_states_become_one_message_each_for_the_owner() {
    let store = MemoryStore::default();
    for (file, owner, state) in [
        ("sns-et-completed.json", "alice", Outcome::Completed),
        (
            "sns-et-warning.json",
            "alice",
            Outcome::CompletedWithWarnings,
        ),
        ("sns-et-error.json", "alice", Outcome::Failed),
        ("sns-mediaconvert-complete.json", "bob", Outcome::Completed),
        ("sns-mediaconvert-error.json", "bob", Outcome::Failed),
    ] {
        let report = record_completion(event(file), &config(), &store)
            .await
            .unwrap();
        assert_eq!(report.recorded.len(), 1, "{file}");
        let id = MessageId(report.recorded[0].clone());
        let messages = unread(&store, owner).await;
        let message = messages.iter().find(|m| m.id == id).unwrap();
        assert_eq!(message.state, state, "{file}");
    }
    assert_eq!(unread(&store, "alice").await.len(), 3);
    assert_eq!(unread(&store, "bob").await.len(), 2);
    assert!(unread(&store, "mallory").await.is_empty());
}

#[tokio::test]
async fn the_same_notification_twice_is_one_message() {
    let store = MemoryStore::default();
    let report = record_completion(event("sns-duplicate.json"), &config(), &store)
        .await
        .unwrap();
    assert_eq!(report.recorded, ["1700000000000-abc005"]);
    assert_eq!(report.duplicates, ["1700000000000-abc005"]);
    // And again, as a whole redelivered event.
    let again = record_completion(event("sns-duplicate.json"), &config(), &store)
        .await
        .unwrap();
    assert!(again.recorded.is_empty());
    assert_eq!(unread(&store, "alice").await.len(), 1);
}

#[tokio::test]
async fn a_late_progress_event_changes_nothing() {
    let store = MemoryStore::default();
    record_completion(event("sns-et-completed.json"), &config(), &store)
        .await
        .unwrap();
    let before = unread(&store, "alice").await;
    let mut late = event("sns-et-progressing.json");
    let mut message: serde_json::Value =
        serde_json::from_str(late.records[0]["Sns"]["Message"].as_str().unwrap()).unwrap();
    message["jobId"] = "1700000000000-abc001".into();
    late.records[0]["Sns"]["Message"] = message.to_string().into();
    let report = record_completion(late, &config(), &store).await.unwrap();
    assert_eq!(report.progress, 1);
    assert_eq!(unread(&store, "alice").await, before);
}

#[tokio::test]
async fn poison_is_rejected_and_the_other_records_are_still_recorded() {
    let store = MemoryStore::default();
    let mut combined = event("sns-foreign-topic.json");
    combined.records.extend(event("sns-not-json.json").records);
    combined
        .records
        .push(serde_json::json!({"not": "an sns record"}));
    let mut no_owner = event("sns-et-completed.json").records.remove(0);
    no_owner["Sns"]["Message"] =
        r#"{"state":"COMPLETED","jobId":"j-no-owner","input":{"key":"media/a.mp3"}}"#.into();
    combined.records.push(no_owner);
    combined
        .records
        .extend(event("sns-et-completed.json").records);

    let report = record_completion(combined, &config(), &store)
        .await
        .unwrap();
    let reasons: Vec<_> = report
        .rejected
        .iter()
        .map(|r| (r.record, r.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 4);
    assert!(reasons[0].1.contains("someone-elses-topic"), "{reasons:?}");
    assert!(
        reasons[1]
            .1
            .starts_with("the message is not a transcoder notification"),
        "{reasons:?}"
    );
    assert!(reasons[2].1.starts_with("not an SNS record"), "{reasons:?}");
    assert_eq!(
        reasons[3],
        (3, "job j-no-owner carries no owner in its user metadata")
    );
    assert_eq!(report.recorded, ["1700000000000-abc001"]);
}

#[tokio::test]
async fn an_unavailable_store_fails_the_invocation_and_the_retry_loses_nothing() {
    let store = MemoryStore::default();
    store.fail_message_writes(true);
    let err = record_completion(event("sns-et-completed.json"), &config(), &store)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "1 of 1 messages could not be stored: record 0 (job 1700000000000-abc001): \
         the store is unavailable: connection refused"
    );
    store.fail_message_writes(false);
    let report = record_completion(event("sns-et-completed.json"), &config(), &store)
        .await
        .unwrap();
    assert_eq!(report.recorded, ["1700000000000-abc001"]);
}

/// `record_completion` of the sample event `file`, which must succeed.
async fn record(store: &MemoryStore, file: &str) -> RecordReport {
    record_completion(event(file), &config(), store)
        .await
        .unwrap()
}

async fn upload_of(store: &impl UploadStore, owner: &str, id: &str) -> Option<UploadRecord> {
    let owner = Owner::new(owner).unwrap();
    store.upload(&owner, &UploadId(id.into())).await.unwrap()
}

const BOBS_UPLOAD: &str = "b0b00000000000000000000000000001";

#[tokio::test]
async fn progress_moves_the_upload_record_and_nothing_moves_it_back() {
    let store = MemoryStore::default();
    let report = record(&store, "sns-mediaconvert-status-update.json").await;
    assert_eq!(report.progress, 1);
    assert_eq!(report.uploads, [BOBS_UPLOAD]);
    assert!(report.recorded.is_empty(), "progress writes no message");
    assert!(unread(&store, "bob").await.is_empty());
    let seen = upload_of(&store, "bob", BOBS_UPLOAD).await.unwrap();
    assert_eq!(
        (seen.state, seen.percent),
        (UploadState::Transcoding, Some(96))
    );
    assert_eq!(
        (seen.file.as_str(), seen.key.as_str()),
        ("Long Set.MP3", "media/bob/Long Set.MP3")
    );

    record(&store, "sns-mediaconvert-complete.json").await;
    let done = upload_of(&store, "bob", BOBS_UPLOAD).await.unwrap();
    assert_eq!(
        (done.state, done.percent),
        (UploadState::Completed, Some(100))
    );
    let keys: Vec<_> = done.outputs.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "transcoded/bob/Long Set.wav",
            "transcoded/bob/Long Set.flac",
            "transcoded/bob/Long Set.m4a"
        ]
    );
    assert_eq!(done.created_at, seen.created_at);

    // The status update again, late; and the end again: nothing moves.
    for late in [
        "sns-mediaconvert-status-update.json",
        "sns-mediaconvert-complete.json",
    ] {
        let report = record(&store, late).await;
        assert!(report.uploads.is_empty(), "{late}");
    }
    assert_eq!(upload_of(&store, "bob", BOBS_UPLOAD).await, Some(done));
    assert_eq!(unread(&store, "bob").await.len(), 1);
}

#[tokio::test]
async fn a_superseded_upload_is_not_moved_by_its_old_jobs_late_notifications() {
    let store = MemoryStore::default();
    let upload = transcoder_core::UploadRef {
        owner: Owner::new("bob").unwrap(),
        id: UploadId(BOBS_UPLOAD.into()),
        source: transcoder_core::ObjectKey::new("media/bob/Long Set.MP3").unwrap(),
    };
    let replaced = transcoder_core::REPLACED;
    let superseded = UploadRecord::superseded(&upload, replaced, chrono::Utc::now());
    assert!(store.advance(&superseded).await.unwrap());
    for late in [
        "sns-mediaconvert-status-update.json",
        "sns-mediaconvert-complete.json",
    ] {
        let report = record(&store, late).await;
        assert!(report.uploads.is_empty(), "{late} moved the record");
    }
    assert_eq!(
        upload_of(&store, "bob", BOBS_UPLOAD).await,
        Some(superseded)
    );
}

#[tokio::test]
async fn a_job_whose_input_was_replaced_ends_its_upload_superseded_with_no_message() {
    let store = MemoryStore::default();
    let alices = "a1ce0000000000000000000000000001";
    let report = record(&store, "sns-lambda-superseded.json").await;
    assert_eq!((report.recorded.len(), report.progress), (0, 1));
    assert_eq!(report.uploads, [alices]);
    assert!(unread(&store, "alice").await.is_empty());
    let ended = upload_of(&store, "alice", alices).await.unwrap();
    assert_eq!(ended.state, UploadState::Superseded);
    assert_eq!(ended.reason.as_deref(), Some(transcoder_core::GONE));
    // A redelivery moves nothing and tells nobody.
    let again = record(&store, "sns-lambda-superseded.json").await;
    assert!(again.uploads.is_empty() && again.recorded.is_empty());
}

#[tokio::test]
async fn a_file_the_worker_refused_from_its_bytes_ends_its_upload_rejected_with_a_message() {
    let store = MemoryStore::default();
    let alices = "a1ce0000000000000000000000000001";
    let report = record(&store, "sns-lambda-rejected.json").await;
    assert_eq!(report.recorded, ["audio-a1ce0000000000000000000000000001"]);
    let ended = upload_of(&store, "alice", alices).await.unwrap();
    assert_eq!((ended.state, ended.percent), (UploadState::Rejected, None));
    let reason = ended.reason.unwrap();
    assert!(reason.starts_with("the file is too long"), "{reason}");
    let messages = unread(&store, "alice").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].state, Outcome::Failed);
    assert!(
        messages[0].text.contains("MediaConvert"),
        "{:?}",
        messages[0]
    );
}

#[tokio::test]
async fn a_measured_job_keeps_its_analysis_on_the_upload_record() {
    let store = MemoryStore::default();
    let alices = "a1ce0000000000000000000000000001";
    record(&store, "sns-lambda-completed.json").await;
    let ended = upload_of(&store, "alice", alices).await.unwrap();
    assert_eq!(ended.state, UploadState::Completed);
    let analysis = ended.analysis.expect("the worker measured the source");
    assert_eq!(
        (
            analysis.duration_s,
            analysis.integrated_lufs,
            analysis.true_peak_dbtp,
            analysis.loudness_range_lu
        ),
        (184.32, Some(-19.4), Some(-0.3), Some(6.2))
    );
    assert_eq!(
        analysis.peaks.as_ref().map(ObjectKey::as_str),
        Some("transcoded/alice/red flower (live) café.mp3.peaks.json")
    );
    // AWS's transcoders measure nothing.
    record(&store, "sns-mediaconvert-complete.json").await;
    let bobs = store
        .list_uploads(&Owner::new("bob").unwrap(), 10, None)
        .await
        .unwrap();
    assert!(
        bobs.uploads.iter().all(|u| u.analysis.is_none()),
        "{bobs:?}"
    );
}

#[tokio::test]
async fn an_unavailable_upload_record_keeps_the_message_and_the_retry_moves_it() {
    let store = MemoryStore::default();
    store.fail_upload_writes(&UploadState::ALL);
    // Progress that cannot be written fails nothing: the next event moves the record.
    let report = record(&store, "sns-mediaconvert-status-update.json").await;
    assert_eq!((report.progress, report.uploads.len()), (1, 0));
    // The end is retried, but its message is written at once.
    let err = record_completion(event("sns-mediaconvert-complete.json"), &config(), &store)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("upload records are throttled"),
        "{err}"
    );
    assert_eq!(unread(&store, "bob").await.len(), 1);
    assert_eq!(upload_of(&store, "bob", BOBS_UPLOAD).await, None);
    store.fail_upload_writes(&[]);
    let retry = record(&store, "sns-mediaconvert-complete.json").await;
    assert_eq!(retry.duplicates, ["1763885000000-mc0001"]);
    assert_eq!(retry.uploads, [BOBS_UPLOAD]);
    let done = upload_of(&store, "bob", BOBS_UPLOAD).await.unwrap();
    assert_eq!(done.state, UploadState::Completed);
}

#[tokio::test]
async fn outputs_outside_the_owners_folder_are_left_out_of_the_message() {
    let store = MemoryStore::default();
    let event = completed_with_outputs(&[
        "transcoded/alice/song.mp3.wav",
        "transcoded/bob/secret.mp3.wav",
        "transcoded/alice/../bob/secret.mp3.flac",
        "media/bob/secret.mp3",
    ]);
    let report = record_completion(event, &config(), &store).await.unwrap();
    assert_eq!(report.recorded, ["1700000000000-abc001"]);
    let message = &unread(&store, "alice").await[0];
    assert_eq!(message.state, Outcome::Completed);
    let keys: Vec<_> = message.outputs.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["transcoded/alice/song.mp3.wav"]);
    assert!(!message.text.contains("bob"), "{}", message.text);
}

#[tokio::test]
async fn a_success_with_no_output_of_the_owners_is_a_failure_that_says_why() {
    for outputs in [&["transcoded/bob/song.mp3.wav"][..], &[]] {
        let store = MemoryStore::default();
        record_completion(completed_with_outputs(outputs), &config(), &store)
            .await
            .unwrap();
        let message = &unread(&store, "alice").await[0];
        assert_eq!(message.state, Outcome::Failed, "{outputs:?}");
        assert!(message.outputs.is_empty());
        assert_eq!(
            message.text,
            format!(
                "Your file red flower (live) café.mp3 could not be processed: {NO_OWN_OUTPUTS}."
            )
        );
    }
}

#[tokio::test]
async fn the_output_prefix_is_configurable() {
    let store = MemoryStore::default();
    let config = RecordConfig::from_env(&[("TOPIC_ARN", TOPIC), ("OUTPUT_PREFIX", "out")]).unwrap();
    assert_eq!(config.output_prefix, "out/");
    let event = completed_with_outputs(&["out/alice/a.mp3.wav", "transcoded/alice/a.mp3.wav"]);
    record_completion(event, &config, &store).await.unwrap();
    let message = &unread(&store, "alice").await[0];
    let keys: Vec<_> = message.outputs.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["out/alice/a.mp3.wav"]);
}

#[test]
fn the_output_prefix_defaults_to_the_starters_and_is_checked() {
    assert_eq!(config().output_prefix, StartConfig::DEFAULT_OUTPUT_PREFIX);
    for bad in ["/", "/transcoded/"] {
        let err =
            RecordConfig::from_env(&[("TOPIC_ARN", TOPIC), ("OUTPUT_PREFIX", bad)]).unwrap_err();
        assert!(err.to_string().starts_with("OUTPUT_PREFIX"), "{err}");
    }
}

#[test]
fn the_topic_is_required() {
    assert!(
        RecordConfig::from_env(&[])
            .unwrap_err()
            .to_string()
            .contains("TOPIC_ARN is required")
    );
    assert!(RecordConfig::from_env(&[("TOPIC_ARN", "completions")]).is_err());
}

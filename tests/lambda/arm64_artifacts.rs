//! The arm64 artifacts `sam build` makes, run under qemu-aarch64-static through the Runtime API
//! harness (`Function::start_arm64`): what deploys is what is tested. Each test needs
//! `.aws-sam/build/{LogicalId}/bootstrap` (`make arm64-artifacts`); without it a test is skipped
//! with the reason printed, unless `REQUIRE_ARM64` is set (`make test` sets it), where it fails.

use serde_json::Value;
use system_tests::cloud::{LambdaStack, Worker, download};
use system_tests::dynamodb_local::DynamoDbLocal;
use system_tests::functions::{self, TOPIC, ids};
use system_tests::{Function, arm64, local};
use tokio::process::Command;
use transcoder_aws::DynamoStore;

/// The arm64 record-completion, on Elastic Transcoder's sample completion, writes the owner's
/// message to DynamoDB Local exactly as the native build does (tests/lambda/record_completion.rs).
#[tokio::test]
async fn the_arm64_record_completion_bootstrap_records_a_completed_job_under_qemu() {
    let Some(bootstrap) = arm64::bootstrap_or_skip("RecordCompletionFunction") else {
        return;
    };
    // The artifact is the arm64 build, not a host binary that qemu would refuse anyway.
    let file = Command::new("file").arg(&bootstrap).output().await;
    if let Ok(file) = file {
        let text = String::from_utf8_lossy(&file.stdout);
        assert!(text.contains("ARM aarch64"), "{text}");
    }

    let db = DynamoDbLocal::start().await;
    db.create_table("messages").await;
    let store = DynamoStore::new(db.client(), "messages", 30);
    let endpoint = db.endpoint();
    let mut function = Function::start_arm64(
        "RecordCompletionFunction",
        &[
            ("AWS_ENDPOINT_URL", &endpoint),
            ("TABLE_NAME", "messages"),
            ("TOPIC_ARN", TOPIC),
        ],
    )
    .await;

    let response = function
        .invoke_sample("sns-et-completed.json")
        .await
        .response();
    assert_eq!(ids(&response, "recorded"), ["1700000000000-abc001"]);
    let messages = functions::unread(&store, "alice").await;
    let states: Vec<(String, Value)> = messages
        .iter()
        .map(|m| (m.id.0.clone(), serde_json::to_value(m.state).unwrap()))
        .collect();
    assert_eq!(
        states,
        [("1700000000000-abc001".to_owned(), "completed".into())]
    );
    // And a poison event is answered, not crashed on, by the same emulated process.
    let response = function
        .invoke_sample("sns-foreign-topic.json")
        .await
        .response();
    assert_eq!(ids(&response, "recorded"), Vec::<String>::new());
    assert!(function.logged(&["poison notification rejected", "someone-elses-topic"]));
}

/// The wrapper that `arm64::transcode_audio` gives the worker as `FFMPEG` runs the layer's own
/// arm64 ffmpeg (a host ffmpeg would say nothing of the layer), with the arguments it is given.
#[tokio::test]
async fn the_ffmpeg_wrapper_runs_the_layers_arm64_ffmpeg_with_its_arguments() {
    let dir = local::scratch();
    let wrapper = arm64::ffmpeg_wrapper(&dir);
    let out = dir.join("tone.flac");
    let status = Command::new(&wrapper)
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-f",
            "lavfi",
        ])
        .args(["-i", "sine=frequency=440:duration=1", "-c:a", "flac"])
        .arg(&out)
        .kill_on_drop(true)
        .status()
        .await
        .expect("the wrapper runs");
    assert!(status.success(), "{status}");
    let (codec, _, _, duration) = local::probe(&out).await;
    assert_eq!(codec, "flac");
    assert!((duration - 1.0).abs() < 0.05, "{duration}");
    // The layer's build, by its version line: ffmpeg 7.0.2 (Debian's is another).
    let version = Command::new(&wrapper)
        .arg("-version")
        .output()
        .await
        .expect("the wrapper runs");
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(text.starts_with("ffmpeg version 7.0.2"), "{text}");
}

/// The arm64 transcode-audio with the layer's ffmpeg, both under qemu, runs a real upload's job
/// from the jobs queue of the whole pipeline on moto (tests/lambda/pipeline.rs runs the native
/// build through the same steps): the owner's downloads are the source's length.
#[tokio::test]
async fn the_arm64_transcode_audio_bootstrap_and_the_layers_ffmpeg_transcode_an_upload_under_qemu()
{
    let Some(mut stack) = LambdaStack::start(Worker::Arm64, &[]).await else {
        return;
    };
    let dir = local::scratch();
    let song = dir.join("song.mp3");
    local::tone(&song, 2.0).await;
    stack.upload(&song, "song.mp3", "audio/mpeg").await;
    let delivered = stack.run_job().await;
    assert_eq!((delivered.received, delivered.failed), (1, vec![]));
    let notifications = stack.record(1).await;
    assert_eq!(
        notifications.last().unwrap()["state"],
        "COMPLETED",
        "{notifications:#?}"
    );
    let upload = stack.upload_of("song.mp3").await;
    assert_eq!(upload["state"], "completed", "{upload}");
    let outputs = upload["outputs"].as_array().cloned().unwrap_or_default();
    assert_eq!(outputs.len(), 3, "{upload}");
    for output in outputs {
        let key = output["key"].as_str().unwrap_or_default();
        let file = dir.join(key.rsplit('/').next().unwrap_or("output"));
        std::fs::write(
            &file,
            download(output["url"].as_str().unwrap_or_default()).await,
        )
        .unwrap();
        let (_, rate, channels, duration) = local::probe(&file).await;
        assert_eq!((rate, channels), (44100, 2), "{key}");
        assert!((duration - 2.0).abs() < 0.1, "{key}: {duration} s");
    }
}

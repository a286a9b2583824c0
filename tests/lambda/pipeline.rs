//! The cloud pipeline with its default backend, end to end through the built binaries and real
//! bytes: an mp3 PUT through its upload link into moto's bucket, S3's event to `start-transcode`,
//! the job through the jobs queue to `transcode-audio` (the host's ffmpeg), its progress and end on
//! the topic to `record-completion`, and the outputs downloaded through `messages-api`'s links.
//! Then what an attacker or the network does to it: duplicates, two workers at once, a playlist,
//! a truncated file, a silence bomb, a file replaced under its job, and a job that dies each time.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use system_tests::cloud::{LambdaStack, MAX_RECEIVES, Worker, download, is_end};
use system_tests::functions::{BUCKET, unread};
use system_tests::local::{self, ffmpeg_ebur128, probe, quiet_speech, scratch, silence_bomb, tone};
use system_tests::{Function, sample_event};
use transcoder_aws::{DynamoStore, JOB_ID_PREFIX};
use transcoder_core::{JobMessage, ObjectKey, OutputFormat, Owner, TranscodeJob};

async fn stack(worker_env: &[(&str, &str)]) -> LambdaStack {
    LambdaStack::start(Worker::Native, worker_env)
        .await
        .expect("the native worker always starts")
}

/// Alice's unread messages.
async fn messages(stack: &LambdaStack) -> Vec<transcoder_core::Message> {
    unread(
        &DynamoStore::new(stack.db.client(), &stack.table, 30),
        "alice",
    )
    .await
}

/// Each output `upload` lists, downloaded through its link: the same bytes as the object in the
/// bucket, of the source's duration (within 0.1 s). Returns the outputs' keys.
async fn assert_outputs_are_the_source(stack: &LambdaStack, upload: &Value, source: &Path) {
    let (_, _, _, duration) = probe(source).await;
    let outputs = upload["outputs"].as_array().cloned().unwrap_or_default();
    assert_eq!(outputs.len(), OutputFormat::DEFAULT.len(), "{upload}");
    let dir = scratch();
    for output in &outputs {
        let key = output["key"].as_str().unwrap_or_default();
        let url = output["url"].as_str().unwrap_or_default();
        let bytes = download(url).await;
        assert!(!bytes.is_empty(), "{key}");
        assert!(
            bytes == stack.object(key).await,
            "{key}: the link gave other bytes"
        );
        let file = dir.join(key.rsplit('/').next().unwrap_or("output"));
        std::fs::write(&file, &bytes).unwrap();
        let (_, rate, channels, got) = probe(&file).await;
        assert_eq!((rate, channels), (44100, 2), "{key}");
        assert!(
            (got - duration).abs() < 0.1,
            "{key}: {got} s, the source {duration} s"
        );
    }
}

#[tokio::test]
async fn a_real_mp3_goes_from_its_upload_link_through_the_worker_to_its_owners_downloads() {
    let mut stack = stack(&[]).await;
    let dir = scratch();
    let song = dir.join("Café Song.mp3");
    tone(&song, 3.0).await;

    let report = stack.upload(&song, "Café Song.mp3", "audio/mpeg").await;
    assert_eq!(
        report["started"][0]["key"], "media/alice/Café Song.mp3",
        "{report}"
    );
    assert_eq!(
        stack.upload_of("Café Song.mp3").await["state"],
        "transcoding"
    );

    let delivered = stack.run_job().await;
    assert_eq!((delivered.received, delivered.failed.len()), (1, 0));
    let notifications = stack.record(1).await;
    let end = notifications.last().unwrap();
    assert_eq!(end["state"], "COMPLETED", "{notifications:#?}");
    assert!(
        end["jobId"].as_str().unwrap().starts_with(JOB_ID_PREFIX),
        "{end}"
    );

    let upload = stack.upload_of("Café Song.mp3").await;
    assert_eq!(
        (&upload["state"], &upload["percent"]),
        (&"completed".into(), &100.into()),
        "{upload}"
    );
    assert_outputs_are_the_source(&stack, &upload, &song).await;
    let keys = stack.keys("transcoded/").await;
    assert_eq!(
        keys,
        [
            "transcoded/alice/Café Song.mp3.flac",
            "transcoded/alice/Café Song.mp3.m4a",
            "transcoded/alice/Café Song.mp3.peaks.json",
            "transcoded/alice/Café Song.mp3.wav"
        ]
    );
    let messages = messages(&stack).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].text.contains("Café Song.mp3"),
        "{:?}",
        messages[0]
    );
}

#[tokio::test]
async fn a_podcaster_gets_mp3_and_opus_at_minus_16_lufs_and_the_sources_analysis_and_peaks() {
    let mut stack = stack(&[]).await;
    let dir = scratch();
    let speech = quiet_speech(&dir).await;
    let episode = dir.join("episode.mp3");
    local::ffmpeg(&[
        "-i",
        speech.to_str().unwrap(),
        "-c:a",
        "libmp3lame",
        "-b:a",
        "128k",
        episode.to_str().unwrap(),
    ])
    .await;
    let (source_lufs, _) = ffmpeg_ebur128(&episode).await;
    let choice = json!({"outputs": [{"format": "mp3", "bitrate_kbps": 160}, {"format": "opus"}], "loudness": "podcast"});
    let report = stack
        .upload_choosing(&episode, "episode.mp3", "audio/mpeg", choice)
        .await;
    assert_eq!(
        report["started"][0]["key"], "media/alice/episode.mp3",
        "{report}"
    );
    let delivered = stack.run_job().await;
    assert_eq!((delivered.received, delivered.failed.len()), (1, 0));
    stack.record(1).await;

    let upload = stack.upload_of("episode.mp3").await;
    assert_eq!(upload["state"], "completed", "{upload}");
    let keys = stack.keys("transcoded/").await;
    assert_eq!(
        keys,
        [
            "transcoded/alice/episode.mp3.mp3",
            "transcoded/alice/episode.mp3.opus",
            "transcoded/alice/episode.mp3.peaks.json"
        ]
    );
    // The source as measured, by the worker and by ffmpeg's own meter.
    let analysis = &upload["analysis"];
    let measured = analysis["integrated_lufs"]
        .as_f64()
        .unwrap_or_else(|| panic!("{upload}"));
    assert!(
        (measured - source_lufs).abs() <= 0.2,
        "{measured} vs {source_lufs}"
    );
    let (_, _, _, seconds) = probe(&episode).await;
    assert!(
        (analysis["duration_s"].as_f64().unwrap() - seconds).abs() < 0.1,
        "{analysis}"
    );
    assert!(
        analysis["true_peak_dbtp"].as_f64().is_some()
            && analysis["loudness_range_lu"].as_f64().is_some(),
        "{analysis}"
    );
    // The peaks, through their link: audiowaveform's format, version 2.
    let peaks: Value =
        serde_json::from_slice(&download(analysis["peaks"].as_str().unwrap()).await).unwrap();
    assert_eq!(
        (&peaks["version"], &peaks["bits"], &peaks["channels"]),
        (&2.into(), &8.into(), &1.into())
    );
    let data = peaks["data"].as_array().unwrap();
    assert_eq!(data.len() as u64, 2 * peaks["length"].as_u64().unwrap());
    assert!(
        data.iter().any(|v| v.as_i64().unwrap() != 0),
        "speech is not silence"
    );

    // Each output: its codec and bitrate by ffprobe, its loudness by ffmpeg's meter.
    let outputs = upload["outputs"].as_array().cloned().unwrap_or_default();
    assert_eq!(outputs.len(), 2, "{upload}");
    for (output, (codec, kbps)) in outputs.iter().zip([("mp3", 160.0), ("opus", 96.0)]) {
        let file = dir.join(format!("out.{codec}"));
        std::fs::write(&file, download(output["url"].as_str().unwrap()).await).unwrap();
        let (found, _, channels, got) = probe(&file).await;
        assert_eq!((found.as_str(), channels), (codec, 2), "{output}");
        let rate = std::fs::metadata(&file).unwrap().len() as f64 * 8.0 / got / 1000.0;
        // Opus is VBR, and a few seconds of speech in Ogg pages say little of its bitrate.
        if codec == "mp3" {
            assert!((rate - kbps).abs() / kbps < 0.3, "{output}: {rate:.0} kb/s");
        }
        let (integrated, peak) = ffmpeg_ebur128(&file).await;
        assert!(
            (integrated + 16.0).abs() <= 0.5,
            "{output}: {integrated} LUFS"
        );
        assert!(peak <= -1.0, "{output}: {peak} dBTP");
    }
}

/// The body of the next message on `queue`, left on it (hidden for its visibility timeout).
async fn peek(stack: &LambdaStack, url: &str) -> String {
    loop {
        let received = stack
            .moto
            .sqs()
            .receive_message()
            .queue_url(url)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("moto receives");
        if let Some(message) = received.messages().first() {
            return message.body().unwrap_or_default().to_owned();
        }
    }
}

async fn send(stack: &LambdaStack, url: &str, body: &str) {
    stack
        .moto
        .sqs()
        .send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("moto takes the message");
}

#[tokio::test]
async fn a_job_delivered_twice_to_two_workers_at_once_writes_one_set_of_outputs_and_one_message() {
    let mut stack = stack(&[]).await;
    let second_tmp = scratch();
    let mut second = Function::start(
        "transcode-audio",
        &[
            ("AWS_ENDPOINT_URL", &stack.moto.endpoint()),
            ("TOPIC_ARN", &stack.topic),
            ("PATH", &std::env::var("PATH").unwrap_or_default()),
            // A sandbox of its own: its own /tmp.
            ("TMPDIR", &second_tmp.display().to_string()),
        ],
    )
    .await
    .holding(second_tmp);
    let dir = scratch();
    let song = dir.join("song.mp3");
    tone(&song, 4.0).await;
    stack.upload(&song, "song.mp3", "audio/mpeg").await;
    let job = peek(&stack, &stack.jobs.url).await;
    // SQS delivers the job twice: a copy, sent as the sample event shows it, to a second worker
    // at the same time as the first takes the original.
    let mut copy = sample_event("sqs-job.json");
    copy["Records"][0]["body"] = job.clone().into();
    copy["Records"][0]["eventSourceARN"] = stack.jobs.arn.clone().into();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (delivered, second_response) = tokio::join!(
        stack
            .moto
            .deliver(&mut stack.worker, &stack.jobs, 1, Duration::from_secs(10)),
        second.invoke(&copy)
    );
    assert_eq!((delivered.received, delivered.failed.len()), (1, 0));
    let second_response = second_response.response();
    assert_eq!(
        second_response["batchItemFailures"],
        Value::Array(vec![]),
        "{second_response}"
    );

    // Two ends announced, the same; one recorded.
    let notifications = stack.record(2).await;
    let ends: Vec<&Value> = notifications.iter().filter(|n| is_end(n)).collect();
    assert_eq!(ends.len(), 2, "{notifications:#?}");
    assert_eq!(ends[0]["state"], "COMPLETED");
    assert_eq!(ends[0]["outputs"], ends[1]["outputs"]);
    assert_eq!(messages(&stack).await.len(), 1);
    let upload = stack.upload_of("song.mp3").await;
    assert_eq!(upload["state"], "completed", "{upload}");
    assert_outputs_are_the_source(&stack, &upload, &song).await;
    let message: JobMessage = serde_json::from_str(&job).unwrap();
    assert_eq!(message.job_id, message.job.deterministic_id(JOB_ID_PREFIX));
}

#[tokio::test]
async fn the_sample_job_event_is_the_shape_the_harness_delivers_and_the_worker_reads() {
    let sample = sample_event("sqs-job.json");
    let record = &sample["Records"][0];
    let message: JobMessage = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
    // The id the lambda backend gives the job of events/s3-put.json's upload.
    assert_eq!(message.job_id, message.job.deterministic_id(JOB_ID_PREFIX));
    assert_eq!(
        message.job.upload_ref().id.0,
        "e65250d25ffa57fda702cff23cce940a"
    );
    let mut stack = stack(&[]).await;
    send(
        &stack,
        &stack.jobs.url,
        &serde_json::to_string(&message).unwrap(),
    )
    .await;
    let received = stack
        .moto
        .sqs()
        .receive_message()
        .queue_url(&stack.jobs.url)
        .wait_time_seconds(5)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let built = system_tests::event_sources::sqs_event(&stack.jobs.arn, received.messages());
    let fields = |v: &Value| -> Vec<String> {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(fields(record), fields(&built["Records"][0]));
    // Its upload is not in the bucket (deleted, or never there): the job ends superseded, with
    // nothing written and no message.
    let response = stack.worker.invoke(&sample).await.response();
    assert_eq!(response["batchItemFailures"], Value::Array(vec![]));
    let notifications = stack.record(1).await;
    assert_eq!(
        notifications[0]["state"], "SUPERSEDED",
        "{notifications:#?}"
    );
    assert!(stack.keys("transcoded/").await.is_empty());
    assert!(messages(&stack).await.is_empty());
}

/// A job for the object `key` as it is now in the bucket, as the starter would send it, straight
/// onto the jobs queue: what the worker does with bytes the starter never saw.
async fn job_for(stack: &LambdaStack, key: &str) {
    let head = stack
        .moto
        .s3()
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap();
    let etag = head
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    let mut job = TranscodeJob::plan(
        BUCKET,
        ObjectKey::new(key).unwrap(),
        &etag,
        Owner::new("alice").unwrap(),
        key.strip_prefix("media/alice/").unwrap(),
        "transcoded/",
        &OutputFormat::DEFAULT,
    );
    job.etag = Some(etag);
    let message = JobMessage {
        job_id: job.deterministic_id(JOB_ID_PREFIX),
        job,
    };
    send(
        stack,
        &stack.jobs.url,
        &serde_json::to_string(&message).unwrap(),
    )
    .await;
}

async fn put_object(stack: &LambdaStack, key: &str, bytes: Vec<u8>) {
    stack
        .moto
        .s3()
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
    // Its event, which these tests hand to nobody.
    stack.moto.take_messages(&stack.intake.url, 1).await;
}

#[tokio::test]
async fn hostile_files_end_with_their_reason_and_the_refused_ones_write_nothing() {
    let mut stack = stack(&[("MAX_DURATION_SECONDS", "600")]).await;
    let dir = scratch();

    // A playlist named .mp3, past the starter: the worker reads its bytes too.
    let playlist = local::hls_playlist("http://127.0.0.1:9/a.ts", 3);
    put_object(&stack, "media/alice/list.mp3", playlist.into_bytes()).await;
    job_for(&stack, "media/alice/list.mp3").await;
    // A silence bomb: an hour of silence in about 650 KB of FLAC.
    let bomb = dir.join("bomb.flac");
    silence_bomb(&bomb, 3600).await;
    let report = stack.upload(&bomb, "bomb.flac", "audio/flac").await;
    assert_eq!(
        report["started"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    // A truncated mp3: its first 3 KB of 10 s.
    let whole = dir.join("whole.mp3");
    tone(&whole, 10.0).await;
    let cut = dir.join("cut.mp3");
    std::fs::write(&cut, &std::fs::read(&whole).unwrap()[..3000]).unwrap();
    stack.upload(&cut, "cut.mp3", "audio/mpeg").await;

    for _ in 0..3 {
        let delivered = stack.run_job().await;
        assert_eq!((delivered.received, delivered.failed.len()), (1, 0));
    }
    stack.record(3).await;
    let messages = messages(&stack).await;
    let text = |name: &str| {
        messages
            .iter()
            .find(|m| m.file == name)
            .map(|m| m.text.clone())
            .unwrap_or_else(|| panic!("no message about {name}: {messages:?}"))
    };
    assert!(
        text("list.mp3").contains("not an audio file"),
        "{}",
        text("list.mp3")
    );
    let bomb_text = text("bomb.flac");
    assert!(
        bomb_text.contains("too long") && bomb_text.contains("MediaConvert"),
        "{bomb_text}"
    );
    // Refused from their bytes before anything was encoded: `rejected`, as the starter's are.
    for refused in ["bomb.flac", "list.mp3"] {
        let upload = stack.upload_of(refused).await;
        assert_eq!(upload["state"], "rejected", "{upload}");
    }
    // The truncated file is what is left of it: 3 KB of mp3.
    let cut_upload = stack.upload_of("cut.mp3").await;
    assert!(
        ["completed", "completed_with_warnings"].contains(&cut_upload["state"].as_str().unwrap()),
        "{cut_upload}"
    );
    assert_eq!(
        stack.keys("transcoded/alice/list").await,
        Vec::<String>::new()
    );
    assert_eq!(
        stack.keys("transcoded/alice/bomb").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn an_upload_replaced_before_its_job_runs_is_superseded_and_the_new_one_transcoded() {
    let mut stack = stack(&[]).await;
    let dir = scratch();
    let (first, second) = (dir.join("first.mp3"), dir.join("second.mp3"));
    tone(&first, 2.0).await;
    tone(&second, 5.0).await;
    stack.upload(&first, "song.mp3", "audio/mpeg").await;
    // The newer upload lands before the older one's job runs; its own event waits.
    let size = std::fs::metadata(&second).unwrap().len() as usize;
    let link =
        system_tests::cloud::upload_link(&mut stack.api, "song.mp3", size, "audio/mpeg").await;
    system_tests::cloud::put(&link, &second).await;

    stack.run_job().await;
    let notifications = stack.record(1).await;
    assert_eq!(
        notifications.last().unwrap()["state"],
        "SUPERSEDED",
        "{notifications:#?}"
    );
    assert!(stack.keys("transcoded/").await.is_empty());
    assert!(messages(&stack).await.is_empty());

    stack.start_jobs().await;
    stack.run_job().await;
    stack.record(1).await;
    let upload = stack.upload_of("song.mp3").await;
    assert_eq!(upload["state"], "completed", "{upload}");
    assert_outputs_are_the_source(&stack, &upload, &second).await;
    assert_eq!(messages(&stack).await.len(), 1);
}

#[tokio::test]
async fn a_job_that_never_finishes_reaches_the_dead_letter_queue_and_its_owner_is_told() {
    let mut stack = stack(&[]).await;
    let dir = scratch();
    let song = dir.join("song.mp3");
    tone(&song, 2.0).await;
    stack.upload(&song, "song.mp3", "audio/mpeg").await;
    // The function dies on the job each time (out of memory, say): received, never answered.
    for _ in 0..MAX_RECEIVES {
        peek(&stack, &stack.jobs.url).await;
        tokio::time::sleep(system_tests::cloud::JOB_VISIBILITY).await;
    }
    // The next receive finds it received too often, and SQS moves it to the dead-letter queue.
    let left = stack
        .moto
        .sqs()
        .receive_message()
        .queue_url(&stack.jobs.url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(left.messages().is_empty(), "{left:?}");
    let delivered = stack.run_dead_letter().await;
    assert_eq!((delivered.received, delivered.failed.len()), (1, 0));
    stack.record(1).await;
    let upload = stack.upload_of("song.mp3").await;
    assert_eq!(upload["state"], "failed", "{upload}");
    let messages = messages(&stack).await;
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].text.contains("stopped before it finished"),
        "{:?}",
        messages[0]
    );
    assert!(stack.keys("transcoded/").await.is_empty());
}

#[tokio::test]
async fn a_source_the_worker_cannot_read_is_retried_and_fails_for_its_owner_on_the_last_receive() {
    // Nothing listens on port 9 of loopback: every GetObject fails as a network error would.
    let mut stack = stack(&[("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")]).await;
    let dir = scratch();
    let song = dir.join("song.mp3");
    tone(&song, 1.0).await;
    stack.upload(&song, "song.mp3", "audio/mpeg").await;
    for receive in 1..MAX_RECEIVES {
        let delivered = stack.run_job().await;
        assert_eq!(
            (delivered.received, delivered.failed.len()),
            (1, 1),
            "receive {receive}"
        );
        assert_eq!(stack.upload_of("song.mp3").await["state"], "transcoding");
        tokio::time::sleep(system_tests::cloud::JOB_VISIBILITY).await;
    }
    // The last receive: not retried again, but ended, and the owner told why.
    let delivered = stack.run_job().await;
    assert_eq!((delivered.received, delivered.failed.len()), (1, 0));
    stack.record(1).await;
    let upload = stack.upload_of("song.mp3").await;
    assert_eq!(upload["state"], "failed", "{upload}");
    let reason = upload["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("could not be read") && reason.contains("tried 3 times"),
        "{reason}"
    );
    assert_eq!(messages(&stack).await.len(), 1);
}

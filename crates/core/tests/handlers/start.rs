//! `start_transcode`: each upload checked, claimed once, recorded, and started as one job.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use chrono::Utc;
use transcoder_core::*;
use transcoder_testkit::*;

fn config(env: &impl Env) -> StartConfig {
    StartConfig::from_env(env).unwrap()
}

/// The starter with the default configuration, every upload audio, and a fresh store.
async fn start_with_defaults(
    event: RawS3Event,
    t: &FakeTranscoder,
) -> Result<StartReport, StartError> {
    start_audio(event, t, &MemoryStore::default()).await
}

/// The starter with the default configuration and every upload audio, keeping its claims and
/// messages in `store`.
async fn start_audio(
    event: RawS3Event,
    t: &FakeTranscoder,
    store: &MemoryStore,
) -> Result<StartReport, StartError> {
    start_reading(event, &MemorySource::audio(), t, store).await
}

/// The starter with the default configuration, reading the uploads from `source`.
async fn start_reading(
    event: RawS3Event,
    source: &impl SourceReader,
    t: &FakeTranscoder,
    store: &MemoryStore,
) -> Result<StartReport, StartError> {
    start_transcode(event, &config(&[]), source, t, store).await
}

/// Alice's upload records in `store` (ten at most: one page).
async fn alices_uploads(store: &MemoryStore) -> Vec<UploadRecord> {
    let owner = Owner::new("alice").unwrap();
    store.list_uploads(&owner, 10, None).await.unwrap().uploads
}

/// Alice's unread messages in `store` (ten at most: one page).
async fn alices_unread(store: &MemoryStore) -> Vec<Message> {
    let owner = Owner::new("alice").unwrap();
    store.list_unread(&owner, 10, None).await.unwrap().messages
}

fn event(json: &str) -> RawS3Event {
    serde_json::from_str(json).unwrap()
}

fn sources(t: &FakeTranscoder) -> Vec<String> {
    t.keys()
}

/// The log lines written while `f` runs on this thread.
async fn logged<T>(f: impl Future<Output = T>) -> (T, String) {
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = {
        let _guard = tracing::subscriber::set_default(subscriber);
        f.await
    };
    let text = String::from_utf8_lossy(&lines.0.lock().unwrap()).into_owned();
    (out, text)
}

/// Starts the upload of events/s3-put.json, read from `source`, under the variables `env`: the
/// report, the jobs handed to the transcoder, and the lines logged meanwhile.
async fn start_the_put(
    env: &impl Env,
    source: &MemorySource,
) -> (StartReport, Vec<TranscodeJob>, String) {
    let t = FakeTranscoder::default();
    let event = event(include_str!("../../../../events/s3-put.json"));
    let store = MemoryStore::default();
    let (report, logs) = logged(start_transcode(event, &config(env), source, &t, &store)).await;
    let jobs = t.jobs.lock().unwrap().clone();
    (report.unwrap(), jobs, logs)
}

fn chosen(job: &TranscodeJob) -> Vec<(OutputFormat, &str, Option<u32>)> {
    job.outputs
        .iter()
        .map(|o| (o.format, o.key.as_str(), o.bitrate_kbps))
        .collect()
}

#[tokio::test]
async fn the_choice_in_the_uploads_metadata_makes_its_job() {
    let source = MemorySource::audio().with_metadata(
        "media/alice/song.mp3",
        &[
            ("outputs", "mp3:128,opus:96,flac"),
            ("loudness", "broadcast"),
        ],
    );
    let (_, jobs, _) = start_the_put(&[], &source).await;
    assert_eq!(
        chosen(&jobs[0]),
        [
            (
                OutputFormat::Mp3,
                "transcoded/alice/song.mp3.mp3",
                Some(128)
            ),
            (
                OutputFormat::Opus,
                "transcoded/alice/song.mp3.opus",
                Some(96)
            ),
            (OutputFormat::Flac, "transcoded/alice/song.mp3.flac", None),
        ]
    );
    assert_eq!(jobs[0].loudness, Some(Loudness::Broadcast));
    // The event's version still travels with the chosen job.
    assert_eq!(
        jobs[0].etag.as_deref(),
        Some("d41d8cd98f00b204e9800998ecf8427e")
    );
}

#[tokio::test]
async fn loudness_alone_keeps_the_deployments_outputs() {
    let source =
        MemorySource::audio().with_metadata("media/alice/song.mp3", &[("loudness", "podcast")]);
    let env = [("OUTPUTS", "aac:128")];
    let (_, jobs, _) = start_the_put(&env, &source).await;
    assert_eq!(
        chosen(&jobs[0]),
        [(
            OutputFormat::Aac,
            "transcoded/alice/song.mp3.m4a",
            Some(128)
        )]
    );
    assert_eq!(jobs[0].loudness, Some(Loudness::Podcast));
}

#[tokio::test]
async fn a_tampered_or_unhonourable_choice_gets_the_defaults_and_a_warning() {
    // The upload's metadata, the deployment's variables, and the key the warning names.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        (&[("outputs", "mp3:9999")], &[], "metadata=\"outputs\""),
        (
            &[("outputs", "mp3"), ("loudness", "loud")],
            &[],
            "metadata=\"loudness\"",
        ),
        (
            &[("outputs", "opus")],
            &[("TRANSCODER", "elastictranscoder"), ("PIPELINE_ID", "p")],
            "metadata=\"outputs\"",
        ),
        (
            &[("loudness", "podcast")],
            &[("TRANSCODER", "elastictranscoder")],
            "metadata=\"loudness\"",
        ),
    ];
    for (metadata, env, named) in cases {
        let source = MemorySource::audio().with_metadata("media/alice/song.mp3", metadata);
        let (report, jobs, logs) = start_the_put(&EnvList(env.to_vec()), &source).await;
        assert_eq!(report.started.len(), 1, "{metadata:?}");
        let formats: Vec<_> = jobs[0].outputs.iter().map(|o| o.format).collect();
        assert_eq!(formats, OutputFormat::DEFAULT, "{metadata:?}");
        assert_eq!(jobs[0].loudness, None, "{metadata:?}");
        let warning = logs
            .lines()
            .find(|l| l.contains("WARN") && l.contains("the defaults"))
            .unwrap_or_else(|| panic!("{metadata:?}: no warning in {logs}"));
        assert!(warning.contains(named), "{metadata:?}: {warning}");
    }
}

#[tokio::test]
async fn a_file_without_metadata_gets_the_deployments_outputs_and_bitrates() {
    let env = [("OUTPUTS", "opus:64,wav")];
    let (_, jobs, logs) = start_the_put(&env, &MemorySource::audio()).await;
    assert_eq!(
        chosen(&jobs[0]),
        [
            (
                OutputFormat::Opus,
                "transcoded/alice/song.mp3.opus",
                Some(64)
            ),
            (OutputFormat::Wav, "transcoded/alice/song.mp3.wav", None),
        ]
    );
    assert!(!logs.contains("WARN"), "{logs}");
}

/// Variables from a list built at run time.
struct EnvList<'a>(Vec<(&'a str, &'a str)>);

impl Env for EnvList<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[tokio::test]
async fn a_put_starts_one_job_for_the_owner() {
    let t = FakeTranscoder::default();
    let report = start_with_defaults(event(include_str!("../../../../events/s3-put.json")), &t)
        .await
        .unwrap();
    let jobs = t.jobs.lock().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].bucket, "audio-transcoder-media");
    assert_eq!(jobs[0].source.as_str(), "media/alice/song.mp3");
    assert_eq!(jobs[0].owner.as_str(), "alice");
    // The version the event named travels with the job, for a transcoder that reads it.
    assert_eq!(
        jobs[0].etag.as_deref(),
        Some("d41d8cd98f00b204e9800998ecf8427e")
    );
    let outputs: Vec<_> = jobs[0]
        .outputs
        .iter()
        .map(|o| (o.format, o.key.as_str()))
        .collect();
    assert_eq!(
        outputs,
        [
            (OutputFormat::Wav, "transcoded/alice/song.mp3.wav"),
            (OutputFormat::Flac, "transcoded/alice/song.mp3.flac"),
            (OutputFormat::Aac, "transcoded/alice/song.mp3.m4a"),
        ]
    );
    assert_eq!(report.started.len(), 1);
    assert_eq!(report.started[0].job_id, JobId("job-1".into()));
    assert!(report.skipped.is_empty());
}

#[tokio::test]
async fn encoded_keys_are_decoded_before_use() {
    let t = FakeTranscoder::default();
    let json = include_str!("../../../../events/s3-put-encoded-key.json");
    start_with_defaults(event(json), &t).await.unwrap();
    let jobs = t.jobs.lock().unwrap();
    assert_eq!(
        jobs[0].source.as_str(),
        "media/alice/red flower (live) café C++.mp3"
    );
    assert_eq!(
        jobs[0].outputs[0].key.as_str(),
        "transcoded/alice/red flower (live) café C++.mp3.wav"
    );
}

#[tokio::test]
async fn multipart_uploads_and_upper_case_extensions_start_jobs() {
    let t = FakeTranscoder::default();
    let json = include_str!("../../../../events/s3-multipart-upload.json");
    start_with_defaults(event(json), &t).await.unwrap();
    assert_eq!(sources(&t), ["media/bob/Long Set.MP3"]);
    assert_eq!(
        t.jobs.lock().unwrap()[0].outputs[2].key.as_str(),
        "transcoded/bob/Long Set.MP3.m4a"
    );
}

#[tokio::test]
async fn every_record_is_handled_and_files_outside_a_folder_get_the_default_owner() {
    let t = FakeTranscoder::default();
    let json = include_str!("../../../../events/s3-several-records.json");
    let report = start_with_defaults(event(json), &t).await.unwrap();
    assert_eq!(
        sources(&t),
        [
            "media/alice/one.mp3",
            "media/bob/two.flac",
            "media/loose file.mp3"
        ]
    );
    let loose = t
        .jobs
        .lock()
        .unwrap()
        .iter()
        .find(|j| j.source.as_str() == "media/loose file.mp3")
        .cloned();
    let loose = loose.unwrap();
    assert_eq!(loose.owner.as_str(), "_unassigned");
    assert_eq!(
        loose.outputs[1].key.as_str(),
        "transcoded/_unassigned/loose file.mp3.flac"
    );
    let started: Vec<_> = report.started.iter().map(|s| s.record).collect();
    assert_eq!(started, [0, 1, 2]);
    let skipped: Vec<_> = report
        .skipped
        .iter()
        .map(|s| (s.record, s.reason.as_str()))
        .collect();
    assert_eq!(skipped.len(), 2);
    assert_eq!(skipped[0].0, 3);
    assert!(
        skipped[0].1.starts_with("not an audio file"),
        "{}",
        skipped[0].1
    );
    assert_eq!(skipped[1], (4, "the object is empty"));
}

#[tokio::test]
async fn the_output_prefix_and_non_audio_files_never_start_a_job() {
    for (file, reason) in [
        (
            include_str!("../../../../events/s3-output-prefix.json"),
            "inside the output prefix",
        ),
        (
            include_str!("../../../../events/s3-not-audio.json"),
            "not an audio file",
        ),
    ] {
        let t = FakeTranscoder::default();
        let report = start_with_defaults(event(file), &t).await.unwrap();
        assert!(t.jobs.lock().unwrap().is_empty());
        assert_eq!(report.skipped.len(), 1);
        assert!(
            report.skipped[0].reason.contains(reason),
            "{}",
            report.skipped[0].reason
        );
    }
}

#[tokio::test]
async fn the_output_prefix_is_skipped_even_when_it_sits_below_the_bucket_notification() {
    // A misconfigured notification on the whole bucket still cannot retrigger the function.
    let t = FakeTranscoder::default();
    let config = config(&[("INPUT_PREFIX", "uploads/"), ("OUTPUT_PREFIX", "media/")]);
    let report = start_transcode(
        event(include_str!("../../../../events/s3-put.json")),
        &config,
        &MemorySource::audio(),
        &t,
        &MemoryStore::default(),
    )
    .await
    .unwrap();
    assert!(t.jobs.lock().unwrap().is_empty());
    assert!(report.skipped[0].reason.contains("output prefix 'media/'"));
}

#[tokio::test]
async fn a_malformed_record_is_skipped_and_the_others_still_start() {
    let mut raw: serde_json::Value =
        serde_json::from_str(include_str!("../../../../events/s3-put.json")).unwrap();
    let good = raw["Records"][0].clone();
    let mut no_object = good.clone();
    no_object["s3"].as_object_mut().unwrap().remove("object");
    let mut removed = good.clone();
    removed["eventName"] = "ObjectRemoved:Delete".into();
    let mut bad_key = good.clone();
    bad_key["s3"]["object"]["key"] = "media/alice/%FF.mp3".into();
    raw["Records"] = serde_json::json!([no_object, removed, bad_key, "not a record", good]);

    let t = FakeTranscoder::default();
    let report = start_transcode(
        serde_json::from_value(raw).unwrap(),
        &config(&[]),
        &MemorySource::audio(),
        &t,
        &MemoryStore::default(),
    )
    .await
    .unwrap();
    assert_eq!(sources(&t), ["media/alice/song.mp3"]);
    let reasons: Vec<_> = report
        .skipped
        .iter()
        .map(|s| (s.record, s.reason.clone()))
        .collect();
    assert_eq!(reasons.len(), 4);
    assert!(
        reasons[0]
            .1
            .starts_with("the record is not an S3 event record"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[1].1,
        "'ObjectRemoved:Delete' is not an object-created event"
    );
    assert!(
        reasons[2].1.contains("does not decode to UTF-8"),
        "{reasons:?}"
    );
    assert_eq!(reasons[3].0, 3);
    assert_eq!(report.started[0].record, 4);
}

#[tokio::test]
async fn a_refused_job_fails_the_invocation_after_the_others_started() {
    let t = FakeTranscoder {
        fail_on: Some("two.flac"),
        ..Default::default()
    };
    let json = include_str!("../../../../events/s3-several-records.json");
    let err = start_with_defaults(event(json), &t).await.unwrap_err();
    assert_eq!(sources(&t), ["media/alice/one.mp3", "media/loose file.mp3"]);
    assert_eq!(err.attempted, 3);
    assert_eq!(err.failed.len(), 1);
    assert_eq!(
        err.to_string(),
        "1 of 3 transcode jobs could not be started: record 1 'media/bob/two.flac': service unavailable"
    );
}

#[tokio::test]
async fn jobs_are_submitted_concurrently_up_to_the_bound() {
    let records: Vec<_> = (0..6)
        .map(|i| {
            let mut r: serde_json::Value = serde_json::from_str::<serde_json::Value>(include_str!(
                "../../../../events/s3-put.json"
            ))
            .unwrap()["Records"][0]
                .clone();
            r["s3"]["object"]["key"] = format!("media/alice/{i}.mp3").into();
            r
        })
        .collect();
    let t = FakeTranscoder::default();
    let config = config(&[("MAX_CONCURRENT_JOBS", "2")]);
    let report = start_transcode(
        RawS3Event { records },
        &config,
        &MemorySource::audio(),
        &t,
        &MemoryStore::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.started.len(), 6);
    assert_eq!(t.most_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_redelivered_event_starts_no_second_job() {
    let t = FakeTranscoder::default();
    let claims = MemoryStore::default();
    let json = include_str!("../../../../events/s3-several-records.json");
    let first = start_audio(event(json), &t, &claims).await.unwrap();
    let second = start_audio(event(json), &t, &claims).await.unwrap();
    assert_eq!(t.jobs.lock().unwrap().len(), 3);
    assert!(second.started.is_empty());
    let ids = |r: &StartReport, dup: bool| -> Vec<String> {
        let list = if dup { &r.duplicates } else { &r.started };
        list.iter().map(|s| s.job_id.0.clone()).collect()
    };
    assert_eq!(ids(&second, true), ids(&first, false));
}

#[tokio::test]
async fn a_new_upload_of_the_same_key_is_a_new_job() {
    let t = FakeTranscoder::default();
    let claims = MemoryStore::default();
    let mut raw: serde_json::Value =
        serde_json::from_str(include_str!("../../../../events/s3-put.json")).unwrap();
    start_transcode(
        serde_json::from_value(raw.clone()).unwrap(),
        &config(&[]),
        &MemorySource::audio(),
        &t,
        &claims,
    )
    .await
    .unwrap();
    raw["Records"][0]["s3"]["object"]["sequencer"] = "0062E99A88DC4074FF".into();
    start_transcode(
        serde_json::from_value(raw).unwrap(),
        &config(&[]),
        &MemorySource::audio(),
        &t,
        &claims,
    )
    .await
    .unwrap();
    assert_eq!(t.jobs.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_refused_job_is_started_exactly_once_by_the_retry() {
    let claims = MemoryStore::default();
    let json = include_str!("../../../../events/s3-several-records.json");
    let refusing = FakeTranscoder {
        fail_on: Some("two.flac"),
        ..Default::default()
    };
    start_audio(event(json), &refusing, &claims)
        .await
        .unwrap_err();
    assert_eq!(refusing.jobs.lock().unwrap().len(), 2);

    let recovered = FakeTranscoder::default();
    let retry = start_audio(event(json), &recovered, &claims).await.unwrap();
    assert_eq!(sources(&recovered), ["media/bob/two.flac"]);
    assert_eq!(retry.duplicates.len(), 2);
}

#[tokio::test]
async fn an_upload_another_invocation_is_starting_is_retried_not_dropped() {
    let t = FakeTranscoder::default();
    let claims = MemoryStore::default();
    let json = include_str!("../../../../events/s3-put.json");
    let job = plan(
        &serde_json::from_value(event(json).records.remove(0)).unwrap(),
        &config(&[]),
    )
    .unwrap();
    assert_eq!(
        claims.claim(&job.claim(), Utc::now()).await.unwrap(),
        ClaimOutcome::Claimed
    );
    let err = start_audio(event(json), &t, &claims).await.unwrap_err();
    assert!(matches!(err.failed[0].2, NotStarted::Held));
    assert!(t.jobs.lock().unwrap().is_empty());
}

const PLAYLIST: &[u8] = b"#EXTM3U\n#EXTINF:5.0,\n../bob/song.mp3\n";

/// A source that cannot be read: the bucket is not answering.
struct Unavailable;

impl SourceReader for Unavailable {
    async fn read_range(&self, _: &SourceObject, _: u64, _: usize) -> Result<Vec<u8>, SourceError> {
        Err(SourceError::unavailable("503 Slow Down"))
    }
}

#[tokio::test]
async fn a_playlist_named_mp3_starts_no_job_and_its_owner_is_told_why() {
    let t = FakeTranscoder::default();
    let store = MemoryStore::default();
    let source = MemorySource::audio().with("media/alice/song.mp3", PLAYLIST);
    let json = include_str!("../../../../events/s3-put.json");
    let report = start_reading(event(json), &source, &t, &store)
        .await
        .unwrap();
    assert!(t.jobs.lock().unwrap().is_empty());
    assert!(report.started.is_empty());
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].key, "media/alice/song.mp3");

    let unread = alices_unread(&store).await;
    assert_eq!(unread.len(), 1);
    let message = &unread[0];
    assert_eq!(message.id, report.rejected[0].message_id);
    assert_eq!(message.state, transcoder_core::Outcome::Failed);
    assert_eq!(
        message.text,
        "Your file song.mp3 could not be processed: not an audio file: it is text \
         (a playlist, a web page or a document)."
    );
    assert!(message.outputs.is_empty());

    // Its upload record says so too, with the reason, under the upload's own id.
    let uploads = alices_uploads(&store).await;
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].state, UploadState::Rejected);
    assert_eq!(
        uploads[0].reason.as_deref(),
        Some("not an audio file: it is text (a playlist, a web page or a document)")
    );
    assert_eq!(message.id.0, format!("rejected-{}", uploads[0].id));
}

#[tokio::test]
async fn an_upload_is_received_before_its_job_and_transcoding_after() {
    let store = MemoryStore::default();
    let json = include_str!("../../../../events/s3-put.json");
    let owner = Owner::new("alice").unwrap();
    let states = async || -> Vec<(UploadState, String)> {
        let page = store.list_uploads(&owner, 10, None).await.unwrap();
        page.uploads.into_iter().map(|u| (u.state, u.key)).collect()
    };
    // The transcoder refuses the job: the upload is seen, and stays `received` for the retry.
    let refusing = FakeTranscoder {
        fail_on: Some("song"),
        ..FakeTranscoder::default()
    };
    assert!(start_audio(event(json), &refusing, &store).await.is_err());
    let seen = vec![(UploadState::Received, "media/alice/song.mp3".to_owned())];
    assert_eq!(states().await, seen);
    let t = FakeTranscoder::default();
    start_audio(event(json), &t, &store).await.unwrap();
    let started = vec![(UploadState::Transcoding, "media/alice/song.mp3".to_owned())];
    assert_eq!(states().await, started);
    // The job carries the record's id to its notifications.
    let id = store.list_uploads(&owner, 1, None).await.unwrap().uploads[0]
        .id
        .clone();
    assert_eq!(t.jobs.lock().unwrap()[0].upload_ref().id, id);
}

#[tokio::test]
async fn an_upload_that_cannot_be_recorded_starts_nothing_and_is_retried() {
    let store = MemoryStore::default();
    store.fail_upload_writes(&UploadState::ALL);
    let t = FakeTranscoder::default();
    let json = include_str!("../../../../events/s3-put.json");
    let err = start_audio(event(json), &t, &store).await.unwrap_err();
    assert!(
        matches!(err.failed[0].2, NotStarted::Unrecorded(_)),
        "{err}"
    );
    assert!(t.jobs.lock().unwrap().is_empty());
    // Nothing was claimed, so the retry starts it at once.
    store.fail_upload_writes(&[]);
    let report = start_audio(event(json), &t, &store).await.unwrap();
    assert_eq!(report.started.len(), 1);
}

#[tokio::test]
async fn a_refusal_whose_record_cannot_be_written_is_retried_and_told_once() {
    let store = MemoryStore::default();
    let t = FakeTranscoder::default();
    let source = MemorySource::audio().with("media/alice/song.mp3", PLAYLIST);
    let json = include_str!("../../../../events/s3-put.json");
    // `received` is written, then the table throttles before `rejected`.
    store.fail_upload_writes(&[UploadState::Rejected]);
    let err = start_reading(event(json), &source, &t, &store)
        .await
        .unwrap_err();
    assert!(matches!(err.failed[0].2, NotStarted::Untold(_)), "{err}");
    store.fail_upload_writes(&[]);
    let report = start_reading(event(json), &source, &t, &store)
        .await
        .unwrap();
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(alices_unread(&store).await.len(), 1);
    assert_eq!(alices_uploads(&store).await[0].state, UploadState::Rejected);
}

#[tokio::test]
async fn a_redelivered_refusal_reads_nothing_and_tells_the_owner_once() {
    let t = FakeTranscoder::default();
    let store = MemoryStore::default();
    let source = MemorySource::audio().with("media/alice/song.mp3", PLAYLIST);
    let json = include_str!("../../../../events/s3-put.json");
    let first = start_reading(event(json), &source, &t, &store)
        .await
        .unwrap();
    // The bucket now fails every read: a redelivery that read again would fail.
    let again = start_reading(event(json), &Unavailable, &t, &store)
        .await
        .unwrap();
    assert!(again.rejected.is_empty());
    assert_eq!(again.duplicates[0].job_id.0, first.rejected[0].message_id.0);
    assert!(t.jobs.lock().unwrap().is_empty());
    assert_eq!(alices_unread(&store).await.len(), 1);
}

#[tokio::test]
async fn an_unreadable_upload_is_retried_and_the_retry_starts_it() {
    let t = FakeTranscoder::default();
    let store = MemoryStore::default();
    let json = include_str!("../../../../events/s3-put.json");
    let err = start_reading(event(json), &Unavailable, &t, &store)
        .await
        .unwrap_err();
    assert!(
        matches!(err.failed[0].2, NotStarted::Unreadable(_)),
        "{err}"
    );
    assert!(t.jobs.lock().unwrap().is_empty());
    let retry = start_audio(event(json), &t, &store).await.unwrap();
    assert_eq!(retry.started.len(), 1);
}

#[tokio::test]
async fn an_upload_gone_before_it_is_read_is_skipped_without_a_retry() {
    let t = FakeTranscoder::default();
    let json = include_str!("../../../../events/s3-put.json");
    let report = start_transcode(
        event(json),
        &config(&[]),
        &MemorySource::default(),
        &t,
        &MemoryStore::default(),
    )
    .await
    .unwrap();
    assert!(t.jobs.lock().unwrap().is_empty());
    assert!(
        report.skipped[0].reason.contains("gone or was replaced"),
        "{}",
        report.skipped[0].reason
    );
}

/// A source whose every read finds the upload gone: S3's 412 (a newer upload replaced the
/// version the event named) or 404 (deleted), as `S3Source` reads them.
struct Replaced;

impl SourceReader for Replaced {
    async fn read_range(&self, _: &SourceObject, _: u64, _: usize) -> Result<Vec<u8>, SourceError> {
        Err(SourceError::gone("HTTP 412: PreconditionFailed"))
    }
}

/// Starts the sample upload with its bytes read from `source`, which finds them gone: the
/// upload's record ends `superseded`, with no job and no message.
async fn ends_superseded(source: &impl SourceReader) {
    let json = include_str!("../../../../events/s3-put.json");
    let (t, store) = (FakeTranscoder::default(), MemoryStore::default());
    let report = start_reading(event(json), source, &t, &store)
        .await
        .unwrap();
    assert_eq!(report.skipped.len(), 1);
    assert!(t.jobs.lock().unwrap().is_empty());
    let uploads = alices_uploads(&store).await;
    assert_eq!(uploads.len(), 1);
    assert_eq!(
        (
            uploads[0].state,
            uploads[0].reason.as_deref(),
            uploads[0].percent
        ),
        (UploadState::Superseded, Some(transcoder_core::GONE), None)
    );
    // No message: the newer upload, if any, has its own, and there is nothing to act on.
    assert!(alices_unread(&store).await.is_empty());
}

#[tokio::test]
async fn an_upload_replaced_or_deleted_before_it_is_read_ends_superseded() {
    ends_superseded(&Replaced).await;
    ends_superseded(&MemorySource::default()).await;
}

#[tokio::test]
async fn a_gone_upload_whose_end_cannot_be_written_is_retried_until_it_is() {
    let store = MemoryStore::default();
    store.fail_upload_writes(&[UploadState::Superseded]);
    let t = FakeTranscoder::default();
    let json = include_str!("../../../../events/s3-put.json");
    let err = start_reading(event(json), &Replaced, &t, &store)
        .await
        .unwrap_err();
    assert!(
        matches!(err.failed[0].2, NotStarted::Unrecorded(_)),
        "{err}"
    );
    store.fail_upload_writes(&[]);
    // The claim was given back, so the retry reads again and ends the record.
    start_reading(event(json), &Replaced, &t, &store)
        .await
        .unwrap();
    let uploads = alices_uploads(&store).await;
    assert_eq!(uploads[0].state, UploadState::Superseded);
    assert!(t.jobs.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_event_etag_is_handed_to_the_reader() {
    let asked = RecordingSource::new(MemorySource::audio());
    let json = include_str!("../../../../events/s3-put.json");
    let t = FakeTranscoder::default();
    start_transcode(
        event(json),
        &config(&[]),
        &asked,
        &t,
        &MemoryStore::default(),
    )
    .await
    .unwrap();
    let asked = asked.uploads();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].bucket, "audio-transcoder-media");
    assert_eq!(asked[0].key.as_str(), "media/alice/song.mp3");
    assert!(asked[0].etag.as_deref().is_some_and(|e| !e.is_empty()));
}

#[tokio::test]
async fn each_line_about_a_record_carries_its_index_and_escaped_key_once_in_its_span() {
    let mut raw: serde_json::Value =
        serde_json::from_str(include_str!("../../../../events/s3-put.json")).unwrap();
    let mut hostile = raw["Records"][0].clone();
    hostile["s3"]["object"]["key"] = "media/alice/evil%0Aforged=1.mp3".into();
    raw["Records"].as_array_mut().unwrap().push(hostile);
    let event: RawS3Event = serde_json::from_value(raw).unwrap();
    let t = FakeTranscoder::default();
    let (started, logs) = logged(start_transcode(
        event,
        &config(&[]),
        &MemorySource::audio(),
        &t,
        &MemoryStore::default(),
    ))
    .await;
    // A newline is a legal character of a key: both start.
    assert_eq!(started.unwrap().started.len(), 2);

    let line = |what: &str| {
        logs.lines()
            .filter(|l| l.contains(what))
            .collect::<Vec<_>>()
    };
    let started = line("job started");
    assert_eq!(started.len(), 2, "{logs}");
    assert!(
        started[0].contains("record{record=0 key=media/alice/song.mp3}"),
        "{logs}"
    );
    // The span names the key once: the line itself does not repeat it.
    assert_eq!(started[0].matches("song.mp3").count(), 1, "{logs}");
    // The second record's newline is escaped in its span, so it cannot forge a line.
    let second: Vec<_> = logs.lines().filter(|l| l.contains("record=1")).collect();
    assert!(!second.is_empty(), "{logs}");
    assert!(
        second
            .iter()
            .all(|l| l.contains(r"key=media/alice/evil\nforged=1.mp3")),
        "{logs}"
    );
    assert!(!logs.lines().any(|l| l.starts_with("forged=1")), "{logs}");
}

//! Properties of everything that parses outside input: object keys from S3 events, whole S3
//! records, and SNS notifications. Each property runs 256 generated cases in `make test`;
//! `make fuzz` runs the same suites with many more (`PROPTEST_CASES`).
//!
//! Beyond "never panics", each suite checks what must hold for any input: a form-URL-encoded key
//! decodes to itself, every record of an event is accounted for exactly once, nothing outside the
//! input prefix or inside the output prefix becomes a job, and an owner written into a job's
//! metadata comes back out of its notification unchanged.

use std::collections::HashSet;
use std::sync::Mutex;

use proptest::prelude::*;
use serde_json::{Value, json};
use transcoder_core::{
    JobId, KeyError, MemorySource, MessageStore, Notification, ObjectKey, Outcome, Owner,
    RawS3Event, RawSnsEvent, RecordConfig, StartConfig, TranscodeJob, Transcoder, TranscoderError,
    is_audio, memory::MemoryStore, metadata, record_completion, start_transcode,
};

const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:audio-transcoder-completions";
const BUCKET: &str = "audio-transcoder-media";

/// S3's encoding of a key in an event: form-URL-encoded, `/` left as it is or not (both decode).
fn s3_encode(key: &str, keep_slashes: bool) -> String {
    if keep_slashes {
        key.split('/')
            .map(|part| form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>())
            .collect::<Vec<_>>()
            .join("/")
    } else {
        form_urlencoded::byte_serialize(key.as_bytes()).collect()
    }
}

/// The record of the sample upload event.
fn sample_record() -> Value {
    let event: Value = serde_json::from_str(include_str!("../../../events/s3-put.json")).unwrap();
    event["Records"][0].clone()
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A key as an upload could name it: some prefix, maybe an owner folder, a file name.
fn any_key() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        6 => Just("media/"),
        1 => Just("transcoded/"),
        1 => Just("other/"),
        1 => Just(""),
        1 => Just("media"),
    ];
    let owner = prop_oneof![
        3 => Just(Some("alice".to_owned())),
        3 => "[^/]{1,10}".prop_map(Some),
        1 => Just(Some(String::new())),
        1 => Just(None),
        1 => "[^/]{129,140}".prop_map(Some),
    ];
    let extension = prop_oneof![
        3 => Just("mp3"),
        1 => Just("MP3"),
        1 => Just("flac"),
        1 => Just("m4a"),
        1 => Just("txt"),
        1 => Just(""),
    ];
    (prefix, owner, "[^/]{0,12}", extension).prop_map(|(prefix, owner, stem, ext)| {
        let folder = owner.map(|o| format!("{o}/")).unwrap_or_default();
        let dot = if ext.is_empty() { "" } else { "." };
        format!("{prefix}{folder}{stem}{dot}{ext}")
    })
}

/// The raw `key` field of a record: usually an encoded key, sometimes anything at all.
fn any_raw_key() -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => (any_key(), any::<bool>()).prop_map(|(k, keep)| Value::from(s3_encode(&k, keep))),
        1 => ".{0,30}".prop_map(Value::from),
        1 => "(%[0-9A-Fa-f]{2}|%|\\+|[a-z/.]){0,12}".prop_map(Value::from),
        1 => any_json(),
    ]
}

/// An S3 record, mostly well-formed, with every field that matters varied or missing.
fn any_record() -> impl Strategy<Value = Value> {
    let event_name = prop_oneof![
        4 => Just(Value::from("ObjectCreated:Put")),
        2 => Just(Value::from("ObjectCreated:CompleteMultipartUpload")),
        1 => Just(Value::from("ObjectCreated:Copy")),
        1 => Just(Value::from("ObjectRemoved:Delete")),
        1 => Just(Value::Null),
        1 => ".{0,20}".prop_map(Value::from),
    ];
    let bucket = prop_oneof![
        12 => Just(Value::from(BUCKET)),
        1 => Just(Value::from("")),
        1 => Just(Value::Null),
        1 => any_json(),
    ];
    let size = prop_oneof![
        1 => Just(Value::from(0)),
        6 => (1u64..u64::MAX).prop_map(Value::from),
        1 => Just(Value::Null),
        1 => ".{0,4}".prop_map(Value::from),
    ];
    // A handful of sequencers, so that some records repeat an upload.
    let sequencer = prop_oneof![
        Just(Value::from("0062E99A88DC407460")),
        Just(Value::from("0062E99A88DC407461")),
        Just(Value::Null),
    ];
    let record = (event_name, bucket, any_raw_key(), size, sequencer).prop_map(
        |(event_name, bucket, key, size, sequencer)| {
            // The real shape (events/s3-put.json), with the fields that matter replaced.
            let mut record = sample_record();
            record["eventName"] = event_name;
            record["s3"]["bucket"]["name"] = bucket;
            record["s3"]["object"]["key"] = key;
            record["s3"]["object"]["size"] = size;
            record["s3"]["object"]["sequencer"] = sequencer;
            record
        },
    );
    prop_oneof![19 => record, 1 => any_json()]
}

/// The records of one event; some repeated, as S3 may deliver a record twice.
fn any_records() -> impl Strategy<Value = Vec<Value>> {
    (
        prop::collection::vec(any_record(), 0..8),
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
    )
        .prop_map(|(mut records, repeats)| {
            if !records.is_empty() {
                for index in repeats {
                    records.push(records[index.index(records.len())].clone());
                }
            }
            records
        })
}

/// SNS records: anything, anything from the right topic, and notifications of a few jobs of two
/// owners in every state, some repeated.
fn any_sns_records() -> impl Strategy<Value = Vec<Value>> {
    // The real shape (events/sns-et-completed.json), with another message.
    let sns = |message: String| {
        let event: Value =
            serde_json::from_str(include_str!("../../../events/sns-et-completed.json")).unwrap();
        let mut record = event["Records"][0].clone();
        record["Sns"]["Message"] = message.into();
        record
    };
    let notification = (
        prop_oneof![Just("COMPLETED"), Just("ERROR"), Just("PROGRESSING"), Just("NOPE")],
        "job-[abc]",
        prop_oneof![Just("alice"), Just("bob"), Just("")],
    )
        .prop_map(move |(state, job, owner)| {
            sns(json!({
                "state": state, "jobId": job, "userMetadata": {"owner": owner}, "input": {"key": "media/a.mp3"},
            })
            .to_string())
        });
    prop::collection::vec(
        prop_oneof![
            1 => any_json(),
            1 => any_json().prop_map(move |v| sns(v.to_string())),
            4 => notification,
        ],
        0..8,
    )
}

/// Accepts every job and keeps it.
#[derive(Default)]
struct KeepingTranscoder {
    jobs: Mutex<Vec<TranscodeJob>>,
}

impl Transcoder for KeepingTranscoder {
    async fn start_job(&self, job: &TranscodeJob) -> Result<JobId, TranscoderError> {
        let mut jobs = self.jobs.lock().unwrap();
        jobs.push(job.clone());
        Ok(JobId(format!("job-{}", jobs.len())))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

proptest! {
    #[test]
    fn any_key_decodes_without_panicking(raw in ".*") {
        match ObjectKey::from_s3_event_key(&raw) {
            Ok(key) => prop_assert!(!key.as_str().is_empty()),
            Err(KeyError::Empty) => prop_assert!(raw.is_empty()),
            Err(KeyError::NotUtf8 { raw: shown }) => prop_assert_eq!(shown, raw),
        }
    }

    #[test]
    fn a_form_url_encoded_key_decodes_to_itself(key in ".{1,64}", keep_slashes in any::<bool>()) {
        let decoded = ObjectKey::from_s3_event_key(&s3_encode(&key, keep_slashes)).unwrap();
        prop_assert_eq!(decoded.as_str(), key.as_str());
    }

    #[test]
    fn a_key_without_escapes_is_taken_as_it_is(key in "[^%+]{1,64}") {
        let decoded = ObjectKey::from_s3_event_key(&key).unwrap();
        prop_assert_eq!(decoded.as_str(), key.as_str());
    }

    #[test]
    fn metadata_values_round_trip_in_the_allowed_alphabet(value in ".{0,64}") {
        let encoded = metadata::encode(&value);
        prop_assert!(
            encoded.chars().all(|c| c.is_ascii_alphanumeric() || " _.:/=+-%@".contains(c)),
            "{}", encoded
        );
        prop_assert_eq!(metadata::decode(&encoded), Some(value));
    }

    #[test]
    fn every_record_is_accounted_for_once_and_only_uploads_become_jobs(
        records in any_records()
    ) {
        let count = records.len();
        let transcoder = KeepingTranscoder::default();
        let config = StartConfig::from_env(&[]).unwrap();
        let event = RawS3Event { records: records.clone() };
        let report = runtime()
            .block_on(start_transcode(event, &config, &MemorySource::audio(), &transcoder, &MemoryStore::default()));
        // The transcoder accepts everything and in-memory claims never wait: nothing fails.
        let report = report.unwrap();

        let mut seen: Vec<usize> = report.started.iter().map(|s| s.record)
            .chain(report.duplicates.iter().map(|s| s.record))
            .chain(report.skipped.iter().map(|s| s.record))
            .chain(report.rejected.iter().map(|s| s.record))
            .collect();
        seen.sort_unstable();
        prop_assert_eq!(seen, (0..count).collect::<Vec<_>>());

        let jobs = transcoder.jobs.lock().unwrap();
        prop_assert_eq!(jobs.len(), report.started.len());
        let claims: HashSet<_> = jobs.iter().map(|j| (j.bucket.clone(), j.source.clone(), j.version.clone())).collect();
        prop_assert_eq!(claims.len(), jobs.len(), "one upload started two jobs");
        for job in jobs.iter() {
            prop_assert!(job.source.as_str().starts_with("media/"), "{}", job.source);
            prop_assert!(!job.source.as_str().starts_with("transcoded/"), "{}", job.source);
            prop_assert!(is_audio(&job.source), "{}", job.source);
            prop_assert!(!job.bucket.is_empty());
            prop_assert_eq!(job.outputs.len(), 3);
            let folder = format!("transcoded/{}/", job.owner);
            for output in &job.outputs {
                prop_assert!(output.key.as_str().starts_with(&folder), "{} for {}", output.key, job.source);
            }
        }
        for started in &report.started {
            let raw = records[started.record]["s3"]["object"]["key"].as_str().unwrap_or_default();
            let decoded = ObjectKey::from_s3_event_key(raw).unwrap();
            prop_assert_eq!(decoded.as_str(), started.key.as_str());
            let name = records[started.record]["eventName"].as_str().unwrap_or_default();
            prop_assert!(name.starts_with("ObjectCreated:"), "{}", name);
        }
    }

    #[test]
    fn any_message_text_parses_or_is_refused(message in ".{0,200}") {
        let _ = Notification::parse(&message);
    }

    #[test]
    fn any_json_message_parses_or_is_refused(value in any_json()) {
        let _ = Notification::parse(&value.to_string());
    }

    #[test]
    fn the_owner_and_source_in_a_jobs_metadata_come_back_from_its_notification(
        // Every owner the starter accepts: no slash, no control character, not "." or "..".
        owner in "[^/\\p{Cc}]{1,40}".prop_filter("a folder of its own", |o| o != "." && o != ".."),
        source in ".{1,80}",
        mediaconvert in any::<bool>(),
        pick in 0..6usize,
        outputs in prop::collection::vec(
            (".{0,20}", prop_oneof![Just("Complete"), Just("Error"), Just("Warning")], any::<f64>()),
            0..4,
        ),
    ) {
        const ET: [&str; 6] = ["COMPLETED", "Completed", "WARNING", "ERROR", "PROGRESSING", "SUBMITTED"];
        const MC: [&str; 6] = ["COMPLETE", "ERROR", "CANCELED", "PROGRESSING", "STATUS_UPDATE", "INPUT_INFORMATION"];
        let state = if mediaconvert { MC[pick] } else { ET[pick] };
        let progress = ["PROGRESSING", "SUBMITTED", "STATUS_UPDATE", "INPUT_INFORMATION"].contains(&state);
        let metadata = json!({"owner": metadata::encode(&owner), "source-key": metadata::encode(&source)});
        let message = if mediaconvert {
            let details: Vec<Value> = outputs
                .iter()
                .map(|(key, _, ms)| json!({
                    "outputFilePaths": [format!("s3://{BUCKET}/{key}")],
                    "durationInMs": (ms.is_finite() && *ms >= 0.0).then_some(*ms as u64),
                }))
                .collect();
            json!({
                "detail-type": "MediaConvert Job State Change",
                "source": "aws.mediaconvert",
                "detail": {
                    "jobId": "job-1", "status": state, "userMetadata": metadata,
                    "outputGroupDetails": [{"outputDetails": details}],
                },
            })
        } else {
            let outputs: Vec<Value> = outputs
                .iter()
                .map(|(key, status, seconds)| json!({
                    "key": key, "status": status, "duration": seconds.is_finite().then_some(*seconds),
                }))
                .collect();
            json!({"state": state, "jobId": "job-1", "userMetadata": metadata, "outputs": outputs})
        };
        match Notification::parse(&message.to_string()) {
            Ok(Notification::Final(completion)) => {
                prop_assert!(!progress, "{} is not final", state);
                prop_assert_eq!(completion.owner.as_str(), owner.as_str());
                prop_assert_eq!(completion.source.as_str(), source.as_str());
                prop_assert_eq!(completion.job_id.as_str(), "job-1");
                if completion.outcome == Outcome::Failed {
                    prop_assert!(completion.outputs.is_empty());
                }
                for output in &completion.outputs {
                    prop_assert!(!output.key.as_str().is_empty());
                }
            }
            Ok(Notification::Progress(p) | Notification::Superseded(p)) => {
                prop_assert!(progress, "{} is final", state);
                prop_assert_eq!(p.job_id, "job-1");
            }
            Err(err) => prop_assert!(false, "{} refused: {}", state, err),
        }
    }

    #[test]
    fn every_notification_is_recorded_rejected_or_progress_once_and_redelivery_writes_nothing(
        messages in any_sns_records()
    ) {
        let count = messages.len();
        let config = RecordConfig::from_env(&[("TOPIC_ARN", TOPIC)]).unwrap();
        let store = MemoryStore::default();
        let rt = runtime();
        let first = rt
            .block_on(record_completion(RawSnsEvent { records: messages.clone() }, &config, &store))
            .unwrap();
        prop_assert_eq!(
            first.recorded.len() + first.duplicates.len() + first.progress + first.rejected.len(),
            count
        );
        let again = rt
            .block_on(record_completion(RawSnsEvent { records: messages }, &config, &store))
            .unwrap();
        prop_assert!(again.recorded.is_empty(), "{:?}", again.recorded);
        prop_assert_eq!(again.rejected.len(), first.rejected.len());
        let mut stored = 0;
        for owner in ["alice", "bob"] {
            let page = rt.block_on(store.list_unread(&Owner::new(owner).unwrap(), 100, None)).unwrap();
            stored += page.messages.len();
        }
        prop_assert_eq!(stored, first.recorded.len());
    }
}

/// The generators are worth something only if they reach every outcome: jobs, repeated uploads,
/// and each kind of skip. Checked on a fixed seed, so it cannot pass by luck.
#[test]
fn the_record_generator_reaches_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(Config::default().rng_algorithm),
    );
    let strategy = any_records();
    let config = StartConfig::from_env(&[]).unwrap();
    let (mut started, mut duplicates) = (0, 0);
    let mut reasons = HashSet::new();
    for _ in 0..200 {
        let records = strategy.new_tree(&mut runner).unwrap().current();
        let report = runtime()
            .block_on(start_transcode(
                RawS3Event { records },
                &config,
                &MemorySource::audio(),
                &KeepingTranscoder::default(),
                &MemoryStore::default(),
            ))
            .unwrap();
        started += report.started.len();
        duplicates += report.duplicates.len();
        reasons.extend(report.skipped.into_iter().map(|s| s.reason));
    }
    assert!(started >= 20, "only {started} jobs started");
    assert!(duplicates >= 2, "only {duplicates} repeated uploads");
    for reason in [
        "the record is not",
        "the object key cannot",
        "the owner folder cannot",
        "the key is outside",
        "the key is inside",
        "not an audio file",
        "the object is empty",
    ] {
        assert!(
            reasons.iter().any(|r| r.starts_with(reason)),
            "no record skipped with '{reason}'"
        );
    }
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("is not an object-created")),
        "{reasons:?}"
    );
}

#[test]
fn the_notification_generator_reaches_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(Config::default().rng_algorithm),
    );
    let config = RecordConfig::from_env(&[("TOPIC_ARN", TOPIC)]).unwrap();
    let (mut recorded, mut duplicates, mut progress, mut rejected) = (0, 0, 0, 0);
    for _ in 0..100 {
        let records = any_sns_records().new_tree(&mut runner).unwrap().current();
        let report = runtime()
            .block_on(record_completion(
                RawSnsEvent { records },
                &config,
                &MemoryStore::default(),
            ))
            .unwrap();
        recorded += report.recorded.len();
        duplicates += report.duplicates.len();
        progress += report.progress;
        rejected += report.rejected.len();
    }
    for (outcome, count) in [
        ("recorded", recorded),
        ("duplicates", duplicates),
        ("progress", progress),
        ("rejected", rejected),
    ] {
        assert!(count >= 5, "only {count} {outcome}");
    }
}

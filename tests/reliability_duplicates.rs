//! At-least-once delivery, many times over: S3 and SNS may deliver an event more than once, and
//! Lambda may run the copies at the same time. A thousand deliveries of ten uploads must start ten
//! jobs, and a thousand deliveries of ten notifications must write ten messages, with DynamoDB
//! Local's conditional writes deciding every race. Most deliveries go through the handlers
//! in-process (32 in flight at once), a hundred through the built binaries (four processes at once,
//! as Lambda scales out).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, stream};
use serde_json::{Value, json};
use system_tests::dynamodb_local::DynamoDbLocal;
use system_tests::functions::Backend::ElasticTranscoder;
use system_tests::functions::{self, PIPELINE, TOPIC};
use system_tests::{Recorded, Stub, sample_event};
use transcoder_aws::DynamoStore;
use transcoder_core::{
    JobId, MemorySource, NotStarted, RawS3Event, RawSnsEvent, RecordConfig, StartConfig,
    StartReport, TranscodeJob, Transcoder, TranscoderError, record_completion, start_transcode,
};

const DISTINCT: usize = 10;
const IN_PROCESS: usize = 1000;
const THROUGH_BINARIES: usize = 100;
const IN_FLIGHT: usize = 32;
const PROCESSES: usize = 4;
/// How often one delivery is retried while another invocation holds its claim, as Lambda would.
const MAX_ATTEMPTS: usize = 200;

/// Upload `i`: one record, its own key and sequencer.
fn upload(i: usize) -> Value {
    let mut event = sample_event("s3-put.json");
    let object = &mut event["Records"][0]["s3"]["object"];
    object["key"] = format!("media/alice/take+{i}.mp3").into();
    object["sequencer"] = format!("0062E99A88DC4074{i:02}").into();
    event
}

/// Notification `i`: job `1700000000000-dup0{i}` completed, for alice or bob.
fn notification(i: usize) -> Value {
    let mut event = sample_event("sns-et-completed.json");
    let record = &mut event["Records"][0]["Sns"];
    let mut message: Value = serde_json::from_str(record["Message"].as_str().unwrap()).unwrap();
    message["jobId"] = format!("1700000000000-dup{i:03}").into();
    message["userMetadata"]["owner"] = (if i.is_multiple_of(2) { "alice" } else { "bob" }).into();
    record["Message"] = message.to_string().into();
    record["MessageId"] = format!("95df01b4-ee98-5cb9-9903-{i:012}").into();
    event
}

/// Which of the ten events delivery `n` carries: every one a hundred times, interleaved.
fn event_of(n: usize) -> usize {
    (n * 7 + n / DISTINCT) % DISTINCT
}

/// Counts the jobs it is asked to start, per source key, and takes a moment to answer, so that
/// other deliveries of the same upload arrive while its claim is held.
#[derive(Default)]
struct CountingTranscoder {
    starts: Mutex<HashMap<String, usize>>,
}

impl Transcoder for CountingTranscoder {
    async fn start_job(&self, job: &TranscodeJob) -> Result<JobId, TranscoderError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut starts = self.starts.lock().unwrap();
        let count = starts.entry(job.source.to_string()).or_default();
        *count += 1;
        Ok(JobId(format!("job-{}-{count}", job.source)))
    }
}

/// Tracks how many deliveries are in flight at once, so the test knows it really raced.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl InFlight {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One delivery of an upload, retried while another invocation holds the claim (Lambda retries a
/// failed invocation); any other failure fails the test.
async fn deliver_upload(
    event: &Value,
    config: &StartConfig,
    transcoder: &CountingTranscoder,
    claims: &DynamoStore,
) -> (StartReport, usize) {
    for attempt in 1..=MAX_ATTEMPTS {
        let raw: RawS3Event = serde_json::from_value(event.clone()).unwrap();
        match start_transcode(raw, config, &MemorySource::audio(), transcoder, claims).await {
            Ok(report) => return (report, attempt),
            Err(err)
                if err
                    .failed
                    .iter()
                    .all(|(_, _, e)| matches!(e, NotStarted::Held)) =>
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(err) => panic!("delivery failed: {err}"),
        }
    }
    panic!("an upload was still held after {MAX_ATTEMPTS} attempts")
}

/// Elastic Transcoder's CreateJob, counted per key; it takes 20 ms to answer, as a remote
/// service would, so that concurrent deliveries find the claim held.
async fn elastic_transcoder() -> Stub {
    let jobs = Arc::new(AtomicUsize::new(0));
    Stub::start_delayed(Duration::from_millis(20), move |req: &Recorded| {
        if (req.method.as_str(), req.path.as_str()) != ("POST", "/2012-09-25/jobs") {
            return (404, json!({"message": "not stubbed"}));
        }
        let n = jobs.fetch_add(1, Ordering::SeqCst) + 1;
        (
            201,
            json!({"Job": {"Id": format!("1700000000000-job{n:03}"), "Status": "Submitted"}}),
        )
    })
    .await
}

fn count_by<'a>(values: impl IntoIterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut counts = HashMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deliveries_of_ten_uploads_start_ten_jobs() {
    let db = DynamoDbLocal::start().await;

    // In-process: the handler itself, 32 deliveries in flight, claims in DynamoDB Local.
    db.create_table("claims").await;
    let claims = DynamoStore::new(db.client(), "claims", 30);
    let config = StartConfig::from_env(&[]).unwrap();
    let transcoder = CountingTranscoder::default();
    let in_flight = InFlight::default();
    let events: Vec<Value> = (0..DISTINCT).map(upload).collect();
    let deliveries: Vec<(usize, StartReport, usize)> = stream::iter(0..IN_PROCESS)
        .map(|n| {
            let (events, config, transcoder, claims, in_flight) =
                (&events, &config, &transcoder, &claims, &in_flight);
            async move {
                in_flight.enter();
                let i = event_of(n);
                let (report, attempts) =
                    deliver_upload(&events[i], config, transcoder, claims).await;
                in_flight.leave();
                (i, report, attempts)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;

    assert!(in_flight.most.load(Ordering::SeqCst) > 1, "never raced");
    let starts = transcoder.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), DISTINCT, "{starts:?}");
    assert!(starts.values().all(|&n| n == 1), "{starts:?}");
    // Every delivery names the job of its upload, whether it started it or found it started.
    let mut job_of: HashMap<usize, String> = HashMap::new();
    let (mut started, mut duplicates) = (0, 0);
    for (i, report, _) in &deliveries {
        started += report.started.len();
        duplicates += report.duplicates.len();
        let named: Vec<_> = report.started.iter().chain(&report.duplicates).collect();
        assert_eq!(named.len(), 1, "{report:?}");
        let job = job_of
            .entry(*i)
            .or_insert_with(|| named[0].job_id.0.clone());
        assert_eq!(*job, named[0].job_id.0);
    }
    assert_eq!((started, duplicates), (DISTINCT, IN_PROCESS - DISTINCT));
    let retried = deliveries.iter().filter(|(_, _, a)| *a > 1).count();
    println!(
        "in-process: {IN_PROCESS} deliveries, at most {} in flight, {retried} retried while a claim was held",
        in_flight.most.load(Ordering::SeqCst)
    );

    // Through the built binary: four processes at once on one table, like Lambda scaled out.
    db.create_table("claims-binaries").await;
    let stub = elastic_transcoder().await;
    let bucket = system_tests::s3::bucket(Vec::new()).await;
    let env = [("PIPELINE_ID", PIPELINE)];
    let mut functions = Vec::new();
    for _ in 0..PROCESSES {
        functions.push(
            functions::start_transcode(
                ElasticTranscoder,
                &stub,
                &bucket.url(),
                &db,
                "claims-binaries",
                &env,
            )
            .await,
        );
    }
    let outcomes: Vec<Vec<(usize, Value)>> =
        futures::future::join_all(functions.iter_mut().enumerate().map(|(p, function)| {
            let events = &events;
            async move {
                let mut answers = Vec::new();
                for n in (p..THROUGH_BINARIES).step_by(PROCESSES) {
                    let i = event_of(n);
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        match function.invoke(&events[i]).await {
                            system_tests::Outcome::Response(r) => {
                                answers.push((i, r));
                                break;
                            }
                            system_tests::Outcome::Error { error_message, .. } => {
                                // Only a claim held by another process is worth retrying here.
                                assert!(
                                    error_message.contains("right now") && attempts < MAX_ATTEMPTS,
                                    "{error_message}"
                                );
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                }
                answers
            }
        }))
        .await;

    let requests = stub.requests();
    let keys = count_by(
        requests
            .iter()
            .map(|r| r.body["Input"]["Key"].as_str().unwrap_or_default()),
    );
    assert_eq!(keys.len(), DISTINCT, "{keys:?}");
    assert!(keys.values().all(|&n| n == 1), "{keys:?}");
    let answers: Vec<_> = outcomes.into_iter().flatten().collect();
    assert_eq!(answers.len(), THROUGH_BINARIES);
    let started: usize = answers
        .iter()
        .map(|(_, r)| r["started"].as_array().unwrap().len())
        .sum();
    assert_eq!(started, DISTINCT);
    let mut job_of: HashMap<usize, Value> = HashMap::new();
    for (i, response) in &answers {
        let job = response["started"]
            .get(0)
            .or_else(|| response["duplicates"].get(0))
            .map(|s| s["job_id"].clone())
            .unwrap();
        assert_eq!(job_of.entry(*i).or_insert_with(|| job.clone()), &job);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deliveries_of_ten_notifications_write_ten_messages() {
    let db = DynamoDbLocal::start().await;
    db.create_table("messages").await;
    let store = DynamoStore::new(db.client(), "messages", 30);
    let config = RecordConfig::from_env(&[("TOPIC_ARN", TOPIC)]).unwrap();
    let events: Vec<Value> = (0..DISTINCT).map(notification).collect();
    let in_flight = InFlight::default();

    // In-process: 32 deliveries in flight, one conditional put each.
    let reports: Vec<_> = stream::iter(0..IN_PROCESS)
        .map(|n| {
            let (events, config, store, in_flight) = (&events, &config, &store, &in_flight);
            async move {
                in_flight.enter();
                let raw: RawSnsEvent = serde_json::from_value(events[event_of(n)].clone()).unwrap();
                let report = record_completion(raw, config, store).await;
                in_flight.leave();
                report.unwrap_or_else(|e| panic!("delivery failed: {e}"))
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    assert!(in_flight.most.load(Ordering::SeqCst) > 1, "never raced");
    let recorded: Vec<&str> = reports
        .iter()
        .flat_map(|r| r.recorded.iter().map(String::as_str))
        .collect();
    let duplicates: usize = reports.iter().map(|r| r.duplicates.len()).sum();
    let per_job = count_by(recorded);
    assert_eq!(per_job.len(), DISTINCT, "{per_job:?}");
    assert!(per_job.values().all(|&n| n == 1), "{per_job:?}");
    assert_eq!(duplicates, IN_PROCESS - DISTINCT);
    assert_eq!(message_items(&db, "messages").await, DISTINCT);
    let mut listed = 0;
    for owner in ["alice", "bob"] {
        listed += functions::unread(&store, owner).await.len();
    }
    assert_eq!(listed, DISTINCT);

    // Through the built binary: four processes at once on a fresh table.
    db.create_table("messages-binaries").await;
    let mut functions = Vec::new();
    for _ in 0..PROCESSES {
        functions.push(functions::record_completion(&db, "messages-binaries").await);
    }
    let responses: Vec<Vec<Value>> =
        futures::future::join_all(functions.iter_mut().enumerate().map(|(p, function)| {
            let events = &events;
            async move {
                let mut responses = Vec::new();
                for n in (p..THROUGH_BINARIES).step_by(PROCESSES) {
                    responses.push(function.invoke(&events[event_of(n)]).await.response());
                }
                responses
            }
        }))
        .await;
    let responses: Vec<_> = responses.into_iter().flatten().collect();
    let recorded: usize = responses
        .iter()
        .map(|r| r["recorded"].as_array().unwrap().len())
        .sum();
    let duplicates: usize = responses
        .iter()
        .map(|r| r["duplicates"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        (recorded, duplicates),
        (DISTINCT, THROUGH_BINARIES - DISTINCT)
    );
    assert_eq!(message_items(&db, "messages-binaries").await, DISTINCT);
}

/// How many message items the table holds, read straight from DynamoDB.
async fn message_items(db: &DynamoDbLocal, table: &str) -> usize {
    let items = db
        .client()
        .scan()
        .table_name(table)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    items
        .into_iter()
        .filter(|item| {
            item.get("sk")
                .and_then(|sk| sk.as_s().ok())
                .is_some_and(|sk| sk.starts_with("MSG#"))
        })
        .count()
}

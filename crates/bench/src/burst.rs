//! A burst of uploads many times the transcoder's rate, through the intake queue: the release
//! `start-transcode` as several concurrent instances, each fed by the harness's event-source
//! mapping from a queue of moto's, against a MediaConvert stub whose CreateJob is a token bucket
//! (`429 TooManyRequestsException` beyond it). Then the old direct asynchronous path under the same
//! burst, simulated with Lambda's documented retry schedule, so that the difference shows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use serde_json::json;
use system_tests::dynamodb_local::DynamoDbLocal;
use system_tests::functions::{self, Backend, table};
use system_tests::moto::Moto;
use system_tests::{Recorded, Stub, s3, sample_event};

fn setting(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every CreateJob the stub was asked for: when, and whether the bucket had a token for it.
type Calls = Vec<(Instant, bool)>;

/// CreateJob as a token bucket of `rate` a second holding at most `burst`: each accepted job is
/// counted by its source key.
async fn rate_limited_mediaconvert(
    rate: f64,
    burst: f64,
) -> (Stub, Arc<Mutex<HashMap<String, usize>>>, Arc<Mutex<Calls>>) {
    let accepted = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let bucket = Mutex::new((burst, Instant::now()));
    let seen = Arc::new(Mutex::new(Calls::new()));
    let (counted, saw) = (accepted.clone(), seen.clone());
    let stub = Stub::start(move |req: &Recorded| {
        if req.method != "POST" || req.path != "/2017-08-29/jobs" {
            return (404, json!({"message": "not stubbed"}));
        }
        let mut state = bucket.lock().unwrap();
        let (tokens, last) = &mut *state;
        *tokens = (*tokens + last.elapsed().as_secs_f64() * rate).min(burst);
        *last = Instant::now();
        saw.lock().unwrap().push((*last, *tokens >= 1.0));
        if *tokens < 1.0 {
            return (
                429,
                json!({"__type": "TooManyRequestsException", "message": "Too Many Requests"}),
            );
        }
        *tokens -= 1.0;
        let key = req.body["settings"]["inputs"][0]["fileInput"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut accepted = counted.lock().unwrap();
        let n = accepted.values().sum::<usize>() + 1;
        *accepted.entry(key).or_default() += 1;
        (
            201,
            json!({"job": {"id": format!("1763885000000-b{n:06}"), "status": "SUBMITTED"}}),
        )
    })
    .await;
    (stub, accepted, seen)
}

/// S3's notification of one upload, as the intake queue's message body.
fn notification(n: usize) -> String {
    let mut body = sample_event("s3-put.json");
    let object = &mut body["Records"][0]["s3"]["object"];
    object["key"] = format!("media/user{}/burst-{n:05}.mp3", n % 100).into();
    object["eTag"] = format!("{n:032x}").into();
    object["sequencer"] = format!("{n:018X}").into();
    body.to_string()
}

pub async fn burst() {
    let uploads = setting("BENCH_BURST_UPLOADS", 2000.0) as usize;
    let rate = setting("BENCH_BURST_RATE", 10.0);
    let burst = setting("BENCH_BURST_BUCKET", 20.0);
    let instances = setting("BENCH_BURST_INSTANCES", 10.0) as usize;
    let visibility = Duration::from_secs(setting("BENCH_BURST_VISIBILITY_SECONDS", 5.0) as u64);
    let max_receives = setting("BENCH_BURST_MAX_RECEIVES", 100.0) as u32;
    // The SDK's retry mode in the instances (AWS_RETRY_MODE): unset, the code's own, adaptive.
    let retry_mode = std::env::var("BENCH_BURST_RETRY_MODE").ok();
    // Whether the instances pace themselves at their share of the stub's rate (JOBS_PER_SECOND).
    let paced = std::env::var("BENCH_BURST_PACED").is_ok_and(|v| v == "1");
    let (jobs_per_second, concurrency) = (rate.to_string(), instances.to_string());

    let moto = Moto::start().await;
    let dead_letters = moto.queue("intake-dead-letters", visibility, None).await;
    let intake = moto
        .queue("intake", visibility, Some((&dead_letters, max_receives)))
        .await;
    let db = DynamoDbLocal::start().await;
    let table = table(&db).await;
    let bucket = s3::bucket(Vec::new()).await;
    let (transcoder, accepted, seen) = rate_limited_mediaconvert(rate, burst).await;
    let mut starters = Vec::new();
    for _ in 0..instances {
        let role = ("MEDIACONVERT_ROLE_ARN", "arn:aws:iam::123456789012:role/mc");
        let mut env = vec![role, ("AWS_LAMBDA_LOG_LEVEL", "error")];
        if let Some(mode) = &retry_mode {
            env.push(("AWS_RETRY_MODE", mode));
        }
        if paced {
            env.push(("JOBS_PER_SECOND", &jobs_per_second));
            env.push(("START_MAX_CONCURRENCY", &concurrency));
        }
        let starter = functions::start_transcode(
            Backend::MediaConvert,
            &transcoder,
            &bucket.url(),
            &db,
            &table,
            &env,
        )
        .await;
        starters.push(starter);
    }

    // The burst: every upload's notification on the queue at once.
    let sqs = moto.sqs();
    for chunk in (0..uploads).collect::<Vec<_>>().chunks(10) {
        let entries: Vec<SendMessageBatchRequestEntry> = chunk
            .iter()
            .map(|&n| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("u{n}"))
                    .message_body(notification(n))
                    .build()
                    .expect("an entry has an id and a body")
            })
            .collect();
        sqs.send_message_batch()
            .queue_url(&intake.url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("moto takes the batch");
    }

    let started = Instant::now();
    let deadline =
        started + Duration::from_secs(60) + Duration::from_secs_f64(3.0 * uploads as f64 / rate);
    let failures = Arc::new(Mutex::new(0usize));
    let mut tasks = Vec::new();
    let moto = Arc::new(moto);
    for mut starter in starters {
        let (moto, intake, accepted, failures) = (
            moto.clone(),
            intake.clone(),
            accepted.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            starter.set_timeout(Duration::from_secs(120));
            while Instant::now() < deadline {
                let done = accepted.lock().unwrap().len() >= uploads;
                if done {
                    break;
                }
                let delivered = moto
                    .deliver(&mut starter, &intake, 10, Duration::from_secs(1))
                    .await;
                *failures.lock().unwrap() += delivered.failed.len() + delivered.undeleted;
            }
            starter
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let drained = started.elapsed();
    let in_dead_letters = waiting(&moto, &dead_letters.url).await;
    let queued = waiting(&moto, &intake.url).await;
    let counts = accepted.lock().unwrap().clone();
    let jobs = counts.len();
    let lost = uploads.saturating_sub(jobs + (queued + in_dead_letters) as usize);
    // When 99 % of the uploads had their job: the drain without its last few stragglers.
    let mut accepted_at: Vec<Instant> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, accepted)| *accepted)
        .map(|(at, _)| *at)
        .collect();
    accepted_at.sort();
    let most = accepted_at
        .get((uploads * 99).div_ceil(100).saturating_sub(1))
        .map(|at| at.saturating_duration_since(started));
    let duplicates: usize = counts.values().map(|n| n.saturating_sub(1)).sum();
    let ideal = uploads as f64 / rate;
    let retried = *failures.lock().unwrap();

    println!("## A burst of uploads (`SECTION=burst`)\n");
    println!(
        "{uploads} uploads' notifications on the intake queue at once (moto), drained by {instances} release `start-transcode`"
    );
    println!(
        "instances through the harness's event-source mapping (batches of 10, `ReportBatchItemFailures`), against a"
    );
    println!(
        "MediaConvert stub whose CreateJob is a token bucket of {rate} a second (at most {burst}), `429 TooManyRequestsException`"
    );
    println!(
        "beyond it; DynamoDB Local holds the claims. The queue's visibility timeout is {} s here ({}), and its dead-letter queue",
        visibility.as_secs(),
        if visibility.as_secs() == 185 {
            "as the stack's, six times the function's timeout"
        } else {
            "the stack's is 185 s, six times the function's timeout"
        }
    );
    println!(
        "takes a message after {max_receives} receives. The SDK's retry mode is {}; {}.\n",
        match &retry_mode {
            Some(mode) => format!("`{mode}` (`AWS_RETRY_MODE`)"),
            None => "the code's own, `adaptive`".to_owned(),
        },
        if paced {
            format!(
                "each instance paces its CreateJobs at {rate} ÷ {instances} a second (`JOBS_PER_SECOND`, `START_MAX_CONCURRENCY`)"
            )
        } else {
            "no pace is set".to_owned()
        }
    );
    println!(
        "| path | uploads | jobs started | still queued | lost | duplicates | in the dead-letter queue | drain | ÷ uploads ÷ rate | 99 % started | 99 % ÷ uploads ÷ rate |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let (most, most_ratio) = match most {
        Some(at) => (
            format!("{:.1} s", at.as_secs_f64()),
            format!("{:.2} ×", at.as_secs_f64() / ideal),
        ),
        None => ("—".to_owned(), "—".to_owned()),
    };
    println!(
        "| intake queue | {uploads} | {jobs} | {queued} | {lost} | {duplicates} | {in_dead_letters} | {:.1} s | {:.2} × | {most} | {most_ratio} |",
        drained.as_secs_f64(),
        drained.as_secs_f64() / ideal
    );
    let (old_jobs, old_lost) = old_async_path(uploads, rate, burst);
    println!(
        "| direct asynchronous invocation (simulated) | {uploads} | {old_jobs} | 0 | {old_lost} | 0 | {old_lost} in the failure queue | — | — | — | — |\n"
    );
    if queued > 0 {
        println!(
            "The bench stopped at its deadline (a minute plus three times uploads ÷ rate) with {queued} uploads still on the queue.\n"
        );
    }
    println!(
        "Messages received again along the way (batch-item failures when throttled, and deletes too late): {retried}."
    );
    println!(
        "The simulated row: each upload invoked once as it arrives (all within the first second), then, as Lambda"
    );
    println!(
        "retries a failed asynchronous invocation, again after 1 minute and after 2 more; each invocation's"
    );
    println!(
        "CreateJob tried three times (the SDK's attempts) against the same token bucket. What fails the third time"
    );
    println!("goes to the failure queue, and its owner sees `received` for ever.\n");
    timeline(&seen.lock().unwrap(), started, rate, burst);
}

/// Where the drain's time went: CreateJobs accepted and throttled in each tenth of the drain, and
/// the tokens the bucket could not hold because nobody asked for them (each a job the drain ran
/// later than the rate allows).
fn timeline(calls: &Calls, started: Instant, rate: f64, burst: f64) {
    let Some(end) = calls.iter().map(|(at, _)| *at).max() else {
        return;
    };
    let span = end
        .saturating_duration_since(started)
        .as_secs_f64()
        .max(1.0);
    let slices = 10;
    let mut rows = vec![(0usize, 0usize, 0.0f64); slices];
    let (mut tokens, mut last) = (burst, 0.0f64);
    for (at, accepted) in calls {
        let at = at.saturating_duration_since(started).as_secs_f64();
        let slice = ((at / span * slices as f64) as usize).min(slices - 1);
        let filled = tokens + (at - last) * rate;
        rows[slice].2 += (filled - burst).max(0.0);
        tokens = filled.min(burst);
        last = at;
        if *accepted {
            tokens -= 1.0;
            rows[slice].0 += 1;
        } else {
            rows[slice].1 += 1;
        }
    }
    println!("Where the time went (the stub's CreateJobs, in tenths of {span:.1} s):\n");
    println!("| from | accepted | throttled | tokens unused (bucket full) |");
    println!("| --- | --- | --- | --- |");
    for (n, (accepted, throttled, wasted)) in rows.iter().enumerate() {
        let from = span * n as f64 / slices as f64;
        println!("| {from:.0} s | {accepted} | {throttled} | {wasted:.1} |");
    }
    let wasted: f64 = rows.iter().map(|r| r.2).sum();
    println!(
        "\nTokens unused in all: {wasted:.1}, {:.1} s at the rate.\n",
        wasted / rate
    );
}

/// The messages on the queue at `url`, those received and not yet back included.
async fn waiting(moto: &Moto, url: &str) -> u64 {
    let counts = [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ];
    let attributes = moto
        .sqs()
        .get_queue_attributes()
        .queue_url(url)
        .set_attribute_names(Some(counts.to_vec()))
        .send()
        .await
        .expect("moto answers");
    counts
        .iter()
        .filter_map(|name| attributes.attributes()?.get(name)?.parse::<u64>().ok())
        .sum()
}

/// Jobs started and uploads lost by the direct asynchronous path under the same burst: an
/// invocation per upload at once, Lambda's two retries after 60 s and 180 s, three CreateJobs
/// each (spread over the SDK's backoff, about a second), one token bucket.
fn old_async_path(uploads: usize, rate: f64, burst: f64) -> (usize, usize) {
    let mut attempts: Vec<(f64, usize, u32)> = Vec::new();
    for n in 0..uploads {
        let arrival = n as f64 / uploads as f64;
        for (invocation, at) in [0.0, 60.0, 180.0].into_iter().enumerate() {
            for sdk in 0..3 {
                attempts.push((
                    arrival + at + f64::from(sdk) * 0.4,
                    n,
                    invocation as u32 * 3 + sdk,
                ));
            }
        }
    }
    attempts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut tokens, mut last) = (burst, 0.0);
    let mut done = vec![false; uploads];
    for (at, n, _) in attempts {
        if done[n] {
            continue;
        }
        tokens = (tokens + (at - last) * rate).min(burst);
        last = at;
        if tokens >= 1.0 {
            tokens -= 1.0;
            done[n] = true;
        }
    }
    let jobs = done.iter().filter(|d| **d).count();
    (jobs, uploads - jobs)
}

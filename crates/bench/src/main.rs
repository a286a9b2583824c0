//! `make bench`: measurements a reader can reproduce, printed as Markdown tables. Timings are
//! reported, never asserted. Every service is on loopback: recording stubs, DynamoDB Local, ffmpeg.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use system_tests::{Function, Recorded, Stub, sample_event};

mod burst;
mod lambda;
mod scale;
mod transcode;

#[tokio::main]
async fn main() {
    let only = std::env::args().nth(1);
    let wants = |section: &str| only.as_deref().is_none_or(|o| o == section);
    println!("# audio-transcoder benchmarks\n");
    println!("{}\n", machine());
    if wants("cold") {
        cold_starts().await;
    }
    if wants("size") {
        package_sizes();
    }
    if wants("fanout") {
        fan_out().await;
    }
    if wants("scale") {
        scale::listing_cost().await;
    }
    if wants("transcode") {
        transcode::local_transcode().await;
    }
    if wants("lambda") {
        lambda::lambda_worker().await;
    }
    if wants("burst") {
        burst::burst().await;
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "Machine: {cpu}, {cores} cores. Date: {}. Command: `make bench` (release build, `{} {}`).",
        chrono::Utc::now().format("%Y-%m-%d"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

pub fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

pub fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort();
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Peak resident set size of a process, from /proc.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// DynamoDB's JSON protocol, as far as the functions use it, answering at once.
async fn dynamodb_stub() -> Stub {
    Stub::start(|req: &Recorded| {
        let target = req
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        match target.rsplit('.').next() {
            Some("Query") => (200, json!({"Items": [], "Count": 0, "ScannedCount": 0})),
            Some(_) => (200, json!({})),
            None => (400, json!({"__type": "UnknownOperationException"})),
        }
    })
    .await
}

async fn elastic_transcoder_stub(delay: Duration) -> Stub {
    Stub::start_delayed(delay, |_req: &Recorded| {
        (201, json!({"Job": {"Id": "1700000000000-bench1"}}))
    })
    .await
}

/// One function: `runs` cold starts, then 100 warm invocations of the last one.
async fn measure(name: &str, env: &[(&str, &str)], event: &dyn Fn(usize) -> Value) -> String {
    let runs = 5;
    let (mut init, mut first) = (Vec::new(), Vec::new());
    let mut warm = Vec::new();
    let mut rss = 0;
    for run in 0..runs {
        let mut function = Function::start(name, env).await;
        let outcome = function.invoke(&event(run * 1000)).await;
        let responded = Instant::now();
        if let system_tests::Outcome::Error {
            error_type,
            error_message,
        } = &outcome
        {
            panic!("{name} failed: {error_type}: {error_message}");
        }
        init.push(function.first_request_at().unwrap() - function.spawned_at());
        first.push(responded - function.spawned_at());
        if run == runs - 1 {
            for i in 1..=100 {
                let started = Instant::now();
                function.invoke(&event(run * 1000 + i)).await;
                warm.push(started.elapsed());
            }
            rss = function.pid().and_then(peak_rss_kib).unwrap_or(0);
        }
    }
    format!(
        "| `{name}` | {} | {} | {} | {:.1} MB |",
        ms(median(&mut init)),
        ms(median(&mut first)),
        ms(median(&mut warm)),
        rss as f64 / 1024.0
    )
}

async fn cold_starts() {
    let dynamodb = dynamodb_stub().await;
    let et = elastic_transcoder_stub(Duration::ZERO).await;
    // start-transcode reads each upload's first bytes: a ranged GET, answered at once with an MP3.
    let bucket = system_tests::s3::bucket(Vec::new()).await;
    let (db, et_url, s3_url) = (dynamodb.url(), et.url(), bucket.url());
    println!("## Cold start and footprint\n");
    println!(
        "Release x86_64 binaries spawned by a Lambda Runtime API on loopback; AWS SDK pointed at loopback"
    );
    println!(
        "stubs that answer at once (DynamoDB, Elastic Transcoder, S3's ranged GET of an upload's first bytes);"
    );
    println!("S3 links are signed locally. Medians of 5");
    println!(
        "cold starts; warm is the median of 100 invocations (Runtime API round trip included).\n"
    );
    println!("| function | spawn → first request | spawn → first response | warm | peak RSS |");
    println!("| --- | --- | --- | --- | --- |");
    let s3 = sample_event("s3-put.json");
    let start = move |n: usize| {
        let mut e = s3.clone();
        e["Records"][0]["s3"]["object"]["sequencer"] = format!("{n:018X}").into();
        e
    };
    println!(
        "{}",
        measure(
            "start-transcode",
            &[
                ("AWS_ENDPOINT_URL_DYNAMODB", &db),
                ("AWS_ENDPOINT_URL_ELASTIC_TRANSCODER", &et_url),
                ("AWS_ENDPOINT_URL_S3", &s3_url),
                ("TABLE_NAME", "messages"),
                ("TRANSCODER", "elastictranscoder"),
                ("PIPELINE_ID", "1111111111111-abcde1"),
                ("AWS_LAMBDA_LOG_LEVEL", "warn"),
            ],
            &start
        )
        .await
    );
    let sns = sample_event("sns-et-completed.json");
    let record = move |n: usize| {
        let mut e = sns.clone();
        let mut message: Value =
            serde_json::from_str(e["Records"][0]["Sns"]["Message"].as_str().unwrap()).unwrap();
        message["jobId"] = format!("1700000000000-{n:06}").into();
        e["Records"][0]["Sns"]["Message"] = message.to_string().into();
        e
    };
    println!(
        "{}",
        measure(
            "record-completion",
            &[
                ("AWS_ENDPOINT_URL_DYNAMODB", &db),
                ("TABLE_NAME", "messages"),
                (
                    "TOPIC_ARN",
                    "arn:aws:sns:eu-west-1:123456789012:audio-transcoder-completions"
                ),
                ("AWS_LAMBDA_LOG_LEVEL", "warn"),
            ],
            &record
        )
        .await
    );
    let http = sample_event("http-list-messages-alice.json");
    let list = move |_: usize| http.clone();
    println!(
        "{}",
        measure(
            "messages-api",
            &[
                ("AWS_ENDPOINT_URL_DYNAMODB", &db),
                ("TABLE_NAME", "messages"),
                ("BUCKET_NAME", "audio-transcoder-media"),
                // The page's settings, without which the function refuses to start.
                ("COGNITO_URL", "https://cognito-idp.eu-west-1.amazonaws.com"),
                ("USER_POOL_CLIENT_ID", "4example0client0id"),
                (
                    "BUCKET_URL",
                    "https://audio-transcoder-media.s3.eu-west-1.amazonaws.com",
                ),
                ("AWS_LAMBDA_LOG_LEVEL", "warn"),
            ],
            &list
        )
        .await
    );
    println!();
}

/// Zipped size of each function's arm64 bootstrap from `sam build`.
fn package_sizes() {
    println!("## Package size\n");
    println!(
        "arm64 `bootstrap` from `sam build` (`make build`), zipped with deflate level 9, as Lambda receives it.\n"
    );
    println!("| function | bootstrap | zipped |");
    println!("| --- | --- | --- |");
    for (function, name) in [
        ("StartTranscodeFunction", "start-transcode"),
        ("RecordCompletionFunction", "record-completion"),
        ("MessagesApiFunction", "messages-api"),
    ] {
        let path = PathBuf::from(format!(".aws-sam/build/{function}/bootstrap"));
        match zipped_size(&path) {
            Some((raw, zipped)) => {
                println!("| `{name}` | {:.2} MiB | {:.2} MiB |", mb(raw), mb(zipped))
            }
            None => println!("| `{name}` | not built: run `make build` | |"),
        }
    }
    println!();
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn zipped_size(path: &Path) -> Option<(u64, u64)> {
    let raw = std::fs::metadata(path).ok()?.len();
    let zip = std::env::temp_dir().join(format!("bench-{}.zip", std::process::id()));
    let script = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED, compresslevel=9) as z: z.write(sys.argv[1], 'bootstrap')";
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .arg(&zip)
        .status()
        .ok()?;
    let zipped = status
        .success()
        .then(|| std::fs::metadata(&zip).ok().map(|m| m.len()))
        .flatten()?;
    let _ = std::fs::remove_file(&zip);
    Some((raw, zipped))
}

/// One S3 event with 25 records against a transcoder that takes 50 ms per CreateJob.
async fn fan_out() {
    use transcoder_core::{RawS3Event, StartConfig, start_transcode};
    use transcoder_testkit::{MemorySource, MemoryStore};

    let stub = elastic_transcoder_stub(Duration::from_millis(50)).await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .endpoint_url(stub.url())
        .credentials_provider(aws_sdk_elastictranscoder::config::Credentials::new(
            "AKID", "secret", None, None, "bench",
        ))
        .load()
        .await;
    let transcoder = transcoder_aws::ElasticTranscoder::new(
        aws_sdk_elastictranscoder::Client::new(&sdk),
        "1111111111111-abcde1",
    );
    let config = StartConfig::from_env(&transcoder_core::ProcessEnv).unwrap();
    let record = sample_event("s3-put.json")["Records"][0].clone();
    let event = |count: usize, round: usize| RawS3Event {
        records: (0..count)
            .map(|i| {
                let mut r = record.clone();
                r["s3"]["object"]["key"] = format!("media/alice/song-{round}-{i}.mp3").into();
                r
            })
            .collect(),
    };
    let time = async |count: usize| {
        let mut samples = Vec::new();
        for round in 0..7 {
            let claims = MemoryStore::default();
            let started = Instant::now();
            // The uploads' bytes from memory: what is measured is the fan-out of CreateJob.
            let report = start_transcode(
                event(count, round),
                &config,
                &MemorySource::audio(),
                &transcoder,
                &claims,
            )
            .await
            .unwrap();
            samples.push(started.elapsed());
            assert_eq!(report.started.len(), count);
        }
        median(&mut samples)
    };
    let one = time(1).await;
    let many = time(25).await;
    println!("## Fan-out\n");
    println!(
        "One S3 event with 25 records against an Elastic Transcoder stub that answers each CreateJob after"
    );
    println!(
        "50 ms; `MAX_CONCURRENT_JOBS` = {} (default). Median of 7.\n",
        config.max_concurrent_jobs
    );
    println!("| records | time | vs one record |");
    println!("| --- | --- | --- |");
    println!("| 1 | {} | 1.00 × |", ms(one));
    println!(
        "| 25 | {} | {:.2} × |\n",
        ms(many),
        many.as_secs_f64() / one.as_secs_f64()
    );
}

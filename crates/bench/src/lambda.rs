//! The `lambda` backend's worker, `transcode-audio`, in the whole pipeline on loopback (moto,
//! DynamoDB Local; `system_tests::cloud::LambdaStack`): its wall time, CPU time and peak memory
//! per job, what that costs on Lambda arm64 against MediaConvert's per-minute price, its ffmpeg
//! run against the bare ffmpeg command, and the chain's own time from the S3 event to the
//! recorded end, without the transcode.

use std::path::Path;
use std::time::{Duration, Instant};

use system_tests::cloud::{LambdaStack, Worker};

use crate::transcode::{bare_ffmpeg, make_input};
use crate::{median, ms};

/// The template's `WorkerMemorySize` default: what each invocation is billed for.
const MEMORY_MB: f64 = 2048.0;
/// Lambda's arm64 price per GB-second (us-east-1, first 7.5 billion GB-s a month), and per
/// request, from aws.amazon.com/lambda/pricing, read 2026-12-03.
const ARM64_PER_GB_SECOND: f64 = 0.000_013_333_4;
const PER_REQUEST: f64 = 0.000_000_2;
/// MediaConvert's audio-only output price per minute, as AWS's MediaConvert User Guide's pricing
/// example gives it (read 2026-12-03); the pipeline writes three outputs.
const MEDIACONVERT_PER_OUTPUT_MINUTE: f64 = 0.005;
const OUTPUTS: f64 = 3.0;
/// Lambda's limit on one invocation, and what the worker keeps of it for writing the outputs.
const LAMBDA_LIMIT: Duration = Duration::from_secs(900);

struct Run {
    minutes: u32,
    wall: Duration,
    encode: Duration,
    cpu: Duration,
    peak_mib: f64,
    bare: Duration,
}

pub async fn lambda_worker() {
    let minutes: Vec<u32> = std::env::var("BENCH_LAMBDA_MINUTES")
        .unwrap_or_else(|_| "1,10,60".into())
        .split(',')
        .filter_map(|m| m.trim().parse().ok())
        .collect();
    let dir = std::env::temp_dir().join(format!("bench-lambda-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut runs = Vec::new();
    for &m in &minutes {
        runs.push(one_job(&dir, m).await);
    }
    let overhead = chain_overhead(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    report(&runs, overhead);
}

/// One job of `minutes` of audio through the stack; the worker's figures, and bare ffmpeg's on
/// the same file.
async fn one_job(dir: &Path, minutes: u32) -> Run {
    let input = dir.join(format!("input-{minutes}.mp3"));
    make_input(&input, minutes * 60).await;
    let mut stack = LambdaStack::start(Worker::Native, WORKER_ENV)
        .await
        .expect("the native worker starts");
    stack.worker.set_timeout(LAMBDA_LIMIT);
    let report = stack.upload(&input, "input.mp3", "audio/mpeg").await;
    assert_eq!(
        report["started"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    let pid = stack.worker.pid().expect("the worker runs");
    let before = cpu_of(pid);
    let sampling = Sampler::start(pid);
    let started = Instant::now();
    let delivered = stack.run_job().await;
    let wall = started.elapsed();
    let peak = sampling.stop().await;
    let cpu = cpu_of(pid).saturating_sub(before);
    assert_eq!(delivered.failed.len(), 0, "{delivered:?}");
    let notifications = stack.record(1).await;
    assert_eq!(
        notifications.last().map(|n| n["state"].clone()),
        Some("COMPLETED".into())
    );
    let output = stack.worker.output();
    let Some(encode) = last_encode(&output) else {
        panic!("the worker logged no ffmpeg run:\n{}", output.join("\n"));
    };
    drop(stack);
    let bare = bare_ffmpeg(&input, dir).await;
    let _ = std::fs::remove_file(&input);
    Run {
        minutes,
        wall,
        encode,
        cpu,
        peak_mib: peak as f64 / 1024.0,
        bare,
    }
}

/// The median, over 5 one-second uploads, of S3's event to the recorded end (start-transcode,
/// the jobs queue, the worker, the topic, record-completion) less the worker's ffmpeg run.
async fn chain_overhead(dir: &Path) -> (Duration, Duration) {
    let input = dir.join("short.mp3");
    make_input(&input, 1).await;
    let mut stack = LambdaStack::start(Worker::Native, WORKER_ENV)
        .await
        .expect("the native worker starts");
    let size = std::fs::metadata(&input).unwrap().len() as usize;
    let (mut chains, mut encodes) = (Vec::new(), Vec::new());
    for n in 0..5 {
        let name = format!("short-{n}.mp3");
        let link =
            system_tests::cloud::upload_link(&mut stack.api, &name, size, "audio/mpeg").await;
        system_tests::cloud::put(&link, &input).await;
        let started = Instant::now();
        stack.start_jobs().await;
        stack.run_job().await;
        stack.record(1).await;
        let chain = started.elapsed();
        let encode = last_encode(&stack.worker.output()).unwrap_or_default();
        chains.push(chain.saturating_sub(encode));
        encodes.push(encode);
    }
    (median(&mut chains), median(&mut encodes))
}

fn report(runs: &[Run], (overhead, short_encode): (Duration, Duration)) {
    println!("## Transcode in Lambda (`SECTION=lambda`)\n");
    println!(
        "`transcode-audio` (release x86_64 build, Debian's ffmpeg) running one job of the whole pipeline on"
    );
    println!(
        "loopback: moto's S3, SQS and SNS, DynamoDB Local. The input is a stereo 44.1 kHz mp3 at 192 kb/s"
    );
    println!(
        "(a sine mixed with noise); the outputs are WAV, FLAC and AAC 256k. Wall is the invocation: the"
    );
    println!(
        "download pinned to its ETag, the probe, ffmpeg, the three PutObjects and the end on the topic."
    );
    println!(
        "CPU is the worker's and its ffmpeg's, user + system; peak memory is the largest sum of their"
    );
    println!(
        "resident sets (what Lambda's memory setting bounds), sampled every 20 ms. One run per length, on"
    );
    println!("this machine, not on Lambda's Graviton: read the times as an order of magnitude.\n");
    println!(
        "| audio | wall | ffmpeg in the worker | bare ffmpeg | worker ÷ bare | CPU | peak memory | × real time |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in runs {
        let audio = f64::from(r.minutes) * 60.0;
        println!(
            "| {} min | {} | {} | {} | {:.3} × | {} | {:.0} MiB | {:.0} × |",
            r.minutes,
            ms(r.wall),
            ms(r.encode),
            ms(r.bare),
            r.encode.as_secs_f64() / r.bare.as_secs_f64(),
            ms(r.cpu),
            r.peak_mib,
            audio / r.wall.as_secs_f64()
        );
    }
    let mediaconvert = MEDIACONVERT_PER_OUTPUT_MINUTE * OUTPUTS;
    println!(
        "\nWhat a job costs at {MEMORY_MB:.0} MB (`WorkerMemorySize`), billed for its wall time at ${ARM64_PER_GB_SECOND} per GB-s"
    );
    println!(
        "(arm64, us-east-1) plus ${PER_REQUEST} per request, against MediaConvert at ${MEDIACONVERT_PER_OUTPUT_MINUTE} per output minute × 3 outputs"
    );
    println!(
        "(its audio-only price in AWS's MediaConvert User Guide pricing example). Prices read 2026-12-03.\n"
    );
    println!(
        "| audio | GB-s | Lambda $ per job | $ per audio minute | MediaConvert $ per audio minute | MediaConvert ÷ Lambda |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in runs {
        let gb_s = MEMORY_MB / 1024.0 * r.wall.as_secs_f64();
        let job = gb_s * ARM64_PER_GB_SECOND + PER_REQUEST;
        let per_minute = job / f64::from(r.minutes);
        println!(
            "| {} min | {gb_s:.1} | ${job:.6} | ${per_minute:.7} | ${mediaconvert:.3} | {:.0} × |",
            r.minutes,
            mediaconvert / per_minute
        );
    }
    if let Some(longest) = runs.iter().max_by_key(|r| r.minutes) {
        let speed = f64::from(longest.minutes) * 60.0 / longest.wall.as_secs_f64();
        let usable = LAMBDA_LIMIT.as_secs_f64() - 60.0;
        println!(
            "\nAt the {} min job's speed ({speed:.0} × real time) the {:.0} s Lambda leaves after the worker's 60 s",
            longest.minutes, usable
        );
        let holds = speed * usable;
        println!(
            "wrap-up hold {:.1} h of audio; `WorkerMaxDurationSeconds` (7200 s) is {:.1} × less, a margin for",
            holds / 3600.0,
            holds / 7200.0
        );
        println!(
            "Graviton's slower cores at 2048 MB (about 1.2 vCPU) and for a smaller memory setting.\n"
        );
    }
    println!(
        "The chain's own time from S3's event on the intake queue to the end recorded in DynamoDB Local, less"
    );
    println!(
        "the worker's ffmpeg run ({} for a 1-second file): {} (median of 5). It is the starter's",
        ms(short_encode),
        ms(overhead)
    );
    println!(
        "invocation, the SendMessage and receive, the worker's download, probe, uploads and Publish, SNS to"
    );
    println!("SQS, and record-completion, each through the Runtime API harness.\n");
}

/// How the worker is started: logs in JSON, so that its "ffmpeg finished" line can be read.
const WORKER_ENV: &[(&str, &str)] = &[("AWS_LAMBDA_LOG_FORMAT", "JSON")];

/// The `encode_ms` of the worker's last "ffmpeg finished" log line.
fn last_encode(output: &[String]) -> Option<Duration> {
    output.iter().rev().find_map(|line| {
        let line: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = line.get("fields")?;
        (fields["message"] == "ffmpeg finished")
            .then(|| fields["encode_ms"].as_u64())
            .flatten()
            .map(Duration::from_millis)
    })
}

/// User + system time of `pid` and of its children it has waited for (ffmpeg), from
/// /proc/<pid>/stat.
fn cpu_of(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    // After the command: state, ppid, ... utime (14th field), stime, cutime, cstime.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..15)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// The resident set of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// The children of `pid`, from each process's /proc/<pid>/stat.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Samples the resident set of a process and its children until stopped; keeps the largest sum.
struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            loop {
                let now = rss_kib(pid) + children(pid).into_iter().map(rss_kib).sum::<u64>();
                peak = peak.max(now);
                tokio::select! {
                    _ = &mut stopped => return peak,
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        });
        Self { stop, task }
    }

    async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(0)
    }
}

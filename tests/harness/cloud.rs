//! The cloud pipeline with the `lambda` backend, whole, on loopback: moto's bucket notifying its
//! intake queue, `start-transcode` sending jobs to the jobs queue (with its dead-letter queue),
//! `transcode-audio` running them with ffmpeg and announcing them on the completion topic, whose
//! queue feeds `record-completion`, and `messages-api` over the same table of DynamoDB Local.
//! The harness plays each event-source mapping ([`Moto::deliver`]), one step at a time, so a test
//! can redeliver, reorder or replace things between the steps.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::dynamodb_local::DynamoDbLocal;
use crate::event_sources::{Delivered, Queue, notification};
use crate::functions::{BUCKET, http, messages_api_with, table};
use crate::moto::{Moto, as_s3_sends};
use crate::{Function, sample_event};

/// The jobs queue's receives before a message goes to its dead-letter queue, as the template's
/// `JobMaxReceives` default.
pub const MAX_RECEIVES: u32 = 3;

/// How long a job's message stays hidden after a receive that did not delete it: short, so that a
/// test sees its retry soon.
pub const JOB_VISIBILITY: Duration = Duration::from_secs(1);

/// Asks `api` for alice's upload link for `filename`, `bytes` long, of `content_type`.
pub async fn upload_link(
    api: &mut Function,
    filename: &str,
    bytes: usize,
    content_type: &str,
) -> Value {
    upload_link_choosing(api, filename, bytes, content_type, json!({})).await
}

/// As [`upload_link`], with the fields of `choice` (`outputs`, `loudness`) in the request.
pub async fn upload_link_choosing(
    api: &mut Function,
    filename: &str,
    bytes: usize,
    content_type: &str,
    choice: Value,
) -> Value {
    let mut event = sample_event("http-upload-alice.json");
    let mut body = json!({"filename": filename, "size": bytes, "content_type": content_type});
    if let (Some(body), Some(choice)) = (body.as_object_mut(), choice.as_object()) {
        body.extend(choice.clone());
    }
    event["body"] = base64::engine::general_purpose::STANDARD
        .encode(body.to_string())
        .into();
    event["isBase64Encoded"] = true.into();
    let (status, link) = http(api.invoke(&event).await.response());
    assert_eq!(status, 201, "{link}");
    link
}

/// PUTs the file at `path` to `link` with the headers it was signed for (curl sets the
/// Content-Length itself, as a browser does).
pub async fn put(link: &Value, path: &Path) {
    let mut args = vec!["--request".to_owned(), "PUT".to_owned()];
    for (name, value) in link["headers"].as_object().into_iter().flatten() {
        if !name.eq_ignore_ascii_case("Content-Length") {
            args.push("--header".into());
            args.push(format!("{name}: {}", value.as_str().unwrap_or_default()));
        }
    }
    args.push("--data-binary".into());
    args.push(format!("@{}", path.display()));
    args.push(link["url"].as_str().unwrap_or_default().to_owned());
    curl(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
}

/// The body curl gets from `url` (a presigned download link).
pub async fn download(url: &str) -> Vec<u8> {
    curl(&[url]).await
}

async fn curl(args: &[&str]) -> Vec<u8> {
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--fail"])
        .args(args)
        .output()
        .await
        .expect("curl runs");
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Whether `notification` (of the worker's) is a job's end, not its progress.
pub fn is_end(notification: &Value) -> bool {
    notification
        .get("state")
        .is_some_and(|state| state != "PROGRESSING")
}

/// Every part of the pipeline, started; see the module's documentation.
pub struct LambdaStack {
    pub moto: Moto,
    pub intake: Queue,
    pub jobs: Queue,
    pub dead_letters: Queue,
    pub completions: Queue,
    pub topic: String,
    pub db: DynamoDbLocal,
    pub table: String,
    pub api: Function,
    pub starter: Function,
    pub worker: Function,
    pub recorder: Function,
}

/// How `transcode-audio` is started: the workspace's own build, or as it deploys.
pub enum Worker {
    /// The debug build, with the host's ffmpeg.
    Native,
    /// The arm64 artifact with the layer's ffmpeg, both under qemu.
    Arm64,
}

impl LambdaStack {
    /// Starts the pipeline with `worker_env` for `transcode-audio` (over its own). `None` when
    /// the arm64 artifact is asked for and missing (see [`crate::arm64::bootstrap_or_skip`]).
    pub async fn start(worker: Worker, worker_env: &[(&str, &str)]) -> Option<Self> {
        let moto = Moto::start().await;
        let intake = moto.bucket_notifying_queue(BUCKET, "media/").await;
        let intake = Queue {
            arn: moto.queue_arn(&intake).await,
            url: intake,
        };
        let dead_letters = moto.queue("jobs-dead-letters", JOB_VISIBILITY, None).await;
        let jobs = moto
            .queue("jobs", JOB_VISIBILITY, Some((&dead_letters, MAX_RECEIVES)))
            .await;
        let completions = moto
            .queue("completions", Duration::from_secs(30), None)
            .await;
        let topic = moto.topic_into("completions", &completions).await;
        let db = DynamoDbLocal::start().await;
        let table = table(&db).await;

        let (endpoint, dynamodb) = (moto.endpoint(), db.endpoint());
        let max_receives = MAX_RECEIVES.to_string();
        let mut env = vec![
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("TOPIC_ARN", topic.as_str()),
            ("DEAD_LETTER_QUEUE_ARN", dead_letters.arn.as_str()),
            ("MAX_RECEIVES", max_receives.as_str()),
        ];
        // As on Lambda, where the layer's ffmpeg is on PATH (/opt/bin): natively, the host's.
        // Its /tmp its own, as each Lambda sandbox's is.
        let path = std::env::var("PATH").unwrap_or_default();
        let tmp = crate::local::scratch();
        let tmp_path = tmp.display().to_string();
        env.extend([("PATH", path.as_str()), ("TMPDIR", tmp_path.as_str())]);
        env.extend_from_slice(worker_env);
        let worker = match worker {
            Worker::Native => Function::start("transcode-audio", &env).await,
            Worker::Arm64 => crate::arm64::transcode_audio(&env).await?,
        }
        .holding(tmp);
        let api = messages_api_with(&db, &table, &[("AWS_ENDPOINT_URL_S3", &endpoint)]).await;
        let starter = Function::start(
            "start-transcode",
            &[
                ("AWS_ENDPOINT_URL_S3", &endpoint),
                ("AWS_ENDPOINT_URL_SQS", &endpoint),
                ("AWS_ENDPOINT_URL_DYNAMODB", &dynamodb),
                ("TRANSCODER", "lambda"),
                ("JOBS_QUEUE_URL", &jobs.url),
                ("TABLE_NAME", &table),
            ],
        )
        .await;
        let recorder = Function::start(
            "record-completion",
            &[
                ("AWS_ENDPOINT_URL", &dynamodb),
                ("TABLE_NAME", &table),
                ("TOPIC_ARN", &topic),
            ],
        )
        .await;
        let stack = Self {
            moto,
            intake,
            jobs,
            dead_letters,
            completions,
            topic,
            db,
            table,
            api,
            starter,
            worker,
            recorder,
        };
        // S3 first tests the notification: a message with no records.
        let test_event = stack.moto.take_messages(&stack.intake.url, 1).await;
        assert_eq!(test_event[0]["Event"], "s3:TestEvent", "{test_event:?}");
        Some(stack)
    }

    /// Alice uploads the file at `path` as `filename` through her upload link, and S3's event
    /// for it is handed to `start-transcode`. Returns the starter's report.
    pub async fn upload(&mut self, path: &Path, filename: &str, content_type: &str) -> Value {
        self.upload_choosing(path, filename, content_type, json!({}))
            .await
    }

    /// As [`Self::upload`], with the fields of `choice` (`outputs`, `loudness`) in the request
    /// for its link, and the headers the link is signed for on the PUT.
    pub async fn upload_choosing(
        &mut self,
        path: &Path,
        filename: &str,
        content_type: &str,
        choice: Value,
    ) -> Value {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as usize;
        let link = upload_link_choosing(&mut self.api, filename, size, content_type, choice).await;
        put(&link, path).await;
        self.start_jobs().await
    }

    /// Hands S3's next event on the intake queue to `start-transcode`; returns its report.
    pub async fn start_jobs(&mut self) -> Value {
        let event = as_s3_sends(self.moto.take_messages(&self.intake.url, 1).await.remove(0));
        self.starter.invoke(&event).await.response()
    }

    /// One delivery of the jobs queue to the worker (waiting up to 10 s for a message).
    pub async fn run_job(&mut self) -> Delivered {
        let delivered = self
            .moto
            .deliver(&mut self.worker, &self.jobs, 1, Duration::from_secs(10))
            .await;
        assert_eq!(delivered.error, None, "{}", self.worker.output().join("\n"));
        delivered
    }

    /// One delivery of the dead-letter queue to the worker, as its second event source.
    pub async fn run_dead_letter(&mut self) -> Delivered {
        let delivered = self
            .moto
            .deliver(
                &mut self.worker,
                &self.dead_letters,
                1,
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(delivered.error, None, "{}", self.worker.output().join("\n"));
        delivered
    }

    /// Takes the topic's notifications until `ends` of them are a job's end (not progress), and
    /// hands each to `record-completion`, in arrival order. Returns the notifications.
    pub async fn record(&mut self, ends: usize) -> Vec<Value> {
        let events = self
            .moto
            .take_notifications(&self.completions, Duration::from_secs(30), |events| {
                events.iter().filter(|e| is_end(&notification(e))).count() >= ends
            })
            .await;
        for event in &events {
            self.recorder.invoke(event).await.response();
        }
        events.iter().map(notification).collect()
    }

    /// Alice's upload of `filename` as `messages-api` shows it to her (GET /uploads/{id}).
    pub async fn upload_of(&mut self, filename: &str) -> Value {
        let (status, page) = http(
            self.api
                .invoke_sample("http-list-uploads-alice.json")
                .await
                .response(),
        );
        assert_eq!(status, 200, "{page}");
        let listed = page["uploads"].as_array().cloned().unwrap_or_default();
        let Some(upload) = listed.iter().find(|u| u["file"] == filename) else {
            panic!("no upload of {filename}: {page}");
        };
        let id = upload["id"].as_str().unwrap_or_default();
        let mut event = sample_event("http-get-upload-alice.json");
        let path = format!("/uploads/{id}");
        event["rawPath"] = path.clone().into();
        event["requestContext"]["http"]["path"] = path.into();
        event["pathParameters"]["id"] = id.into();
        let (status, upload) = http(self.api.invoke(&event).await.response());
        assert_eq!(status, 200, "{upload}");
        upload
    }

    /// The object `key` of the bucket, as S3 has it.
    pub async fn object(&self, key: &str) -> Vec<u8> {
        let object = self
            .moto
            .s3()
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key}: {e:?}"));
        let body = object.body.collect().await.expect("moto sends the body");
        body.into_bytes().to_vec()
    }

    /// The keys of the bucket under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let listed = self
            .moto
            .s3()
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .send()
            .await
            .expect("moto lists");
        let mut keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }
}

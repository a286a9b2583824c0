//! The three Lambda functions, started the way their tests need them: `start-transcode` against a
//! stubbed transcoder ([`Backend`]) and S3, `record-completion` and `messages-api` against
//! DynamoDB Local. One place for their endpoints and environment, so that every test starts them
//! alike.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use transcoder_core::{Message, MessageStore, Owner};

use crate::dynamodb_local::DynamoDbLocal;
use crate::{Function, Recorded, Stub, s3};

/// The Elastic Transcoder pipeline the stub knows by the name `audio-transcoder`.
pub const PIPELINE: &str = "1111111111111-abcde1";
/// The bucket of the uploads, as MediaConvert's input URLs name it.
pub const BUCKET: &str = "audio-transcoder-media";
/// The topic `record-completion` accepts notifications from.
pub const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:audio-transcoder-completions";

/// How many CreateJobs of one `throttled` key [`Backend::stub`] refuses: the SDK's three attempts
/// of one delivery.
pub const THROTTLED_ATTEMPTS: usize = 3;

/// The transcoder `start-transcode` sends its jobs to (`TRANSCODER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    ElasticTranscoder,
    MediaConvert,
}

impl Backend {
    /// The value of `TRANSCODER`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ElasticTranscoder => "elastictranscoder",
            Self::MediaConvert => "mediaconvert",
        }
    }

    /// The variable that points the SDK's client for this service at a stub.
    fn endpoint_variable(self) -> &'static str {
        match self {
            Self::ElasticTranscoder => "AWS_ENDPOINT_URL_ELASTIC_TRANSCODER",
            Self::MediaConvert => "AWS_ENDPOINT_URL_MEDIACONVERT",
        }
    }

    /// The service's REST API as far as the starter uses it: CreateJob answers 201 with numbered
    /// job ids (`1700000000000-job001`, `1763885000000-mc0001`), 503 every time for a source key
    /// containing `refuse`, and `429 TooManyRequestsException` to the first [`THROTTLED_ATTEMPTS`]
    /// CreateJobs of a source key containing `throttled` (one delivery's attempts, the SDK's
    /// retries included), as a busy service answers a burst. Elastic Transcoder also lists two pipelines, one of them
    /// [`PIPELINE`] named `audio-transcoder`.
    pub async fn stub(self) -> TranscoderStub {
        self.stub_at("127.0.0.1:0").await
    }

    /// [`Backend::stub`] on `address` (`host:port`), as the `local-aws` binary serves it.
    pub async fn stub_at(self, address: &str) -> TranscoderStub {
        let jobs = Arc::new(AtomicUsize::new(0));
        let throttled = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let stub = Stub::start_at(address, Duration::ZERO, move |req: &Recorded| {
            if is_create_job(req) {
                let key = source(req);
                if key.contains("refuse") {
                    return (503, json!({"message": "Service Unavailable"}));
                }
                if key.contains("throttled") {
                    let mut attempts = throttled.lock().unwrap();
                    let attempt = attempts.entry(key).or_default();
                    *attempt += 1;
                    if *attempt <= THROTTLED_ATTEMPTS {
                        let body = json!({"__type": "TooManyRequestsException", "message": "Too Many Requests"});
                        return (429, body);
                    }
                }
                let n = jobs.fetch_add(1, Ordering::SeqCst) + 1;
                return (201, created(self, n, req));
            }
            match (self, req.method.as_str(), req.path.as_str()) {
                (Self::ElasticTranscoder, "GET", "/2012-09-25/pipelines") => (
                    200,
                    json!({"Pipelines": [
                        {"Id": "1111111111111-other1", "Name": "video"},
                        {"Id": PIPELINE, "Name": "audio-transcoder"}
                    ]}),
                ),
                _ => (404, json!({"message": "not stubbed"})),
            }
        })
        .await;
        TranscoderStub {
            backend: self,
            stub,
        }
    }
}

/// CreateJob's answer for job number `n`.
fn created(backend: Backend, n: usize, req: &Recorded) -> Value {
    match backend {
        Backend::ElasticTranscoder => json!({"Job": {
            "Id": format!("1700000000000-job{n:03}"),
            "PipelineId": req.body["PipelineId"],
            "Status": "Submitted"
        }}),
        Backend::MediaConvert => json!({"job": {
            "id": format!("1763885000000-mc{n:04}"),
            "arn": format!("arn:aws:mediaconvert:eu-west-1:123456789012:jobs/1763885000000-mc{n:04}"),
            "role": req.body["role"],
            "settings": req.body["settings"],
            "userMetadata": req.body["userMetadata"],
            "status": "SUBMITTED"
        }}),
    }
}

/// A stubbed transcoder, which knows the backend it stands in for.
pub struct TranscoderStub {
    pub backend: Backend,
    stub: Stub,
}

impl Deref for TranscoderStub {
    type Target = Stub;

    fn deref(&self) -> &Stub {
        &self.stub
    }
}

impl TranscoderStub {
    /// Starts `start-transcode` against this stub, with its claims in a fresh table of DynamoDB
    /// Local and a bucket stub in which every upload is audio.
    pub async fn start(&self, db: &DynamoDbLocal, env: &[(&str, &str)]) -> Function {
        let bucket = s3::bucket(Vec::new()).await;
        self.start_on(&bucket, db, &table(db).await, env).await
    }

    /// Starts `start-transcode` against this stub, `bucket` and `table`.
    pub async fn start_on(
        &self,
        bucket: &Stub,
        db: &DynamoDbLocal,
        table: &str,
        env: &[(&str, &str)],
    ) -> Function {
        start_transcode(self.backend, &self.stub, &bucket.url(), db, table, env).await
    }
}

/// Starts `start-transcode` sending its jobs to `transcoder`, which stands in for `backend`, and
/// reading the uploads from the S3 endpoint `s3` (a bucket stub's or moto's URL). The
/// transcoder, S3 and DynamoDB get their own endpoints, as the SDK allows per service.
pub async fn start_transcode(
    backend: Backend,
    transcoder: &Stub,
    s3: &str,
    db: &DynamoDbLocal,
    table: &str,
    env: &[(&str, &str)],
) -> Function {
    let (url, endpoint) = (transcoder.url(), db.endpoint());
    let mut all = vec![
        (backend.endpoint_variable(), url.as_str()),
        ("AWS_ENDPOINT_URL_S3", s3),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.as_str()),
        ("TRANSCODER", backend.name()),
        ("TABLE_NAME", table),
    ];
    all.extend_from_slice(env);
    Function::start("start-transcode", &all).await
}

/// A fresh table of DynamoDB Local, for claims and messages.
pub async fn table(db: &DynamoDbLocal) -> String {
    static TABLES: AtomicUsize = AtomicUsize::new(0);
    let table = format!("messages-{}", TABLES.fetch_add(1, Ordering::SeqCst));
    db.create_table(&table).await;
    table
}

fn is_create_job(req: &Recorded) -> bool {
    req.method == "POST" && matches!(req.path.as_str(), "/2012-09-25/jobs" | "/2017-08-29/jobs")
}

/// The key of the upload a CreateJob request transcodes, of either backend.
fn source(req: &Recorded) -> String {
    match req.body["Input"]["Key"].as_str() {
        Some(key) => key.to_owned(),
        None => {
            let url = req.body["settings"]["inputs"][0]["fileInput"]
                .as_str()
                .unwrap_or_default();
            let key = url.strip_prefix(&format!("s3://{BUCKET}/"));
            key.unwrap_or(url).to_owned()
        }
    }
}

/// The CreateJob requests that reached `stub`.
pub fn create_jobs(stub: &Stub) -> Vec<Recorded> {
    stub.requests().into_iter().filter(is_create_job).collect()
}

/// The upload keys of CreateJob `requests`, sorted.
pub fn sources(requests: &[Recorded]) -> Vec<String> {
    let mut keys: Vec<_> = requests.iter().map(source).collect();
    keys.sort();
    keys
}

/// Starts `record-completion` writing to `table`, taking notifications from [`TOPIC`].
pub async fn record_completion(db: &DynamoDbLocal, table: &str) -> Function {
    let endpoint = db.endpoint();
    Function::start(
        "record-completion",
        &[
            ("AWS_ENDPOINT_URL", &endpoint),
            ("TABLE_NAME", table),
            ("TOPIC_ARN", TOPIC),
        ],
    )
    .await
}

/// Starts `messages-api` reading `table`, handing out links to [`BUCKET`]. Only DynamoDB's
/// endpoint is local: the links name S3's real one.
pub async fn messages_api(db: &DynamoDbLocal, table: &str) -> Function {
    messages_api_with(db, table, &[]).await
}

/// [`messages_api`] with more environment variables, which win over its own
/// (`AWS_ENDPOINT_URL_S3`, say, for links to moto's bucket).
pub async fn messages_api_with(db: &DynamoDbLocal, table: &str, env: &[(&str, &str)]) -> Function {
    let endpoint = db.endpoint();
    let mut all = vec![
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.as_str()),
        ("TABLE_NAME", table),
        ("COGNITO_URL", "https://cognito-idp.eu-west-1.amazonaws.com"),
        ("USER_POOL_CLIENT_ID", "4example0client0id"),
        (
            "BUCKET_URL",
            "https://audio-transcoder-media.s3.eu-west-1.amazonaws.com",
        ),
        ("BUCKET_NAME", BUCKET),
    ];
    all.extend_from_slice(env);
    Function::start("messages-api", &all).await
}

/// The status and JSON body of an API Gateway (payload 2.0) response.
pub fn http(response: Value) -> (u64, Value) {
    let status = response["statusCode"].as_u64().unwrap();
    let body = response["body"]
        .as_str()
        .map(|b| serde_json::from_str(b).unwrap_or(Value::Null));
    (status, body.unwrap_or(Value::Null))
}

/// The strings of a response's list `field`, such as the job ids `record-completion` recorded.
pub fn ids(response: &Value, field: &str) -> Vec<String> {
    response[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Every unread message of `owner` in `store`, newest first (a hundred at most: one page).
pub async fn unread(store: &impl MessageStore, owner: &str) -> Vec<Message> {
    store
        .list_unread(&Owner::new(owner).unwrap(), 100, None)
        .await
        .unwrap()
        .messages
}

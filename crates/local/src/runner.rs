//! Wires the local pipeline: the bucket watcher feeds `start_transcode`, whose jobs go to the
//! durable local queue (`jobs`), whose endings feed `record_completion`; the server answers the API.
//! Everything that a Lambda host reads from the environment is read here the same way.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};
use transcoder_api::config::max_upload_bytes;
use transcoder_api::{Api, ApiConfig, PageConfig, page};
use transcoder_core::{
    Backend, ConfigError, Env, RawS3Event, RecordConfig, StartConfig, start_transcode,
};
use transcoder_sqlite::SqliteStore;

use crate::bucket::{BucketFolder, Watcher};
use crate::connections::{Timeouts, serve};
use crate::ffmpeg::{Budget, Ffmpeg, Limits, remove_leftover_parts};
use crate::jobs::{LOCAL_TOPIC, LocalJobs};
use crate::owner::Owner;
use crate::server::{LocalLinks, ServerState, remove_partial_uploads, router};
use crate::space::{
    DEFAULT_JOB_OUTPUT_BYTES, DEFAULT_USER_QUOTA_BYTES, MIB, Space, default_min_free, says_no_space,
};

/// The bucket's name in the events the watcher makes.
const LOCAL_BUCKET: &str = "local-bucket";

/// `MAX_DURATION_SECONDS` by default: 4 hours.
const DEFAULT_MAX_DURATION: u64 = 4 * 3600;
/// The largest `MAX_DURATION_SECONDS` accepted: a day.
const MOST_MAX_DURATION: u64 = 24 * 3600;
/// `HEADER_TIMEOUT_SECONDS` and `IDLE_TIMEOUT_SECONDS` by default: time enough for a slow phone,
/// too little for a pile of sockets left half open to matter.
const DEFAULT_HEADER_TIMEOUT: u64 = 10;
const DEFAULT_IDLE_TIMEOUT: u64 = 60;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The folder that plays the bucket (`BUCKET_DIR`, default `data/bucket`).
    pub bucket: PathBuf,
    /// The SQLite database of messages and claims (`STORE_PATH`, default `data/messages.sqlite3`).
    pub store: PathBuf,
    /// Where the API listens (`LISTEN_ADDR`, default `127.0.0.1:3000`).
    pub listen: SocketAddr,
    /// Jobs transcoded at once (`TRANSCODE_CONCURRENCY`, default: the number of cores).
    pub concurrency: usize,
    /// How long a file must stay unchanged before it counts as uploaded (`SETTLE_MS`, default 1000).
    pub settle: Duration,
    /// The largest upload `/files/` accepts (`MAX_UPLOAD_BYTES`, as the API reads it).
    pub max_upload_bytes: u64,
    /// The longest audio transcoded (`MAX_DURATION_SECONDS`, default 14400: 4 hours). Albums,
    /// DJ sets, long podcasts and recorded talks fit; a longer file fails with a message that
    /// says so. It also bounds each job's output size and time (see [`Limits`]).
    pub max_duration: Duration,
    /// The most one job's outputs may take (`MAX_JOB_OUTPUT_BYTES`, default 1 GiB).
    pub max_job_output_bytes: u64,
    /// The most one user's uploads and outputs may take (`USER_QUOTA_BYTES`, default 10 GiB).
    pub user_quota_bytes: u64,
    /// The free space kept on the bucket's and the store's disks (`MIN_FREE_BYTES`); `None`:
    /// 5 % of each disk, at most 1 GiB.
    pub min_free_bytes: Option<u64>,
    /// The deadlines of the API's connections (`HEADER_TIMEOUT_SECONDS`, `IDLE_TIMEOUT_SECONDS`).
    pub timeouts: Timeouts,
    pub start: StartConfig,
}

impl LocalConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let concurrency = env.parse("TRANSCODE_CONCURRENCY", cores)?;
        if concurrency == 0 {
            return Err(ConfigError::invalid(
                "TRANSCODE_CONCURRENCY",
                "0",
                "must be at least 1",
            ));
        }
        let max_duration = env.parse("MAX_DURATION_SECONDS", DEFAULT_MAX_DURATION)?;
        if !(1..=MOST_MAX_DURATION).contains(&max_duration) {
            return Err(ConfigError::invalid(
                "MAX_DURATION_SECONDS",
                &max_duration.to_string(),
                format!(
                    "must be between 1 and {MOST_MAX_DURATION} seconds (24 hours; a day of WAV is 15 GB)"
                ),
            ));
        }
        let max_job_output_bytes = env.parse("MAX_JOB_OUTPUT_BYTES", DEFAULT_JOB_OUTPUT_BYTES)?;
        if max_job_output_bytes == 0 {
            return Err(ConfigError::invalid(
                "MAX_JOB_OUTPUT_BYTES",
                "0",
                "must be at least 1 byte",
            ));
        }
        let min_free_bytes = match env.get("MIN_FREE_BYTES") {
            None => None,
            Some(_) => Some(env.parse("MIN_FREE_BYTES", 0)?),
        };
        Ok(Self {
            max_job_output_bytes,
            user_quota_bytes: env.parse("USER_QUOTA_BYTES", DEFAULT_USER_QUOTA_BYTES)?,
            min_free_bytes,
            bucket: env.get_or("BUCKET_DIR", "data/bucket").into(),
            store: env.get_or("STORE_PATH", "data/messages.sqlite3").into(),
            listen: env.parse("LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)))?,
            concurrency,
            settle: Duration::from_millis(env.parse("SETTLE_MS", 1000)?),
            max_upload_bytes: max_upload_bytes(env)?,
            max_duration: Duration::from_secs(max_duration),
            timeouts: Timeouts {
                header: seconds(env, "HEADER_TIMEOUT_SECONDS", DEFAULT_HEADER_TIMEOUT)?,
                idle: seconds(env, "IDLE_TIMEOUT_SECONDS", DEFAULT_IDLE_TIMEOUT)?,
            },
            // The local runner's ffmpeg honours every choice, whatever TRANSCODER says.
            start: StartConfig {
                backend: Backend::Local,
                ..StartConfig::from_env(env)?
            },
        })
    }
}

/// A timeout of 1 second to an hour from `name`.
fn seconds(env: &impl Env, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    let value = env.parse(name, default)?;
    if !(1..=3600).contains(&value) {
        return Err(ConfigError::invalid(
            name,
            &value.to_string(),
            "must be between 1 and 3600 seconds",
        ));
    }
    Ok(Duration::from_secs(value))
}

/// Runs until interrupted (Ctrl-C or SIGTERM).
pub async fn run(config: LocalConfig) -> Result<(), Error> {
    // Before anything else: the recovery below is only safe while no other runner uses the
    // folders, and a second runner must fail before it touches them, whether the folders or the
    // port are taken.
    let _owner = Owner::take(&config.bucket, &config.store)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {} (LISTEN_ADDR): {e}", config.listen))?;
    std::fs::create_dir_all(config.bucket.join(config.start.prefixes.input()))?;
    // A previous run stopped mid-upload or mid-job leaves hidden partial files that nothing
    // else removes; its jobs run again only once their temporary outputs are gone.
    let removed = remove_partial_uploads(&config.bucket)?;
    info!(removed, "partial uploads from an earlier run removed");
    let removed = remove_leftover_parts(&config.bucket.join(config.start.prefixes.output()));
    let store = Arc::new(SqliteStore::open(&config.store)?);
    let store_dir = std::path::absolute(&config.store)?
        .parent()
        .map_or_else(|| PathBuf::from("/"), PathBuf::from);
    let floor = |dir: &std::path::Path| {
        config
            .min_free_bytes
            .unwrap_or_else(|| default_min_free(dir))
    };
    let space = Space::new(&config.bucket, floor(&config.bucket));
    let store_space = Space::new(&store_dir, floor(&store_dir));
    let budget = Budget {
        per_job: config.max_job_output_bytes,
        per_user: config.user_quota_bytes,
        input_prefix: config.start.prefixes.input().into(),
        output_prefix: config.start.prefixes.output().into(),
    };
    // Nothing else uses the store now: a claim without a job is one a stopped run never queued.
    let released = store.release_unstarted_claims()?;
    let jobs = LocalJobs::new(
        &config.bucket,
        store.clone(),
        Ffmpeg::new(&config.bucket, Limits::new(config.max_duration)).with_budget(budget.clone()),
        RecordConfig {
            topic_arn: LOCAL_TOPIC.into(),
            output_prefix: config.start.prefixes.output().to_owned(),
        },
        space.clone(),
        store_space.clone(),
    );
    let resumed = jobs.recover().await?;
    info!(
        resumed,
        removed,
        released,
        "{} resumed, {} removed",
        count(resumed, "unfinished job", "unfinished jobs"),
        count(removed, "partial file", "partial files")
    );

    let base_url = format!("http://{}", listener.local_addr()?);
    let links = LocalLinks::new(&base_url)?;
    let page = page::router(&PageConfig::local(&base_url))?;
    let api_config = ApiConfig {
        bucket: LOCAL_BUCKET.into(),
        input_prefix: config.start.prefixes.input().into(),
        max_upload_bytes: config.max_upload_bytes,
        backend: config.start.backend,
    };
    let state = Arc::new(ServerState {
        api: Api::new(api_config, store.clone(), links.clone()),
        links,
        bucket: config.bucket.clone(),
        max_upload_bytes: config.max_upload_bytes,
        page,
        space: space.clone(),
        budget,
    });
    info!(
        api = base_url,
        bucket = %config.bucket.display(),
        store = %config.store.display(),
        concurrency = config.concurrency,
        max_duration_seconds = config.max_duration.as_secs(),
        max_job_output_bytes = config.max_job_output_bytes,
        user_quota_bytes = config.user_quota_bytes,
        min_free_bytes = space.min_free(),
        free_bytes = space.free(),
        "local pipeline running: open {base_url}/ in a browser, or drop audio files into {}/{}{{user}}/",
        config.bucket.display(),
        config.start.prefixes.input()
    );

    let workers = jobs.spawn(config.concurrency);
    let watcher = tokio::spawn(watch(config.clone(), jobs.clone(), store, store_space));
    serve(listener, router(state), config.timeouts, shutdown()).await;
    watcher.abort();
    let waiting = jobs.stop(workers).await?;
    info!(
        waiting,
        "stopped; {} for the next start",
        count(waiting, "job waiting", "jobs waiting")
    );
    Ok(())
}

/// `1 job waiting`, `2 jobs waiting`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Scans the bucket folder and hands what settled to the starter, as S3 would; the starter reads
/// each file's first bytes back from the folder.
async fn watch(
    config: LocalConfig,
    transcoder: LocalJobs<Arc<SqliteStore>>,
    store: Arc<SqliteStore>,
    store_space: Space,
) {
    let source = BucketFolder::new(&config.bucket);
    let mut watcher = Watcher::new(
        &config.bucket,
        LOCAL_BUCKET,
        config.start.prefixes.input(),
        config.settle,
    );
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let records = watcher.scan(SystemTime::now());
        if records.is_empty() {
            continue;
        }
        for record in &records {
            info!(
                key = record["s3"]["object"]["key"].as_str(),
                "event: object created"
            );
        }
        let event = RawS3Event { records };
        if let Err(err) = start_transcode(event, &config.start, &source, &transcoder, &store).await
        {
            // As Lambda would retry the event: announce the files again once they settle anew.
            warn!(error = %err, "some jobs did not start; retrying");
            for (_, key, _) in &err.failed {
                watcher.forget(key.as_str());
            }
            // A full store refuses every attempt alike: wait for space, not the next scan.
            if says_no_space(&err.to_string()) {
                let more = store_space.free().unwrap_or(0).saturating_add(MIB);
                store_space.wait_for(more, "new files are announced").await;
            }
        }
    }
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return ctrl_c.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_bounds_default_to_a_gib_per_job_ten_per_user_and_a_share_of_the_disk() {
        let config = LocalConfig::from_env(&[("SETTLE_MS", "400")]).unwrap();
        assert_eq!(config.max_job_output_bytes, 1 << 30);
        assert_eq!(config.user_quota_bytes, 10 << 30);
        assert_eq!(config.min_free_bytes, None);
        let config = LocalConfig::from_env(&[
            ("MAX_JOB_OUTPUT_BYTES", "5000000"),
            ("USER_QUOTA_BYTES", "0"),
            ("MIN_FREE_BYTES", "0"),
        ])
        .unwrap();
        assert_eq!(config.max_job_output_bytes, 5_000_000);
        assert_eq!(config.user_quota_bytes, 0);
        assert_eq!(config.min_free_bytes, Some(0));
        for (name, value, reason) in [
            ("MAX_JOB_OUTPUT_BYTES", "0", "must be at least 1 byte"),
            ("MIN_FREE_BYTES", "1GiB", "invalid digit"),
            ("USER_QUOTA_BYTES", "-1", "invalid digit"),
        ] {
            let err = LocalConfig::from_env(&[(name, value)])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("{name}='{value}' is invalid: {reason}")),
                "{err}"
            );
        }
    }

    #[test]
    fn max_duration_defaults_to_four_hours_and_refuses_what_cannot_be_meant() {
        let config = LocalConfig::from_env(&[("SETTLE_MS", "400")]).unwrap();
        assert_eq!(config.max_duration, Duration::from_secs(14_400));
        let config = LocalConfig::from_env(&[("MAX_DURATION_SECONDS", "600")]).unwrap();
        assert_eq!(config.max_duration, Duration::from_secs(600));
        for (value, reason) in [
            ("0", "must be between 1 and 86400 seconds"),
            ("86401", "must be between 1 and 86400 seconds"),
            ("4h", "invalid digit"),
            ("-5", "invalid digit"),
        ] {
            let err = LocalConfig::from_env(&[("MAX_DURATION_SECONDS", value)])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!(
                    "MAX_DURATION_SECONDS='{value}' is invalid: {reason}"
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn connection_timeouts_default_to_seconds_and_refuse_zero() {
        let config = LocalConfig::from_env(&[("SETTLE_MS", "400")]).unwrap();
        assert_eq!(
            config.timeouts,
            Timeouts {
                header: Duration::from_secs(10),
                idle: Duration::from_secs(60)
            }
        );
        let config = LocalConfig::from_env(&[("HEADER_TIMEOUT_SECONDS", "2")]).unwrap();
        assert_eq!(config.timeouts.header, Duration::from_secs(2));
        for name in ["HEADER_TIMEOUT_SECONDS", "IDLE_TIMEOUT_SECONDS"] {
            let err = LocalConfig::from_env(&[(name, "0")])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!(
                    "{name}='0' is invalid: must be between 1 and 3600"
                )),
                "{err}"
            );
        }
    }
}

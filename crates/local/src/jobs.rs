//! The local runner's jobs. `LocalJobs` is the `Transcoder` the starter hands uploads to, as it
//! hands them to MediaConvert in the cloud; but a local job dies with the process that runs it,
//! so every job lives first in the embedded store's durable queue (`transcoder_core::queue`):
//!
//! - `start_job` queues the job before it answers, so a job the starter was told of is never
//!   forgotten, whatever stops the runner next; a newer upload of the same key stops the older
//!   job, which then writes nothing and tells nobody, and whose upload record the queue ends
//!   `superseded` in the same write that supersedes it.
//! - Workers take queued jobs and run ffmpeg; each ending is kept in the queue (retried until the
//!   store takes it) before anything else is done with it.
//! - The delivery hands each kept ending to `record_completion` as an SNS record, as SNS would,
//!   and retries until the message is written: a busy or locked store delays a message, never
//!   loses it.
//! - At start-up, `recover` queues again the jobs a stopped runner left running, and ends the
//!   records of superseded uploads an older build left `transcoding`; at shutdown, running
//!   ffmpeg processes are stopped and their jobs stay in the queue.
//! - A full disk fails nothing: below the free-space floor workers take no job, a job whose
//!   disk filled up runs again once more space is free, and a store write that found its disk
//!   full is tried again once it has space. Each of these logs when it starts and when it ends.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};
use tracing::{error, info, warn};
use transcoder_core::{
    Chain, Escaped, JobId, JobQueue, MessageStore, QueuedJob, RawSnsEvent, RecordConfig,
    StoreError, TranscodeJob, Transcoder, TranscoderError, UploadStore, record_completion,
};

use transcoder_ffmpeg::{ProgressSender, progress_notification};

use crate::ffmpeg::{Ended, Ffmpeg, PROGRESS_SOURCE};
use crate::space::{MIB, Space, says_no_space};

/// The topic the local transcoder "publishes" to; `record_completion` accepts only this one.
pub const LOCAL_TOPIC: &str = "arn:aws:sns:local:000000000000:transcoder-completions";

/// The longest wait between two attempts at a store write that must not be dropped.
const MOST_BACKOFF: Duration = Duration::from_secs(5);

/// The local jobs: cheap to clone, every clone the same queue and workers.
pub struct LocalJobs<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for LocalJobs<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<S> {
    bucket: PathBuf,
    /// The queue, and the messages the delivery writes.
    store: S,
    ffmpeg: Ffmpeg,
    record: RecordConfig,
    /// Wakes a worker: a job was queued.
    queued: Notify,
    /// Wakes the delivery: a job's ending was kept.
    ended: Notify,
    /// The running jobs, so that a newer upload or the shutdown can stop them.
    running: Mutex<HashMap<JobId, AbortHandle>>,
    /// The bucket's disk, and the store's: below the floor, jobs wait.
    space: Space,
    store_space: Space,
}

impl<S: JobQueue + MessageStore + UploadStore + 'static> LocalJobs<S> {
    /// The jobs of `bucket`, queued in `store`. Below the floor of `space` (the bucket's disk)
    /// workers take no job; a store write that found `store_space` (the store's disk) full waits
    /// for it.
    pub fn new(
        bucket: impl Into<PathBuf>,
        store: S,
        ffmpeg: Ffmpeg,
        record: RecordConfig,
        space: Space,
        store_space: Space,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                bucket: bucket.into(),
                store,
                ffmpeg,
                record,
                queued: Notify::new(),
                ended: Notify::new(),
                running: Mutex::new(HashMap::new()),
                space,
                store_space,
            }),
        }
    }

    /// Queues again every job a stopped runner left running, and returns how many. Their
    /// temporary files are the caller's to remove (`ffmpeg::remove_leftover_parts`).
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let resumed = self.shared.store.recover().await?;
        for job in &resumed {
            info!(job_id = %job.id, key = %job.job.source.escaped(), runs = job.runs, "unfinished job queued again");
        }
        Ok(resumed.len())
    }

    /// Starts `workers` workers and the delivery. They run until [`LocalJobs::stop`].
    pub fn spawn(&self, workers: usize) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        for _ in 0..workers.max(1) {
            tasks.spawn(self.clone().work());
        }
        tasks.spawn(self.clone().deliver());
        self.shared.queued.notify_one();
        tasks
    }

    /// Stops the workers and the delivery, and every running ffmpeg with them; the jobs they ran
    /// stay in the queue for the next start. Returns how many jobs are waiting.
    pub async fn stop(&self, mut tasks: JoinSet<()>) -> Result<usize, StoreError> {
        tasks.abort_all();
        for (_, job) in self.running().drain() {
            job.abort();
        }
        while tasks.join_next().await.is_some() {}
        self.shared.store.waiting().await
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, AbortHandle>> {
        self.shared
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One worker: takes the oldest queued job, runs it, keeps how it ended; again and again.
    async fn work(self) {
        loop {
            // Below the floor no job starts: each stays queued until space is back.
            self.shared.space.wait_for(0, "the next job starts").await;
            let next = match self.shared.store.take().await {
                Ok(next) => next,
                Err(err) => {
                    warn!(error = %Chain(&err), "the queue cannot be read; trying again in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(queued) = next else {
                self.shared.queued.notified().await;
                continue;
            };
            let id = queued.id.clone();
            let progress = self.report_progress(&queued);
            // Its own task, so that a newer upload can stop it: aborting drops ffmpeg (killed on
            // drop) and the job's temporary files (removed on drop).
            let shared = self.shared.clone();
            let run = tokio::spawn(async move {
                loop {
                    let before = shared.space.free().unwrap_or(0);
                    let ended = shared
                        .ffmpeg
                        .run(&queued.id, &queued.job, Some(progress.clone()))
                        .await;
                    if ended != Ended::NoSpace {
                        return ended;
                    }
                    // Again only once more is free than this run had, which the same run fills.
                    let more = before.saturating_add(MIB);
                    let what = "a job the full disk stopped runs again";
                    shared.space.wait_for(more, what).await;
                }
            });
            self.running().insert(id.clone(), run.abort_handle());
            let ended = run.await;
            self.running().remove(&id);
            match ended {
                Ok(Ended::Notification(notification)) => {
                    let text = notification.to_string();
                    let (store, space) = (&self.shared.store, &self.shared.store_space);
                    if persist("the job's ending", &id, space, || store.finish(&id, &text)).await {
                        self.shared.ended.notify_one();
                    } else {
                        info!(job_id = %id, "result dropped: a newer upload of the file supersedes it");
                    }
                }
                Ok(Ended::Replaced) => {
                    let (store, space) = (&self.shared.store, &self.shared.store_space);
                    persist("the job's ending", &id, space, || store.replaced(&id)).await;
                }
                // The run retries it until it is something else.
                Ok(Ended::NoSpace) => {}
                Err(stopped) if stopped.is_cancelled() => {
                    info!(job_id = %id, "stopped: a newer upload of the file supersedes it");
                }
                Err(panicked) => {
                    // Left running in the queue: the next start runs it again.
                    error!(job_id = %id, error = %panicked, "the job's task panicked");
                }
            }
        }
    }

    /// Hands every kept ending to `record_completion`, oldest first, until each is written.
    async fn deliver(self) {
        loop {
            match self.shared.store.undelivered().await {
                Ok(ended) => {
                    for (id, notification) in ended {
                        self.record(&id, &notification).await;
                        let (store, space) = (&self.shared.store, &self.shared.store_space);
                        persist("the delivery", &id, space, || store.delivered(&id)).await;
                    }
                }
                Err(err) => {
                    warn!(error = %Chain(&err), "finished jobs cannot be read; trying again")
                }
            }
            // Woken by the next ending; the timeout retries a store that failed to list.
            let _ =
                tokio::time::timeout(Duration::from_secs(2), self.shared.ended.notified()).await;
        }
    }

    /// Hands `queued`'s progress to `record_completion` as SNS would, until the job's run drops
    /// the sender. Progress is not kept: one that is lost is overtaken by the next, or the end.
    fn report_progress(&self, queued: &QueuedJob) -> ProgressSender {
        let (sender, mut percents) = tokio::sync::mpsc::unbounded_channel();
        let (this, id, job) = (self.clone(), queued.id.clone(), queued.job.clone());
        tokio::spawn(async move {
            while let Some(percent) = percents.recv().await {
                let notification =
                    progress_notification(PROGRESS_SOURCE, &id, &job, percent).to_string();
                let event = RawSnsEvent {
                    records: vec![sns_record(&id, &notification)],
                };
                // Written or not, progress fails nothing: record_completion logs what it drops.
                let _ = record_completion(event, &this.shared.record, &this.shared.store).await;
            }
        });
        sender
    }

    /// Records one job's ending as SNS would deliver it, retrying while the store fails.
    async fn record(&self, id: &JobId, notification: &str) {
        let mut retry = Retry::new("the message", id, &self.shared.store_space);
        loop {
            let event = RawSnsEvent {
                records: vec![sns_record(id, notification)],
            };
            match record_completion(event, &self.shared.record, &self.shared.store).await {
                Ok(_) => return retry.done(),
                Err(err) => {
                    let error = Chain(&err).to_string();
                    retry.failed(&error).await;
                }
            }
        }
    }
}

impl<S: JobQueue + MessageStore + UploadStore + 'static> Transcoder for LocalJobs<S> {
    /// Queues the job; it runs when a worker is free. A newer upload's job stops the older one.
    async fn start_job(&self, job: &TranscodeJob) -> Result<JobId, TranscoderError> {
        let input = self.shared.bucket.join(job.source.as_str());
        if !input.is_file() {
            return Err(TranscoderError::new(format!(
                "{} is not a file",
                Escaped(&input.to_string_lossy())
            )));
        }
        let queued = self
            .shared
            .store
            .enqueue(job)
            .await
            .map_err(|e| TranscoderError::with_source("the job could not be queued", e))?;
        for older in &queued.superseded {
            if let Some(run) = self.running().remove(older) {
                run.abort();
            }
            info!(job_id = %older, key = %job.source.escaped(), "superseded by a newer upload of the file");
        }
        if queued.new {
            self.shared.queued.notify_one();
        }
        Ok(queued.id)
    }
}

/// An SNS record carrying `notification`, as the topic would deliver it to `record-completion`.
fn sns_record(id: &JobId, notification: &str) -> serde_json::Value {
    json!({
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{LOCAL_TOPIC}:local"),
        "Sns": {
            "Type": "Notification",
            "MessageId": id.0,
            "TopicArn": LOCAL_TOPIC,
            "Subject": null,
            "Message": notification,
            "Timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "SignatureVersion": "1",
            "Signature": "local",
            "SigningCertUrl": "",
            "UnsubscribeUrl": "",
            "MessageAttributes": {}
        }
    })
}

/// Waits that double from 200 ms up to [`MOST_BACKOFF`].
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(Duration::from_millis(100))
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        self.0 = (self.0 * 2).min(MOST_BACKOFF);
        self.0
    }
}

/// Retries a store write until the store takes it: what it keeps must never be dropped.
async fn persist<T, F, W>(what: &str, id: &JobId, space: &Space, mut write: W) -> T
where
    W: FnMut() -> F,
    F: Future<Output = Result<T, StoreError>>,
{
    let mut retry = Retry::new(what, id, space);
    loop {
        match write().await {
            Ok(done) => {
                retry.done();
                return done;
            }
            Err(err) => {
                let error = Chain(&err).to_string();
                retry.failed(&error).await;
            }
        }
    }
}

/// The attempts at one store write that must not be dropped. The first failure and the
/// success after failures are logged, not each attempt between: a store that stays locked or
/// full for an hour gives two lines, not thousands.
struct Retry<'a> {
    what: &'a str,
    id: &'a JobId,
    space: &'a Space,
    backoff: Backoff,
    failures: u32,
}

impl<'a> Retry<'a> {
    fn new(what: &'a str, id: &'a JobId, space: &'a Space) -> Self {
        Self {
            what,
            id,
            space,
            backoff: Backoff::default(),
            failures: 0,
        }
    }

    /// Waits before the next attempt: until the store's disk has more space if it was full
    /// (trying sooner fails the same way), else the next backoff.
    async fn failed(&mut self, error: &str) {
        self.failures += 1;
        if self.failures == 1 {
            warn!(job_id = %self.id, error = %Escaped(error), "{} not written; retrying until the store takes it", self.what);
        }
        if says_no_space(error) {
            let more = self.space.free().unwrap_or(0).saturating_add(MIB);
            self.space
                .wait_for(more, "the store is written again")
                .await;
        } else {
            tokio::time::sleep(self.backoff.next()).await;
        }
    }

    fn done(&self) {
        if self.failures > 0 {
            info!(job_id = %self.id, failed_attempts = self.failures, "{} written after {} failed attempts", self.what, self.failures);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_most() {
        let mut backoff = Backoff::default();
        let waits: Vec<_> = (0..8).map(|_| backoff.next().as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    /// Log lines written while `run` runs, as the runner writes them.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_write_the_store_keeps_refusing_is_logged_when_it_fails_and_when_it_is_written() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _logs = tracing::subscriber::set_default(subscriber);
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let space = Space::new(std::env::temp_dir(), 0);
        let id = JobId("local-1".into());
        let written = persist("the job's ending", &id, &space, || async {
            if attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 4 {
                Err(StoreError::unavailable("database is locked"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(written, 7);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains("WARN") && lines[0].contains("the job's ending not written"),
            "{text}"
        );
        assert!(
            lines[1].contains("the job's ending written after 4 failed attempts"),
            "{text}"
        );
    }

    #[test]
    fn an_ending_is_delivered_as_an_sns_record_of_the_local_topic() {
        let record = sns_record(&JobId("local-1".into()), r#"{"state":"COMPLETED"}"#);
        assert_eq!(record["Sns"]["TopicArn"], LOCAL_TOPIC);
        assert_eq!(record["Sns"]["Message"], r#"{"state":"COMPLETED"}"#);
        assert_eq!(record["Sns"]["MessageId"], "local-1");
    }
}

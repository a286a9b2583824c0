//! The local runner's job queue: transcode jobs that live on this machine, not in a cloud service,
//! and so die with the process that runs them. Every change of a job's state is written before
//! anything acts on it, so that after any stop (Ctrl-C, `kill -9`, a power cut between two writes)
//! the next start knows exactly which jobs to run again and which completions still have to be
//! told. The cloud path needs none of this: a cloud job outlives the function that started it.
//!
//! A job moves `queued` → `running` → `finished` (its notification kept, waiting to be recorded)
//! → `delivered`. A newer upload of the same key makes every older job of that key that was not
//! delivered `superseded`: it is never run or told, so the user hears only of the file that is in
//! the bucket. Its upload record ends `superseded` in the same write (a queue is also the
//! [`UploadStore`](crate::UploadStore) of its records), so that no stop between the two leaves
//! the older upload `transcoding` for ever.

use std::future::Future;

use crate::ids::JobId;
use crate::job::TranscodeJob;
use crate::store::StoreError;

/// The id of the local job for an upload: one per `(bucket, key, version)`, so that enqueueing the
/// same upload again finds its job instead of adding one.
pub fn local_job_id(job: &TranscodeJob) -> JobId {
    JobId(format!("local-{}", job.claim().token()))
}

/// A job handed out by [`JobQueue::take`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: JobId,
    pub job: TranscodeJob,
    /// How many times it has been taken, this time included.
    pub runs: u32,
}

/// What [`JobQueue::enqueue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub id: JobId,
    /// False when this upload already had its job (in whatever state).
    pub new: bool,
    /// Older jobs of the same key that this upload replaces; a running one should be stopped.
    pub superseded: Vec<JobId>,
}

pub trait JobQueue: Send + Sync {
    /// Adds the job for an upload, unless that upload has one; supersedes the older jobs of its
    /// key that were not delivered, and ends their upload records `superseded` in the same write.
    fn enqueue(
        &self,
        job: &TranscodeJob,
    ) -> impl Future<Output = Result<Enqueued, StoreError>> + Send;

    /// The oldest queued job, now running; `None` when nothing is queued.
    fn take(&self) -> impl Future<Output = Result<Option<QueuedJob>, StoreError>> + Send;

    /// Keeps the notification of a running job that ended, until it is delivered. Returns false,
    /// and keeps nothing, if the job was superseded meanwhile.
    fn finish(
        &self,
        id: &JobId,
        notification: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// A job whose input a newer upload replaced before it finished: done, with nothing to tell,
    /// and its upload record `superseded`. The newer upload has, or will have, a job of its own.
    fn replaced(&self, id: &JobId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Finished jobs whose notification has not been delivered yet, oldest first.
    fn undelivered(&self) -> impl Future<Output = Result<Vec<(JobId, String)>, StoreError>> + Send;

    /// The notification was recorded: the job is done for good.
    fn delivered(&self, id: &JobId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// At start-up: every job left running by the previous process is queued again, and returned
    /// so that its partial files can be removed. Every superseded job's upload record that has not
    /// ended (a file an older build wrote) ends `superseded`.
    fn recover(&self) -> impl Future<Output = Result<Vec<QueuedJob>, StoreError>> + Send;

    /// Jobs queued or running.
    fn waiting(&self) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

impl<T: JobQueue> JobQueue for std::sync::Arc<T> {
    fn enqueue(
        &self,
        job: &TranscodeJob,
    ) -> impl Future<Output = Result<Enqueued, StoreError>> + Send {
        (**self).enqueue(job)
    }

    fn take(&self) -> impl Future<Output = Result<Option<QueuedJob>, StoreError>> + Send {
        (**self).take()
    }

    fn finish(
        &self,
        id: &JobId,
        notification: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).finish(id, notification)
    }

    fn replaced(&self, id: &JobId) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).replaced(id)
    }

    fn undelivered(&self) -> impl Future<Output = Result<Vec<(JobId, String)>, StoreError>> + Send {
        (**self).undelivered()
    }

    fn delivered(&self, id: &JobId) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).delivered(id)
    }

    fn recover(&self) -> impl Future<Output = Result<Vec<QueuedJob>, StoreError>> + Send {
        (**self).recover()
    }

    fn waiting(&self) -> impl Future<Output = Result<usize, StoreError>> + Send {
        (**self).waiting()
    }
}

//! An in-memory store: the reference implementation of the store traits, for handler tests.
//! It keeps nothing across restarts; the local runner uses an embedded database instead.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};

use transcoder_core::{
    CLAIM_LEASE, Claim, ClaimOutcome, ClaimStore, Enqueued, JobId, JobQueue, Message, MessageId,
    MessageStore, Owner, Page, QueuedJob, REPLACED, StoreError, TranscodeJob, UploadId, UploadPage,
    UploadRecord, UploadState, UploadStore, local_job_id,
};

#[derive(Default)]
pub struct MemoryStore {
    messages: Mutex<BTreeMap<(Owner, MessageId), (Message, bool)>>,
    claims: Mutex<BTreeMap<(String, String, String), ClaimState>>,
    uploads: Mutex<BTreeMap<(Owner, UploadId), UploadRecord>>,
    /// Messages fail to write while set, as a database that is down would.
    failing_messages: AtomicBool,
    /// Upload records in these states fail to write, as a throttled table would.
    failing_uploads: Mutex<Vec<UploadState>>,
    /// The local job queue, in the order jobs were enqueued.
    jobs: Mutex<Vec<QueuedRow>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobState {
    Queued,
    Running,
    Finished,
    Delivered,
    Superseded,
}

struct QueuedRow {
    queued: QueuedJob,
    state: JobState,
    notification: Option<String>,
}

#[derive(Clone)]
struct ClaimState {
    claimed_at: DateTime<Utc>,
    job_id: Option<String>,
}

fn claim_key(c: &Claim) -> (String, String, String) {
    (c.bucket.clone(), c.key.to_string(), c.version.clone())
}

/// The id a page `cursor` of `owner`'s continues after: a cursor is the id of the last item of the
/// previous page, with its owner.
fn cursor_id<'a>(cursor: Option<&'a str>, owner: &Owner) -> Result<Option<&'a str>, StoreError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    match cursor.split_once('\n') {
        Some((cursor_owner, id)) if cursor_owner == owner.as_str() => Ok(Some(id)),
        _ => Err(StoreError::BadCursor),
    }
}

/// The listing order: newest first, ties broken by id.
fn order(m: &Message) -> (DateTime<Utc>, String) {
    (m.created_at, m.id.0.clone())
}

impl MessageStore for MemoryStore {
    async fn insert(&self, message: &Message) -> Result<bool, StoreError> {
        if self.failing_messages.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("connection refused"));
        }
        let mut messages = self.messages.lock().unwrap();
        let key = (message.owner.clone(), message.id.clone());
        if messages.contains_key(&key) {
            return Ok(false);
        }
        messages.insert(key, (message.clone(), false));
        Ok(true)
    }

    async fn list_unread(
        &self,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        let messages = self.messages.lock().unwrap();
        let after = match cursor_id(cursor, owner)? {
            None => None,
            Some(id) => {
                let (last, _) = messages
                    .get(&(owner.clone(), MessageId(id.to_owned())))
                    .ok_or(StoreError::BadCursor)?;
                Some(order(last))
            }
        };
        let mut unread: Vec<&Message> = messages
            .iter()
            .filter(|((o, _), (_, read))| o == owner && !read)
            .map(|(_, (m, _))| m)
            .filter(|m| after.as_ref().is_none_or(|after| order(m) < *after))
            .collect();
        unread.sort_by_key(|m| std::cmp::Reverse(order(m)));
        let more = unread.len() > limit;
        unread.truncate(limit);
        let next_cursor = more
            .then(|| unread.last().map(|m| format!("{}\n{}", owner, m.id)))
            .flatten();
        Ok(Page {
            messages: unread.into_iter().cloned().collect(),
            next_cursor,
        })
    }

    async fn dismiss(&self, owner: &Owner, id: &MessageId) -> Result<bool, StoreError> {
        let mut messages = self.messages.lock().unwrap();
        match messages.get_mut(&(owner.clone(), id.clone())) {
            Some((_, read)) => {
                *read = true;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl MemoryStore {
    /// Makes every message write fail as unavailable (`true`), or work again.
    pub fn fail_message_writes(&self, fail: bool) {
        self.failing_messages.store(fail, Ordering::SeqCst);
    }

    /// Makes writes of upload records in `states` fail as unavailable (none: all work again),
    /// for tests of what such a failure must not lose.
    pub fn fail_upload_writes(&self, states: &[UploadState]) {
        *self.failing_uploads.lock().unwrap() = states.to_vec();
    }

    /// Ends the upload record of a superseded job, if it has one that has not ended: under the
    /// queue's lock, so that the job and its record change together.
    fn end_superseded(&self, job: &TranscodeJob, at: DateTime<Utc>) {
        let record = UploadRecord::superseded(&job.upload_ref(), REPLACED, at);
        let mut uploads = self.uploads.lock().unwrap();
        if let Some(old) = uploads.get_mut(&(record.owner.clone(), record.id.clone()))
            && old.rank() < record.rank()
        {
            *old = UploadRecord {
                created_at: old.created_at,
                ..record
            };
        }
    }
}

impl UploadStore for MemoryStore {
    async fn advance(&self, record: &UploadRecord) -> Result<bool, StoreError> {
        if self.failing_uploads.lock().unwrap().contains(&record.state) {
            return Err(StoreError::unavailable("upload records are throttled"));
        }
        let mut uploads = self.uploads.lock().unwrap();
        let key = (record.owner.clone(), record.id.clone());
        let created_at = match uploads.get(&key) {
            Some(old) if old.rank() >= record.rank() => return Ok(false),
            Some(old) => old.created_at,
            None => record.created_at,
        };
        uploads.insert(
            key,
            UploadRecord {
                created_at,
                ..record.clone()
            },
        );
        Ok(true)
    }

    async fn list_uploads(
        &self,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<UploadPage, StoreError> {
        let uploads = self.uploads.lock().unwrap();
        let order = |u: &UploadRecord| (u.created_at, u.id.clone());
        let after = match cursor_id(cursor, owner)? {
            None => None,
            Some(id) => {
                let last = uploads
                    .get(&(owner.clone(), UploadId(id.to_owned())))
                    .ok_or(StoreError::BadCursor)?;
                Some(order(last))
            }
        };
        let mut listed: Vec<&UploadRecord> = uploads
            .iter()
            .filter(|((o, _), u)| o == owner && after.as_ref().is_none_or(|a| order(u) < *a))
            .map(|(_, u)| u)
            .collect();
        listed.sort_by_key(|u| std::cmp::Reverse(order(u)));
        let more = listed.len() > limit;
        listed.truncate(limit);
        let next_cursor = more
            .then(|| listed.last().map(|u| format!("{owner}\n{}", u.id)))
            .flatten();
        Ok(UploadPage {
            uploads: listed.into_iter().cloned().collect(),
            next_cursor,
        })
    }

    async fn upload(
        &self,
        owner: &Owner,
        id: &UploadId,
    ) -> Result<Option<UploadRecord>, StoreError> {
        let uploads = self.uploads.lock().unwrap();
        Ok(uploads.get(&(owner.clone(), id.clone())).cloned())
    }
}

impl ClaimStore for MemoryStore {
    async fn claim(&self, claim: &Claim, now: DateTime<Utc>) -> Result<ClaimOutcome, StoreError> {
        let mut claims = self.claims.lock().unwrap();
        match claims.get(&claim_key(claim)) {
            Some(ClaimState {
                job_id: Some(job_id),
                ..
            }) => Ok(ClaimOutcome::AlreadyStarted {
                job_id: job_id.clone(),
            }),
            Some(state) if now - state.claimed_at < CLAIM_LEASE => Ok(ClaimOutcome::Held),
            _ => {
                claims.insert(
                    claim_key(claim),
                    ClaimState {
                        claimed_at: now,
                        job_id: None,
                    },
                );
                Ok(ClaimOutcome::Claimed)
            }
        }
    }

    async fn record_job(&self, claim: &Claim, job_id: &str) -> Result<(), StoreError> {
        let mut claims = self.claims.lock().unwrap();
        if let Some(state) = claims.get_mut(&claim_key(claim)) {
            state.job_id = Some(job_id.to_owned());
        }
        Ok(())
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        let mut claims = self.claims.lock().unwrap();
        if claims
            .get(&claim_key(claim))
            .is_some_and(|s| s.job_id.is_none())
        {
            claims.remove(&claim_key(claim));
        }
        Ok(())
    }
}

impl JobQueue for MemoryStore {
    async fn enqueue(&self, job: &TranscodeJob) -> Result<Enqueued, StoreError> {
        let id = local_job_id(job);
        let mut jobs = self.jobs.lock().unwrap();
        if jobs.iter().any(|row| row.queued.id == id) {
            return Ok(Enqueued {
                id,
                new: false,
                superseded: Vec::new(),
            });
        }
        let mut superseded = Vec::new();
        for row in jobs.iter_mut() {
            let same_key =
                row.queued.job.bucket == job.bucket && row.queued.job.source == job.source;
            if same_key && !matches!(row.state, JobState::Delivered | JobState::Superseded) {
                row.state = JobState::Superseded;
                row.notification = None;
                self.end_superseded(&row.queued.job, Utc::now());
                superseded.push(row.queued.id.clone());
            }
        }
        jobs.push(QueuedRow {
            queued: QueuedJob {
                id: id.clone(),
                job: job.clone(),
                runs: 0,
            },
            state: JobState::Queued,
            notification: None,
        });
        Ok(Enqueued {
            id,
            new: true,
            superseded,
        })
    }

    async fn take(&self) -> Result<Option<QueuedJob>, StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        Ok(jobs
            .iter_mut()
            .find(|row| row.state == JobState::Queued)
            .map(|row| {
                row.state = JobState::Running;
                row.queued.runs += 1;
                row.queued.clone()
            }))
    }

    async fn finish(&self, id: &JobId, notification: &str) -> Result<bool, StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        match jobs.iter_mut().find(|row| &row.queued.id == id) {
            Some(row) if row.state == JobState::Running => {
                row.state = JobState::Finished;
                row.notification = Some(notification.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn replaced(&self, id: &JobId) -> Result<(), StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        if let Some(row) = jobs.iter_mut().find(|row| {
            &row.queued.id == id && matches!(row.state, JobState::Queued | JobState::Running)
        }) {
            row.state = JobState::Superseded;
            self.end_superseded(&row.queued.job, Utc::now());
        }
        Ok(())
    }

    async fn undelivered(&self) -> Result<Vec<(JobId, String)>, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs
            .iter()
            .filter(|row| row.state == JobState::Finished)
            .filter_map(|row| Some((row.queued.id.clone(), row.notification.clone()?)))
            .collect())
    }

    async fn delivered(&self, id: &JobId) -> Result<(), StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        if let Some(row) = jobs
            .iter_mut()
            .find(|row| &row.queued.id == id && row.state == JobState::Finished)
        {
            row.state = JobState::Delivered;
        }
        Ok(())
    }

    async fn recover(&self) -> Result<Vec<QueuedJob>, StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        let now = Utc::now();
        for row in jobs.iter().filter(|row| row.state == JobState::Superseded) {
            self.end_superseded(&row.queued.job, now);
        }
        Ok(jobs
            .iter_mut()
            .filter(|row| row.state == JobState::Running)
            .map(|row| {
                row.state = JobState::Queued;
                row.queued.clone()
            })
            .collect())
    }

    async fn waiting(&self) -> Result<usize, StoreError> {
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs
            .iter()
            .filter(|row| matches!(row.state, JobState::Queued | JobState::Running))
            .count())
    }
}

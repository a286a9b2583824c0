//! SQLite: messages, upload records and claims in one file, for the local runner, which has no DynamoDB but must
//! not forget its messages or start a second job for an upload when it restarts. It honours the
//! same contract as the DynamoDB store (`transcoder_core::contract`).
//!
//! - `messages` keeps each message as JSON in `body`, keyed by `(owner, id)`, beside `created_at`
//!   (RFC 3339 to the ms, so text order is time order) and `unread`. The partial index
//!   `messages_unread` on `(owner, created_at DESC, id DESC) WHERE unread = 1` plays the part of
//!   DynamoDB's sparse index: a listing reads one owner's unread messages, newest first, and costs
//!   the same however much other owners or dismissed history the file holds.
//! - `uploads` keeps each upload record as JSON in `body`, keyed by `(owner, id)`, beside its
//!   `created_at` (as `messages` has it) and its `rank`. Moving a record forward is one
//!   `INSERT … ON CONFLICT DO UPDATE … WHERE rank < excluded.rank`, which keeps the first
//!   `created_at`: a late or repeated event changes nothing, and nothing is read first. The index
//!   `uploads_by_time` on `(owner, created_at DESC, id DESC)` makes a listing read one owner's
//!   newest uploads, whatever else the file holds.
//! - `claims` has one row per `(bucket, key, version)`, with `claimed_at` (epoch ms) and, once its
//!   job started, `job_id`. Taking a claim is one immediate transaction, so two connections on one
//!   file cannot both take it.
//! - `jobs` is the local runner's job queue (`transcoder_core::queue`): one row per upload
//!   `(bucket, key, version)` with its state, how often it was taken, the job as JSON and, once it
//!   finished, the notification still to deliver. `seq` keeps the order jobs arrived in. Each state
//!   change is one statement, so a crash leaves every job in one state or the next, never between;
//!   superseding a job ends its upload record `superseded` in the same transaction.
//! - A page cursor is the last listed message's (or upload's) owner, `created_at` and id, as
//!   URL-safe base64; it is refused for any owner but its own.
//! - `PRAGMA user_version` is the schema's version, so that a later build can migrate a file.
//!
//! Nothing expires here: the file belongs to one developer's machine. Nothing here decides what a
//! message says or when a job starts: that is transcoder-core's.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use transcoder_core::{
    CLAIM_LEASE, Claim, ClaimOutcome, ClaimStore, Enqueued, JobId, JobQueue, Message, MessageId,
    MessageStore, Owner, Page, QueuedJob, REPLACED, StoreError, TranscodeJob, UploadId, UploadPage,
    UploadRecord, UploadStore, local_job_id,
};

/// The schema this build writes and reads; `PRAGMA user_version` of a file it created. Version 1
/// had no job queue; [`JOBS`] brings a file from 1 to 2. Version 2 had no upload records;
/// [`UPLOADS`] brings a file from 2 to 3.
const SCHEMA_VERSION: i32 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    unread INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (owner, id)
) STRICT;
CREATE INDEX IF NOT EXISTS messages_unread
    ON messages (owner, created_at DESC, id DESC) WHERE unread = 1;
CREATE TABLE IF NOT EXISTS claims (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    version TEXT NOT NULL,
    claimed_at INTEGER NOT NULL,
    job_id TEXT,
    PRIMARY KEY (bucket, key, version)
) STRICT;
";

const JOBS: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    version TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'running', 'finished', 'delivered', 'superseded')),
    runs INTEGER NOT NULL DEFAULT 0,
    job TEXT NOT NULL,
    notification TEXT,
    UNIQUE (bucket, key, version)
) STRICT;
CREATE INDEX IF NOT EXISTS jobs_by_key ON jobs (bucket, key)
    WHERE state IN ('queued', 'running', 'finished');
CREATE INDEX IF NOT EXISTS jobs_pending ON jobs (state, seq)
    WHERE state IN ('queued', 'running', 'finished');
";

const UPLOADS: &str = "
CREATE TABLE IF NOT EXISTS uploads (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    rank INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (owner, id)
) STRICT;
CREATE INDEX IF NOT EXISTS uploads_by_time ON uploads (owner, created_at DESC, id DESC);
";

/// How long a statement waits for another connection's write to finish before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

// `unread = 1` is spelled out so that SQLite can use the partial index.
const LIST_FIRST: &str = "SELECT created_at, id, body FROM messages
    WHERE owner = ?1 AND unread = 1
    ORDER BY created_at DESC, id DESC LIMIT ?2";
const LIST_AFTER: &str = "SELECT created_at, id, body FROM messages
    WHERE owner = ?1 AND unread = 1 AND (created_at, id) < (?2, ?3)
    ORDER BY created_at DESC, id DESC LIMIT ?4";
const UPLOADS_FIRST: &str = "SELECT created_at, id, body FROM uploads
    WHERE owner = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2";
const UPLOADS_AFTER: &str = "SELECT created_at, id, body FROM uploads
    WHERE owner = ?1 AND (created_at, id) < (?2, ?3)
    ORDER BY created_at DESC, id DESC LIMIT ?4";

/// Messages and claims in one SQLite database.
pub struct SqliteStore {
    // Each operation holds the lock for one or two statements on a local file (well under a
    // millisecond), so it runs on the caller's thread rather than through `spawn_blocking`.
    connection: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file and its schema if they are missing. The
    /// directory must exist. Other connections may have the same file open.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let name = path.display().to_string();
        let at = |e: rusqlite::Error| StoreError::Unavailable(format!("{name}: {e}"));
        let connection = Connection::open(path).map_err(at)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(at)?;
        // Write-ahead logging: readers and a writer do not block each other, and a crash
        // mid-write leaves the last commit intact.
        let mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(at)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "{name}: SQLite will not use write-ahead logging here (journal mode {mode})"
            )));
        }
        Self::with_schema(connection, &name)
    }

    /// A database that lives as long as the store, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        let connection = Connection::open_in_memory().map_err(failed)?;
        Self::with_schema(connection, ":memory:")
    }

    fn with_schema(mut connection: Connection, name: &str) -> Result<Self, StoreError> {
        let at = |e: rusqlite::Error| StoreError::Unavailable(format!("{name}: {e}"));
        // Immediate, so that two processes opening a new file do not both create the schema.
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(at)?;
        let version: i32 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(at)?;
        match version {
            0..SCHEMA_VERSION => {
                if version < 1 {
                    tx.execute_batch(SCHEMA).map_err(at)?;
                }
                if version < 2 {
                    tx.execute_batch(JOBS).map_err(at)?;
                }
                tx.execute_batch(UPLOADS).map_err(at)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(at)?;
            }
            SCHEMA_VERSION => {}
            newer => {
                return Err(StoreError::Corrupt(format!(
                    "{name} has schema version {newer}, written by a newer build; this one reads \
                     version {SCHEMA_VERSION}: run a newer build or start from another file"
                )));
            }
        }
        tx.commit().map_err(at)?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    /// Gives back every claim whose job was never queued. Only for a runner's start-up, when no
    /// other process uses the file: such a claim was taken by a runner that stopped before it
    /// queued the job, and would otherwise hold the upload off for the whole claim lease.
    pub fn release_unstarted_claims(&self) -> Result<usize, StoreError> {
        self.connection()
            .execute("DELETE FROM claims WHERE job_id IS NULL", [])
            .map_err(failed)
    }

    /// One page of `owner`'s rows, newest first, read with `sql` (the first page's query, and the
    /// query of a page after a cursor), each row's `body` parsed as a `what`.
    fn page<T: serde::de::DeserializeOwned>(
        &self,
        [first, after_cursor]: [&str; 2],
        what: &str,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<T>, Option<String>), StoreError> {
        let after = cursor.map(|c| Cursor::decode(c, owner)).transpose()?;
        if limit == 0 {
            return Ok((Vec::new(), None));
        }
        // One more than asked tells whether there is a next page, so the last page says so.
        let wanted = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let read = |row: &rusqlite::Row<'_>| -> rusqlite::Result<(Cursor, String)> {
            let cursor = Cursor {
                created_at: row.get(0)?,
                id: row.get(1)?,
            };
            Ok((cursor, row.get(2)?))
        };
        let mut rows = {
            let connection = self.connection();
            match &after {
                None => connection.prepare_cached(first).and_then(|mut list| {
                    list.query_map(params![owner.as_str(), wanted], read)?
                        .collect::<Result<Vec<_>, _>>()
                }),
                Some(after) => connection
                    .prepare_cached(after_cursor)
                    .and_then(|mut list| {
                        list.query_map(
                            params![owner.as_str(), after.created_at, after.id, wanted],
                            read,
                        )?
                        .collect::<Result<Vec<_>, _>>()
                    }),
            }
            .map_err(failed)?
        };
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = match rows.last() {
            Some((last, _)) if more => Some(last.encode(owner)),
            _ => None,
        };
        let items = rows
            .into_iter()
            .map(|(row, body)| {
                serde_json::from_str(&body)
                    .map_err(|e| StoreError::Corrupt(format!("{what} {} of {owner}: {e}", row.id)))
            })
            .collect::<Result<_, _>>()?;
        Ok((items, next_cursor))
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        // A panic under the lock leaves nothing half-written: SQLite rolls back an unfinished
        // statement or transaction.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A value of the wrong type in a column means the file was not written by this store; anything
/// else is SQLite failing us, which may pass.
fn failed(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
        e => StoreError::Unavailable(format!("SQLite: {e}")),
    }
}

/// A message's time as it sorts: fixed width, to the ms, as DynamoDB's unread index has it.
fn sort_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Where the next page starts: the last listed message, strictly older messages come next.
#[derive(Debug, PartialEq, Eq)]
struct Cursor {
    created_at: String,
    id: String,
}

impl Cursor {
    fn encode(&self, owner: &Owner) -> String {
        URL_SAFE_NO_PAD.encode(format!("{owner}\n{}\n{}", self.created_at, self.id))
    }

    /// Reads a cursor handed back by `owner`. Owners hold no control characters, and a sort time
    /// none, so the id is everything after the second line break.
    fn decode(text: &str, owner: &Owner) -> Result<Self, StoreError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| StoreError::BadCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| StoreError::BadCursor)?;
        let mut parts = text.splitn(3, '\n');
        let (Some(cursor_owner), Some(created_at), Some(id)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(StoreError::BadCursor);
        };
        let well_formed = DateTime::parse_from_rfc3339(created_at)
            .is_ok_and(|at| sort_time(at.to_utc()) == created_at);
        if cursor_owner != owner.as_str() || !well_formed {
            return Err(StoreError::BadCursor);
        }
        Ok(Self {
            created_at: created_at.to_owned(),
            id: id.to_owned(),
        })
    }
}

impl MessageStore for SqliteStore {
    async fn insert(&self, message: &Message) -> Result<bool, StoreError> {
        let body = serde_json::to_string(message).map_err(|e| {
            StoreError::Corrupt(format!("message {} cannot be written: {e}", message.id))
        })?;
        let connection = self.connection();
        let inserted = connection
            .prepare_cached(
                "INSERT INTO messages (owner, id, created_at, unread, body)
                 VALUES (?1, ?2, ?3, 1, ?4) ON CONFLICT (owner, id) DO NOTHING",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    message.owner.as_str(),
                    message.id.0,
                    sort_time(message.created_at),
                    body
                ])
            })
            .map_err(failed)?;
        Ok(inserted == 1)
    }

    async fn list_unread(
        &self,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        let (messages, next_cursor) =
            self.page([LIST_FIRST, LIST_AFTER], "message", owner, limit, cursor)?;
        Ok(Page {
            messages,
            next_cursor,
        })
    }

    async fn dismiss(&self, owner: &Owner, id: &MessageId) -> Result<bool, StoreError> {
        let connection = self.connection();
        // SQLite counts a matched row as changed even when it was already read.
        let matched = connection
            .prepare_cached("UPDATE messages SET unread = 0 WHERE owner = ?1 AND id = ?2")
            .and_then(|mut dismiss| dismiss.execute(params![owner.as_str(), id.0]))
            .map_err(failed)?;
        Ok(matched > 0)
    }
}

impl UploadStore for SqliteStore {
    async fn advance(&self, record: &UploadRecord) -> Result<bool, StoreError> {
        let body = serde_json::to_string(record).map_err(|e| {
            StoreError::Corrupt(format!("upload {} cannot be written: {e}", record.id))
        })?;
        let connection = self.connection();
        // One statement: written only over a lower rank, keeping the first `created_at`.
        let written = connection
            .prepare_cached(
                "INSERT INTO uploads (owner, id, created_at, rank, body) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (owner, id) DO UPDATE SET rank = excluded.rank,
                     body = json_set(excluded.body, '$.created_at',
                                     json_extract(uploads.body, '$.created_at'))
                 WHERE uploads.rank < excluded.rank",
            )
            .and_then(|mut advance| {
                advance.execute(params![
                    record.owner.as_str(),
                    record.id.0,
                    sort_time(record.created_at),
                    record.rank(),
                    body
                ])
            })
            .map_err(failed)?;
        Ok(written == 1)
    }

    async fn list_uploads(
        &self,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<UploadPage, StoreError> {
        let (uploads, next_cursor) = self.page(
            [UPLOADS_FIRST, UPLOADS_AFTER],
            "upload",
            owner,
            limit,
            cursor,
        )?;
        Ok(UploadPage {
            uploads,
            next_cursor,
        })
    }

    async fn upload(
        &self,
        owner: &Owner,
        id: &UploadId,
    ) -> Result<Option<UploadRecord>, StoreError> {
        let body: Option<String> = self
            .connection()
            .prepare_cached("SELECT body FROM uploads WHERE owner = ?1 AND id = ?2")
            .and_then(|mut find| {
                find.query_row(params![owner.as_str(), id.0], |row| row.get(0))
                    .optional()
            })
            .map_err(failed)?;
        body.map(|body| {
            serde_json::from_str(&body)
                .map_err(|e| StoreError::Corrupt(format!("upload {id} of {owner}: {e}")))
        })
        .transpose()
    }
}

impl ClaimStore for SqliteStore {
    async fn claim(&self, claim: &Claim, now: DateTime<Utc>) -> Result<ClaimOutcome, StoreError> {
        let (bucket, key, version) = (&claim.bucket, claim.key.as_str(), &claim.version);
        let mut connection = self.connection();
        // Immediate: the write lock is ours from the start, so the outcome read below is the
        // state our write was decided on, whoever else has the file open.
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        // Free, or held past its lease by an invocation that never started the job.
        let taken = tx
            .prepare_cached(
                "INSERT INTO claims (bucket, key, version, claimed_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (bucket, key, version) DO UPDATE SET claimed_at = excluded.claimed_at
                 WHERE job_id IS NULL AND claimed_at <= ?5",
            )
            .and_then(|mut take| {
                take.execute(params![
                    bucket,
                    key,
                    version,
                    now.timestamp_millis(),
                    (now - CLAIM_LEASE).timestamp_millis()
                ])
            })
            .map_err(failed)?
            == 1;
        let outcome = if taken {
            ClaimOutcome::Claimed
        } else {
            let job_id: Option<String> = tx
                .prepare_cached(
                    "SELECT job_id FROM claims WHERE bucket = ?1 AND key = ?2 AND version = ?3",
                )
                .and_then(|mut find| {
                    find.query_row(params![bucket, key, version], |row| row.get(0))
                })
                .map_err(failed)?;
            match job_id {
                Some(job_id) => ClaimOutcome::AlreadyStarted { job_id },
                None => ClaimOutcome::Held,
            }
        };
        tx.commit().map_err(failed)?;
        Ok(outcome)
    }

    async fn record_job(&self, claim: &Claim, job_id: &str) -> Result<(), StoreError> {
        let connection = self.connection();
        // Written even if the claim vanished, so that a redelivery still finds the job.
        connection
            .prepare_cached(
                "INSERT INTO claims (bucket, key, version, claimed_at, job_id)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (bucket, key, version) DO UPDATE SET job_id = excluded.job_id",
            )
            .and_then(|mut record| {
                record.execute(params![
                    claim.bucket,
                    claim.key.as_str(),
                    claim.version,
                    Utc::now().timestamp_millis(),
                    job_id
                ])
            })
            .map_err(failed)?;
        Ok(())
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        let connection = self.connection();
        // A claim whose job started stays: it is what stops a second job.
        connection
            .prepare_cached(
                "DELETE FROM claims
                 WHERE bucket = ?1 AND key = ?2 AND version = ?3 AND job_id IS NULL",
            )
            .and_then(|mut release| {
                release.execute(params![claim.bucket, claim.key.as_str(), claim.version])
            })
            .map_err(failed)?;
        Ok(())
    }
}

/// A row of `jobs` as [`JobQueue::take`] and [`JobQueue::recover`] hand it out.
fn queued_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, u32)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn parse_job((id, job, runs): (String, String, u32)) -> Result<QueuedJob, StoreError> {
    let job: TranscodeJob = serde_json::from_str(&job)
        .map_err(|e| StoreError::Corrupt(format!("job {id} cannot be read: {e}")))?;
    Ok(QueuedJob {
        id: JobId(id),
        job,
        runs,
    })
}

/// Ends the upload record of the superseded job `id` (`job`, its row's JSON) `superseded`, if
/// it has a record that has not ended: one conditional `UPDATE`, in the caller's transaction so
/// that the job and its record change together. A job without a record (queued before this
/// file had upload records) gets none.
fn end_superseded(
    connection: &Connection,
    id: &str,
    job: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let job: TranscodeJob = serde_json::from_str(job)
        .map_err(|e| StoreError::Corrupt(format!("job {id} cannot be read: {e}")))?;
    let record = UploadRecord::superseded(&job.upload_ref(), REPLACED, at);
    let body = serde_json::to_string(&record)
        .map_err(|e| StoreError::Corrupt(format!("upload {} cannot be written: {e}", record.id)))?;
    connection
        .prepare_cached(
            "UPDATE uploads SET rank = ?3,
                 body = json_set(?4, '$.created_at', json_extract(body, '$.created_at'))
             WHERE owner = ?1 AND id = ?2 AND rank < ?3",
        )
        .and_then(|mut end| {
            end.execute(params![
                record.owner.as_str(),
                record.id.0,
                record.rank(),
                body
            ])
        })
        .map_err(failed)?;
    Ok(())
}

impl JobQueue for SqliteStore {
    async fn enqueue(&self, job: &TranscodeJob) -> Result<Enqueued, StoreError> {
        let id = local_job_id(job);
        let body = serde_json::to_string(job)
            .map_err(|e| StoreError::Corrupt(format!("job {id} cannot be written: {e}")))?;
        let key = job.source.as_str();
        let mut connection = self.connection();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let new = tx
            .prepare_cached(
                "INSERT INTO jobs (id, bucket, key, version, state, job)
                 VALUES (?1, ?2, ?3, ?4, 'queued', ?5) ON CONFLICT DO NOTHING",
            )
            .and_then(|mut insert| {
                insert.execute(params![id.0, job.bucket, key, job.version, body])
            })
            .map_err(failed)?
            == 1;
        let mut superseded = Vec::new();
        if new {
            let older: Vec<(String, String)> = tx
                .prepare_cached(
                    "UPDATE jobs SET state = 'superseded', notification = NULL
                     WHERE bucket = ?1 AND key = ?2 AND id <> ?3
                       AND state IN ('queued', 'running', 'finished')
                     RETURNING id, job",
                )
                .and_then(|mut supersede| {
                    supersede
                        .query_map(params![job.bucket, key, id.0], |row| {
                            Ok((row.get(0)?, row.get(1)?))
                        })?
                        .collect()
                })
                .map_err(failed)?;
            let now = Utc::now();
            for (older, job) in older {
                end_superseded(&tx, &older, &job, now)?;
                superseded.push(JobId(older));
            }
        }
        tx.commit().map_err(failed)?;
        Ok(Enqueued {
            id,
            new,
            superseded,
        })
    }

    async fn take(&self) -> Result<Option<QueuedJob>, StoreError> {
        let connection = self.connection();
        // One statement: the job is running from the moment anyone can see it taken.
        let row = connection
            .prepare_cached(
                "UPDATE jobs SET state = 'running', runs = runs + 1
                 WHERE seq = (SELECT seq FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1)
                 RETURNING id, job, runs",
            )
            .and_then(|mut take| take.query_row([], queued_job).optional())
            .map_err(failed)?;
        row.map(parse_job).transpose()
    }

    async fn finish(&self, id: &JobId, notification: &str) -> Result<bool, StoreError> {
        let connection = self.connection();
        let changed = connection
            .prepare_cached(
                "UPDATE jobs SET state = 'finished', notification = ?2
                 WHERE id = ?1 AND state = 'running'",
            )
            .and_then(|mut finish| finish.execute(params![id.0, notification]))
            .map_err(failed)?;
        Ok(changed == 1)
    }

    async fn replaced(&self, id: &JobId) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let job: Option<String> = tx
            .prepare_cached(
                "UPDATE jobs SET state = 'superseded'
                 WHERE id = ?1 AND state IN ('queued', 'running') RETURNING job",
            )
            .and_then(|mut replace| replace.query_row([&id.0], |row| row.get(0)).optional())
            .map_err(failed)?;
        if let Some(job) = job {
            end_superseded(&tx, &id.0, &job, Utc::now())?;
        }
        tx.commit().map_err(failed)
    }

    async fn undelivered(&self) -> Result<Vec<(JobId, String)>, StoreError> {
        let connection = self.connection();
        connection
            .prepare_cached(
                "SELECT id, notification FROM jobs
                 WHERE state = 'finished' AND notification IS NOT NULL ORDER BY seq",
            )
            .and_then(|mut list| {
                list.query_map([], |row| Ok((JobId(row.get(0)?), row.get(1)?)))?
                    .collect()
            })
            .map_err(failed)
    }

    async fn delivered(&self, id: &JobId) -> Result<(), StoreError> {
        let connection = self.connection();
        // The notification is kept: it says how the job ended, should anyone look.
        connection
            .prepare_cached(
                "UPDATE jobs SET state = 'delivered' WHERE id = ?1 AND state = 'finished'",
            )
            .and_then(|mut deliver| deliver.execute([&id.0]))
            .map_err(failed)?;
        Ok(())
    }

    async fn recover(&self) -> Result<Vec<QueuedJob>, StoreError> {
        let mut connection = self.connection();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        // An older build superseded jobs without ending their records: those end now. One
        // no-op statement for each superseded job whose record has ended, once per start.
        let superseded: Vec<(String, String)> = tx
            .prepare_cached("SELECT id, job FROM jobs WHERE state = 'superseded'")
            .and_then(|mut list| {
                list.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .map_err(failed)?;
        let now = Utc::now();
        for (id, job) in superseded {
            end_superseded(&tx, &id, &job, now)?;
        }
        let rows: Vec<_> = tx
            .prepare_cached(
                "UPDATE jobs SET state = 'queued' WHERE state = 'running'
                 RETURNING id, job, runs",
            )
            .and_then(|mut requeue| requeue.query_map([], queued_job)?.collect())
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        rows.into_iter().map(parse_job).collect()
    }

    async fn waiting(&self) -> Result<usize, StoreError> {
        let connection = self.connection();
        let count: i64 = connection
            .prepare_cached("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")
            .and_then(|mut count| count.query_row([], |row| row.get(0)))
            .map_err(failed)?;
        usize::try_from(count).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use transcoder_core::contract;

    use super::*;

    #[tokio::test]
    async fn the_sqlite_queue_honours_the_contract() {
        contract::queue(&SqliteStore::in_memory().unwrap()).await;
    }

    #[tokio::test]
    async fn the_sqlite_store_honours_the_contract() {
        contract::all(&SqliteStore::in_memory().unwrap()).await;
    }

    #[test]
    fn a_cursor_round_trips_for_its_owner_only() {
        let alice = contract::owner("alice");
        let cursor = Cursor {
            created_at: "2026-11-23T08:00:00.123Z".into(),
            id: "job\n1".into(),
        };
        let text = cursor.encode(&alice);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{text} is not URL-safe"
        );
        assert_eq!(Cursor::decode(&text, &alice).unwrap(), cursor);
        assert!(matches!(
            Cursor::decode(&text, &contract::owner("bob")),
            Err(StoreError::BadCursor)
        ));
        // A time that would not sort among the stored ones is refused.
        for at in ["2026-11-23T08:00:00Z", "2026-11-23T09:00:00.123+01:00", "x"] {
            let forged = URL_SAFE_NO_PAD.encode(format!("alice\n{at}\njob-1"));
            assert!(
                matches!(Cursor::decode(&forged, &alice), Err(StoreError::BadCursor)),
                "{at}"
            );
        }
    }

    #[test]
    fn sort_times_are_fixed_width_to_the_millisecond() {
        let message = contract::message("alice", "job-1", 0);
        assert_eq!(sort_time(message.created_at), "2026-11-23T08:00:00.123Z");
    }

    proptest::proptest! {
        /// The property the in-memory store passes (`transcoder_core::contract`), here.
        #[test]
        fn sqlite_uploads_end_where_they_ended_whatever_the_order(
            mut percents in proptest::collection::vec(0u8..=100, 0..6),
            end in proptest::sample::select(transcoder_core::UploadState::ALL.iter().copied().filter(|s| s.is_final()).collect::<Vec<_>>()),
            order in proptest::collection::vec(0usize..64, 0..16),
        ) {
            percents.sort_unstable();
            let life = contract::upload_life(&percents, end);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(contract::a_life_delivered_in_any_order_ends_where_it_ended(
                &SqliteStore::in_memory().unwrap(),
                &life,
                &order,
            ));
        }
    }

    #[test]
    fn listings_read_their_index_in_order() {
        let store = SqliteStore::in_memory().unwrap();
        let connection = store.connection();
        let first = || params!["alice", 10];
        let after = || params!["alice", "2026-11-23T08:00:00.123Z", "job-1", 10];
        // One step each, with no sort: the index gives the order, and the second page seeks to the
        // cursor rather than reading past the first.
        let plans = [
            (
                LIST_FIRST,
                first(),
                "messages USING INDEX messages_unread (owner=?)",
            ),
            (
                LIST_AFTER,
                after(),
                "messages USING INDEX messages_unread (owner=? AND (created_at,id)<(?,?))",
            ),
            (
                UPLOADS_FIRST,
                first(),
                "uploads USING INDEX uploads_by_time (owner=?)",
            ),
            (
                UPLOADS_AFTER,
                after(),
                "uploads USING INDEX uploads_by_time (owner=? AND (created_at,id)<(?,?))",
            ),
        ];
        for (sql, params, search) in plans {
            let plan: Vec<String> = connection
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(params, |row| row.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("; ");
            let wanted = format!("SEARCH {search}");
            assert_eq!(plan, wanted);
        }
    }

    #[tokio::test]
    async fn a_message_that_cannot_be_read_is_corrupt() {
        let store = SqliteStore::in_memory().unwrap();
        let message = contract::message("alice", "job-1", 0);
        assert!(store.insert(&message).await.unwrap());
        store
            .connection()
            .execute("UPDATE messages SET body = '{\"id\": 1}'", [])
            .unwrap();
        let listed = store.list_unread(&message.owner, 10, None).await;
        assert!(matches!(listed, Err(StoreError::Corrupt(_))), "{listed:?}");
    }
}

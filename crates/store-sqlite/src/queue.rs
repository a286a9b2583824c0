//! The local runner's job queue (`transcoder_core::queue`). `jobs` has one row per upload
//! `(bucket, key, version)` with its state, how often it was taken, the job as JSON and, once it
//! finished, the notification still to deliver. `seq` keeps the order jobs arrived in. Each state
//! change is one statement, so a crash leaves every job in one state or the next, never between;
//! superseding a job ends its upload record `superseded` in the same transaction.

use chrono::Utc;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use transcoder_core::{
    Enqueued, JobId, JobQueue, QueuedJob, StoreError, TranscodeJob, local_job_id,
};

use crate::uploads::end_superseded;
use crate::{SqliteStore, failed};

/// A row of `jobs` as [`JobQueue::take`] and [`JobQueue::recover`] hand it out.
fn queued_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, u32)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn parse_job((id, job, runs): (String, String, u32)) -> Result<QueuedJob, StoreError> {
    let job = read_job(&id, &job)?;
    Ok(QueuedJob {
        id: JobId(id),
        job,
        runs,
    })
}

/// The job `id` from its row's JSON.
fn read_job(id: &str, job: &str) -> Result<TranscodeJob, StoreError> {
    serde_json::from_str(job)
        .map_err(|e| StoreError::corrupt(format!("job {id} cannot be read")).caused_by(e))
}

impl JobQueue for SqliteStore {
    async fn enqueue(&self, job: &TranscodeJob) -> Result<Enqueued, StoreError> {
        let id = local_job_id(job);
        let body = serde_json::to_string(job)
            .map_err(|e| StoreError::corrupt(format!("job {id} cannot be written")).caused_by(e))?;
        let job = job.clone();
        self.run(move |connection| {
            let key = job.source.as_str();
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
                    end_superseded(&tx, &read_job(&older, &job)?, now)?;
                    superseded.push(JobId(older));
                }
            }
            tx.commit().map_err(failed)?;
            Ok(Enqueued {
                id,
                new,
                superseded,
            })
        })
        .await
    }

    async fn take(&self) -> Result<Option<QueuedJob>, StoreError> {
        self.run(move |connection| {
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
        })
        .await
    }

    async fn finish(&self, id: &JobId, notification: &str) -> Result<bool, StoreError> {
        let (id, notification) = (id.clone(), notification.to_owned());
        self.run(move |connection| {
            let changed = connection
                .prepare_cached(
                    "UPDATE jobs SET state = 'finished', notification = ?2
                     WHERE id = ?1 AND state = 'running'",
                )
                .and_then(|mut finish| finish.execute(params![id.0, notification]))
                .map_err(failed)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn replaced(&self, id: &JobId) -> Result<(), StoreError> {
        let id = id.clone();
        self.run(move |connection| {
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
                end_superseded(&tx, &read_job(&id.0, &job)?, Utc::now())?;
            }
            tx.commit().map_err(failed)
        })
        .await
    }

    async fn undelivered(&self) -> Result<Vec<(JobId, String)>, StoreError> {
        self.run(move |connection| {
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
        })
        .await
    }

    async fn delivered(&self, id: &JobId) -> Result<(), StoreError> {
        let id = id.clone();
        self.run(move |connection| {
            // The notification is kept: it says how the job ended, should anyone look.
            connection
                .prepare_cached(
                    "UPDATE jobs SET state = 'delivered' WHERE id = ?1 AND state = 'finished'",
                )
                .and_then(|mut deliver| deliver.execute([&id.0]))
                .map_err(failed)?;
            Ok(())
        })
        .await
    }

    async fn recover(&self) -> Result<Vec<QueuedJob>, StoreError> {
        self.run(move |connection| {
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
                end_superseded(&tx, &read_job(&id, &job)?, now)?;
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
        })
        .await
    }

    async fn waiting(&self) -> Result<usize, StoreError> {
        self.run(move |connection| {
            let count: i64 = connection
                .prepare_cached("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")
                .and_then(|mut count| count.query_row([], |row| row.get(0)))
                .map_err(failed)?;
            usize::try_from(count).map_err(|e| StoreError::corrupt("a count of jobs").caused_by(e))
        })
        .await
    }
}

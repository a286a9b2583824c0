//! Claims that keep a redelivered upload from starting a second job. `claims` has one row per
//! `(bucket, key, version)`, with `claimed_at` (epoch ms) and, once its job started, `job_id`.
//! Taking a claim is one immediate transaction, so two connections on one file cannot both take
//! it.

use chrono::{DateTime, Utc};
use rusqlite::{TransactionBehavior, params};
use transcoder_core::{CLAIM_LEASE, Claim, ClaimOutcome, ClaimStore, StoreError};

use crate::{SqliteStore, failed, lock};

impl SqliteStore {
    /// Gives back every claim whose job was never queued. Only for a runner's start-up, when no
    /// other process uses the file: such a claim was taken by a runner that stopped before it
    /// queued the job, and would otherwise hold the upload off for the whole claim lease. It runs
    /// on the caller's thread, as opening does: with no other process on the file, it never
    /// waits for a lock.
    pub fn release_unstarted_claims(&self) -> Result<usize, StoreError> {
        lock(&self.connection)
            .execute("DELETE FROM claims WHERE job_id IS NULL", [])
            .map_err(failed)
    }
}

impl ClaimStore for SqliteStore {
    async fn claim(&self, claim: &Claim, now: DateTime<Utc>) -> Result<ClaimOutcome, StoreError> {
        let claim = claim.clone();
        self.run(move |connection| {
            let (bucket, key, version) = (&claim.bucket, claim.key.as_str(), &claim.version);
            // Immediate: the write lock is ours from the start, so the outcome read below is the
            // state our write was decided on, whoever else has the file open.
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(failed)?;
            // Free, or held past its lease by an invocation that never started the job.
            let taken = tx
                .prepare_cached(
                    "INSERT INTO claims (bucket, key, version, claimed_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (bucket, key, version)
                     DO UPDATE SET claimed_at = excluded.claimed_at
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
                        "SELECT job_id FROM claims
                         WHERE bucket = ?1 AND key = ?2 AND version = ?3",
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
        })
        .await
    }

    async fn record_job(&self, claim: &Claim, job_id: &str) -> Result<(), StoreError> {
        let (claim, job_id) = (claim.clone(), job_id.to_owned());
        self.run(move |connection| {
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
        })
        .await
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        let claim = claim.clone();
        self.run(move |connection| {
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
        })
        .await
    }
}

//! The owners' upload records. `uploads` keeps each record as JSON in `body`, keyed by
//! `(owner, id)`, beside its `created_at` (a sort time) and its `rank`. Moving a record forward is
//! one `INSERT … ON CONFLICT DO UPDATE … WHERE rank < excluded.rank`, which keeps the first
//! `created_at`: a late or repeated event changes nothing, and nothing is read first. The index
//! `uploads_by_time` on `(owner, created_at DESC, id DESC)` makes a listing read one owner's newest
//! uploads, whatever else the file holds.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use transcoder_core::{
    Owner, REPLACED, StoreError, TranscodeJob, UploadId, UploadPage, UploadRecord, UploadStore,
};

use crate::page::{Listing, read_page, sort_time};
use crate::{SqliteStore, failed};

/// One owner's uploads.
pub(crate) const BY_TIME: Listing = Listing {
    first: "SELECT created_at, id, body FROM uploads
    WHERE owner = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2",
    after: "SELECT created_at, id, body FROM uploads
    WHERE owner = ?1 AND (created_at, id) < (?2, ?3)
    ORDER BY created_at DESC, id DESC LIMIT ?4",
    what: "upload",
};

impl UploadStore for SqliteStore {
    async fn advance(&self, record: &UploadRecord) -> Result<bool, StoreError> {
        let body = serde_json::to_string(record).map_err(|e| {
            StoreError::corrupt(format!("upload {} cannot be written", record.id)).caused_by(e)
        })?;
        let (owner, id, rank) = (record.owner.clone(), record.id.clone(), record.rank());
        let created_at = sort_time(record.created_at);
        self.run(move |connection| {
            // One statement: written only over a lower rank, keeping the first `created_at`.
            let written = connection
                .prepare_cached(
                    "INSERT INTO uploads (owner, id, created_at, rank, body)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (owner, id) DO UPDATE SET rank = excluded.rank,
                         body = json_set(excluded.body, '$.created_at',
                                         json_extract(uploads.body, '$.created_at'))
                     WHERE uploads.rank < excluded.rank",
                )
                .and_then(|mut advance| {
                    advance.execute(params![owner.as_str(), id.0, created_at, rank, body])
                })
                .map_err(failed)?;
            Ok(written == 1)
        })
        .await
    }

    async fn list_uploads(
        &self,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<UploadPage, StoreError> {
        let (owner, cursor) = (owner.clone(), cursor.map(str::to_owned));
        let (uploads, next_cursor) = self
            .run(move |connection| {
                read_page(connection, &BY_TIME, &owner, limit, cursor.as_deref())
            })
            .await?;
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
        let (owner, id) = (owner.clone(), id.clone());
        self.run(move |connection| {
            let body: Option<String> = connection
                .prepare_cached("SELECT body FROM uploads WHERE owner = ?1 AND id = ?2")
                .and_then(|mut find| {
                    find.query_row(params![owner.as_str(), id.0], |row| row.get(0))
                        .optional()
                })
                .map_err(failed)?;
            body.map(|body| {
                serde_json::from_str(&body).map_err(|e| {
                    StoreError::corrupt(format!("upload {id} of {owner}")).caused_by(e)
                })
            })
            .transpose()
        })
        .await
    }
}

/// Ends the upload record of the superseded `job` `superseded`, if it has a record that has not
/// ended: one conditional `UPDATE`, in the caller's transaction so that the job and its record
/// change together. A job without a record (queued before this file had upload records) gets
/// none.
pub(crate) fn end_superseded(
    connection: &Connection,
    job: &TranscodeJob,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let record = UploadRecord::superseded(&job.upload_ref(), REPLACED, at);
    let body = serde_json::to_string(&record).map_err(|e| {
        StoreError::corrupt(format!("upload {} cannot be written", record.id)).caused_by(e)
    })?;
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

#[cfg(test)]
mod tests {
    use transcoder_testkit::contract;

    use super::*;

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
}

//! The tables and indexes, and bringing a file written by an older build up to this one's schema.
//! `PRAGMA user_version` is the schema's version. Nothing here reads or writes a row.

use rusqlite::{Connection, TransactionBehavior};
use transcoder_core::StoreError;

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

/// Creates the schema in a new file, or migrates an older one, and refuses a file written by a
/// newer build. `name` is the file's, for errors.
pub(crate) fn migrate(connection: &mut Connection, name: &str) -> Result<(), StoreError> {
    let at = crate::unavailable_at(name);
    // Immediate, so that two processes opening a new file do not both create the schema.
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&at)?;
    let version: i32 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(&at)?;
    match version {
        0..SCHEMA_VERSION => {
            if version < 1 {
                tx.execute_batch(SCHEMA).map_err(&at)?;
            }
            if version < 2 {
                tx.execute_batch(JOBS).map_err(&at)?;
            }
            tx.execute_batch(UPLOADS).map_err(&at)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(&at)?;
        }
        SCHEMA_VERSION => {}
        newer => {
            return Err(StoreError::corrupt(format!(
                "{name} has schema version {newer}, written by a newer build; this one reads \
                 version {SCHEMA_VERSION}: run a newer build or start from another file"
            )));
        }
    }
    tx.commit().map_err(&at)
}

//! SQLite: messages, upload records, claims and the local job queue in one file, for the local
//! runner, which has no DynamoDB but must not forget its messages or start a second job for an
//! upload when it restarts. It honours the same contract as the DynamoDB store
//! (`transcoder_core::contract`).
//!
//! One module per job: `schema` (tables and migrations), `page` (newest-first listings and their
//! cursors), `messages`, `uploads`, `claims` and `queue` (the store traits, one table each). This
//! file opens the database and runs each call on it off the async worker threads.
//!
//! Nothing expires here: the file belongs to one developer's machine. Nothing here decides what a
//! message says or when a job starts: that is transcoder-core's.

mod claims;
mod messages;
mod page;
mod queue;
mod schema;
mod uploads;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::Connection;
use transcoder_core::StoreError;

/// How long a statement waits for another connection's write to finish before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages, upload records, claims and jobs in one SQLite database.
pub struct SqliteStore {
    // Shared with the blocking-pool thread of each call (see `run`), which finishes the call
    // even if its caller stops waiting.
    connection: Arc<Mutex<Connection>>,
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
        let at = unavailable_at(&name);
        let connection = Connection::open(path).map_err(&at)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(&at)?;
        // Write-ahead logging: readers and a writer do not block each other, and a crash
        // mid-write leaves the last commit intact.
        let mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(&at)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::unavailable(format!(
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
        schema::migrate(&mut connection, name)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `call` on the connection on Tokio's blocking pool: a statement may wait up to
    /// [`BUSY_TIMEOUT`] for another connection's write, and must not hold an async worker
    /// thread meanwhile. A call that panics is an error, not a panic of the caller.
    async fn run<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| StoreError::unavailable("SQLite needs a Tokio runtime").caused_by(e))?;
        let connection = Arc::clone(&self.connection);
        runtime
            .spawn_blocking(move || call(&mut lock(&connection)))
            .await
            .map_err(|e| StoreError::unavailable("SQLite call failed").caused_by(e))?
    }
}

/// The connection, whoever held it before.
fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic under the lock leaves nothing half-written: SQLite rolls back an unfinished
    // statement or transaction.
    connection.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opening or migrating the file `name` failed.
fn unavailable_at(name: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::unavailable(name).caused_by(e)
}

/// A value of the wrong type in a column means the file was not written by this store; anything
/// else is SQLite failing us, which may pass.
fn failed(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => {
            StoreError::corrupt("a value SQLite holds").caused_by(e)
        }
        e => StoreError::unavailable("SQLite").caused_by(e),
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::params;
    use transcoder_core::{Chain, MessageStore};
    use transcoder_testkit::contract;

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
    fn listings_read_their_index_in_order() {
        let store = SqliteStore::in_memory().unwrap();
        let connection = lock(&store.connection);
        let first = || params!["alice", 10];
        let after = || params!["alice", "2026-11-23T08:00:00.123Z", "job-1", 10];
        // One step each, with no sort: the index gives the order, and the second page seeks to the
        // cursor rather than reading past the first.
        let plans = [
            (
                messages::UNREAD.first,
                first(),
                "messages USING INDEX messages_unread (owner=?)",
            ),
            (
                messages::UNREAD.after,
                after(),
                "messages USING INDEX messages_unread (owner=? AND (created_at,id)<(?,?))",
            ),
            (
                uploads::BY_TIME.first,
                first(),
                "uploads USING INDEX uploads_by_time (owner=?)",
            ),
            (
                uploads::BY_TIME.after,
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
    async fn a_call_that_panics_is_an_error_and_the_store_goes_on() {
        let store = SqliteStore::in_memory().unwrap();
        let failed = store
            .run(|_| -> Result<(), StoreError> { panic!("a bug in a call") })
            .await;
        assert!(
            matches!(&failed, Err(e @ StoreError::Unavailable { .. }) if Chain(e).to_string().contains("a bug in a call")),
            "{failed:?}"
        );
        // The panic poisoned the lock; the next call still gets the connection.
        let message = contract::message("alice", "job-1", 0);
        assert!(store.insert(&message).await.unwrap());
    }
}

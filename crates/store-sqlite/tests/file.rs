//! The store on a file: what the local runner relies on across restarts, and with a second
//! connection on the same file.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use transcoder_core::{
    Chain, Claim, ClaimOutcome, ClaimStore, JobQueue, MessageId, MessageStore, StoreError,
    UploadRecord, UploadState, UploadStore,
};
use transcoder_sqlite::SqliteStore;
use transcoder_testkit::{
    contract,
    contract::{base_time, job, message, owner},
    scratch,
};

/// The store's file in the test's folder.
fn store_file(dir: &Path) -> PathBuf {
    dir.join("store.sqlite3")
}

fn claim(key: &str) -> Claim {
    contract::claim(key, "0062E99A88DC407460")
}

async fn unread_ids(store: &SqliteStore, name: &str) -> Vec<String> {
    let page = store.list_unread(&owner(name), 100, None).await.unwrap();
    assert_eq!(page.next_cursor, None);
    page.messages.into_iter().map(|m| m.id.0).collect()
}

#[tokio::test]
async fn messages_and_claims_survive_a_restart() {
    let dir = scratch();
    let (started, held) = (
        claim("media/alice/started.mp3"),
        claim("media/alice/held.mp3"),
    );
    let messages = [
        message("alice", "a1", 0),
        message("alice", "a2", 1),
        message("alice", "a3", 2),
    ];
    {
        let store = SqliteStore::open(&store_file(&dir)).unwrap();
        for m in &messages {
            assert!(store.insert(m).await.unwrap());
        }
        assert!(
            store
                .dismiss(&owner("alice"), &MessageId("a2".into()))
                .await
                .unwrap()
        );
        let now = base_time();
        assert_eq!(
            store.claim(&started, now).await.unwrap(),
            ClaimOutcome::Claimed
        );
        store.record_job(&started, "job-started").await.unwrap();
        assert_eq!(
            store.claim(&held, now).await.unwrap(),
            ClaimOutcome::Claimed
        );
    }

    let store = SqliteStore::open(&store_file(&dir)).unwrap();
    assert_eq!(unread_ids(&store, "alice").await, ["a3", "a1"]);
    let page = store.list_unread(&owner("alice"), 1, None).await.unwrap();
    assert_eq!(page.messages, [messages[2].clone()]);
    // A dismissed message stays dismissed, and a redelivery does not bring it back.
    assert!(!store.insert(&messages[1]).await.unwrap());
    assert_eq!(unread_ids(&store, "alice").await, ["a3", "a1"]);
    assert_eq!(
        store
            .claim(&started, base_time() + chrono::TimeDelta::days(1))
            .await
            .unwrap(),
        ClaimOutcome::AlreadyStarted {
            job_id: "job-started".into()
        }
    );
    // A claim taken before the restart still holds its lease.
    assert_eq!(
        store.claim(&held, base_time()).await.unwrap(),
        ClaimOutcome::Held
    );
}

#[tokio::test]
async fn two_connections_on_one_file_see_each_others_writes() {
    let dir = scratch();
    let (first, second) = (
        SqliteStore::open(&store_file(&dir)).unwrap(),
        SqliteStore::open(&store_file(&dir)).unwrap(),
    );
    assert!(first.insert(&message("bob", "b1", 0)).await.unwrap());
    assert!(!second.insert(&message("bob", "b1", 0)).await.unwrap());
    assert!(second.insert(&message("bob", "b2", 1)).await.unwrap());
    assert_eq!(unread_ids(&first, "bob").await, ["b2", "b1"]);
    assert!(
        first
            .dismiss(&owner("bob"), &MessageId("b2".into()))
            .await
            .unwrap()
    );
    assert_eq!(unread_ids(&second, "bob").await, ["b1"]);

    let c = claim("media/bob/shared.mp3");
    let now = base_time();
    assert_eq!(first.claim(&c, now).await.unwrap(), ClaimOutcome::Claimed);
    assert_eq!(second.claim(&c, now).await.unwrap(), ClaimOutcome::Held);
    first.record_job(&c, "job-shared").await.unwrap();
    assert_eq!(
        second.claim(&c, now).await.unwrap(),
        ClaimOutcome::AlreadyStarted {
            job_id: "job-shared".into()
        }
    );
}

#[tokio::test]
async fn claims_a_stopped_runner_never_started_are_given_back_at_start_up() {
    let dir = scratch();
    let (started, unstarted) = (
        claim("media/alice/started.mp3"),
        claim("media/alice/cut.mp3"),
    );
    {
        let store = SqliteStore::open(&store_file(&dir)).unwrap();
        for c in [&started, &unstarted] {
            assert_eq!(
                store.claim(c, base_time()).await.unwrap(),
                ClaimOutcome::Claimed
            );
        }
        store.record_job(&started, "local-started").await.unwrap();
    }
    let store = SqliteStore::open(&store_file(&dir)).unwrap();
    assert_eq!(store.release_unstarted_claims().unwrap(), 1);
    // Within the lease, and still the next start takes it at once; the started one stays.
    assert_eq!(
        store.claim(&unstarted, base_time()).await.unwrap(),
        ClaimOutcome::Claimed
    );
    assert_eq!(
        store.claim(&started, base_time()).await.unwrap(),
        ClaimOutcome::AlreadyStarted {
            job_id: "local-started".into()
        }
    );
}

#[test]
fn a_file_written_by_a_newer_build_is_refused() {
    let dir = scratch();
    drop(SqliteStore::open(&store_file(&dir)).unwrap());
    set_user_version(&store_file(&dir), 4);
    let opened = SqliteStore::open(&store_file(&dir));
    match opened {
        Err(err @ StoreError::Corrupt { .. }) => {
            let reason = Chain(&err).to_string();
            assert!(reason.contains("schema version 4"), "{reason}")
        }
        other => panic!("a file of schema version 4 opened as {other:?}"),
    }
}

#[tokio::test]
async fn a_file_of_the_first_schema_keeps_its_messages_and_gains_the_queue() {
    let dir = scratch();
    {
        // What the first build wrote: messages and claims, schema version 1, no jobs table.
        let store = SqliteStore::open(&store_file(&dir)).unwrap();
        store.insert(&message("alice", "kept", 1)).await.unwrap();
    }
    let connection = rusqlite::Connection::open(store_file(&dir)).unwrap();
    connection
        .execute_batch("DROP TABLE jobs; DROP TABLE uploads")
        .unwrap();
    drop(connection);
    set_user_version(&store_file(&dir), 1);

    let store = SqliteStore::open(&store_file(&dir)).unwrap();
    assert_eq!(unread_ids(&store, "alice").await, ["kept"]);
    let queued = store.enqueue(&job("alice", "song.mp3", "1")).await.unwrap();
    assert!(queued.new);
    assert!(store.advance(&received("alice", "song.mp3")).await.unwrap());
    assert_eq!(user_version(&store_file(&dir)), 3);
}

#[tokio::test]
async fn a_file_of_the_second_schema_keeps_its_queue_and_gains_upload_records() {
    let dir = scratch();
    let job = job("alice", "song.mp3", "1");
    {
        // What the second build wrote: messages, claims and the queue, schema version 2.
        let store = SqliteStore::open(&store_file(&dir)).unwrap();
        store.insert(&message("alice", "kept", 1)).await.unwrap();
        store.enqueue(&job).await.unwrap();
    }
    let connection = rusqlite::Connection::open(store_file(&dir)).unwrap();
    connection.execute_batch("DROP TABLE uploads").unwrap();
    drop(connection);
    set_user_version(&store_file(&dir), 2);

    let store = SqliteStore::open(&store_file(&dir)).unwrap();
    assert_eq!(user_version(&store_file(&dir)), 3);
    assert_eq!(unread_ids(&store, "alice").await, ["kept"]);
    assert_eq!(store.take().await.unwrap().unwrap().job, job);
    let record = received("alice", "song.mp3");
    assert!(store.advance(&record).await.unwrap());
    assert_eq!(
        store.upload(&record.owner, &record.id).await.unwrap(),
        Some(record)
    );
}

/// A `received` upload record, as the contract writes them.
fn received(owner: &str, name: &str) -> UploadRecord {
    contract::upload(owner, name, UploadState::Received, None, 0)
}

#[tokio::test]
async fn the_queue_survives_a_stop_at_any_state() {
    let dir = scratch();
    let (waiting, running, finished) = (
        job("alice", "waiting.mp3", "1"),
        job("alice", "running.mp3", "1"),
        job("alice", "finished.mp3", "1"),
    );
    {
        let store = SqliteStore::open(&store_file(&dir)).unwrap();
        for job in [&finished, &running, &waiting] {
            store.enqueue(job).await.unwrap();
        }
        let done = store.take().await.unwrap().unwrap();
        assert!(store.finish(&done.id, "told?").await.unwrap());
        store.take().await.unwrap().unwrap();
        // Dropped without a word, as a killed process leaves its file.
    }
    let store = SqliteStore::open(&store_file(&dir)).unwrap();
    let recovered = store.recover().await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].job, running);
    let undelivered = store.undelivered().await.unwrap();
    assert_eq!(undelivered.len(), 1);
    assert_eq!(undelivered[0].1, "told?");
    let mut next = Vec::new();
    while let Some(taken) = store.take().await.unwrap() {
        next.push((taken.job.source.file_name().to_owned(), taken.runs));
    }
    assert_eq!(
        next,
        [("running.mp3".to_owned(), 2), ("waiting.mp3".to_owned(), 1)]
    );
}

/// On a runtime with one thread, a store call that waits for another connection's write lock
/// must leave that thread to other tasks: here the task that ends the lock, so the call succeeds
/// only if it did. A call that blocked the thread would wait out its busy timeout and fail.
#[test]
fn a_call_waiting_for_the_write_lock_leaves_the_runtime_to_other_tasks() {
    let dir = scratch();
    let store = SqliteStore::open(&store_file(&dir)).unwrap();
    let holder = rusqlite::Connection::open(store_file(&dir)).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let events = RefCell::new(Vec::new());
    let inserted = runtime.block_on(async {
        let insert = async {
            let inserted = store.insert(&message("alice", "a1", 0)).await;
            events.borrow_mut().push("inserted");
            inserted
        };
        let release = async {
            // Time for the insert to reach the lock; if it has not, it simply does not wait.
            tokio::time::sleep(Duration::from_millis(100)).await;
            events.borrow_mut().push("released");
            holder.execute_batch("COMMIT").unwrap();
        };
        tokio::join!(insert, release).0
    });
    assert!(inserted.unwrap());
    assert_eq!(events.into_inner(), ["released", "inserted"]);
}

#[test]
fn a_missing_directory_is_reported_with_the_path_and_sqlites_own_error() {
    let dir = scratch();
    let path = dir.join("no such directory").join("store.sqlite3");
    match SqliteStore::open(&path) {
        Err(err @ StoreError::Unavailable { .. }) => {
            let reason = Chain(&err).to_string();
            assert!(reason.contains("no such directory"), "{reason}");
            // SQLite's error is kept whole as the source, not flattened into the text.
            let cause = std::error::Error::source(&err).expect("SQLite's error as the source");
            assert!(cause.is::<rusqlite::Error>(), "{cause:?}");
            assert!(!err.to_string().contains(&cause.to_string()), "{err}");
        }
        other => panic!("opening {} gave {other:?}", path.display()),
    }
}

fn user_version(path: &Path) -> i32 {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap()
}

fn set_user_version(path: &Path, version: i32) {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .pragma_update(None, "user_version", version)
        .unwrap();
}

//! The embedded database: one SQLite connection shared by every adapter of a process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Notify;

const SCHEMA: &str = r#"
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    group_id      TEXT,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT,
    dead          INTEGER NOT NULL DEFAULT 0,
    sent_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, dead, visible_at);
CREATE INDEX IF NOT EXISTS messages_group ON messages (queue, group_id, dead, id);
CREATE INDEX IF NOT EXISTS messages_order ON messages (queue, dead, id);
CREATE TABLE IF NOT EXISTS dedup (
    queue    TEXT    NOT NULL,
    dedup_id TEXT    NOT NULL,
    sent_at  INTEGER NOT NULL,
    PRIMARY KEY (queue, dedup_id)
);
CREATE INDEX IF NOT EXISTS dedup_age ON dedup (queue, sent_at);
CREATE TABLE IF NOT EXISTS sync_state (
    object_type       TEXT PRIMARY KEY,
    last_sync_at      INTEGER NOT NULL,
    last_created_at   INTEGER,
    last_modified_at  INTEGER,
    records_processed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id     TEXT PRIMARY KEY,
    tbl        TEXT    NOT NULL,
    started_at INTEGER NOT NULL,
    body       TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS active_runs (
    tbl    TEXT PRIMARY KEY,
    run_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS markers (
    run_id TEXT NOT NULL,
    marker TEXT NOT NULL,
    next_cursor TEXT,
    effects TEXT,
    PRIMARY KEY (run_id, marker)
);
CREATE TABLE IF NOT EXISTS workers (
    id    TEXT PRIMARY KEY,
    until INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS schedules (
    key       TEXT PRIMARY KEY,
    next_free INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS flags (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("embedded database {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("embedded database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("embedded database: {0}")]
    Other(String),
}

/// A shared handle; cheap to clone.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    /// Per queue, wakes this process's long-polling receivers of that queue when a message
    /// may have become deliverable (sent, released, or its FIFO group freed).
    wakers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Opens (creating if needed) the database of the lake at `lake_dir`.
    pub fn open_in_lake(lake_dir: &Path) -> Result<Self, DbError> {
        let dir = lake_dir.join(crate::lake::EMBEDDED_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| DbError::Other(format!("{}: {e}", dir.display())))?;
        Db::open(&dir.join("hubsync.db"))
    }

    pub fn open(path: &Path) -> Result<Self, DbError> {
        let open_err = |source| DbError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        // Databases written before markers kept the next cursor, then a page's effects, gain
        // the columns.
        for column in ["next_cursor", "effects"] {
            let has: bool = conn
                .query_row(
                    "SELECT COUNT(*) FROM pragma_table_info('markers') WHERE name = ?1",
                    [column],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(open_err)?
                > 0;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE markers ADD COLUMN {column} TEXT"))
                    .map_err(open_err)?;
            }
        }
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
            wakers: Arc::default(),
        })
    }

    /// The waker of `queue`'s receivers in this process (one per queue name).
    pub(crate) fn waker(&self, queue: &str) -> Arc<Notify> {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        wakers.entry(queue.to_string()).or_default().clone()
    }

    /// Wakes every receiver of every queue (messages of any queue may have changed).
    fn wake_all(&self) {
        let wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for w in wakers.values() {
            w.notify_waiters();
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` inside one IMMEDIATE transaction on a blocking thread: every adapter step is
    /// atomic, which is what makes counters and done-markers safe to apply twice.
    pub(crate) async fn tx<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, DbError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| DbError::Other("connection lock poisoned".into()))?;
            let tx = guard.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(|e| DbError::Other(format!("database task failed: {e}")))?
    }
}

impl Db {
    /// Makes every in-flight message visible again. Only for a process that holds the
    /// [`LakeLock`]: whoever received those messages is gone (killed), and waiting out their
    /// visibility timeout would only delay the resumed run.
    pub async fn release_in_flight(&self, now_ms: i64) -> Result<usize, DbError> {
        let n = self
            .tx(move |tx| {
                Ok(tx.execute(
                    "UPDATE messages SET visible_at = ?1, receipt = NULL
                     WHERE dead = 0 AND visible_at > ?1",
                    [now_ms],
                )?)
            })
            .await?;
        self.wake_all();
        Ok(n)
    }
}

/// An exclusive lock on a lake's embedded database, held by the one process that runs its
/// roles (released by the OS when the process dies, even by SIGKILL).
#[derive(Debug)]
pub struct LakeLock {
    _file: std::fs::File,
}

impl LakeLock {
    pub fn acquire(lake_dir: &Path) -> Result<Self, DbError> {
        let dir = lake_dir.join(crate::lake::EMBEDDED_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| DbError::Other(format!("{}: {e}", dir.display())))?;
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| DbError::Other(format!("{}: {e}", path.display())))?;
        file.try_lock().map_err(|_| {
            DbError::Other(format!(
                "another hubsync process is running on the lake {} (it holds {}); wait for it to finish",
                lake_dir.display(),
                path.display()
            ))
        })?;
        Ok(LakeLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_from_before_marker_cursors_gains_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE markers (run_id TEXT NOT NULL, marker TEXT NOT NULL, PRIMARY KEY (run_id, marker));
             INSERT INTO markers VALUES ('r', 'page:a');",
        )
        .unwrap();
        drop(old);
        let db = Db::open(&path).unwrap();
        let conn = db.conn.lock().unwrap();
        let cursor: Option<String> = conn
            .query_row(
                "SELECT next_cursor FROM markers WHERE marker = 'page:a'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(cursor, None, "old markers read as pages without a successor");
        drop(conn);
        Db::open(&path).expect("opening twice does not migrate twice");
    }
}

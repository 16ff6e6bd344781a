//! The embedded config store: SQLite (bundled), one row per config version. Every change
//! is one transaction that checks the expected current version, so concurrent writers
//! get a conflict instead of silently overwriting each other.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("version conflict: the current version is {current}, not {expected}")]
    Conflict { current: u64, expected: u64 },
    #[error("version {0} does not exist")]
    NotFound(u64),
    #[error("store: {0}")]
    Db(#[from] rusqlite::Error),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct VersionInfo {
    pub version: u64,
    /// Unix seconds.
    pub created_at: u64,
    pub comment: String,
}

pub struct Store {
    db: Mutex<Connection>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Db(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        let db = Connection::open(dir.join("weir-admin.sqlite3"))?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS versions (
                 version INTEGER PRIMARY KEY,
                 created_at INTEGER NOT NULL,
                 comment TEXT NOT NULL,
                 config TEXT NOT NULL
             );",
        )?;
        Ok(Store { db: Mutex::new(db) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A poisoned lock only means a panic elsewhere; the connection itself is fine.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current version (0 when nothing was stored yet).
    pub fn current_version(&self) -> Result<u64, StoreError> {
        let v: Option<i64> =
            self.conn()
                .query_row("SELECT MAX(version) FROM versions", [], |r| r.get(0))?;
        Ok(v.unwrap_or(0) as u64)
    }

    /// The config JSON of `version`.
    pub fn get(&self, version: u64) -> Result<String, StoreError> {
        self.conn()
            .query_row(
                "SELECT config FROM versions WHERE version = ?1",
                params![version as i64],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(StoreError::NotFound(version))
    }

    pub fn list(&self) -> Result<Vec<VersionInfo>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT version, created_at, comment FROM versions ORDER BY version DESC")?;
        let rows = stmt.query_map([], |r| {
            Ok(VersionInfo {
                version: r.get::<_, i64>(0)? as u64,
                created_at: r.get::<_, i64>(1)? as u64,
                comment: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores `config` as a new version in one transaction. With `expected`, fails with a
    /// conflict unless the current version is exactly that.
    pub fn put(
        &self,
        config: &str,
        comment: &str,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: Option<i64> =
            tx.query_row("SELECT MAX(version) FROM versions", [], |r| r.get(0))?;
        let current = current.unwrap_or(0) as u64;
        if let Some(expected) = expected {
            if expected != current {
                return Err(StoreError::Conflict { current, expected });
            }
        }
        let next = current + 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        tx.execute(
            "INSERT INTO versions (version, created_at, comment, config) VALUES (?1, ?2, ?3, ?4)",
            params![next as i64, now as i64, comment, config],
        )?;
        tx.commit()?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn versions_and_conflicts() {
        let dir = std::env::temp_dir().join(format!("weir-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.current_version().unwrap(), 0);
        assert_eq!(s.put("{\"a\":1}", "first", Some(0)).unwrap(), 1);
        assert_eq!(s.put("{\"a\":2}", "", None).unwrap(), 2);
        assert!(matches!(
            s.put("{}", "", Some(1)),
            Err(StoreError::Conflict {
                current: 2,
                expected: 1
            })
        ));
        assert_eq!(s.get(1).unwrap(), "{\"a\":1}");
        assert!(matches!(s.get(9), Err(StoreError::NotFound(9))));
        let list = s.list().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].version, 2);
        drop(s);
        // Survives a restart.
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.current_version().unwrap(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

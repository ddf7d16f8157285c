//! One small statement run once per row, on SQLite, in a single hop to the connection.
//!
//! sqlx runs each SQLite statement on the connection's worker thread and waits for the
//! answer: a round trip of tens of microseconds, which is why the hot paths send one
//! multi-row statement per batch. But a statement of hundreds of `VALUES` rows is itself
//! slow in SQLite (each row goes through a co-routine, an upsert builds every index key
//! before it finds the conflict): measured on the identity bench's database, 700 known
//! identities took 6.4 ms as one multi-row upsert and 1.7 ms as 700 steps of one prepared
//! `UPDATE … WHERE id = ?`. This module takes the connection's handle from the worker
//! (`lock_handle`, sqlx's API for direct SQLite calls), prepares the statement once, binds
//! and steps it for every row, and gives the handle back: one hop, the cheap form.
//!
//! It runs inside the caller's open transaction; a failing row stops the loop and returns
//! SQLite's message, and the caller's transaction rolls back as for any other error.

use std::ffi::{c_char, c_int, CStr};
use std::ptr::NonNull;

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;

/// A value to bind.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
}

/// A prepared statement, finalized on drop (also when a row fails half-way).
struct Stmt {
    raw: NonNull<ffi::sqlite3_stmt>,
}

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: `raw` came from sqlite3_prepare_v2 on `db` and is finalized only here.
        unsafe {
            ffi::sqlite3_finalize(self.raw.as_ptr());
        }
    }
}

fn error(db: *mut ffi::sqlite3, what: &str, sql: &str) -> anyhow::Error {
    // SAFETY: sqlite3_errmsg returns a NUL-terminated string owned by the connection,
    // valid until the next call on it; it is copied at once.
    let msg = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }
        .to_string_lossy()
        .into_owned();
    anyhow::anyhow!("{what}: {msg} (in `{sql}`)")
}

impl Stmt {
    fn prepare(db: *mut ffi::sqlite3, sql: &str) -> anyhow::Result<Stmt> {
        let len = c_int::try_from(sql.len())
            .map_err(|_| anyhow::anyhow!("statement too long for SQLite"))?;
        let mut raw: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
        // SAFETY: `db` is the open connection handed over by lock_handle; `sql` is valid
        // for `len` bytes (no NUL needed when the length is given).
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                db,
                sql.as_ptr() as *const c_char,
                len,
                &mut raw,
                std::ptr::null_mut(),
            )
        };
        match NonNull::new(raw) {
            Some(raw) if rc == ffi::SQLITE_OK => Ok(Stmt { raw }),
            Some(raw) => {
                drop(Stmt { raw });
                Err(error(db, "prepare", sql))
            }
            None if rc == ffi::SQLITE_OK => anyhow::bail!("empty statement: `{sql}`"),
            None => Err(error(db, "prepare", sql)),
        }
    }

    fn bind(&self, i: usize, v: Val<'_>) -> c_int {
        let Ok(i) = c_int::try_from(i + 1) else {
            return ffi::SQLITE_RANGE;
        };
        let s = self.raw.as_ptr();
        // SAFETY: `s` is a live prepared statement; text is copied by SQLite
        // (SQLITE_TRANSIENT) before the call returns, so the borrow may end after it.
        unsafe {
            match v {
                Val::Int(n) => ffi::sqlite3_bind_int64(s, i, n),
                Val::OptText(None) => ffi::sqlite3_bind_null(s, i),
                Val::Text(t) | Val::OptText(Some(t)) => match c_int::try_from(t.len()) {
                    Ok(len) => ffi::sqlite3_bind_text(
                        s,
                        i,
                        t.as_ptr() as *const c_char,
                        len,
                        ffi::SQLITE_TRANSIENT(),
                    ),
                    Err(_) => ffi::SQLITE_TOOBIG,
                },
            }
        }
    }
}

/// Runs `sql` once per row of `rows` (each row's values bound to `?1`, `?2`, … in order) on
/// `conn`, which should be inside a transaction. Returns the rows changed in all.
pub async fn execute_each(
    conn: &mut SqliteConnection,
    sql: &str,
    rows: &[Vec<Val<'_>>],
) -> anyhow::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let stmt = Stmt::prepare(db, sql)?;
    let mut changed: u64 = 0;
    for row in rows {
        for (i, v) in row.iter().enumerate() {
            if stmt.bind(i, *v) != ffi::SQLITE_OK {
                return Err(error(db, "bind", sql));
            }
        }
        // SAFETY: a live statement with every parameter bound; reset before the next row.
        let rc = unsafe { ffi::sqlite3_step(stmt.raw.as_ptr()) };
        if rc != ffi::SQLITE_DONE && rc != ffi::SQLITE_ROW {
            let e = error(db, "step", sql);
            // SAFETY: as above; a reset after a failed step is required before reuse or
            // finalize reports the same error again, which is then ignored.
            unsafe { ffi::sqlite3_reset(stmt.raw.as_ptr()) };
            return Err(e);
        }
        // SAFETY: `db` is the open connection; `stmt` is live.
        unsafe {
            changed += u64::try_from(ffi::sqlite3_changes64(db)).unwrap_or(0);
            ffi::sqlite3_reset(stmt.raw.as_ptr());
        }
    }
    drop(stmt);
    drop(handle);
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Connection, Row};

    async fn table() -> SqliteConnection {
        let mut c = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL, note TEXT)")
            .execute(&mut c)
            .await
            .unwrap();
        c
    }

    #[tokio::test]
    async fn runs_the_statement_once_per_row_with_each_rows_values() {
        let mut c = table().await;
        let rows = vec![
            vec![Val::Text("a"), Val::Int(1), Val::OptText(Some("x"))],
            vec![Val::Text("b"), Val::Int(-7), Val::OptText(None)],
            vec![Val::Text("ünï"), Val::Int(i64::MAX), Val::Text("")],
        ];
        let n = execute_each(
            &mut c,
            "INSERT INTO t (k, n, note) VALUES (?1, ?2, ?3)",
            &rows,
        )
        .await
        .unwrap();
        assert_eq!(n, 3);
        let got: Vec<(String, i64, Option<String>)> =
            sqlx::query("SELECT k, n, note FROM t ORDER BY n")
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
        assert_eq!(
            got,
            [
                ("b".to_string(), -7, None),
                ("a".to_string(), 1, Some("x".to_string())),
                ("ünï".to_string(), i64::MAX, Some(String::new())),
            ]
        );
        // The connection is sqlx's again: an update counts only the rows it changed.
        let n = execute_each(
            &mut c,
            "UPDATE t SET n = n + 1 WHERE k = ?1",
            &[vec![Val::Text("a")], vec![Val::Text("nobody")]],
        )
        .await
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(execute_each(&mut c, "DELETE FROM t", &[]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_failing_row_stops_with_sqlites_message_and_the_transaction_rolls_back() {
        let mut c = table().await;
        let mut tx = c.begin().await.unwrap();
        let rows = vec![
            vec![Val::Text("a"), Val::Int(1)],
            vec![Val::Text("a"), Val::Int(2)],
            vec![Val::Text("c"), Val::Int(3)],
        ];
        let e = execute_each(&mut tx, "INSERT INTO t (k, n) VALUES (?1, ?2)", &rows)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("UNIQUE constraint failed: t.k"), "{e}");
        tx.rollback().await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(n, 0);
        // A statement SQLite cannot prepare is an error too, and the connection goes on.
        let e = execute_each(
            &mut c,
            "INSERT INTO nowhere VALUES (?1)",
            &[vec![Val::Int(1)]],
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("no such table: nowhere"), "{e}");
        let e = execute_each(&mut c, "SELECT ?1", &[vec![Val::Int(1), Val::Int(2)]])
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("bind"), "one value too many: {e}");
        assert_eq!(
            execute_each(
                &mut c,
                "INSERT INTO t (k, n) VALUES (?1, ?2)",
                &[vec![Val::Text("z"), Val::Int(0)]]
            )
            .await
            .unwrap(),
            1
        );
    }
}

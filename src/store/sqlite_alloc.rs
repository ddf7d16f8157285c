//! SQLite's heap on mimalloc instead of the C library's malloc.
//!
//! SQLite is C and allocates through `malloc` whatever Rust's global allocator is. Profiles
//! of the API and the pipeline show glibc's allocator at 7–13 % of all CPU time there:
//! `malloc_consolidate`, arena locks, and `munmap` of large buffers whose TLB shootdowns
//! interrupt the other core. mimalloc (already the binary's allocator) serves SQLite's
//! allocation pattern without any of these. SQLite's own memory statistics, which take a
//! global mutex on every allocation, are switched off with it.
//!
//! `sqlite3_config` only works before SQLite initialises (the first connection opened in the
//! process); [`install`] runs once, first thing in `Store::connect`. Where SQLite is already
//! initialised (another library opened a connection first), the call is refused and SQLite
//! keeps its default allocator: nothing breaks, it is only slower.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use libsqlite3_sys as ffi;

extern "C" {
    // Part of mimalloc's C API, compiled into the library libmimalloc-sys links (the Rust
    // declaration sits behind a feature that would pull in another crate).
    fn mi_usable_size(p: *const c_void) -> usize;
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    // SAFETY: mi_malloc accepts any size; SQLite never asks for a negative one.
    unsafe { libmimalloc_sys::mi_malloc(n.max(0) as usize) }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    // SAFETY: SQLite frees only what x_malloc / x_realloc returned (or NULL).
    unsafe { libmimalloc_sys::mi_free(p) }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SAFETY: as for x_free; mi_realloc keeps realloc's contract.
    unsafe { libmimalloc_sys::mi_realloc(p, n.max(0) as usize) }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: p came from x_malloc / x_realloc.
    let n = unsafe { mi_usable_size(p) };
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    // 8-byte granules, which is all SQLite's alignment needs (mimalloc aligns to 16).
    n.saturating_add(7) & !7
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

fn methods() -> ffi::sqlite3_mem_methods {
    ffi::sqlite3_mem_methods {
        xMalloc: Some(x_malloc),
        xFree: Some(x_free),
        xRealloc: Some(x_realloc),
        xSize: Some(x_size),
        xRoundup: Some(x_roundup),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        pAppData: std::ptr::null_mut(),
    }
}

static INSTALL: Once = Once::new();
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Points SQLite's allocator at mimalloc, once per process, before any connection opens.
/// Returns whether SQLite took it (false: SQLite was already initialised).
pub(crate) fn install() -> bool {
    INSTALL.call_once(|| {
        // SAFETY: sqlite3_config may be called before sqlite3_initialize; afterwards it
        // returns SQLITE_MISUSE and changes nothing. SQLite copies the methods.
        let m = methods();
        let taken = unsafe {
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_MALLOC,
                &m as *const ffi::sqlite3_mem_methods,
            ) == ffi::SQLITE_OK
        };
        if taken {
            // SAFETY: as above; SQLite is still uninitialised.
            unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) };
        }
        TAKEN.store(taken, Ordering::Release);
    });
    TAKEN.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `install` tells the truth about which allocator SQLite uses (in a test binary another
    /// test may open SQLite first, and then SQLite keeps its own), and SQLite works on it.
    #[test]
    fn sqlite_uses_mimalloc_when_install_says_so_and_still_works() {
        let taken = install();
        let mut current = ffi::sqlite3_mem_methods {
            xMalloc: None,
            xFree: None,
            xRealloc: None,
            xSize: None,
            xRoundup: None,
            xInit: None,
            xShutdown: None,
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: GETMALLOC copies the current methods into `current`.
        let rc = unsafe {
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_GETMALLOC,
                &mut current as *mut ffi::sqlite3_mem_methods,
            )
        };
        if rc == ffi::SQLITE_OK {
            let ours = current.xMalloc.map(|f| f as *const ()) == Some(x_malloc as *const ());
            assert_eq!(ours, taken, "install() said {taken}");
        } else {
            // GETMALLOC is refused once SQLite is initialised, like MALLOC.
            assert_eq!(rc, ffi::SQLITE_MISUSE);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            use sqlx::{Connection, Row};
            let mut c = sqlx::SqliteConnection::connect("sqlite::memory:")
                .await
                .expect("open");
            let r = sqlx::query("SELECT group_concat(value, ',') FROM json_each('[1,2,3]')")
                .fetch_one(&mut c)
                .await
                .expect("query");
            assert_eq!(r.get::<String, _>(0), "1,2,3");
        });
    }
}

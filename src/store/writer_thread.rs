//! The SQLite writer's thread asks the kernel to be run promptly when it wakes.
//!
//! On SQLite every commit goes through one connection, whose statements run on one thread
//! (sqlx's worker). Under a webhook flood that thread is the hub's bottleneck: each group
//! commit waits for it, and on a small machine it shares the cores with the HTTP workers and
//! whatever else runs there. Measured on 2 cores under `bench/ingest.sh`, it spent about a
//! fifth of its busy time runnable but waiting for a core (`/proc/<pid>/task/<tid>/schedstat`).
//!
//! Linux's EEVDF scheduler (6.6 and later) lets a thread ask for a shorter time slice: its
//! virtual deadline comes sooner, so it is picked sooner after waking, while its share of the
//! CPU stays the same (its nice value is unchanged). No privilege is needed. The thread can
//! only be reached from inside SQLite, so the request is a SQL function, `sb_short_slice()`,
//! that the writer connection calls once when it connects: it runs on the worker thread.
//! Elsewhere (another OS, an older kernel that ignores the field) it does nothing.

use std::ffi::c_int;
use std::ptr::NonNull;

use libsqlite3_sys as ffi;

/// The slice asked for: EEVDF's shortest (0.1 ms; the default is 0.7–3 ms).
const SLICE_NS: u64 = 100_000;

/// `sb_short_slice()`: requests the short slice for the calling thread; returns the thread's
/// id on success, or minus the OS error number.
unsafe extern "C" fn short_slice(
    ctx: *mut ffi::sqlite3_context,
    _n: c_int,
    _args: *mut *mut ffi::sqlite3_value,
) {
    let r = request_short_slice();
    // SAFETY: SQLite passes its live context for this call.
    unsafe { ffi::sqlite3_result_int64(ctx, r) };
}

#[cfg(target_os = "linux")]
fn request_short_slice() -> i64 {
    /// `struct sched_attr`, first version (48 bytes; include/uapi/linux/sched/types.h).
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    /// SCHED_FLAG_KEEP_POLICY: the thread keeps its policy (normally SCHED_OTHER).
    const KEEP_POLICY: u64 = 0x08;
    // SAFETY: plain syscalls on the calling thread (0 = self) with a valid, sized struct.
    unsafe {
        // Linux nice values are per thread; keep this one's.
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            flags: KEEP_POLICY,
            nice,
            priority: 0,
            runtime: SLICE_NS,
            deadline: 0,
            period: 0,
        };
        if libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) == 0 {
            libc::syscall(libc::SYS_gettid)
        } else {
            -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(1))
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn request_short_slice() -> i64 {
    -38 // ENOSYS
}

/// Adds `sb_short_slice()` to a connection.
pub(crate) fn register(db: NonNull<ffi::sqlite3>) -> anyhow::Result<()> {
    // SAFETY: `db` is an open connection lent by lock_handle; the function has no user data
    // and no destructor.
    let rc = unsafe {
        ffi::sqlite3_create_function_v2(
            db.as_ptr(),
            c"sb_short_slice".as_ptr(),
            0,
            ffi::SQLITE_UTF8,
            std::ptr::null_mut(),
            Some(short_slice),
            None,
            None,
            None,
        )
    };
    anyhow::ensure!(rc == ffi::SQLITE_OK, "registering sb_short_slice: {rc}");
    Ok(())
}

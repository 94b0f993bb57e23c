//! Crash-point tests of durability: the disk log under torn tails and bit
//! flips (`log_damage`), the hub under random operations with restarts
//! (`hub_restart`), and regression tests of bugs they found (`regressions`).
//! The engine's own property tests live in `queue::engine`.
//!
//! A crash here is the process dying: the log is dropped without `close`,
//! and whatever was written stays in the page cache. So fsync does not change
//! what these tests see, and they keep their data directories in RAM where
//! there is a tmpfs (`/dev/shm`): an fsync there costs nothing, on a disk it
//! costs milliseconds, and these tests make thousands.

mod concurrent_restart;
mod hub_restart;
mod log_damage;
mod records;
mod regressions;
mod sealed;

/// A fresh data directory, in RAM when the machine has `/dev/shm`.
fn crash_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

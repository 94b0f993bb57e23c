//! Where state is kept. The hub talks to a [`Storage`]: it appends
//! [`Record`]s and waits on the returned [`Commit`] where the contract says
//! "answer only once durable". Two backends: [`MemoryStorage`] (nothing is
//! kept; `--memory`) and [`DiskLog`] (a segmented append-only log with group
//! commit, checksums, snapshots and crash recovery).
//!
//! Storage knows records and files, not queue semantics: rebuilding the hub
//! from a record stream is `hub::restore`'s job. Only this module touches the
//! filesystem.
//!
//! Encryption at rest ([`crypt`]) happens at the frame: the log seals
//! records holding user data as it encodes them and opens them as it
//! decodes them, so the hub only ever sees plain [`Record`]s.

pub mod crypt;
mod log;
pub mod record;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::model::{BodyLoc, MessageData};
use std::sync::Arc;

pub use crypt::{KeyId, Keyring, KeyringError};

/// Counters of the durable log since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// `append` calls (each a commit someone waits for).
    pub appends: u64,
    /// Group writes: every append waiting at once goes out in one `write`.
    pub writes: u64,
    pub bytes: u64,
    /// `fdatasync` calls, and the time spent in them.
    pub syncs: u64,
    pub sync_micros: u64,
}
pub use log::{DiskLog, DiskLogConfig, ReplayReport};
pub use record::{CopyRec, Record, StoredRec};

/// Why storage failed. Once a write fails the log refuses further writes:
/// the server answers 503 rather than pretend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O error: {0}")]
    Io(String),
    #[error("storage is closed")]
    Closed,
    #[error("data directory is corrupt: {0}")]
    Corrupt(String),
    #[error("data directory is locked by another pubq process: {0}")]
    Locked(String),
    /// Records on disk that the configured keys cannot read (no key, an
    /// unknown key id, a wrong key): the server refuses to start.
    #[error("encryption at rest: {0}")]
    Encryption(String),
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        StorageError::Io(e.to_string())
    }
}

/// Completes when the records it stands for are durable under the server's
/// fsync policy (at once for memory storage).
#[must_use = "a commit that is not awaited gives no durability"]
pub struct Commit<T = ()> {
    inner: CommitInner<T>,
}

enum CommitInner<T> {
    Ready(Option<Result<T, StorageError>>),
    Pending(oneshot::Receiver<Result<T, StorageError>>),
}

impl<T> Commit<T> {
    pub fn ready(v: T) -> Self {
        Self {
            inner: CommitInner::Ready(Some(Ok(v))),
        }
    }

    pub fn failed(e: StorageError) -> Self {
        Self {
            inner: CommitInner::Ready(Some(Err(e))),
        }
    }

    /// Lets the write complete in the background: for records whose loss in
    /// a crash is harmless (the state they record is re-derived).
    pub fn detach(self) {}

    pub(crate) fn pending(rx: oneshot::Receiver<Result<T, StorageError>>) -> Self {
        Self {
            inner: CommitInner::Pending(rx),
        }
    }
}

impl<T: Unpin> Future for Commit<T> {
    type Output = Result<T, StorageError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            CommitInner::Ready(v) => Poll::Ready(v.take().unwrap_or(Err(StorageError::Closed))),
            CommitInner::Pending(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(StorageError::Closed))),
        }
    }
}

/// The storage trait: an ordered, durable record stream.
pub trait Storage: Send + Sync + 'static {
    /// Whether anything is kept (false for `--memory`; the hub then skips
    /// building records at all).
    fn is_durable(&self) -> bool;

    /// Appends records in order; the commit completes once they are durable.
    fn append(&self, records: Vec<Record>) -> Commit;

    /// [`append`](Self::append) with `n` commits for the same records, one
    /// for each party that waits on them (a publish and the consumers its
    /// messages were handed to at once).
    fn append_shared(&self, records: Vec<Record>, n: usize) -> Vec<Commit> {
        let first = self.append(records);
        if n <= 1 {
            return vec![first];
        }
        let (txs, commits): (Vec<_>, Vec<_>) = (0..n)
            .map(|_| {
                let (tx, rx) = oneshot::channel();
                (tx, Commit::pending(rx))
            })
            .unzip();
        tokio::spawn(async move {
            let r = first.await;
            for tx in txs {
                let _ = tx.send(r.clone());
            }
        });
        commits
    }

    /// What the log has done since the server started (`None` when nothing
    /// is kept): for `/metrics`.
    fn stats(&self) -> Option<LogStats> {
        None
    }

    /// Whether enough has been written since the last snapshot that one is
    /// worth taking.
    fn checkpoint_due(&self) -> bool {
        false
    }

    /// Closes the current segment and starts a new one; answers the new
    /// segment's id. Everything appended before is in older segments.
    fn rotate(&self) -> Commit<u64> {
        Commit::ready(0)
    }

    /// Starts a snapshot of the state as of the start of segment `base`.
    /// Records are streamed into the sink (a deep backlog never sits in
    /// memory as records); `finish` makes it durable and deletes what it
    /// covers. Blocking.
    fn begin_snapshot(&self, base: u64) -> Result<Box<dyn SnapshotSink + '_>, StorageError> {
        let _ = base;
        Ok(Box::new(DiscardSnapshot))
    }

    /// A whole snapshot at once (tests and small states).
    fn write_snapshot(&self, base: u64, records: Vec<Record>) -> Result<(), StorageError> {
        let mut sink = self.begin_snapshot(base)?;
        for r in &records {
            sink.write(r)?;
        }
        sink.finish(&BTreeSet::new())
    }

    /// Feeds every stored record, snapshot first, to `f`, with the location
    /// of records read from log segments (a `Publish` there can be read
    /// back with [`read`](Self::read)). Blocking; called once at start-up.
    fn replay(
        &self,
        f: &mut dyn FnMut(Record, Option<BodyLoc>),
    ) -> Result<ReplayReport, StorageError> {
        let _ = f;
        Ok(ReplayReport::default())
    }

    /// Reads back the message of the `Publish` record at `loc`. Blocking
    /// (one positioned read, usually from the page cache).
    fn read(&self, loc: BodyLoc) -> Result<Arc<MessageData>, StorageError> {
        Err(StorageError::Io(format!(
            "this storage keeps no messages (asked for {loc:?})"
        )))
    }

    /// The key receipts are signed with, kept so receipts survive restarts.
    fn receipt_key(&self) -> Option<[u8; 32]> {
        None
    }

    /// Flushes and stops the writer (at shutdown). Blocking.
    fn close(&self) {}
}

/// Receives a snapshot's records in order. See [`Storage::begin_snapshot`].
pub trait SnapshotSink {
    fn write(&mut self, r: &Record) -> Result<(), StorageError>;

    /// Makes the snapshot durable, then deletes the older snapshot and the
    /// segments below its base, except those in `keep` (segments holding
    /// messages the snapshot refers to with `Stored` records).
    fn finish(self: Box<Self>, keep: &BTreeSet<u64>) -> Result<(), StorageError>;
}

struct DiscardSnapshot;

impl SnapshotSink for DiscardSnapshot {
    fn write(&mut self, _r: &Record) -> Result<(), StorageError> {
        Ok(())
    }

    fn finish(self: Box<Self>, _keep: &BTreeSet<u64>) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Keeps nothing: `--memory`.
#[derive(Debug, Default)]
pub struct MemoryStorage;

impl Storage for MemoryStorage {
    fn is_durable(&self) -> bool {
        false
    }

    fn append(&self, _records: Vec<Record>) -> Commit {
        Commit::ready(())
    }

    fn append_shared(&self, _records: Vec<Record>, n: usize) -> Vec<Commit> {
        (0..n.max(1)).map(|_| Commit::ready(())).collect()
    }
}

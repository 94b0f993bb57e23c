//! [`DiskLog`]: a segmented append-only log with one writer thread and group
//! commit, plus snapshots that bound recovery time and disk use.
//!
//! Layout of the data directory:
//! - `LOCK`: held (flock) while a server uses the directory.
//! - `receipt.key`: the receipt signing key, so receipts survive restarts.
//! - `log/<id:016x>.seg`: segments; header (magic, version, id) then frames.
//! - `snap-<base:016x>.snap`: the state as of the start of segment `base`;
//!   once it is durable, segments below `base` are deleted unless the
//!   snapshot refers to messages in them (`Stored` records: a backlog's
//!   bodies stay where they were first written, never copied per snapshot).
//!
//! Messages are read back by location (segment, offset of their `Publish`
//! frame) with one positioned read: memory holds an index, not bodies.
//!
//! With a keyring (`DiskLogConfig::encryption`), the writer and snapshots
//! seal records holding user data, and every read opens them. A frame that
//! is intact (checksum right) but cannot be opened, because no key is
//! configured, its key id is unknown or the key is wrong, stops the start
//! with [`StorageError::Encryption`]: it is never cut off as a torn tail.
//!
//! The writer drains every append waiting in its channel, writes them with one
//! `write`, calls `fdatasync` once (policy `always`), then answers them all:
//! many concurrent writers share one sync. Written vs flushed: an append is
//! answered only after its bytes are flushed per policy.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::sync::oneshot;

use super::crypt::Keyring;
use super::record::{self, DecodeError, Record};
use super::{Commit, SnapshotSink, Storage, StorageError};
use crate::config::FsyncPolicy;
use crate::model::{BodyLoc, MessageData};

const SEGMENT_MAGIC: &[u8; 8] = b"PUBQLOG\0";
const SNAPSHOT_MAGIC: &[u8; 8] = b"PUBQSNP\0";
const FORMAT_VERSION: u32 = 1;
const FILE_HEADER: usize = 8 + 4 + 8;
/// Appends waiting for the writer before senders block (backpressure).
const CHANNEL_BOUND: usize = 16_384;
/// Most bytes gathered into one write.
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// Settings of the disk log.
#[derive(Debug, Clone)]
pub struct DiskLogConfig {
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    /// A segment is closed past this size.
    pub segment_bytes: u64,
    /// A snapshot is due once this much (and at least twice the last
    /// snapshot's size) was written since the last one.
    pub checkpoint_min_bytes: u64,
    /// Encryption at rest: records holding user data are sealed with the
    /// active key; older keys read what they sealed. `None`: written in
    /// clear, and sealed records on disk stop the start.
    pub encryption: Option<Arc<Keyring>>,
}

impl DiskLogConfig {
    pub fn new(dir: PathBuf, fsync: FsyncPolicy, fsync_interval: Duration) -> Self {
        Self {
            dir,
            fsync,
            fsync_interval,
            segment_bytes: 64 * 1024 * 1024,
            checkpoint_min_bytes: 64 * 1024 * 1024,
            encryption: None,
        }
    }

    fn keys(&self) -> Option<&Keyring> {
        self.encryption.as_deref()
    }
}

/// What start-up found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub snapshot_records: u64,
    pub log_records: u64,
    pub segments: u64,
    pub bytes: u64,
    /// Bytes cut off a torn or corrupt tail (0 after a clean shutdown).
    pub truncated_bytes: u64,
    /// Segments dropped because an earlier one was corrupt.
    pub dropped_segments: u64,
}

enum Cmd {
    /// Records, and everyone to tell once they are durable.
    Append(Vec<Record>, Vec<oneshot::Sender<Result<(), StorageError>>>),
    Rotate(oneshot::Sender<Result<u64, StorageError>>),
    Close(oneshot::Sender<Result<(), StorageError>>),
}

/// The on-disk log. See the module comment.
pub struct DiskLog {
    cfg: DiskLogConfig,
    tx: Mutex<Option<SyncSender<Cmd>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    since_snapshot: Arc<AtomicU64>,
    last_snapshot_bytes: AtomicU64,
    failed: Arc<AtomicBool>,
    key: [u8; 32],
    report: ReplayReport,
    /// Open segments for reading messages back.
    readers: Mutex<HashMap<u64, Arc<File>>>,
    counters: Arc<Counters>,
    /// Held for the life of the log: one server per directory.
    _lock: File,
}

impl std::fmt::Debug for DiskLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskLog")
            .field("dir", &self.cfg.dir)
            .finish()
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join("log").join(format!("{id:016x}.seg"))
}

fn snapshot_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("snap-{base:016x}.snap"))
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn file_header(magic: &[u8; 8], id: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(FILE_HEADER);
    h.extend_from_slice(magic);
    h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    h.extend_from_slice(&id.to_le_bytes());
    h
}

/// Checks a file header; `Err` names what is wrong.
fn check_header(buf: &[u8], magic: &[u8; 8], id: u64) -> Result<(), String> {
    if buf.len() < FILE_HEADER {
        return Err("file shorter than its header".into());
    }
    if &buf[..8] != magic {
        return Err("bad magic number".into());
    }
    let version = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, expected {FORMAT_VERSION}"
        ));
    }
    let mut idb = [0u8; 8];
    idb.copy_from_slice(&buf[12..20]);
    if u64::from_le_bytes(idb) != id {
        return Err("file id does not match its name".into());
    }
    Ok(())
}

/// Ids of files in `dir` named `<prefix><hex><suffix>`, sorted.
fn list_ids(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<u64>, StorageError> {
    let mut ids = Vec::new();
    if !dir.exists() {
        return Ok(ids);
    }
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(hex) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(suffix))
        {
            if let Ok(id) = u64::from_str_radix(hex, 16) {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// A segment's bytes up to its first hole (the never-written part of its
/// preallocation, which reads as zeros), and its full length. Where the
/// filesystem cannot tell holes, the whole file.
fn read_segment(p: &Path) -> Result<(Vec<u8>, u64), StorageError> {
    use std::os::fd::AsRawFd;
    let f = File::open(p)?;
    let len = f.metadata()?.len();
    // SAFETY: lseek on a file descriptor this function owns and keeps open;
    // it only moves the file offset, and the read below seeks back first.
    let hole = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_HOLE) };
    let data = u64::try_from(hole).map_or(len, |h| h.min(len));
    let mut f = f;
    f.seek(std::io::SeekFrom::Start(0))?;
    let mut buf = Vec::with_capacity(usize::try_from(data).unwrap_or(0));
    (&mut f).take(data).read_to_end(&mut buf)?;
    Ok((buf, len))
}

/// Decodes the frames of a file body, with each frame's offset; returns how
/// many bytes were valid (the scan stops at the first torn or corrupt
/// frame). An intact frame the keys cannot open is `Err` with its offset:
/// that is not damage, and nothing may be cut for it.
fn scan_frames(
    buf: &[u8],
    keys: Option<&Keyring>,
    mut f: impl FnMut(Record, u64),
) -> Result<usize, (usize, DecodeError)> {
    let mut off = FILE_HEADER;
    while off < buf.len() {
        match record::decode_with(&buf[off..], keys) {
            Ok((rec, used)) => {
                f(rec, off as u64);
                off += used;
            }
            Err(e) if e.is_key_problem() => return Err((off, e)),
            Err(_) => break,
        }
    }
    Ok(off)
}

/// A small record the log tests append.
#[cfg(test)]
fn qput(uid: u64) -> Record {
    Record::QueuePut {
        name: crate::model::QueueName::new(&format!("q{uid}")).expect("valid"),
        uid,
        settings: crate::model::QueueSettings::default(),
        temporary: false,
    }
}

/// Where a segment's frames end (tests write damage there: past it the
/// newest segment holds only its preallocated zeros).
#[cfg(test)]
fn data_end(p: &Path, keys: Option<&Keyring>) -> usize {
    let (buf, _) = read_segment(p).expect("read segment");
    scan_frames(&buf, keys, |_, _| {}).unwrap_or(FILE_HEADER)
}

/// Writes `bytes` where a segment's frames end, as a torn write would.
#[cfg(test)]
fn write_at_data_end(p: &Path, keys: Option<&Keyring>, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let at = data_end(p, keys);
    let f = OpenOptions::new()
        .write(true)
        .open(p)
        .expect("open segment");
    f.write_all_at(bytes, at as u64).expect("write");
}

/// The error that stops the start for an intact record the keys cannot
/// open; `at` says where it is. Names key ids, never keys.
fn key_error(at: &str, e: &DecodeError, keys: Option<&Keyring>) -> StorageError {
    let msg = match (e, keys) {
        (DecodeError::UnknownKey(id), None) => format!(
            "the data directory holds records encrypted with key id {id} ({at}), but no \
             encryption key is configured: pass --encryption-key-file or PUBQ_ENCRYPTION_KEY \
             (see docs/security.md)"
        ),
        (DecodeError::UnknownKey(id), Some(k)) => format!(
            "the data directory was written with encryption key id {id} ({at}), which is not \
             configured (configured: {}): list it under [[storage.encryption.keys]] in pubq.toml \
             (see docs/security.md)",
            k.ids().map(|i| i.as_str()).collect::<Vec<_>>().join(", ")
        ),
        (DecodeError::WrongKey(id), _) => format!(
            "cannot decrypt the record at {at} with key id {id}: wrong key? The record is intact \
             (its checksum matches), so this is not a torn write: configure the key it was \
             written with under id {id} (or the record was altered on purpose)"
        ),
        (other, _) => format!("{at}: {other}"),
    };
    StorageError::Encryption(msg)
}

/// Reads one frame (header and payload) from `r` into `frame`; `Ok(false)`
/// at a clean end of file. Checks length and checksum, not the contents.
fn read_frame(r: &mut impl Read, frame: &mut Vec<u8>) -> Result<bool, String> {
    frame.clear();
    frame.resize(record::FRAME_HEADER, 0);
    let mut got = 0;
    while got < record::FRAME_HEADER {
        match r.read(&mut frame[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err("truncated frame header".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
    if len == 0 || len > record::MAX_FRAME {
        return Err(format!("frame length {len} out of range"));
    }
    frame.resize(record::FRAME_HEADER + len, 0);
    r.read_exact(&mut frame[record::FRAME_HEADER..])
        .map_err(|e| format!("truncated frame: {e}"))?;
    if crc32c::crc32c(&frame[record::FRAME_HEADER..]) != crc {
        return Err("frame checksum mismatch".into());
    }
    Ok(true)
}

/// Streams a snapshot file's records to `f` (without the final
/// `SnapshotEnd`), after checking in a first pass that every frame is intact
/// and the end marker counts them: a damaged snapshot feeds nothing.
/// Streams, so a snapshot of a deep backlog never sits in memory whole.
fn replay_snapshot(
    p: &Path,
    base: u64,
    keys: Option<&Keyring>,
    f: &mut dyn FnMut(Record),
) -> Result<u64, StorageError> {
    let corrupt = |why: String| StorageError::Corrupt(format!("{}: {why}", p.display()));
    let open = || -> Result<BufReader<File>, StorageError> {
        let mut r = BufReader::with_capacity(1 << 20, File::open(p)?);
        let mut h = [0u8; FILE_HEADER];
        r.read_exact(&mut h).map_err(|e| corrupt(e.to_string()))?;
        check_header(&h, SNAPSHOT_MAGIC, base).map_err(corrupt)?;
        Ok(r)
    };
    let mut frame = Vec::new();
    let mut r = open()?;
    let mut count = 0u64;
    let mut end = None;
    while read_frame(&mut r, &mut frame).map_err(corrupt)? {
        count += 1;
        // Keyless: only the end marker matters here, and it is never sealed
        // (sealed frames are not decrypted twice).
        end = match record::decode(&frame) {
            Ok((Record::SnapshotEnd { records }, _)) => Some((count, records)),
            _ => None,
        };
    }
    match end {
        Some((at, records)) if at == count && records + 1 == count => {}
        _ => return Err(corrupt("snapshot is incomplete".into())),
    }
    let mut r = open()?;
    let mut n = 0u64;
    while n + 1 < count && read_frame(&mut r, &mut frame).map_err(corrupt)? {
        let (rec, _) = record::decode_with(&frame, keys).map_err(|e| {
            if e.is_key_problem() {
                key_error(&format!("{}, record {}", p.display(), n + 1), &e, keys)
            } else {
                corrupt(e.to_string())
            }
        })?;
        f(rec);
        n += 1;
    }
    Ok(n)
}

impl DiskLog {
    /// Opens (or creates) a data directory: takes its lock, loads or makes the
    /// receipt key, cuts any torn tail, and starts the writer on a new segment.
    pub fn open(cfg: DiskLogConfig) -> Result<Self, StorageError> {
        fs::create_dir_all(cfg.dir.join("log"))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(cfg.dir.join("LOCK"))?;
        lock.try_lock()
            .map_err(|e| StorageError::Locked(format!("{}: {e}", cfg.dir.display())))?;
        let key = load_or_create_key(&cfg.dir)?;
        for tmp in list_ids(&cfg.dir, "snap-", ".tmp")? {
            let _ = fs::remove_file(cfg.dir.join(format!("snap-{tmp:016x}.tmp")));
        }
        let snapshot_base = list_ids(&cfg.dir, "snap-", ".snap")?.last().copied();
        let report = repair_segments(&cfg.dir, snapshot_base.unwrap_or(0), cfg.keys())?;
        // Segment ids never go below the newest snapshot's base, even when
        // repair removed every segment (empty ones are removed): replay skips
        // segments below the base.
        let next_id = list_ids(&cfg.dir.join("log"), "", ".seg")?
            .last()
            .map_or(1, |l| l + 1)
            .max(snapshot_base.unwrap_or(1));
        let since_snapshot = Arc::new(AtomicU64::new(report.bytes));
        let last_snapshot = list_ids(&cfg.dir, "snap-", ".snap")?
            .last()
            .and_then(|b| fs::metadata(snapshot_path(&cfg.dir, *b)).ok())
            .map_or(0, |m| m.len());
        let failed = Arc::new(AtomicBool::new(false));
        let seg = Segment::create(&cfg.dir, next_id, cfg.segment_bytes)?;
        let (tx, rx) = mpsc::sync_channel(CHANNEL_BOUND);
        let counters = Arc::new(Counters::default());
        let writer = {
            let cfg = cfg.clone();
            let since = since_snapshot.clone();
            let failed = failed.clone();
            let counters = counters.clone();
            std::thread::Builder::new()
                .name("pubq-log-writer".into())
                .spawn(move || writer_loop(rx, seg, cfg, since, failed, &counters))?
        };
        Ok(Self {
            cfg,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            since_snapshot,
            last_snapshot_bytes: AtomicU64::new(last_snapshot),
            failed,
            key,
            report,
            readers: Mutex::new(HashMap::new()),
            counters,
            _lock: lock,
        })
    }

    fn send(&self, cmd: Cmd) -> Result<(), StorageError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StorageError::Io(
                "an earlier write failed; the log accepts no more writes".into(),
            ));
        }
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(StorageError::Closed)?;
        tx.send(cmd).map_err(|_| StorageError::Closed)
    }
}

fn load_or_create_key(dir: &Path) -> Result<[u8; 32], StorageError> {
    let p = dir.join("receipt.key");
    if let Ok(bytes) = fs::read(&p) {
        return bytes
            .as_slice()
            .try_into()
            .map_err(|_| StorageError::Corrupt(format!("{} is not a 32-byte key", p.display())));
    }
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    let tmp = dir.join("receipt.key.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&key)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &p)?;
    sync_dir(dir)?;
    Ok(key)
}

/// Verifies every segment from `base` (the newest snapshot's) on; cuts a torn
/// or corrupt tail and drops anything after it, so nothing past a bad record
/// is ever served. Segments below `base` (left by a crash before the snapshot
/// could delete them) are never replayed, so they are left alone.
fn repair_segments(
    dir: &Path,
    base: u64,
    keys: Option<&Keyring>,
) -> Result<ReplayReport, StorageError> {
    let logdir = dir.join("log");
    let mut report = ReplayReport::default();
    let ids = list_ids(&logdir, "", ".seg")?;
    let last = ids.last().copied();
    let mut cut = false;
    for id in ids.into_iter().filter(|id| *id >= base) {
        let p = segment_path(dir, id);
        if cut {
            fs::remove_file(&p)?;
            report.dropped_segments += 1;
            tracing::error!(segment = %p.display(), "dropped: follows a corrupt segment");
            continue;
        }
        let (buf, file_len) = read_segment(&p)?;
        if let Err(why) = check_header(&buf, SEGMENT_MAGIC, id) {
            tracing::error!(segment = %p.display(), %why, "segment header invalid; cut");
            fs::remove_file(&p)?;
            report.truncated_bytes += buf.len() as u64;
            cut = true;
            continue;
        }
        let valid = scan_frames(&buf, keys, |_, _| report.log_records += 1)
            .map_err(|(off, e)| key_error(&format!("{} at offset {off}", p.display()), &e, keys))?;
        // The newest segment may end in the zeros it was preallocated with
        // (a crash before it was sealed): they are not damage, and a torn
        // write there is what precedes them.
        let end = if Some(id) == last {
            buf.iter()
                .rposition(|b| *b != 0)
                .map_or(0, |i| i + 1)
                .max(valid)
        } else {
            buf.len()
        };
        if valid == FILE_HEADER && end == FILE_HEADER {
            // Started and never written to (each start opens a new segment).
            fs::remove_file(&p)?;
            continue;
        }
        report.segments += 1;
        report.bytes += valid as u64;
        if valid == end && (valid as u64) < file_len {
            let f = OpenOptions::new().write(true).open(&p)?;
            f.set_len(valid as u64)?;
            f.sync_all()?;
            tracing::info!(segment = %p.display(), offset = valid,
                "preallocated tail of the newest segment trimmed");
        } else if valid < end {
            let lost = end - valid;
            tracing::warn!(segment = %p.display(), offset = valid, bytes = lost,
                "torn or corrupt tail cut off");
            let f = OpenOptions::new().write(true).open(&p)?;
            f.set_len(valid as u64)?;
            f.sync_all()?;
            report.truncated_bytes += lost as u64;
            cut = true;
        }
    }
    sync_dir(&logdir)?;
    Ok(report)
}

struct Segment {
    file: File,
    id: u64,
    len: u64,
}

impl Segment {
    /// A new segment, its size set to `prealloc` up front (sparse: no data
    /// is written). Writes then land inside the file instead of growing it,
    /// so a sync does not also have to commit a new file size: 0.82-0.88x
    /// the publish-to-delivery latency at 2,000 msg/s (docs/performance.md).
    /// The zero tail is trimmed when the segment is sealed, and by recovery
    /// after a crash.
    fn create(dir: &Path, id: u64, prealloc: u64) -> Result<Self, StorageError> {
        let p = segment_path(dir, id);
        let mut file = OpenOptions::new().create_new(true).write(true).open(&p)?;
        let h = file_header(SEGMENT_MAGIC, id);
        file.write_all(&h)?;
        if prealloc > h.len() as u64 {
            // The write position stays right after the header.
            file.set_len(prealloc)?;
        }
        file.sync_all()?;
        sync_dir(&dir.join("log"))?;
        Ok(Self {
            file,
            id,
            len: h.len() as u64,
        })
    }

    /// Makes what was written durable and cuts the preallocated tail, so a
    /// closed segment ends at its last frame. Before the next segment is
    /// created: only the newest segment can have a zero tail.
    fn seal(&self) -> Result<(), StorageError> {
        self.file.sync_data()?;
        self.file.set_len(self.len)?;
        self.file.sync_all()?;
        Ok(())
    }

    /// Seals this segment and starts the next one.
    fn next(&self, cfg: &DiskLogConfig) -> Result<Self, StorageError> {
        self.seal()?;
        Self::create(&cfg.dir, self.id + 1, cfg.segment_bytes)
    }
}

/// What the writer has done, read by [`Storage::stats`].
#[derive(Debug, Default)]
struct Counters {
    appends: AtomicU64,
    writes: AtomicU64,
    bytes: AtomicU64,
    syncs: AtomicU64,
    sync_micros: AtomicU64,
}

fn writer_loop(
    rx: Receiver<Cmd>,
    mut seg: Segment,
    cfg: DiskLogConfig,
    since_snapshot: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
    counters: &Counters,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    // Messages in `buf` and where they land; told once written.
    let mut placed: Vec<(Arc<MessageData>, BodyLoc)> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<Result<(), StorageError>>> = Vec::new();
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let first = match cfg.fsync {
            FsyncPolicy::Interval if unsynced => {
                let left = cfg.fsync_interval.saturating_sub(last_sync.elapsed());
                match rx.recv_timeout(left) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            _ => match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => break,
            },
        };
        let mut cmds: Vec<Cmd> = first.into_iter().collect();
        let mut budget = 0usize;
        while budget < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(c) => {
                    if let Cmd::Append(r, _) = &c {
                        budget += r.len() * 512;
                    }
                    cmds.push(c);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let mut close: Option<oneshot::Sender<Result<(), StorageError>>> = None;
        let mut result: Result<(), StorageError> = Ok(());
        for c in cmds {
            match c {
                Cmd::Append(records, txs) => {
                    let start = buf.len();
                    let placed_start = placed.len();
                    let mut too_large = false;
                    for r in &records {
                        let before = buf.len();
                        if let Record::Publish { message, .. } = r {
                            if message.loc.get().is_none() {
                                if let Some(loc) = BodyLoc::new(seg.id, seg.len + before as u64) {
                                    placed.push((message.clone(), loc));
                                }
                            }
                        }
                        record::encode_with(r, &mut buf, cfg.keys());
                        too_large |= buf.len() - before > record::MAX_FRAME + record::FRAME_HEADER;
                    }
                    if too_large {
                        // Never write a frame recovery would refuse (it would
                        // cut the log there): refuse this append alone.
                        buf.truncate(start);
                        placed.truncate(placed_start);
                        for tx in txs {
                            let _ = tx.send(Err(StorageError::Io(
                                "a record is larger than the log's frame limit".into(),
                            )));
                        }
                        continue;
                    }
                    counters
                        .appends
                        .fetch_add(txs.len() as u64, Ordering::Relaxed);
                    waiters.extend(txs);
                }
                Cmd::Rotate(tx) => {
                    let r = flush(&mut seg, &mut buf, &mut placed, &since_snapshot)
                        .and_then(|()| seg.next(&cfg));
                    match r {
                        Ok(next) => {
                            seg = next;
                            unsynced = false;
                            let _ = tx.send(Ok(seg.id));
                        }
                        Err(e) => {
                            result = Err(e.clone());
                            let _ = tx.send(Err(e));
                        }
                    }
                }
                Cmd::Close(tx) => close = Some(tx),
            }
        }
        if result.is_ok() {
            let before = seg.len;
            result = flush(&mut seg, &mut buf, &mut placed, &since_snapshot);
            if seg.len > before {
                counters.writes.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes
                    .fetch_add(seg.len - before, Ordering::Relaxed);
            }
        }
        if result.is_ok() && !waiters.is_empty() {
            unsynced = true;
        }
        let sync_now = match cfg.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval => last_sync.elapsed() >= cfg.fsync_interval,
            FsyncPolicy::Never => false,
        } || close.is_some();
        if result.is_ok() && unsynced && sync_now {
            let started = Instant::now();
            result = seg.file.sync_data().map_err(StorageError::from);
            last_sync = Instant::now();
            unsynced = false;
            counters.syncs.fetch_add(1, Ordering::Relaxed);
            let took =
                u64::try_from(last_sync.duration_since(started).as_micros()).unwrap_or(u64::MAX);
            counters.sync_micros.fetch_add(took, Ordering::Relaxed);
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "log write failed; refusing further writes");
            failed.store(true, Ordering::Release);
        }
        for w in waiters.drain(..) {
            let _ = w.send(result.clone());
        }
        if result.is_ok() && seg.len >= cfg.segment_bytes {
            match seg.next(&cfg) {
                Ok(next) => {
                    seg = next;
                    unsynced = false;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a new segment");
                    failed.store(true, Ordering::Release);
                }
            }
        }
        if let Some(tx) = close {
            if result.is_ok() {
                result = seg.seal();
            }
            let _ = tx.send(result);
            break;
        }
    }
}

/// Writes `buf` to the segment; then the messages in it learn where they are
/// (readable from now on, durable once synced).
fn flush(
    seg: &mut Segment,
    buf: &mut Vec<u8>,
    placed: &mut Vec<(Arc<MessageData>, BodyLoc)>,
    since: &AtomicU64,
) -> Result<(), StorageError> {
    if buf.is_empty() {
        placed.clear();
        return Ok(());
    }
    let r = seg.file.write_all(buf);
    let n = buf.len() as u64;
    buf.clear();
    if r.is_ok() {
        for (m, loc) in placed.drain(..) {
            if m.loc.get().is_none() {
                m.loc.set(loc);
            }
        }
    }
    placed.clear();
    r?;
    seg.len += n;
    since.fetch_add(n, Ordering::Relaxed);
    Ok(())
}

impl Storage for DiskLog {
    fn is_durable(&self) -> bool {
        true
    }

    fn stats(&self) -> Option<super::LogStats> {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Some(super::LogStats {
            appends: get(&c.appends),
            writes: get(&c.writes),
            bytes: get(&c.bytes),
            syncs: get(&c.syncs),
            sync_micros: get(&c.sync_micros),
        })
    }

    fn append(&self, records: Vec<Record>) -> Commit {
        self.append_shared(records, 1)
            .pop()
            .unwrap_or_else(|| Commit::failed(StorageError::Closed))
    }

    fn append_shared(&self, records: Vec<Record>, n: usize) -> Vec<Commit> {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n.max(1)).map(|_| oneshot::channel()).unzip();
        match self.send(Cmd::Append(records, txs)) {
            Ok(()) => rxs.into_iter().map(Commit::pending).collect(),
            Err(e) => rxs.iter().map(|_| Commit::failed(e.clone())).collect(),
        }
    }

    fn checkpoint_due(&self) -> bool {
        let since = self.since_snapshot.load(Ordering::Relaxed);
        let last = self.last_snapshot_bytes.load(Ordering::Relaxed);
        since >= self.cfg.checkpoint_min_bytes.max(last.saturating_mul(2))
    }

    fn rotate(&self) -> Commit<u64> {
        let (tx, rx) = oneshot::channel();
        match self.send(Cmd::Rotate(tx)) {
            Ok(()) => Commit::pending(rx),
            Err(e) => Commit::failed(e),
        }
    }

    fn begin_snapshot(&self, base: u64) -> Result<Box<dyn SnapshotSink + '_>, StorageError> {
        let tmp = self.cfg.dir.join(format!("snap-{base:016x}.tmp"));
        let file = File::create(&tmp)?;
        Ok(Box::new(DiskSnapshot {
            log: self,
            base,
            tmp,
            file,
            buf: file_header(SNAPSHOT_MAGIC, base),
            records: 0,
        }))
    }

    fn replay(
        &self,
        f: &mut dyn FnMut(Record, Option<BodyLoc>),
    ) -> Result<ReplayReport, StorageError> {
        let dir = &self.cfg.dir;
        let mut report = self.report.clone();
        report.log_records = 0;
        let keys = self.cfg.keys();
        // Per segment below the base, one message the snapshot keeps there.
        let mut held: BTreeMap<u64, BodyLoc> = BTreeMap::new();
        let base = match list_ids(dir, "snap-", ".snap")?.last() {
            None => 0,
            Some(&base) => {
                let p = snapshot_path(dir, base);
                report.snapshot_records = replay_snapshot(&p, base, keys, &mut |r| {
                    if let Record::Stored(s) = &r {
                        if s.loc.segment() < base {
                            held.entry(s.loc.segment()).or_insert(s.loc);
                        }
                    }
                    f(r, None)
                })?;
                base
            }
        };
        // Segments below the base are never scanned: their messages are read
        // one by one when delivered. Each segment was written by one run of
        // the server, under one key (or none), so reading one message of
        // each now stops a start whose keys cannot read them, rather than
        // a receive later.
        for loc in held.values() {
            if let Err(e @ StorageError::Encryption(_)) = self.read(*loc) {
                return Err(e);
            }
        }
        for id in list_ids(&dir.join("log"), "", ".seg")? {
            if id < base {
                continue;
            }
            let p = segment_path(dir, id);
            let (buf, _) = read_segment(&p)?;
            if check_header(&buf, SEGMENT_MAGIC, id).is_err() {
                continue;
            }
            scan_frames(&buf, keys, |r, off| {
                report.log_records += 1;
                f(r, BodyLoc::new(id, off));
            })
            .map_err(|(off, e)| key_error(&format!("{} at offset {off}", p.display()), &e, keys))?;
        }
        Ok(report)
    }

    fn read(&self, loc: BodyLoc) -> Result<Arc<MessageData>, StorageError> {
        let id = loc.segment();
        let file = {
            let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            match readers.get(&id) {
                Some(f) => f.clone(),
                None => {
                    let f =
                        Arc::new(File::open(segment_path(&self.cfg.dir, id)).map_err(|e| {
                            StorageError::Io(format!("segment {id} for {loc:?}: {e}"))
                        })?);
                    readers.insert(id, f.clone());
                    f
                }
            }
        };
        // Most frames fit the first read; a larger one takes a second.
        let mut frame = vec![0u8; 1024];
        let n = read_at_most(&file, &mut frame, loc.offset())?;
        frame.truncate(n);
        if n < record::FRAME_HEADER {
            return Err(StorageError::Corrupt(format!("no record at {loc:?}")));
        }
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let want = record::FRAME_HEADER + len.min(record::MAX_FRAME);
        if n < want {
            frame.resize(want, 0);
            file.read_exact_at(&mut frame[n..], loc.offset() + n as u64)?;
        }
        match record::decode_with(&frame[..want], self.cfg.keys()) {
            Ok((Record::Publish { message, .. }, _)) => {
                if message.loc.get().is_none() {
                    message.loc.set(loc);
                }
                Ok(message)
            }
            Ok(_) => Err(StorageError::Corrupt(format!(
                "record at {loc:?} is not a message"
            ))),
            Err(e) if e.is_key_problem() => Err(key_error(
                &format!(
                    "{} at offset {}",
                    segment_path(&self.cfg.dir, id).display(),
                    loc.offset()
                ),
                &e,
                self.cfg.keys(),
            )),
            Err(e) => Err(StorageError::Corrupt(format!("record at {loc:?}: {e}"))),
        }
    }

    fn receipt_key(&self) -> Option<[u8; 32]> {
        Some(self.key)
    }

    fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Cmd::Close(tx)).is_ok() {
            let _ = rx.blocking_recv();
        }
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }
}

/// Reads into `buf` from `offset` until it is full or the file ends.
fn read_at_most(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A snapshot being written: frames go to `snap-<base>.tmp`, renamed into
/// place by `finish` once synced.
struct DiskSnapshot<'a> {
    log: &'a DiskLog,
    base: u64,
    tmp: PathBuf,
    file: File,
    buf: Vec<u8>,
    records: u64,
}

impl SnapshotSink for DiskSnapshot<'_> {
    fn write(&mut self, r: &Record) -> Result<(), StorageError> {
        record::encode_with(r, &mut self.buf, self.log.cfg.keys());
        self.records += 1;
        if self.buf.len() >= 4 << 20 {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, keep: &BTreeSet<u64>) -> Result<(), StorageError> {
        let log = self.log;
        let dir = &log.cfg.dir;
        let base = self.base;
        let n = self.records;
        record::encode(&Record::SnapshotEnd { records: n }, &mut self.buf);
        self.file.write_all(&self.buf)?;
        self.file.sync_all()?;
        let size = self.file.metadata()?.len();
        fs::rename(&self.tmp, snapshot_path(dir, base))?;
        sync_dir(dir)?;
        // The snapshot is durable: what it covers can go, except segments
        // still holding messages it refers to.
        for old in list_ids(dir, "snap-", ".snap")? {
            if old < base {
                fs::remove_file(snapshot_path(dir, old))?;
            }
        }
        let mut kept = 0u64;
        let mut held = 0u64;
        for id in list_ids(&dir.join("log"), "", ".seg")? {
            if id >= base {
                // The segment being written is preallocated: count what is
                // in it (its allocated blocks), not its size.
                kept += fs::metadata(segment_path(dir, id)).map_or(0, |m| {
                    use std::os::unix::fs::MetadataExt;
                    m.len().min(m.blocks() * 512)
                });
            } else if keep.contains(&id) {
                held += fs::metadata(segment_path(dir, id)).map_or(0, |m| m.len());
            } else {
                fs::remove_file(segment_path(dir, id))?;
                log.readers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            }
        }
        sync_dir(&dir.join("log"))?;
        sync_dir(dir)?;
        log.last_snapshot_bytes.store(size, Ordering::Relaxed);
        log.since_snapshot.store(kept, Ordering::Relaxed);
        tracing::info!(
            base,
            records = n,
            bytes = size,
            held_segments = keep.len(),
            held_bytes = held,
            "snapshot written"
        );
        Ok(())
    }
}

impl Drop for DiskLog {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod encryption_tests;

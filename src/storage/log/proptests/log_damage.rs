//! Storage-level crash points. Random record sequences are appended (in
//! groups that share a commit) and awaited, with rotations, clean restarts
//! and snapshots in between; then the log is dropped as in a crash and
//! damaged:
//! - a torn tail: a partial frame or garbage after the last acknowledged
//!   record (acknowledged data is fsynced, so a crash can only leave bytes
//!   after it). Replay must give exactly the acknowledged records.
//! - a flipped bit anywhere in any segment. Replay must give exactly the
//!   records before the damaged frame: nothing at or after it, ever.
//! - a flipped bit in the snapshot: recovery must refuse (`Corrupt`) rather
//!   than serve a wrong state.
//!
//! After a repair, new appends must follow the surviving records across one
//! more restart.
//!
//! Half the cases run with a keyring (records holding user data sealed):
//! the damage must be told and handled exactly as in clear, never taken
//! for a key problem.

use proptest::prelude::*;
use proptest::sample::Index;

use super::super::*;
use super::records::record;

#[derive(Debug, Clone)]
enum Step {
    /// Appends issued back to back (so the writer may group them), then all
    /// awaited.
    Append(Vec<Vec<Record>>),
    Rotate,
    /// Drop and open again, as after a crash with nothing in flight.
    Reopen,
    /// Rotate, then write a snapshot holding these records.
    Snapshot(Vec<Record>),
}

#[derive(Debug, Clone)]
enum Damage {
    None,
    /// A strict prefix of a frame after the last acknowledged record.
    PartialFrame(Record, Index),
    /// Random bytes after the last acknowledged record.
    Garbage(Vec<u8>),
    /// One bit flipped in one segment file.
    SegmentBitFlip {
        file: Index,
        offset: Index,
        bit: u8,
    },
    /// One bit flipped in the snapshot file (no damage without a snapshot).
    SnapshotBitFlip {
        offset: Index,
        bit: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => proptest::collection::vec(proptest::collection::vec(record(), 1..4), 1..4)
            .prop_map(Step::Append),
        1 => Just(Step::Rotate),
        1 => Just(Step::Reopen),
        1 => proptest::collection::vec(record(), 0..4).prop_map(Step::Snapshot),
    ]
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        1 => Just(Damage::None),
        2 => (record(), any::<Index>()).prop_map(|(r, i)| Damage::PartialFrame(r, i)),
        2 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Garbage),
        4 => (any::<Index>(), any::<Index>(), 0u8..8)
            .prop_map(|(file, offset, bit)| Damage::SegmentBitFlip { file, offset, bit }),
        1 => (any::<Index>(), 0u8..8).prop_map(|(offset, bit)| Damage::SnapshotBitFlip { offset, bit }),
    ]
}

fn cfg(dir: &Path, segment_bytes: u64, keys: &Option<Arc<Keyring>>) -> DiskLogConfig {
    let mut c = DiskLogConfig::new(
        dir.to_path_buf(),
        FsyncPolicy::Always,
        Duration::from_millis(10),
    );
    c.segment_bytes = segment_bytes;
    c.encryption = keys.clone();
    c
}

fn replay_all(log: &DiskLog) -> Result<(Vec<Record>, ReplayReport), StorageError> {
    let mut v = Vec::new();
    let rep = log.replay(&mut |r, _| v.push(r))?;
    Ok((v, rep))
}

/// End offsets of the frames of a segment or snapshot file, in order.
fn frame_ends(buf: &[u8], keys: Option<&Keyring>) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut off = FILE_HEADER;
    while off < buf.len() {
        match record::decode_with(&buf[off..], keys) {
            Ok((_, used)) => {
                off += used;
                ends.push(off);
            }
            Err(_) => break,
        }
    }
    ends
}

fn segment_ids(dir: &Path) -> Vec<u64> {
    list_ids(&dir.join("log"), "", ".seg").expect("list segments")
}

/// Bytes a torn write leaves that recovery must cut: trailing zeros are
/// indistinguishable from the newest segment's preallocated tail.
fn cut_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

fn flip_bit(p: &Path, offset: Index, bit: u8) -> usize {
    let mut bytes = fs::read(p).expect("read file");
    let at = offset.index(bytes.len());
    bytes[at] ^= 1 << bit;
    fs::write(p, &bytes).expect("write file");
    at
}

async fn run(
    steps: Vec<Step>,
    segment_bytes: u64,
    damage: Damage,
    after: Vec<Record>,
    encrypted: bool,
) -> Result<(), TestCaseError> {
    let keys = encrypted.then(|| {
        let id = crate::storage::KeyId::new("k1").expect("valid id");
        Arc::new(Keyring::new((id, [7; 32]), []).expect("keyring"))
    });
    let dir = super::crash_dir();
    let dir = dir.path();
    // What replay must give: the newest snapshot's records, then the tail.
    let mut snap: Vec<Record> = Vec::new();
    let mut tail: Vec<Record> = Vec::new();
    let mut log = DiskLog::open(cfg(dir, segment_bytes, &keys)).expect("open");
    for s in steps {
        match s {
            Step::Append(groups) => {
                let commits: Vec<_> = groups
                    .iter()
                    .map(|g| {
                        tail.extend(g.iter().cloned());
                        log.append(g.clone())
                    })
                    .collect();
                for c in commits {
                    c.await.expect("append is durable");
                }
            }
            Step::Rotate => {
                log.rotate().await.expect("rotate");
            }
            Step::Reopen => {
                drop(log);
                log = DiskLog::open(cfg(dir, segment_bytes, &keys)).expect("reopen");
                let (got, rep) = replay_all(&log).expect("replay");
                prop_assert_eq!(rep.truncated_bytes, 0, "a clean log was cut");
                let want: Vec<Record> = snap.iter().chain(&tail).cloned().collect();
                prop_assert_eq!(got, want, "replay after a clean restart");
            }
            Step::Snapshot(records) => {
                let base = log.rotate().await.expect("rotate");
                log.write_snapshot(base, records.clone()).expect("snapshot");
                snap = records;
                tail.clear();
            }
        }
    }
    drop(log);

    // Where each acknowledged tail record sits on disk.
    let ids = segment_ids(dir);
    let ends: Vec<Vec<usize>> = ids
        .iter()
        .map(|id| {
            frame_ends(
                &fs::read(segment_path(dir, *id)).expect("read segment"),
                keys.as_deref(),
            )
        })
        .collect();
    prop_assert_eq!(
        ends.iter().map(Vec::len).sum::<usize>(),
        tail.len(),
        "segments hold every acknowledged record"
    );
    let last = segment_path(dir, *ids.last().expect("a log always has a segment"));

    // How many of snapshot + tail must survive, how many bytes are cut, and
    // whether recovery must refuse.
    // A torn frame whose missing part is all zeros is whole after all.
    let mut whole: Option<Record> = None;
    let (survivors, cut, refuse) = match &damage {
        Damage::None => (snap.len() + tail.len(), 0, false),
        Damage::PartialFrame(r, at) => {
            let mut buf = Vec::new();
            record::encode_with(r, &mut buf, keys.as_deref());
            let n = 1 + at.index(buf.len() - 1);
            write_at_data_end(&last, keys.as_deref(), &buf[..n]);
            if buf[n..].iter().all(|b| *b == 0) {
                // The part not written is zeros, as the preallocated tail
                // already holds: the frame is whole, and replays.
                whole = Some(r.clone());
                (snap.len() + tail.len() + 1, 0, false)
            } else {
                (snap.len() + tail.len(), cut_len(&buf[..n]), false)
            }
        }
        Damage::Garbage(bytes) => {
            write_at_data_end(&last, keys.as_deref(), bytes);
            (snap.len() + tail.len(), cut_len(bytes), false)
        }
        Damage::SegmentBitFlip { file, offset, bit } => {
            let f = file.index(ids.len());
            let at = flip_bit(&segment_path(dir, ids[f]), *offset, *bit);
            let before: usize = ends[..f].iter().map(Vec::len).sum();
            let intact = if at < FILE_HEADER {
                0
            } else {
                ends[f].iter().filter(|e| **e <= at).count()
            };
            (snap.len() + before + intact, usize::MAX, false)
        }
        Damage::SnapshotBitFlip { offset, bit } => {
            match list_ids(dir, "snap-", ".snap").expect("list").last() {
                Some(base) => {
                    flip_bit(&snapshot_path(dir, *base), *offset, *bit);
                    (0, 0, true)
                }
                None => (snap.len() + tail.len(), 0, false),
            }
        }
    };

    let log = DiskLog::open(cfg(dir, segment_bytes, &keys)).expect("open after damage");
    let replayed = replay_all(&log);
    if refuse {
        prop_assert!(
            matches!(replayed, Err(StorageError::Corrupt(_))),
            "a damaged snapshot must be refused, got {:?}",
            replayed.map(|(r, _)| r.len())
        );
        return Ok(());
    }
    let (got, rep) = replayed.expect("replay after damage");
    let all: Vec<Record> = snap.iter().chain(&tail).chain(&whole).cloned().collect();
    prop_assert_eq!(
        &got[..],
        &all[..survivors],
        "replay must be exactly the records before the damage"
    );
    match cut {
        usize::MAX => prop_assert!(rep.truncated_bytes > 0, "a flipped bit must be cut"),
        n => prop_assert_eq!(rep.truncated_bytes, n as u64, "bytes cut off the tail"),
    }

    // The repair is durable and new appends follow the survivors.
    for r in &after {
        log.append(vec![r.clone()])
            .await
            .expect("append after repair");
    }
    drop(log);
    let log = DiskLog::open(cfg(dir, segment_bytes, &keys)).expect("open after repair");
    let (got, rep) = replay_all(&log).expect("replay after repair");
    prop_assert_eq!(rep.truncated_bytes, 0, "a repaired log was cut again");
    let want: Vec<Record> = all[..survivors].iter().chain(&after).cloned().collect();
    prop_assert_eq!(got, want, "appends after a repair follow the survivors");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn replay_after_damage_is_exactly_the_acknowledged_prefix(
        steps in proptest::collection::vec(step(), 1..16),
        segment_bytes in prop_oneof![Just(256u64), Just(2048), Just(1 << 20)],
        damage in damage(),
        after in proptest::collection::vec(record(), 0..3),
        encrypted in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run(steps, segment_bytes, damage, after, encrypted))?;
    }
}

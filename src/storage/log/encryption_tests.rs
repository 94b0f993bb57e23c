//! Encryption at rest in the disk log: what is sealed never reaches a file
//! in clear (segments and snapshots), the right keys read everything back
//! (rotation, a directory that was in clear), and a missing, unknown or
//! wrong key stops the open or replay with `StorageError::Encryption`
//! without cutting a byte.

use std::sync::Arc;

use super::*;
use crate::model::{Attributes, BodyEncoding, MessageId};
use crate::storage::crypt::KeyId;
use crate::storage::{CopyRec, StoredRec};

const MARKER: &str = "SECRET-MARKER-7f3a";

fn cfg(dir: &Path, keys: Option<Keyring>) -> DiskLogConfig {
    let mut c = DiskLogConfig::new(
        dir.to_path_buf(),
        FsyncPolicy::Always,
        Duration::from_millis(10),
    );
    c.encryption = keys.map(Arc::new);
    c
}

fn ring(active: (&str, u8), older: &[(&str, u8)]) -> Option<Keyring> {
    let id = |s: &str| KeyId::new(s).expect("valid id");
    Some(
        Keyring::new(
            (id(active.0), [active.1; 32]),
            older.iter().map(|(s, b)| (id(s), [*b; 32])),
        )
        .expect("keyring"),
    )
}

fn message(n: u64) -> Arc<MessageData> {
    let mut attributes = Attributes::new();
    attributes.insert("note".into(), format!("{MARKER}-attr-{n}"));
    Arc::new(MessageData {
        id: MessageId(u128::from(n)),
        body: format!("{MARKER}-body-{n}"),
        body_encoding: BodyEncoding::Text,
        attributes,
        group_id: Some(Arc::from(format!("{MARKER}-group").as_str())),
        dedup_id: Some(Arc::from(format!("{MARKER}-dedup-{n}").as_str())),
        topic: None,
        poison: false,
        sent_at: 1,
        size: 10,
        visible_at: None,
        loc: Default::default(),
        copies: 1,
    })
}

fn publish(m: &Arc<MessageData>, seq: u64) -> Record {
    Record::Publish {
        message: m.clone(),
        copies: vec![CopyRec {
            queue_uid: 1,
            seq,
            receive_count: 0,
            enqueued_at: 1,
            visible_at: None,
            dead_letter_source: None,
        }],
    }
}

fn replay_all(log: &DiskLog) -> Result<Vec<Record>, StorageError> {
    let mut v = Vec::new();
    log.replay(&mut |r, _| v.push(r))?;
    Ok(v)
}

/// Every file under `dir` with its contents.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = fs::read(&p).expect("read file");
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

fn assert_no_marker(dir: &Path) {
    for (p, bytes) in files(dir) {
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
            "{} holds user data in clear",
            p.display()
        );
    }
}

/// Opens and replays: the error of whichever refuses first.
fn open_and_replay(dir: &Path, keys: Option<Keyring>) -> Result<Vec<Record>, StorageError> {
    let log = DiskLog::open(cfg(dir, keys))?;
    replay_all(&log)
}

fn encryption_error(r: Result<Vec<Record>, StorageError>) -> String {
    match r {
        Err(StorageError::Encryption(m)) => m,
        other => panic!("expected an encryption error, got {other:?}"),
    }
}

#[tokio::test]
async fn sealed_records_round_trip_and_nothing_is_written_in_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = message(1);
    {
        let log = DiskLog::open(cfg(dir.path(), ring(("k1", 1), &[]))).expect("open");
        log.append(vec![qput(1), publish(&m, 1)])
            .await
            .expect("durable");
        let loc = m.loc.get().expect("placed");
        assert_eq!(log.read(loc).expect("reads back").body, m.body);
    }
    assert_no_marker(dir.path());
    let log = DiskLog::open(cfg(dir.path(), ring(("k1", 1), &[]))).expect("reopen");
    let mut locs = Vec::new();
    let mut recs = Vec::new();
    log.replay(&mut |r, loc| {
        recs.push(r);
        locs.push(loc);
    })
    .expect("replay");
    assert_eq!(recs, vec![qput(1), publish(&m, 1)]);
    let back = log.read(locs[1].expect("a location")).expect("read");
    assert_eq!(*back, *m);
}

#[tokio::test]
async fn no_key_unknown_key_or_wrong_key_refuse_and_cut_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = DiskLog::open(cfg(dir.path(), ring(("k1", 1), &[]))).expect("open");
        log.append(vec![qput(1), publish(&message(1), 1), qput(2)])
            .await
            .expect("durable");
    }
    let seg = |d: &Path| fs::read(segment_path(d, 1)).expect("segment 1");
    let before = seg(dir.path());

    let none = encryption_error(open_and_replay(dir.path(), None));
    assert!(
        none.contains("key id k1") && none.contains("no encryption key is configured"),
        "{none}"
    );
    let unknown = encryption_error(open_and_replay(dir.path(), ring(("k2", 1), &[])));
    assert!(
        unknown.contains("key id k1") && unknown.contains("not configured"),
        "{unknown}"
    );
    let wrong = encryption_error(open_and_replay(dir.path(), ring(("k1", 2), &[])));
    assert!(
        wrong.contains("wrong key") && wrong.contains("k1"),
        "{wrong}"
    );
    assert_eq!(seg(dir.path()), before, "nothing was cut");

    let recs = open_and_replay(dir.path(), ring(("k1", 1), &[])).expect("the right key");
    assert_eq!(recs.len(), 3);
}

#[tokio::test]
async fn rotation_keeps_records_of_older_keys_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (m1, m2) = (message(1), message(2));
    {
        let log = DiskLog::open(cfg(dir.path(), ring(("k1", 1), &[]))).expect("open");
        log.append(vec![qput(1), publish(&m1, 1)])
            .await
            .expect("durable");
    }
    {
        let log = DiskLog::open(cfg(dir.path(), ring(("k2", 2), &[("k1", 1)]))).expect("rotate");
        log.append(vec![publish(&m2, 2)]).await.expect("durable");
        let loc = m2.loc.get().expect("placed");
        let raw = fs::read(segment_path(dir.path(), loc.segment())).expect("segment");
        let at = usize::try_from(loc.offset()).expect("offset");
        assert_eq!(
            record::decode(&raw[at..]).expect_err("sealed"),
            DecodeError::UnknownKey("k2".into()),
            "new records carry the new key id"
        );
    }
    assert_no_marker(dir.path());
    let recs = open_and_replay(dir.path(), ring(("k2", 2), &[("k1", 1)])).expect("both keys");
    assert_eq!(recs, vec![qput(1), publish(&m1, 1), publish(&m2, 2)]);
    let dropped_k1 = encryption_error(open_and_replay(dir.path(), ring(("k2", 2), &[])));
    assert!(dropped_k1.contains("key id k1"), "{dropped_k1}");
}

#[tokio::test]
async fn encryption_can_be_turned_on_for_a_directory_written_in_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (m1, m2) = (message(1), message(2));
    {
        let log = DiskLog::open(cfg(dir.path(), None)).expect("open");
        log.append(vec![qput(1), publish(&m1, 1)])
            .await
            .expect("durable");
    }
    {
        let log = DiskLog::open(cfg(dir.path(), ring(("k1", 1), &[]))).expect("with a key");
        assert_eq!(replay_all(&log).expect("clear records read").len(), 2);
        log.append(vec![publish(&m2, 2)]).await.expect("durable");
    }
    let recs = open_and_replay(dir.path(), ring(("k1", 1), &[])).expect("reopen");
    assert_eq!(recs, vec![qput(1), publish(&m1, 1), publish(&m2, 2)]);
    // Going back to no key: the sealed records are refused.
    let m = encryption_error(open_and_replay(dir.path(), None));
    assert!(m.contains("key id k1"), "{m}");
}

#[tokio::test]
async fn snapshots_seal_user_data_and_need_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (written, unwritten) = (message(1), message(2));
    let keys = || ring(("k1", 1), &[]);
    {
        let log = DiskLog::open(cfg(dir.path(), keys())).expect("open");
        log.append(vec![qput(1), publish(&written, 1)])
            .await
            .expect("durable");
        let loc = written.loc.get().expect("placed");
        let base = log.rotate().await.expect("rotate");
        let mut sink = log.begin_snapshot(base).expect("snapshot");
        for r in [
            qput(1),
            Record::Stored(StoredRec {
                queue_uid: 1,
                seq: 1,
                loc,
                receive_count: 0,
                first_received_at: None,
                enqueued_at: 1,
                visible_at: None,
                group_id: written.group_id.clone(),
                dead_letter_source: None,
            }),
            publish(&unwritten, 2),
            Record::Dedup {
                queue_uid: 1,
                topic: None,
                key: format!("{MARKER}-dedup-key"),
                id: MessageId(2),
                expires_at: 99,
            },
        ] {
            sink.write(&r).expect("write");
        }
        sink.finish(&BTreeSet::from([loc.segment()]))
            .expect("finish");
    }
    assert_no_marker(dir.path());
    let recs = open_and_replay(dir.path(), keys()).expect("replay with the key");
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[2], publish(&unwritten, 2));
    let m = encryption_error(open_and_replay(dir.path(), None));
    assert!(m.contains("snap-") && m.contains("key id k1"), "{m}");
    let m = encryption_error(open_and_replay(dir.path(), ring(("k1", 9), &[])));
    assert!(m.contains("wrong key"), "{m}");
}

/// A snapshot holding nothing sealed, whose messages are all in an older
/// segment it keeps: that segment is not scanned at start, so one of its
/// messages is read to check the keys.
#[tokio::test]
async fn keys_of_segments_kept_below_a_snapshot_are_checked_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = message(1);
    {
        let log = DiskLog::open(cfg(dir.path(), ring(("k1", 1), &[]))).expect("open");
        log.append(vec![qput(1), publish(&m, 1)])
            .await
            .expect("durable");
        let loc = m.loc.get().expect("placed");
        let base = log.rotate().await.expect("rotate");
        let stored = Record::Stored(StoredRec {
            queue_uid: 1,
            seq: 1,
            loc,
            receive_count: 0,
            first_received_at: None,
            enqueued_at: 1,
            visible_at: None,
            group_id: None,
            dead_letter_source: None,
        });
        assert!(!record::holds_user_data(&stored));
        let mut sink = log.begin_snapshot(base).expect("snapshot");
        sink.write(&qput(1)).expect("write");
        sink.write(&stored).expect("write");
        sink.finish(&BTreeSet::from([loc.segment()]))
            .expect("finish");
    }
    let m = encryption_error(open_and_replay(dir.path(), None));
    assert!(
        m.contains("0000000000000001.seg") && m.contains("key id k1"),
        "{m}"
    );
    assert_eq!(
        open_and_replay(dir.path(), ring(("k1", 1), &[]))
            .expect("with the key")
            .len(),
        2
    );
}

#[tokio::test]
async fn a_torn_tail_after_sealed_records_is_still_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = DiskLog::open(cfg(dir.path(), ring(("k1", 1), &[]))).expect("open");
        log.append(vec![qput(1), publish(&message(1), 1)])
            .await
            .expect("durable");
        log.append(vec![publish(&message(2), 2)])
            .await
            .expect("durable");
    }
    let seg = segment_path(dir.path(), 1);
    let bytes = fs::read(&seg).expect("read");
    let end = data_end(&seg, ring(("k1", 1), &[]).as_ref());
    fs::write(&seg, &bytes[..end - 5]).expect("tear the last frame");
    let log = DiskLog::open(cfg(dir.path(), ring(("k1", 1), &[]))).expect("reopen");
    let recs = replay_all(&log).expect("replay");
    assert_eq!(recs.len(), 2, "the torn record is cut, the rest kept");
    assert!(log.report.truncated_bytes > 0);
}

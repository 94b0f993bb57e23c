//! Disk log tests: appends survive reopen, torn and corrupt tails are cut and
//! reported, snapshots replace the segments they cover, one directory has one
//! owner.

use super::*;

fn cfg(dir: &Path) -> DiskLogConfig {
    DiskLogConfig::new(
        dir.to_path_buf(),
        FsyncPolicy::Always,
        Duration::from_millis(10),
    )
}

fn replay_all(log: &DiskLog) -> (Vec<Record>, ReplayReport) {
    let mut v = Vec::new();
    let rep = log.replay(&mut |r, _| v.push(r)).expect("replay");
    (v, rep)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_records_survive_reopen_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = DiskLog::open(cfg(dir.path())).expect("open");
        let commits: Vec<_> = (1..=50).map(|i| log.append(vec![qput(i)])).collect();
        for c in commits {
            c.await.expect("durable");
        }
    }
    let log = DiskLog::open(cfg(dir.path())).expect("reopen");
    let (recs, rep) = replay_all(&log);
    assert_eq!(recs.len(), 50);
    assert_eq!(recs[0], qput(1));
    assert_eq!(recs[49], qput(50));
    assert_eq!(rep.truncated_bytes, 0);
}

#[tokio::test]
async fn torn_tail_is_cut_and_reported_and_earlier_records_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = DiskLog::open(cfg(dir.path())).expect("open");
        log.append(vec![qput(1), qput(2)]).await.expect("durable");
    }
    let seg = segment_path(dir.path(), 1);
    write_at_data_end(&seg, None, &[9, 0, 0, 0, 1, 2, 3]);
    let log = DiskLog::open(cfg(dir.path())).expect("reopen");
    let (recs, rep) = replay_all(&log);
    assert_eq!(recs, vec![qput(1), qput(2)]);
    assert_eq!(rep.truncated_bytes, 7);
}

#[tokio::test]
async fn bit_flip_cuts_the_log_there_and_drops_later_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = DiskLog::open(cfg(dir.path())).expect("open");
        log.append(vec![qput(1), qput(2)]).await.expect("durable");
    }
    {
        let log = DiskLog::open(cfg(dir.path())).expect("reopen");
        log.append(vec![qput(3)]).await.expect("durable");
    }
    // Flip a byte inside the second record of segment 1.
    let seg = segment_path(dir.path(), 1);
    let mut bytes = fs::read(&seg).expect("read");
    let last = bytes.len() - 3;
    bytes[last] ^= 0xFF;
    fs::write(&seg, &bytes).expect("write");
    let log = DiskLog::open(cfg(dir.path())).expect("reopen");
    let (recs, rep) = replay_all(&log);
    assert_eq!(recs, vec![qput(1)], "nothing past the bad record is served");
    assert!(rep.truncated_bytes > 0);
    assert!(rep.dropped_segments >= 1);
}

#[tokio::test]
async fn snapshot_replaces_covered_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = DiskLog::open(cfg(dir.path())).expect("open");
        log.append(vec![qput(1)]).await.expect("durable");
        let base = log.rotate().await.expect("rotate");
        log.append(vec![qput(2)]).await.expect("durable");
        log.write_snapshot(base, vec![qput(100)]).expect("snapshot");
        assert!(!segment_path(dir.path(), 1).exists());
    }
    let log = DiskLog::open(cfg(dir.path())).expect("reopen");
    let (recs, rep) = replay_all(&log);
    assert_eq!(recs, vec![qput(100), qput(2)]);
    assert_eq!(rep.snapshot_records, 1);
}

#[tokio::test]
async fn a_second_server_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = DiskLog::open(cfg(dir.path())).expect("open");
    assert!(matches!(
        DiskLog::open(cfg(dir.path())),
        Err(StorageError::Locked(_))
    ));
}

#[tokio::test]
async fn receipt_key_is_kept_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k1 = DiskLog::open(cfg(dir.path())).expect("open").receipt_key();
    let k2 = DiskLog::open(cfg(dir.path())).expect("open").receipt_key();
    assert_eq!(k1, k2);
}

/// Segments are created at their full size (sparse), so writes land inside
/// the file; a crash leaves zeros after the last frame, which recovery trims
/// without calling it damage, and a clean close trims them itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preallocated_tails_are_trimmed_by_close_and_by_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg(dir.path());
    c.segment_bytes = 1 << 20;
    let seg1 = segment_path(dir.path(), 1);
    {
        let log = DiskLog::open(c.clone()).expect("open");
        log.append(vec![qput(1), qput(2)]).await.expect("durable");
        assert_eq!(fs::metadata(&seg1).expect("seg").len(), 1 << 20);
        // Dropped without close: as a crash leaves it.
    }
    let data = data_end(&seg1, None) as u64;
    assert!(data > FILE_HEADER as u64 && data < 1 << 20);
    {
        let log = DiskLog::open(c.clone()).expect("reopen");
        let (recs, rep) = replay_all(&log);
        assert_eq!(recs, vec![qput(1), qput(2)]);
        assert_eq!(rep.truncated_bytes, 0, "a preallocated tail is not damage");
        assert_eq!(fs::metadata(&seg1).expect("seg").len(), data, "trimmed");
        log.append(vec![qput(3)]).await.expect("durable");
        tokio::task::spawn_blocking(move || log.close())
            .await
            .expect("closed");
    }
    let seg2 = segment_path(dir.path(), 2);
    let sealed = fs::metadata(&seg2).expect("seg").len();
    assert_eq!(sealed, data_end(&seg2, None) as u64, "close trims its tail");
    let log = DiskLog::open(c).expect("reopen");
    let (recs, rep) = replay_all(&log);
    assert_eq!(recs, vec![qput(1), qput(2), qput(3)]);
    assert_eq!(rep.truncated_bytes, 0);
}

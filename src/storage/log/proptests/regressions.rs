//! Deterministic regression tests for durability bugs found by the crash-point
//! property tests, each reduced to the smallest sequence that shows it.

use std::fs;

use super::super::*;

fn cfg(dir: &Path) -> DiskLogConfig {
    DiskLogConfig::new(
        dir.to_path_buf(),
        FsyncPolicy::Always,
        Duration::from_millis(10),
    )
}

fn replay_all(log: &DiskLog) -> Vec<Record> {
    let mut v = Vec::new();
    log.replay(&mut |r, _| v.push(r)).expect("replay");
    v
}

/// A snapshot leaves an empty segment behind; a restart removes it. The next
/// segment must still sort after the snapshot's base, or everything written
/// to it is skipped by the replay after the following restart.
#[tokio::test]
async fn appends_after_a_restart_that_follows_a_snapshot_survive_the_next_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = DiskLog::open(cfg(dir.path())).expect("open");
        log.append(vec![qput(1)]).await.expect("durable");
        let base = log.rotate().await.expect("rotate");
        log.write_snapshot(base, vec![qput(1)]).expect("snapshot");
    }
    {
        // Nothing is written in this run: its segment stays empty.
        let log = DiskLog::open(cfg(dir.path())).expect("reopen");
        assert_eq!(replay_all(&log), vec![qput(1)]);
    }
    {
        let log = DiskLog::open(cfg(dir.path())).expect("reopen");
        assert_eq!(replay_all(&log), vec![qput(1)]);
        log.append(vec![qput(2)]).await.expect("durable");
    }
    let log = DiskLog::open(cfg(dir.path())).expect("reopen");
    assert_eq!(
        replay_all(&log),
        vec![qput(1), qput(2)],
        "an acknowledged append was lost"
    );
}

/// A crash between a snapshot's rename and the deletion of the segments it
/// covers leaves those segments behind. Replay never reads them, so damage in
/// one must not cut the segments the snapshot needs.
#[tokio::test]
async fn damage_in_a_segment_a_snapshot_covers_does_not_cut_the_log_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let covered = segment_path(dir.path(), 1);
    {
        let log = DiskLog::open(cfg(dir.path())).expect("open");
        log.append(vec![qput(1)]).await.expect("durable");
        let base = log.rotate().await.expect("rotate");
        let left_behind = fs::read(&covered).expect("read segment 1");
        log.append(vec![qput(2)]).await.expect("durable");
        log.write_snapshot(base, vec![qput(1)]).expect("snapshot");
        // As if the crash came before segment 1 was deleted, and it rotted.
        let mut bytes = left_behind;
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(&covered, bytes).expect("leave segment 1 behind");
    }
    let log = DiskLog::open(cfg(dir.path())).expect("reopen");
    assert_eq!(
        replay_all(&log),
        vec![qput(1), qput(2)],
        "an acknowledged append after the snapshot was lost"
    );
}

//! Encryption at rest (`--encryption-key-file`, `PUBQ_ENCRYPTION_KEY`,
//! `[storage.encryption]`): message bodies, attributes, group and dedup ids
//! never reach a file of the data directory in clear; the right key reads
//! them back after a restart; a wrong, unknown or missing key stops the
//! server with a message naming the key id and cuts nothing; rotation keeps
//! old messages readable and seals new ones with the new key.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::json;

use crate::support::{serve_refused, Server};

/// A distinctive string to look for on disk.
fn marker() -> String {
    format!("SECRET-MARKER-{:032x}", rand::random::<u128>())
}

/// A new random key written as base64 into `dir/name` (mode 0600); answers
/// the path and the base64 text.
fn key_file(dir: &Path, name: &str) -> (String, String) {
    let key: [u8; 32] = rand::random();
    let text = base64::engine::general_purpose::STANDARD.encode(key);
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).expect("write the key file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the key file");
    }
    (path.to_str().expect("utf-8 path").to_string(), text)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read the data directory") {
            let p = e.expect("a directory entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Whether any file under `dir` contains `needle`.
fn on_disk(dir: &Path, needle: &str) -> Option<PathBuf> {
    files_under(dir).into_iter().find(|p| {
        let bytes = std::fs::read(p).expect("read a data file");
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

fn assert_not_on_disk(dir: &Path, needles: &[&str]) {
    assert!(!files_under(dir).is_empty(), "the data directory is empty");
    for n in needles {
        if let Some(p) = on_disk(dir, n) {
            panic!("{} holds {n:?} in clear", p.display());
        }
    }
}

fn arg(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test]
async fn message_data_is_encrypted_on_disk_and_read_back_with_the_key() {
    let data = tempfile::tempdir().expect("temp dir");
    let keys = tempfile::tempdir().expect("temp dir");
    let (k1, _) = key_file(keys.path(), "k1.key");
    let flags = ["--encryption-key-file", &k1, "--encryption-key-id", "k1"];
    let mark = marker();
    let body = format!("{mark}-body");
    let attr = format!("{mark}-attr");
    let group = format!("{mark}-group");
    let dedup = format!("{mark}-dedup");
    let binary = base64::engine::general_purpose::STANDARD.encode(format!("{mark}-binary"));

    let s = Server::start_on_disk(data.path(), &flags).await;
    s.create_topic("t", json!({})).await;
    s.create_queue("q", json!({})).await;
    s.create_queue("f", json!({"fifo": true})).await;
    s.subscribe("t", "q", None).await;
    s.publish("t", json!({"body": body, "attributes": {"note": attr}}))
        .await;
    s.send("q", json!({"body": binary, "body_encoding": "base64"}))
        .await;
    let fifo = json!({"body": format!("{mark}-fifo"), "group_id": group, "dedup_id": dedup});
    let fifo_id = s.send("f", fifo.clone()).await;
    assert_eq!(s.terminate().await, Some(0));

    assert_not_on_disk(data.path(), &[&mark, &binary]);

    let s = Server::start_on_disk(data.path(), &flags).await;
    let got = s.drain("q").await;
    assert_eq!(got.len(), 2, "{got:?}");
    let text = got.iter().find(|m| m["body"] == json!(body)).expect("text");
    assert_eq!(text["attributes"], json!({"note": attr}));
    assert_eq!(text["topic"], "t");
    let bin = got
        .iter()
        .find(|m| m["body"] == json!(binary))
        .expect("base64");
    assert_eq!(bin["body_encoding"], "base64");
    let f = s.receive_one("f").await;
    assert_eq!(f["group_id"], json!(group));
    assert_eq!(f["dedup_id"], json!(dedup));
    // The dedup window came back too: the same dedup id is a duplicate.
    assert_eq!(s.send("f", fifo).await, fifo_id);
    assert_eq!(s.terminate().await, Some(0));
    assert_not_on_disk(data.path(), &[&mark, &binary]);
}

#[tokio::test]
async fn a_wrong_missing_or_unknown_key_stops_the_start_and_cuts_nothing() {
    let data = tempfile::tempdir().expect("temp dir");
    let keys = tempfile::tempdir().expect("temp dir");
    let (k1, _) = key_file(keys.path(), "k1.key");
    let (other, _) = key_file(keys.path(), "other.key");
    let dir = arg(data.path());
    let s = Server::start_on_disk(
        data.path(),
        &["--encryption-key-file", &k1, "--encryption-key-id", "k1"],
    )
    .await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", "kept").await;
    assert_eq!(s.terminate().await, Some(0));

    let (code, err) = serve_refused(
        &[
            "--data-dir",
            dir,
            "--encryption-key-file",
            &other,
            "--encryption-key-id",
            "k1",
        ],
        &[],
    )
    .await;
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {err}");
    assert!(
        err.contains("wrong key") && err.contains("key id k1"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let (code, err) = serve_refused(&["--data-dir", dir], &[]).await;
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {err}");
    assert!(
        err.contains("key id k1") && err.contains("no encryption key is configured"),
        "{err}"
    );

    let (code, err) = serve_refused(
        &[
            "--data-dir",
            dir,
            "--encryption-key-file",
            &k1,
            "--encryption-key-id",
            "k2",
        ],
        &[],
    )
    .await;
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {err}");
    assert!(
        err.contains("key id k1") && err.contains("not configured"),
        "{err}"
    );

    // Nothing was cut: the right key still reads the message.
    let s = Server::start_on_disk(
        data.path(),
        &["--encryption-key-file", &k1, "--encryption-key-id", "k1"],
    )
    .await;
    assert_eq!(s.drain_bodies("q").await, ["kept"]);
}

#[tokio::test]
async fn rotation_reads_old_messages_and_seals_new_ones_with_the_new_key() {
    let data = tempfile::tempdir().expect("temp dir");
    let keys = tempfile::tempdir().expect("temp dir");
    let (k1, k1_text) = key_file(keys.path(), "k1.key");
    let (k2, _) = key_file(keys.path(), "k2.key");
    let dir = arg(data.path());
    let (old, new) = (marker(), marker());

    // Written with k1, given in the environment.
    let s = Server::start_on_disk_env(
        data.path(),
        &[],
        &[
            ("PUBQ_ENCRYPTION_KEY", &k1_text),
            ("PUBQ_ENCRYPTION_KEY_ID", "k1"),
        ],
    )
    .await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", &old).await;
    assert_eq!(s.terminate().await, Some(0));

    // k2 becomes active; k1 stays for reading.
    let config = keys.path().join("pubq.toml");
    std::fs::write(
        &config,
        format!(
            "[storage.encryption]\nactive = \"k2\"\n\
             [[storage.encryption.keys]]\nid = \"k1\"\nfile = {k1:?}\n\
             [[storage.encryption.keys]]\nid = \"k2\"\nfile = {k2:?}\n"
        ),
    )
    .expect("write pubq.toml");
    let rotated = ["--config", arg(&config)];
    let s = Server::start_on_disk(data.path(), &rotated).await;
    assert_eq!(s.receive_one("q").await["body"], json!(old));
    s.send_text("q", &new).await;
    assert_eq!(s.terminate().await, Some(0));
    assert_not_on_disk(data.path(), &[&old, &new]);

    // The old message is still sealed with k1, the new one with k2.
    let (code, err) = serve_refused(
        &[
            "--data-dir",
            dir,
            "--encryption-key-file",
            &k2,
            "--encryption-key-id",
            "k2",
        ],
        &[],
    )
    .await;
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {err}");
    assert!(
        err.contains("key id k1") && err.contains("not configured"),
        "{err}"
    );
    let (code, err) = serve_refused(
        &[
            "--data-dir",
            dir,
            "--encryption-key-file",
            &k1,
            "--encryption-key-id",
            "k1",
        ],
        &[],
    )
    .await;
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {err}");
    assert!(
        err.contains("key id k2") && err.contains("not configured"),
        "{err}"
    );

    let s = Server::start_on_disk(data.path(), &rotated).await;
    let mut want = vec![old, new];
    want.sort();
    assert_eq!(s.drain_bodies("q").await, want);
}

#[tokio::test]
async fn encryption_can_be_turned_on_for_a_directory_written_in_clear() {
    let data = tempfile::tempdir().expect("temp dir");
    let keys = tempfile::tempdir().expect("temp dir");
    let (k1, _) = key_file(keys.path(), "k1.key");
    let dir = arg(data.path());
    let (clear, sealed) = (marker(), marker());

    let s = Server::start_on_disk(data.path(), &[]).await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", &clear).await;
    assert_eq!(s.terminate().await, Some(0));

    let flags = ["--encryption-key-file", k1.as_str()];
    let s = Server::start_on_disk(data.path(), &flags).await;
    assert_eq!(s.receive_one("q").await["body"], json!(clear));
    s.send_text("q", &sealed).await;
    assert_eq!(s.terminate().await, Some(0));
    // Records written before the key was configured are not rewritten: they
    // go when their messages do.
    assert!(on_disk(data.path(), &clear).is_some());
    assert_not_on_disk(data.path(), &[&sealed]);

    let (code, err) = serve_refused(&["--data-dir", dir], &[]).await;
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {err}");
    assert!(err.contains("no encryption key is configured"), "{err}");

    let s = Server::start_on_disk(data.path(), &flags).await;
    let mut want = vec![clear, sealed];
    want.sort();
    assert_eq!(s.drain_bodies("q").await, want);
}

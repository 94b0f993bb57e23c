//! One `pubq serve` process on a data directory: started on
//! `127.0.0.1:0` (the port is read from the `listening on http://ADDR` line
//! it prints), ready once `/readyz` answers 200, stopped with SIGKILL (also
//! while it is still recovering).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a start (recovery included) may take.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running server process.
pub struct ServerProcess {
    child: Child,
    pub url: String,
}

impl ServerProcess {
    /// Starts `pubq serve --data-dir DIR --fsync always` on a free port,
    /// appending its log to `log`, and waits until it is ready.
    pub async fn start(data_dir: &Path, log: &Path, http: &reqwest::Client) -> Self {
        let mut child = spawn(data_dir, log);
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("read server stdout") {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return addr.trim().to_string();
                }
            }
            panic!("pubq serve exited before listening; see {}", log.display());
        })
        .await
        .unwrap_or_else(|_| panic!("pubq serve did not start; see {}", log.display()));
        // Keep reading stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let server = Self { child, url };
        server.wait_ready(http).await;
        server
    }

    /// Polls `/readyz` until recovery is done.
    async fn wait_ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let r = http.get(format!("{}/readyz", self.url)).send().await;
            if r.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "{} never became ready", self.url);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts a server and kills it after `after`, wherever it is then
    /// (opening the log, repairing it, replaying, or serving).
    pub async fn start_and_kill(data_dir: &Path, log: &Path, after: Duration) {
        let mut child = spawn(data_dir, log);
        tokio::time::sleep(after).await;
        child.kill().await.expect("kill -9 pubq");
    }

    /// SIGKILL, then reap the process.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill -9 pubq");
    }
}

fn spawn(data_dir: &Path, log: &Path) -> Child {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("server log file");
    Command::new(env!("CARGO_BIN_EXE_pubq"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--fsync", "always"])
        .env("PUBQ_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pubq serve")
}

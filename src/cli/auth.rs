//! `pubq auth`: makes API keys and their hashes for `[[auth.keys]]` in
//! `pubq.toml`. Works offline; no server is involved. Keys are read from
//! stdin, never from the command line, so they stay out of shell history and
//! process lists.

use std::io::BufRead;

use serde_json::json;

use super::output::JsonLines;
use super::UsageError;

/// `pubq auth ...`.
#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// Make a new random API key; prints it once with its SHA-256 and the
    /// `[[auth.keys]]` entry to paste (the key itself never goes in the file).
    GenKey {
        /// The key's id in `pubq.toml` (logs and rate limits name it).
        #[arg(long, default_value = "my-key")]
        id: String,
    },
    /// Print the SHA-256 of a key read from stdin (one line), for
    /// `sha256 = "..."` in `[[auth.keys]]`.
    HashKey,
}

/// Runs `pubq auth ...`.
pub fn run(command: AuthCommand) -> anyhow::Result<()> {
    let mut out = JsonLines::stdout();
    match command {
        AuthCommand::GenKey { id } => {
            let key = crate::auth::generate_key();
            let sha256 = crate::auth::hash_key(&key);
            let toml = format!(
                "[[auth.keys]]\nid = {id:?}\nsha256 = \"{sha256}\"\ngrants = {{ publish = [], consume = [], admin = [] }}"
            );
            out.emit(&json!({ "id": id, "key": key, "sha256": sha256, "toml": toml }))?;
        }
        AuthCommand::HashKey => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let key = line.trim_end_matches(['\n', '\r']);
            if key.is_empty() {
                return Err(UsageError(
                    "hash-key reads the key from stdin: printf %s \"$KEY\" | pubq auth hash-key"
                        .into(),
                )
                .into());
            }
            out.emit(&json!({ "sha256": crate::auth::hash_key(key) }))?;
        }
    }
    Ok(())
}

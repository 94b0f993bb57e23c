//! `pubq encryption-key`: makes a random 32-byte key for encryption at rest
//! (`--encryption-key-file`, `[[storage.encryption.keys]]`; see
//! `docs/security.md`). Works offline. With `--out` the key goes into a new
//! file readable by its owner only and stdout says only where and its id;
//! without, one JSON line carries the key (base64) and its id.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::output::JsonLines;
use super::UsageError;
use crate::storage::crypt;

/// `pubq encryption-key [--out FILE]`
#[derive(Debug, Args)]
pub struct EncryptionKeyArgs {
    /// Write the key (base64 and a newline) into this new file, mode 0600;
    /// an existing file is never replaced.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(args: &EncryptionKeyArgs) -> anyhow::Result<()> {
    let (id, key) = crypt::generate_key();
    let mut out = JsonLines::stdout();
    match &args.out {
        None => out.emit(&serde_json::json!({ "id": id.as_str(), "key": key }))?,
        Some(path) => {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts
                .open(path)
                .map_err(|e| UsageError(format!("cannot create {}: {e}", path.display())))?;
            f.write_all(format!("{key}\n").as_bytes())?;
            f.sync_all()?;
            out.emit(&serde_json::json!({ "id": id.as_str(), "file": path }))?;
        }
    }
    Ok(())
}

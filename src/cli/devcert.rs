//! `pubq dev-cert`: writes a self-signed certificate and its key for
//! development TLS (see `docs/tls.md`), and prints one JSON line saying what
//! it wrote. It never overwrites existing files unless `--force`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use super::output::JsonLines;
use super::UsageError;
use crate::net::devcert;

/// `pubq dev-cert [--out DIR] [--name NAME]...`
#[derive(Debug, Args)]
pub struct DevCertArgs {
    /// Directory to write cert.pem and key.pem into (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// A DNS name or IP address the certificate is for; repeat for more
    /// [default: localhost, 127.0.0.1 and ::1].
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Days the certificate stays valid.
    #[arg(long, value_name = "N", default_value_t = 365)]
    pub days: u32,
    /// Replace cert.pem and key.pem if they exist.
    #[arg(long)]
    pub force: bool,
}

pub fn dev_cert(args: &DevCertArgs) -> anyhow::Result<()> {
    if args.days == 0 {
        return Err(UsageError("--days must be at least 1".into()).into());
    }
    let names: Vec<String> = if args.names.is_empty() {
        devcert::DEFAULT_NAMES
            .iter()
            .map(|n| n.to_string())
            .collect()
    } else {
        args.names.clone()
    };
    let cert_path = args.out.join("cert.pem");
    let key_path = args.out.join("key.pem");
    if !args.force {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(UsageError(format!(
                    "{} exists; pass --force to replace it",
                    p.display()
                ))
                .into());
            }
        }
    }
    let cert = devcert::generate(&names, time::Duration::days(i64::from(args.days)))
        .map_err(|e| UsageError(e.to_string()))?;
    std::fs::create_dir_all(&args.out)?;
    write_file(&key_path, cert.key_pem.as_bytes(), true)?;
    write_file(&cert_path, cert.cert_pem.as_bytes(), false)?;
    let not_after = cert
        .not_after
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    JsonLines::stdout().emit(&serde_json::json!({
        "cert": cert_path,
        "key": key_path,
        "names": names,
        "not_after": not_after,
        "fingerprint_sha256": cert.fingerprint,
    }))?;
    Ok(())
}

/// Writes through a temporary file and a rename, so a server reloading on
/// SIGHUP never reads half a file. The key is readable by its owner only.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("pem.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

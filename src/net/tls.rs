//! TLS for HTTP and WebSocket (HTTPS, WSS) with rustls and the `ring`
//! provider (no C toolchain beyond cc needed, unlike aws-lc-rs).
//!
//! One `rustls::ServerConfig` lives for the whole run; its certificate comes
//! from a resolver whose current pair can be swapped, so a reload (SIGHUP)
//! changes what new handshakes see while connections already open keep
//! theirs. A reload that cannot read or use the new files keeps the old pair.
//! This module reads the two PEM files and nothing else; it knows nothing of
//! HTTP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, InconsistentKeys, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::stats::{ConnEvent, ConnStats};
use crate::config::TlsFiles;

/// Why a certificate and key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a usable PEM {what}: {message}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("the TLS key or certificate cannot be used ({cert}, {key}): {source}")]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS setup failed: {0}")]
    Setup(rustls::Error),
    #[error("the TLS reload task failed: {0}")]
    Task(String),
}

/// The server side of TLS: the acceptor handshakes use, and the files it
/// reloads from.
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// What a load found, for the logs: SHA-256 of the leaf certificate (as
/// `openssl x509 -noout -fingerprint -sha256` prints it) and the chain length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub fingerprint: String,
    pub chain_len: usize,
}

/// Hands every handshake the current pair; [`Tls::reload`] replaces it.
#[derive(Debug)]
struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // The lock only guards an Arc swap; a poisoned one still holds a
        // valid pair.
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

impl Tls {
    /// Reads and checks the certificate chain and key.
    pub fn load(files: &TlsFiles) -> Result<(Self, CertSummary), TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (key, summary) = load_pair(files, &provider)?;
        let resolver = Arc::new(CertResolver {
            current: RwLock::new(Arc::new(key)),
        });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // HTTP/1.1 only (the server speaks nothing else); WebSocket upgrades
        // ride on it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        Ok((
            Self {
                files: files.clone(),
                provider,
                resolver,
                acceptor,
            },
            summary,
        ))
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again; on success new handshakes use the new pair.
    /// On failure the current pair stays. Blocking (file reads): call it
    /// from `spawn_blocking` in async code.
    pub fn reload(&self) -> Result<CertSummary, TlsError> {
        let (key, summary) = load_pair(&self.files, &self.provider)?;
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        Ok(summary)
    }
}

/// Reloads `tls` on every SIGHUP until `stop` turns true or its sender goes
/// away (an in-process server that was dropped). Each outcome is logged and
/// counted; a failure keeps the previous pair serving.
pub fn spawn_reload_on_sighup(tls: Arc<Tls>, stats: ConnStats, mut stop: watch::Receiver<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS files will not be reloaded");
                return;
            }
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    got = hup.recv() => {
                        if got.is_none() {
                            return;
                        }
                    }
                    _ = stop.wait_for(|s| *s) => return,
                }
                tracing::info!("SIGHUP: reloading the TLS certificate and key");
                let t = tls.clone();
                let outcome = tokio::task::spawn_blocking(move || t.reload()).await;
                let files = tls.files();
                match outcome {
                    Ok(Ok(summary)) => {
                        stats.count(ConnEvent::TlsReloaded);
                        tracing::info!(
                            cert = %files.cert.display(),
                            fingerprint = %summary.fingerprint,
                            chain = summary.chain_len,
                            "TLS certificate reloaded"
                        );
                    }
                    Ok(Err(e)) => {
                        stats.count(ConnEvent::TlsReloadFailed);
                        tracing::error!(error = %e, "TLS reload failed; still serving the previous certificate");
                    }
                    Err(e) => {
                        stats.count(ConnEvent::TlsReloadFailed);
                        tracing::error!(error = %e, "TLS reload task failed; still serving the previous certificate");
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    {
        let _ = (tls, stats, &mut stop);
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Reads both files and checks that the key belongs to the leaf certificate.
fn load_pair(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, CertSummary), TlsError> {
    let cert_pem = read("certificate", &files.cert)?;
    let key_pem = read("key", &files.key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: "certificate",
            path: files.cert.clone(),
            message: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    };
    let summary = CertSummary {
        fingerprint: fingerprint(leaf),
        chain_len: chain.len(),
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        what: "private key",
        path: files.key.clone(),
        message: e.to_string(),
    })?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        },
        source => TlsError::Unusable {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        },
    })?;
    Ok((certified, summary))
}

/// `AB:CD:...`, SHA-256 of the DER certificate.
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = Sha256::digest(cert);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::devcert;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let cert = devcert::generate(&[name.to_string()], time::Duration::days(1))
            .expect("generate a certificate");
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, &cert.cert_pem).expect("write cert");
        std::fs::write(&files.key, &cert.key_pem).expect("write key");
        files
    }

    #[test]
    fn loads_a_pair_and_reload_swaps_it_or_keeps_the_old_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = write_pair(dir.path(), "first.test");
        let (tls, first) = Tls::load(&files).expect("a valid pair loads");
        assert_eq!(first.chain_len, 1);

        let _ = write_pair(dir.path(), "second.test");
        let second = tls.reload().expect("a new valid pair loads");
        assert_ne!(first.fingerprint, second.fingerprint);

        std::fs::write(&files.cert, "not a certificate").expect("break the cert");
        let err = tls.reload().expect_err("a broken file is refused");
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let current = tls.resolver.current.read().expect("lock").clone();
        let served = fingerprint(current.end_entity_cert().expect("leaf"));
        assert_eq!(served, second.fingerprint, "the previous pair still serves");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let a = tempfile::tempdir().expect("temp dir");
        let b = tempfile::tempdir().expect("temp dir");
        let fa = write_pair(a.path(), "a.test");
        let fb = write_pair(b.path(), "b.test");
        let mixed = TlsFiles {
            cert: fa.cert,
            key: fb.key,
        };
        let err = Tls::load(&mixed).expect_err("mismatched pair");
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn missing_files_and_garbage_keys_are_errors_not_panics() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = write_pair(dir.path(), "x.test");
        let missing = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: files.key.clone(),
        };
        assert!(matches!(Tls::load(&missing), Err(TlsError::Read { .. })));
        std::fs::write(
            &files.key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect("write garbage key");
        assert!(Tls::load(&files).is_err());
    }
}

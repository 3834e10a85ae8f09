//! TLS for the accept loop: the server's certificate chain and private key, and for mutual TLS
//! the CA that every client certificate must chain to, read from PEM files into a rustls
//! configuration. [`Tls::reload`] rereads the files and swaps the new configuration in for the
//! connections accepted after it; a set of files that does not load leaves the old one serving.
//!
//! rustls with the `ring` provider, set explicitly: no OpenSSL, and no dependence on which
//! provider features happen to be unified into the build.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// ALPN protocols offered, most preferred first: HTTP/2, then HTTP/1.1 for clients (AWS SDKs'
/// default HTTP clients among them) that do not offer h2.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Where the PEM files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, server certificate first.
    pub cert: PathBuf,
    /// The private key of the server certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Mutual TLS: clients must present a certificate that chains to one of these CAs, or the
    /// handshake fails. `None`: no client certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read, or holds no PEM item of the kind expected.
    Pem { path: PathBuf, what: &'static str, reason: String },
    /// rustls refused what the files hold: a key that does not match the certificate, an
    /// unsupported key type, a CA that is not a valid trust anchor.
    Rejected { what: &'static str, reason: String },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Pem { path, what, reason } => {
                write!(f, "{}: cannot read the {what}: {reason}", path.display())
            }
            TlsError::Rejected { what, reason } => write!(f, "unusable {what}: {reason}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The server's TLS configuration, shared by the accept loop and whoever reloads it. Clones
/// share it.
#[derive(Clone)]
pub struct Tls {
    files: Arc<TlsFiles>,
    /// A `std` lock: it is held only to clone or replace what it holds, never across an `.await`.
    current: Arc<RwLock<Loaded>>,
}

/// One successful load of the files.
#[derive(Clone)]
struct Loaded {
    config: Arc<ServerConfig>,
    /// SHA-256 of the server certificate (DER), lowercase hex.
    sha256: String,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads `files`; fails if any of them cannot be read or used.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let loaded = server_config(&files)?;
        tracing::info!(
            cert = %files.cert.display(),
            sha256 = %loaded.sha256,
            mutual = files.client_ca.is_some(),
            "TLS certificate loaded"
        );
        Ok(Tls { files: Arc::new(files), current: Arc::new(RwLock::new(loaded)) })
    }

    /// Rereads the files. On success, connections accepted from now on use the new certificate
    /// (and client CA); connections already open keep theirs. On failure nothing changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = server_config(&self.files)?;
        let sha256 = loaded.sha256.clone();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        tracing::info!(cert = %self.files.cert.display(), %sha256, "TLS certificate reloaded");
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// SHA-256 of the certificate new connections are served (DER, lowercase hex).
    pub fn sha256(&self) -> String {
        self.current.read().unwrap_or_else(|e| e.into_inner()).sha256.clone()
    }

    /// The acceptor for one new connection, with the configuration current now.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let config = self.current.read().unwrap_or_else(|e| e.into_inner()).config.clone();
        TlsAcceptor::from(config)
    }
}

/// Listens for SIGHUP now, and returns the task that reloads `tls` on every one until the
/// process ends. Call it before the server announces itself: a SIGHUP that arrives before the
/// listener exists would end the process. A reload that fails is logged and the certificate in
/// use is kept, so a half-replaced pair (a new certificate, the old key) never takes the server
/// off the air.
pub fn reload_on_hangup(tls: Tls) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(async move {
        while hangups.recv().await.is_some() {
            if let Err(e) = tls.reload() {
                tracing::error!(error = %e, "TLS reload failed; still serving the previous certificate");
            }
        }
    })
}

/// The rustls configuration of `files`, with the fingerprint of the server certificate (logged,
/// so an operator can tell which certificate is served).
fn server_config(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let chain = read_certs(&files.cert, "certificate chain")?;
    let pem = read(&files.key, "private key")?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: files.key.clone(),
        what: "private key",
        reason: e.to_string(),
    })?;
    let sha256 = hex(&Sha256::digest(&chain[0]));
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| rejected("protocol versions", e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider)?),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| rejected("certificate and private key", e))?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Loaded { config: Arc::new(config), sha256 })
}

/// Mutual TLS: a verifier that requires a client certificate chaining to a CA in `path`.
fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn tokio_rustls::rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in read_certs(path, "client CA")? {
        roots.add(ca).map_err(|e| rejected("client CA", e))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| rejected("client CA", e))
}

/// The certificates in the PEM file at `path`: at least one.
fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let pem_error = |reason: String| TlsError::Pem { path: path.to_owned(), what, reason };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no CERTIFICATE block in the file".into()));
    }
    Ok(certs)
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what,
        reason: e.to_string(),
    })
}

fn rejected(what: &'static str, e: impl fmt::Display) -> TlsError {
    TlsError::Rejected { what, reason: e.to_string() }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a key pair it signed for `localhost`, as PEM files in `dir` named `name`.
    fn pair(dir: &Path, name: &str) -> (TlsFiles, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let files = TlsFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
            client_ca: None,
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        (files, hex(&Sha256::digest(cert.der())))
    }

    #[test]
    fn a_reload_that_fails_keeps_the_certificate_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let (files, first) = pair(dir.path(), "server");
        let tls = Tls::load(files.clone()).unwrap();
        assert_eq!(tls.sha256(), first);

        // A new certificate beside the old key: refused, the old pair still served.
        let (other, second) = pair(dir.path(), "other");
        std::fs::copy(&other.cert, &files.cert).unwrap();
        let e = tls.reload().unwrap_err();
        assert!(matches!(e, TlsError::Rejected { .. }), "{e}");
        assert_eq!(tls.sha256(), first);

        // Its key too: the new pair is served.
        std::fs::copy(&other.key, &files.key).unwrap();
        tls.reload().unwrap();
        assert_eq!(tls.sha256(), second);

        // A missing key file names the file.
        std::fs::remove_file(&files.key).unwrap();
        let e = tls.reload().unwrap_err();
        assert!(e.to_string().contains("server.key"), "{e}");
        assert_eq!(tls.sha256(), second);
    }

    #[test]
    fn files_without_pem_items_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, _) = pair(dir.path(), "server");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        files.client_ca = Some(empty.clone());
        let e = Tls::load(files.clone()).unwrap_err();
        assert!(e.to_string().contains("empty.pem") && e.to_string().contains("client CA"), "{e}");
        files.client_ca = None;
        files.key = empty;
        let e = Tls::load(files).unwrap_err();
        assert!(e.to_string().contains("private key"), "{e}");
    }
}

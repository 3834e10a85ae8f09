//! [`ClientBuilder`]: the server URL, the request timeout, and for TLS the CA to trust and the
//! certificate to present (mutual TLS). PEM files are read when the client is built, so a bad
//! path or a key that does not match its certificate fails there and not at the first call.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

use crate::{
    transport, Client, Error, CONNECT_TIMEOUT_MS, POOL_IDLE_TIMEOUT_MS, REQUEST_TIMEOUT_DEFAULT_MS,
};

/// PEM text, given or to be read from a file.
#[derive(Clone, Debug)]
enum Pem {
    File(PathBuf),
    Text(Vec<u8>),
}

impl Pem {
    fn read(&self, what: &str) -> Result<Vec<u8>, Error> {
        match self {
            Pem::Text(pem) => Ok(pem.clone()),
            Pem::File(path) => std::fs::read(path)
                .map_err(|e| Error::Tls(format!("cannot read the {what} {}: {e}", path.display()))),
        }
    }
}

/// Builds a [`Client`]; [`Client::builder`] starts one.
///
/// ```no_run
/// # fn main() -> Result<(), redrive_client::Error> {
/// let client = redrive_client::Client::builder("https://redrive.internal:9324")
///     .ca_file("/etc/redrive/ca.pem")
///     .client_cert_files("/etc/redrive/worker.pem", "/etc/redrive/worker.key")
///     .build()?;
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    base_url: String,
    timeout: Duration,
    ca: Option<Pem>,
    identity: Option<(Pem, Pem)>,
    token: Option<String>,
}

impl ClientBuilder {
    pub(crate) fn new(base_url: &str) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_owned(),
            timeout: Duration::from_millis(REQUEST_TIMEOUT_DEFAULT_MS),
            ca: None,
            identity: None,
            token: None,
        }
    }

    /// Trusts only the CA certificates in this PEM file (one or several) for an `https` server,
    /// instead of the built-in public roots: for a server whose certificate a private CA signed.
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> ClientBuilder {
        self.ca = Some(Pem::File(path.as_ref().to_owned()));
        self
    }

    /// [`ClientBuilder::ca_file`] with the PEM text itself.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> ClientBuilder {
        self.ca = Some(Pem::Text(pem.into()));
        self
    }

    /// Presents this certificate (chain, PEM) and its private key (PEM: PKCS#8, PKCS#1 or SEC1)
    /// to a server that requires client certificates (mutual TLS).
    pub fn client_cert_files(
        mut self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> ClientBuilder {
        let (cert, key) = (cert.as_ref().to_owned(), key.as_ref().to_owned());
        self.identity = Some((Pem::File(cert), Pem::File(key)));
        self
    }

    /// [`ClientBuilder::client_cert_files`] with the PEM texts themselves.
    pub fn client_cert_pem(
        mut self,
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> ClientBuilder {
        self.identity = Some((Pem::Text(cert.into()), Pem::Text(key.into())));
        self
    }

    /// The API key's token (`KEY_ID.SECRET`) sent as `Authorization: Bearer` to a server that
    /// runs with `--auth`. Without it, `REDRIVE_TOKEN` from the environment is used if set.
    pub fn token(mut self, token: impl Into<String>) -> ClientBuilder {
        self.token = Some(token.into());
        self
    }

    /// The timeout of calls that are not long polls.
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        let base_url = &self.base_url;
        let base =
            Url::parse(base_url).map_err(|e| Error::InvalidUrl(format!("{base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::InvalidUrl(format!("{base_url:?}: expected an http:// URL")));
        }
        let mut http = reqwest::Client::builder()
            .user_agent(concat!("redrive-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            // Drop idle connections before the server does (it closes them after
            // CONNECTION_IDLE_TIMEOUT_MS), so a request never races a close on a reused one.
            .pool_idle_timeout(Duration::from_millis(POOL_IDLE_TIMEOUT_MS))
            .tcp_nodelay(true);
        if let Some(ca) = &self.ca {
            let pem = ca.read("CA file")?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Tls(format!("the CA file: {}", transport::describe(&e))))?;
            if certs.is_empty() {
                return Err(Error::Tls("the CA file holds no CERTIFICATE block".into()));
            }
            // Like curl's --cacert: the given CAs replace the public roots, so a certificate
            // from any other CA is refused.
            http = http.tls_built_in_root_certs(false);
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &self.identity {
            let mut pem = cert.read("client certificate")?;
            pem.push(b'\n');
            pem.extend(key.read("client key")?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                Error::Tls(format!("the client certificate: {}", transport::describe(&e)))
            })?;
            http = http.identity(identity);
        }
        let token = self.token.or_else(|| std::env::var("REDRIVE_TOKEN").ok());
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Error::InvalidUrl("the token is not printable ASCII".into()))?;
            // Kept out of debug output.
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            http = http.default_headers(headers);
        }
        // A client certificate whose key does not match it fails here.
        let http = http.build().map_err(|e| Error::Tls(transport::describe(&e)))?;
        Ok(Client { http, base, timeout: self.timeout })
    }
}

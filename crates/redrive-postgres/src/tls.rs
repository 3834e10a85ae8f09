//! TLS to PostgreSQL, with rustls (the server's own TLS stack: no OpenSSL), and the store URL's
//! TLS parameters as libpq reads them:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | |
//! | `prefer` (the default) | when the server offers it | not checked |
//! | `require` | always | not checked, unless `sslrootcert` is given (then as `verify-ca`) |
//! | `verify-ca` | always | signed by a CA of `sslrootcert` |
//! | `verify-full` | always | signed by a CA of `sslrootcert`, and for the URL's host |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the public web roots, which
//! `verify-ca` and `verify-full` use when it is not given. `sslcert` and `sslkey` (PEM files,
//! both or neither) are the client certificate, for servers that require one (`cert`
//! authentication in `pg_hba.conf`, mutual TLS).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use redrive_core::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

/// How redrive connects: what the store URL says, parsed for the driver, with its TLS.
pub fn parse_url(url: &str) -> Result<(tokio_postgres::Config, Tls)> {
    let bad = |why: String| Error::invalid("store", why);
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut root, mut cert, mut key) = (None, None, None, None);
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "sslmode" => mode = Some(value.to_owned()),
            "sslrootcert" => root = Some(percent_decode(value)),
            "sslcert" => cert = Some(percent_decode(value)),
            "sslkey" => key = Some(percent_decode(value)),
            _ => rest.push(pair),
        }
    }
    let plain = match rest.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", rest.join("&")),
    };
    let mut config: tokio_postgres::Config =
        plain.parse().map_err(|e| bad(format!("not a PostgreSQL URL: {e}")))?;
    let (ssl_mode, check) = match (mode.as_deref().unwrap_or("prefer"), root.is_some()) {
        ("disable", _) => (SslMode::Disable, None),
        ("prefer", _) => (SslMode::Prefer, Some(Check::Nothing)),
        ("require", false) => (SslMode::Require, Some(Check::Nothing)),
        ("require", true) | ("verify-ca", _) => (SslMode::Require, Some(Check::Signer)),
        ("verify-full", _) => (SslMode::Require, Some(Check::SignerAndName)),
        (other, _) => {
            return Err(bad(format!(
                "sslmode {other:?}: one of disable, prefer, require, verify-ca, verify-full"
            )))
        }
    };
    config.ssl_mode(ssl_mode);
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some(read_identity(&cert, &key)?),
        (None, None) => None,
        _ => return Err(bad("sslcert and sslkey: give both or neither".into())),
    };
    let tls = match check {
        None => Tls(None),
        Some(check) => Tls(Some(Arc::new(client_config(check, root.as_deref(), identity)?))),
    };
    Ok((config, tls))
}

/// What is checked of the server's certificate.
#[derive(Clone, Copy, Debug)]
enum Check {
    Nothing,
    Signer,
    SignerAndName,
}

/// A client certificate chain and its private key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn read_identity(cert: &str, key: &str) -> Result<Identity> {
    let bad = |file: &str, why: String| Error::invalid("store", format!("{file}: {why}"));
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "no certificate in it".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    Ok((chain, key_der))
}

fn client_config(
    check: Check,
    root: Option<&str>,
    identity: Option<Identity>,
) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match (check, root) {
        (Check::Nothing, _) => None,
        (_, None | Some("system")) => {
            Some(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
        }
        (_, Some(path)) => Some(read_roots(path)?),
    };
    let webpki = match roots {
        None => None,
        Some(roots) => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| Error::invalid("store", format!("sslrootcert: {e}")))?,
        ),
    };
    let name = matches!(check, Check::SignerAndName);
    let verifier = Arc::new(Verifier { webpki, name, provider: provider.clone() });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| Error::invalid("store", format!("sslcert and sslkey: {e}"))),
    }
}

fn read_roots(path: &str) -> Result<RootCertStore> {
    let bad = |why: String| Error::invalid("store", format!("sslrootcert {path}: {why}"));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        roots.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(roots)
}

/// `%XX` escapes of a URL parameter's value (a file name may need them).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).and_then(|c| hex(*c)), b.get(i + 2).and_then(|c| hex(*c))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What `sslmode` checks of the server's certificate: the chain against the roots when there
/// are some (`webpki`), and the host name too when `name`; nothing otherwise (`prefer`,
/// `require`), as libpq does. The handshake's signatures are verified in every mode.
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else { return Ok(ServerCertVerified::assertion()) };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.name => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The driver's TLS connector: none for `sslmode=disable`.
#[derive(Clone)]
pub struct Tls(Option<Arc<rustls::ClientConfig>>);

impl MakeTlsConnect<Socket> for Tls {
    type Stream = TlsConn;
    type TlsConnect = Connect;
    type Error = io::Error;

    /// Asked for every host whatever the mode; with `sslmode=disable` the driver never uses it.
    fn make_tls_connect(&mut self, host: &str) -> io::Result<Connect> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Connect { config: self.0.clone(), name })
    }
}

pub struct Connect {
    config: Option<Arc<rustls::ClientConfig>>,
    name: ServerName<'static>,
}

impl TlsConnect<Socket> for Connect {
    type Stream = TlsConn;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsConn>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let config =
                self.config.ok_or_else(|| io::Error::other("TLS is off (sslmode=disable)"))?;
            tokio_rustls::TlsConnector::from(config).connect(self.name, stream).await.map(TlsConn)
        })
    }
}

/// A TLS session with the database.
pub struct TlsConn(tokio_rustls::client::TlsStream<Socket>);

impl tokio_postgres::tls::TlsStream for TlsConn {
    /// None: SCRAM then runs without channel binding (`channel_binding=prefer`, the default).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_keeps_what_the_driver_reads_and_takes_the_tls_parameters() {
        let (c, tls) = parse_url("postgres://u@h:5/db?sslmode=disable&application_name=x").unwrap();
        assert_eq!((c.get_ssl_mode(), c.get_application_name()), (SslMode::Disable, Some("x")));
        assert!(tls.0.is_none());
        let (c, tls) = parse_url("postgres://u@h:5/db").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Prefer);
        assert!(tls.0.is_some());
        let (c, _) = parse_url("postgres://u@h:5/db?sslmode=verify-full").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        for (url, why) in [
            ("postgres://u@h/db?sslmode=allow", "sslmode \"allow\""),
            ("postgres://u@h/db?sslcert=c.pem", "both or neither"),
            ("postgres://u@h/db?sslcert=%2Fno%2Fc.pem&sslkey=k.pem", "/no/c.pem"),
            ("postgres://u@h/db?sslmode=verify-ca&sslrootcert=%2Fno%2Fsuch.pem", "/no/such.pem"),
        ] {
            let e = parse_url(url).err().expect("refused").to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}

//! Certificates made per test (rcgen): a CA, and the certificates it issues.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// A CA whose certificate is at `<dir>/<name>.pem`.
pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
    pub file: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let file = dir.join(format!("{name}.pem"));
        std::fs::write(&file, issuer.pem()).unwrap();
        Ca { issuer, file }
    }

    /// A certificate for `localhost` and 127.0.0.1 (a server's, or a client's if `client`):
    /// its PEM, its key's PEM, its DER.
    pub fn issue(&self, client: bool) -> (String, String, Vec<u8>) {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![match client {
            true => ExtendedKeyUsagePurpose::ClientAuth,
            false => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// A certificate written to `<dir>/<name>.pem` and its key to `<dir>/<name>.key`.
    pub fn issue_files(&self, dir: &Path, name: &str, client: bool) -> (PathBuf, PathBuf, Vec<u8>) {
        let (cert, key, der) = self.issue(client);
        let (cert_file, key_file) =
            (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        (cert_file, key_file, der)
    }
}

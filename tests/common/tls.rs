//! Certificates for the TLS tests, made with rcgen: a CA, a server
//! certificate it signs for the names a test asks for, a client
//! certificate it signs, and another CA that signed nothing here. PEM
//! files in a directory of their own, removed on drop.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

pub struct TestCerts {
    dir: PathBuf,
    /// The CA that signed the server's and the client's certificates.
    pub ca: PathBuf,
    /// Another CA, which signed nothing the servers show.
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestCerts {
    /// `server_names`: the DNS names and IP addresses on the server's
    /// certificate (a name that parses as an address is one).
    pub fn new(server_names: &[&str]) -> TestCerts {
        let dir = std::env::temp_dir().join(format!("sb_certs_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a certificate directory");
        let (issuer, ca_pem) = ca("Streamboard test CA");
        let (_, other_pem) = ca("Somebody else's CA");
        let signed = |names: Vec<String>, common_name: &str| {
            let mut params = CertificateParams::new(names).expect("certificate names");
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            let key = KeyPair::generate().expect("a key pair");
            let cert = params
                .signed_by(&key, &issuer)
                .expect("a signed certificate");
            (cert.pem(), key.serialize_pem())
        };
        let names = server_names.iter().map(|name| name.to_string()).collect();
        let (server_pem, server_key_pem) = signed(names, server_names.first().unwrap_or(&"server"));
        let (client_pem, client_key_pem) = signed(Vec::new(), "streamboard");
        let file = |name: &str, contents: &str| {
            let path = dir.join(name);
            write(&path, contents);
            path
        };
        TestCerts {
            ca: file("ca.pem", &ca_pem),
            other_ca: file("other-ca.pem", &other_pem),
            server_cert: file("server.pem", &server_pem),
            server_key: file("server.key", &server_key_pem),
            client_cert: file("client.pem", &client_pem),
            client_key: file("client.key", &client_key_pem),
            dir,
        }
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed CA: its issuer (to sign with) and its certificate (PEM).
pub fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("a key pair");
    let cert = params.self_signed(&key).expect("a self-signed CA");
    (Issuer::new(params, key), cert.pem())
}

pub fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

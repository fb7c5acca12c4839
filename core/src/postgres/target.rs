//! Where PostgreSQL is and how to reach it: `postgres.url` with libpq's
//! TLS settings, which tokio-postgres does not read itself.
//!
//! `sslmode` as libpq means it, over rustls (ring provider):
//! - `disable`: no TLS;
//! - `prefer` (the default): TLS when the server offers it, else plain;
//!   the certificate is not checked (as libpq);
//! - `require`: TLS or no connection; the certificate is checked against
//!   `sslrootcert` when one is given (as libpq does with a root file),
//!   otherwise not;
//! - `verify-ca`: TLS, and the server's chain must lead to `sslrootcert`;
//! - `verify-full`: as `verify-ca`, and the certificate must name the host.
//!
//! `sslrootcert` is a PEM file of trusted CAs, or `system` for the
//! operating system's roots (libpq 16's spelling; it implies
//! `verify-full`). `sslcert` and `sslkey` (PEM) present a client
//! certificate to servers that ask for one. The URL form
//! (`postgres://…?sslmode=verify-full&sslrootcert=/etc/ca.pem`) and the
//! key/value form (`host=… sslmode=…`) are both read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A `postgres.url` that cannot be used; the message names what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("postgres.url: {0}")]
pub struct TargetError(String);

/// PostgreSQL's address and credentials, and the TLS to reach it with.
#[derive(Clone)]
pub struct PostgresTarget {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub mode: TlsMode,
}

impl std::fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the password: only the mode is shown.
        f.debug_struct("PostgresTarget")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The TLS settings taken out of the URL before tokio-postgres reads it.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsParams {
    mode: Option<String>,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl PostgresTarget {
    pub fn parse(url: &str) -> Result<Self, TargetError> {
        let (rest, params) = split_tls_params(url)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| TargetError(format!("not a PostgreSQL URL: {e}")))?;
        let mode = match params.mode.as_deref() {
            None if params.root_cert.as_deref() == Some("system") => TlsMode::VerifyFull,
            None | Some("prefer") => TlsMode::Prefer,
            Some("disable") => TlsMode::Disable,
            Some("require") => TlsMode::Require,
            Some("verify-ca") => TlsMode::VerifyCa,
            Some("verify-full") => TlsMode::VerifyFull,
            Some("allow") => TlsMode::Prefer,
            Some(other) => {
                return Err(TargetError(format!(
                    "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                )))
            }
        };
        config.ssl_mode(match mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
        let tls = MakeRustlsConnect::new(client_config(mode, &params)?);
        Ok(PostgresTarget { config, tls, mode })
    }
}

/// Takes libpq's TLS parameters out of a URL (or key/value string) and
/// gives back the rest.
fn split_tls_params(url: &str) -> Result<(String, TlsParams), TargetError> {
    let mut params = TlsParams::default();
    let mut take = |key: &str, value: String| match key {
        "sslmode" => params.mode = Some(value),
        "sslrootcert" => params.root_cert = Some(value),
        "sslcert" => params.cert = Some(value),
        "sslkey" => params.key = Some(value),
        _ => unreachable!("only TLS_KEYS are taken"),
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut parsed =
            url::Url::parse(url).map_err(|e| TargetError(format!("not a URL: {e}")))?;
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let (tls, others): (Vec<_>, Vec<_>) = pairs
            .into_iter()
            .partition(|(k, _)| TLS_KEYS.contains(&k.as_str()));
        for (key, value) in tls {
            take(&key, value);
        }
        if others.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(others);
        }
        parsed.to_string()
    } else {
        let mut kept = Vec::new();
        for pair in url.split_whitespace() {
            match pair.split_once('=') {
                Some((key, value)) if TLS_KEYS.contains(&key) => {
                    take(key, value.trim_matches('\'').to_owned())
                }
                _ => kept.push(pair),
            }
        }
        kept.join(" ")
    };
    Ok((rest, params))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration `mode` asks for.
fn client_config(mode: TlsMode, params: &TlsParams) -> Result<ClientConfig, TargetError> {
    let provider = provider();
    let roots = params.root_cert.as_deref().map(load_roots).transpose()?;
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (TlsMode::VerifyCa | TlsMode::VerifyFull, None) => return Err(TargetError(
            "sslmode=verify-ca and verify-full need sslrootcert=<CA file> (or sslrootcert=system)"
                .into(),
        )),
        (TlsMode::VerifyFull, Some(roots)) => webpki(roots, &provider)?,
        (TlsMode::VerifyCa | TlsMode::Require, Some(roots)) => Arc::new(AnyHostName {
            chain: webpki(roots, &provider)?,
        }),
        (TlsMode::Disable | TlsMode::Prefer | TlsMode::Require, _) => {
            Arc::new(Unverified(Arc::clone(&provider)))
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TargetError(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&params.cert, &params.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert, "sslcert")?, load_key(key)?)
            .map_err(|e| TargetError(format!("sslcert/sslkey: {e}"))),
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(TargetError(
            "sslcert and sslkey go together: give both or neither".into(),
        )),
    }
}

fn webpki(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, TargetError> {
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
            .build()
            .map_err(|e| TargetError(format!("sslrootcert: {e}")))?;
    Ok(verifier)
}

fn load_roots(root_cert: &str) -> Result<RootCertStore, TargetError> {
    let mut roots = RootCertStore::empty();
    if root_cert == "system" {
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
        if roots.is_empty() {
            return Err(TargetError(
                "sslrootcert=system: the operating system has no trusted roots".into(),
            ));
        }
        return Ok(roots);
    }
    for cert in load_certs(root_cert, "sslrootcert")? {
        roots
            .add(cert)
            .map_err(|e| TargetError(format!("sslrootcert {root_cert}: {e}")))?;
    }
    Ok(roots)
}

fn load_certs(path: &str, setting: &str) -> Result<Vec<CertificateDer<'static>>, TargetError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(Path::new(path))
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TargetError(format!("{setting} {path}: {e}")))?;
    if certs.is_empty() {
        return Err(TargetError(format!(
            "{setting} {path}: no PEM certificate in it"
        )));
    }
    Ok(certs)
}

fn load_key(path: &str) -> Result<PrivateKeyDer<'static>, TargetError> {
    PrivateKeyDer::from_pem_file(PathBuf::from(path))
        .map_err(|e| TargetError(format!("sslkey {path}: {e}")))
}

/// `verify-ca`: the chain must lead to a trusted root; the name on the
/// certificate is not looked at (managed services often connect through
/// addresses their certificates do not name).
#[derive(Debug)]
struct AnyHostName {
    chain: Arc<dyn ServerCertVerifier>,
}

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root file: encryption without
/// checking who answers, as libpq does. The handshake's signatures are
/// still checked, so the session is with the certificate's key holder.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_both_url_forms() {
        let (rest, params) = split_tls_params(
            "postgres://app:pw@db.example.com:5432/boards?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://app:pw@db.example.com:5432/boards?connect_timeout=5"
        );
        assert_eq!(params.mode.as_deref(), Some("verify-full"));
        assert_eq!(params.root_cert.as_deref(), Some("/etc/ca.pem"));

        let (rest, params) =
            split_tls_params("host=db user=app sslmode=require sslcert=/c.pem sslkey=/k.pem")
                .unwrap();
        assert_eq!(rest, "host=db user=app");
        assert_eq!(params.mode.as_deref(), Some("require"));
        assert_eq!(
            (params.cert.as_deref(), params.key.as_deref()),
            (Some("/c.pem"), Some("/k.pem"))
        );

        let (rest, params) = split_tls_params("postgres://localhost/db").unwrap();
        assert_eq!(rest, "postgres://localhost/db");
        assert_eq!(params, TlsParams::default());
    }

    #[test]
    fn modes_are_read_as_libpq_reads_them() {
        let mode = |url: &str| PostgresTarget::parse(url).map(|t| t.mode);
        assert_eq!(mode("postgres://h/db").unwrap(), TlsMode::Prefer);
        assert_eq!(
            mode("postgres://h/db?sslmode=disable").unwrap(),
            TlsMode::Disable
        );
        assert_eq!(
            mode("postgres://h/db?sslmode=require").unwrap(),
            TlsMode::Require
        );
        let needs_root = mode("postgres://h/db?sslmode=verify-full").unwrap_err();
        assert!(
            needs_root.to_string().contains("sslrootcert"),
            "{needs_root}"
        );
        let bad = mode("postgres://h/db?sslmode=sometimes").unwrap_err();
        assert!(
            bad.to_string()
                .starts_with("postgres.url: sslmode=sometimes"),
            "{bad}"
        );
        let missing =
            mode("postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem").unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/ca.pem"),
            "{missing}"
        );
        let half = mode("postgres://h/db?sslcert=/c.pem").unwrap_err();
        assert!(half.to_string().contains("sslkey"), "{half}");
    }

    #[test]
    fn the_password_never_prints() {
        let target = PostgresTarget::parse("postgres://app:s3cret@h/db").unwrap();
        assert!(!format!("{target:?}").contains("s3cret"));
    }
}

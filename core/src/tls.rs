//! What the TLS to the data stores says when it fails: the rustls error
//! under a driver's connection error, so that start-up can tell a refused
//! certificate (a configuration error: stop) from a store that is down
//! (wait for it).

use std::error::Error;
use std::sync::Arc;

/// The rustls error under `error`, if TLS is what failed. Looks through
/// `source()`, through `std::io::Error`'s inner error (where tokio-rustls
/// puts it), and through the `Arc` redis-rs keeps its causes in.
pub fn rustls_error<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner: Option<&(dyn Error + 'static)> =
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                io.get_ref().map(|inner| inner as &(dyn Error + 'static))
            } else if let Some(shared) = error.downcast_ref::<Arc<dyn Error + Send + Sync>>() {
                Some(&**shared as &(dyn Error + 'static))
            } else {
                None
            };
        if let Some(tls) = inner.and_then(rustls_error) {
            return Some(tls);
        }
        source = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rustls_error_is_found_under_io_and_shared_causes() {
        let refused = || rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, refused());
        assert_eq!(rustls_error(&io), Some(&refused()));
        // As redis-rs holds an I/O error: behind an `Arc`.
        let shared: Arc<dyn Error + Send + Sync> = Arc::new(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            refused(),
        ));
        let redis = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            refused(),
        ));
        assert_eq!(rustls_error(&shared), Some(&refused()));
        assert_eq!(rustls_error(&redis), Some(&refused()));
        let plain = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(rustls_error(&plain), None);
    }
}

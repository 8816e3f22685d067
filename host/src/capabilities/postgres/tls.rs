//! TLS to PostgreSQL, through rustls, chosen by the connection string as libpq chooses it.
//!
//! tokio-postgres (which Spin also uses to parse connection strings) knows
//! `sslmode=disable|prefer|require` only and refuses `verify-ca`, `verify-full` and
//! `sslrootcert`; Spin hands every mode but `disable` to rustls, which always verifies the
//! server's chain and name (spinframework/spin `crates/factor-outbound-pg/src/client.rs`).
//! edge-host takes libpq's names out of the string before tokio-postgres sees them:
//!
//! - `require`, `verify-full`: TLS, chain and host name verified (Spin's `require`; libpq's
//!   `require` would not verify, which is no protection against a man in the middle);
//! - `verify-ca`: TLS, chain verified, host name not (for servers reached by an address
//!   their certificate does not name);
//! - `disable`, `prefer` (tokio-postgres's default): plain TCP, as before. Spin would try
//!   TLS for `prefer`; a server that offers TLS is better asked for it with `require`.
//!
//! The roots are `sslrootcert=PATH` (PEM, one or more certificates) when given, else the
//! Mozilla roots (webpki-roots), which is what managed services' certificates chain to.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use super::PgError;

/// How a connection string asks for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// `disable`, `prefer` or no `sslmode`: plain TCP.
    Off,
    /// `require`/`verify-full` (`hostname: true`) or `verify-ca` (`hostname: false`).
    Verify {
        hostname: bool,
        root_cert: Option<PathBuf>,
    },
}

/// Splits libpq's TLS parameters off a URL-form connection string: the string for
/// tokio-postgres (with `sslmode=require` where TLS is wanted) and the [`TlsMode`].
/// A `key=value` string is returned as it is (tokio-postgres reads its `sslmode`).
pub(crate) fn split(address: &str) -> Result<(String, TlsMode), PgError> {
    let is_url = address.starts_with("postgres://") || address.starts_with("postgresql://");
    let Some((base, query)) = address.split_once('?').filter(|_| is_url) else {
        let mode = if address.contains("sslmode=require") {
            TlsMode::Verify {
                hostname: true,
                root_cert: None,
            }
        } else {
            TlsMode::Off
        };
        return Ok((address.to_owned(), mode));
    };
    let mut mode = None;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => mode = Some(value.to_owned()),
            "sslrootcert" => {
                let path = url::form_urlencoded::parse(format!("p={value}").as_bytes())
                    .next()
                    .map(|(_, path)| path.into_owned())
                    .unwrap_or_default();
                root_cert = Some(PathBuf::from(path));
            }
            _ => kept.push(pair),
        }
    }
    let tls = match mode.as_deref() {
        None | Some("disable") | Some("prefer") => TlsMode::Off,
        Some("require") | Some("verify-full") => TlsMode::Verify {
            hostname: true,
            root_cert,
        },
        Some("verify-ca") => TlsMode::Verify {
            hostname: false,
            root_cert,
        },
        Some(other) => {
            return Err(PgError::ConnectionFailed(format!(
                "invalid connection string: sslmode `{other}` is not one of disable, prefer, \
                 require, verify-ca, verify-full"
            )))
        }
    };
    let sslmode = match (&tls, mode.as_deref()) {
        (TlsMode::Verify { .. }, _) => Some("require"),
        (TlsMode::Off, mode) => mode,
    };
    Ok((rebuild(base, &kept, sslmode), tls))
}

fn rebuild(base: &str, kept: &[&str], sslmode: Option<&str>) -> String {
    let mut pairs: Vec<String> = kept.iter().map(|pair| (*pair).to_owned()).collect();
    if let Some(mode) = sslmode {
        pairs.push(format!("sslmode={mode}"));
    }
    if pairs.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", pairs.join("&"))
    }
}

/// The rustls client configuration for a [`TlsMode::Verify`].
pub(crate) fn client_config(
    hostname: bool,
    root_cert: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, PgError> {
    let mut roots = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let unreadable = |err: &dyn std::fmt::Display| {
                PgError::ConnectionFailed(format!(
                    "cannot read sslrootcert {}: {err}",
                    path.display()
                ))
            };
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|err| unreadable(&err))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| unreadable(&err))?;
            let (added, _) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(unreadable(&"no certificate in it"));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| PgError::Other(format!("TLS configuration: {err}")))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|err| PgError::Other(format!("TLS configuration: {err}")))?;
    let config = if hostname {
        builder.with_webpki_verifier(verifier).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
            .with_no_client_auth()
    };
    Ok(config)
}

/// `verify-ca`: the chain must lead to a trusted root; the name in it is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                ..
            })) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_parameters_are_taken_out_for_tokio_postgres() {
        let (plain, mode) =
            split("postgres://u:p@h:5432/db?application_name=a&sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem")
                .unwrap();
        assert_eq!(
            plain,
            "postgres://u:p@h:5432/db?application_name=a&sslmode=require"
        );
        assert_eq!(
            mode,
            TlsMode::Verify {
                hostname: false,
                root_cert: Some(PathBuf::from("/etc/ca.pem"))
            }
        );
        let (plain, mode) = split("postgresql://h/db?sslmode=verify-full").unwrap();
        assert_eq!(plain, "postgresql://h/db?sslmode=require");
        assert!(matches!(
            mode,
            TlsMode::Verify {
                hostname: true,
                root_cert: None
            }
        ));
        let (plain, mode) = split("postgres://h/db?sslmode=prefer").unwrap();
        assert_eq!(
            (plain.as_str(), mode),
            ("postgres://h/db?sslmode=prefer", TlsMode::Off)
        );
        assert_eq!(split("postgres://h/db").unwrap().1, TlsMode::Off);
        assert!(split("host=h sslmode=require").unwrap().1 != TlsMode::Off);
        let err = split("postgres://h/db?sslmode=verify")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sslmode `verify`"), "{err}");
    }
}

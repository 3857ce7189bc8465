//! TLS to Postgres with libpq's meaning of `sslmode` and `sslrootcert`.
//!
//! tokio-postgres reads `sslmode=disable|prefer|require` but neither `verify-ca`,
//! `verify-full` nor `sslrootcert`, which is what managed databases document. This module
//! takes those out of the connection string, hands the rest to tokio-postgres, and builds a
//! rustls connector that checks what libpq would check:
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | no | — |
//! | `prefer` (the default) | when the server offers it | no |
//! | `require` | yes | only with `sslrootcert` (then as `verify-ca`), as libpq does |
//! | `verify-ca` | yes | chain, against `sslrootcert` or the system's roots |
//! | `verify-full` | yes | chain and host name |

use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// What `sslmode` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text.
    Disable,
    /// TLS when the server offers it, unverified.
    Prefer,
    /// TLS, unverified unless a root certificate is named.
    Require,
    /// TLS with the certificate chain verified.
    VerifyCa,
    /// TLS with the chain and the host name verified.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, StoreError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" | "allow" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(StoreError::Config(format!(
                    "invalid sslmode {other:?}: use disable, prefer, require, verify-ca or verify-full"
                )));
            }
        })
    }
}

/// A connection string with its TLS settings taken apart.
#[derive(Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// What tokio-postgres is given (without `sslrootcert`; `verify-*` as `require`).
    pub connection: String,
    /// The mode asked for.
    pub mode: SslMode,
    /// The root certificates file (`sslrootcert`), if named.
    pub root_cert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL or a `key=value` string.
pub fn split(connection: &str) -> Result<TlsSettings, StoreError> {
    let mut mode = None;
    let mut root_cert = None;
    // What becomes of each parameter: dropped (ours alone), kept, or rewritten.
    let mut take = |key: &str, value: &str| -> Result<Param, StoreError> {
        match key {
            "sslrootcert" => {
                root_cert = Some(value.to_owned());
                Ok(Param::Drop)
            }
            "sslmode" => {
                let parsed = SslMode::parse(value)?;
                mode = Some(parsed);
                // tokio-postgres knows only the first three; our connector does the checks.
                Ok(match parsed {
                    SslMode::VerifyCa | SslMode::VerifyFull => Param::Rewrite("require"),
                    _ => Param::Keep,
                })
            }
            _ => Ok(Param::Keep),
        }
    };
    let is_url = connection.starts_with("postgres://") || connection.starts_with("postgresql://");
    let connection = match connection.split_once('?') {
        Some((base, query)) if is_url => {
            let mut kept = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                match take(key, &percent_decode(value))? {
                    Param::Drop => {}
                    Param::Keep => kept.push(pair.to_owned()),
                    Param::Rewrite(value) => kept.push(format!("{key}={value}")),
                }
            }
            if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
        _ if is_url => connection.to_owned(),
        _ => {
            // Rebuilt only when something was taken out: a quoted value (a password with
            // spaces) passes through untouched otherwise.
            let mut kept = Vec::new();
            let mut changed = false;
            for token in connection.split_whitespace() {
                let Some((key, value)) =
                    token.split_once('=').filter(|(_, v)| !v.starts_with('\''))
                else {
                    kept.push(token.to_owned());
                    continue;
                };
                match take(key, value)? {
                    Param::Drop => changed = true,
                    Param::Keep => kept.push(token.to_owned()),
                    Param::Rewrite(value) => {
                        changed = true;
                        kept.push(format!("{key}={value}"));
                    }
                }
            }
            if changed {
                kept.join(" ")
            } else {
                connection.to_owned()
            }
        }
    };
    Ok(TlsSettings {
        connection,
        mode: mode.unwrap_or(SslMode::Prefer),
        root_cert,
    })
}

enum Param {
    Drop,
    Keep,
    Rewrite(&'static str),
}

/// `%XX` escapes decoded (what a URL's query may hold in a file path).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The tokio-postgres configuration and the TLS connector for `connection`.
pub fn connect_settings(
    connection: &str,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect, SslMode), StoreError> {
    let settings = split(connection)?;
    let config = tokio_postgres::Config::from_str(&settings.connection)
        .map_err(|e| StoreError::Config(format!("the database URL: {e}")))?;
    let connector = MakeRustlsConnect::new(client_config(&settings)?);
    Ok((config, connector, settings.mode))
}

fn client_config(settings: &TlsSettings) -> Result<ClientConfig, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match (settings.mode, &settings.root_cert) {
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => {
            Arc::new(NoVerification(provider.signature_verification_algorithms))
        }
        (SslMode::Require | SslMode::VerifyCa, root) => {
            Arc::new(ChainOnly(web_pki(roots(root.as_deref())?, &provider)?))
        }
        (SslMode::VerifyFull, root) => web_pki(roots(root.as_deref())?, &provider)?,
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Config(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The certificates in `file`, or the system's roots when none is named.
fn roots(file: Option<&str>) -> Result<RootCertStore, StoreError> {
    let mut store = RootCertStore::empty();
    match file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| StoreError::Config(format!("reading sslrootcert {path}: {e}")))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(StoreError::Config(format!(
                    "sslrootcert {path} holds no usable certificate"
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
        }
    }
    Ok(store)
}

fn web_pki(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, StoreError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| StoreError::Config(format!("TLS setup: {e}")))
}

/// `prefer` and `require` without a root certificate: encrypted, server not authenticated
/// (libpq's meaning). The handshake's own signatures are still checked.
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not compared.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
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
    fn url_tls_parameters_are_taken_out_and_verify_modes_become_require() {
        let s = split(
            "postgres://u:p@db.example:5432/gh?sslmode=verify-full&sslrootcert=%2Fetc%2Fssl%2Frds%20ca.pem&application_name=gh",
        )
        .unwrap();
        assert_eq!(
            s.connection,
            "postgres://u:p@db.example:5432/gh?sslmode=require&application_name=gh"
        );
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert.as_deref(), Some("/etc/ssl/rds ca.pem"));

        let s = split("postgresql://u@h/db?sslrootcert=/ca.pem").unwrap();
        assert_eq!(s.connection, "postgresql://u@h/db");
        assert_eq!(
            (s.mode, s.root_cert.as_deref()),
            (SslMode::Prefer, Some("/ca.pem"))
        );

        let s = split("postgres://u@h/db").unwrap();
        assert_eq!(s.connection, "postgres://u@h/db");
        assert_eq!((s.mode, s.root_cert), (SslMode::Prefer, None));
        assert_eq!(
            split("postgres://h/db?sslmode=disable").unwrap().mode,
            SslMode::Disable
        );
    }

    #[test]
    fn key_value_strings_work_the_same() {
        let s = split("host=db user=u sslmode=verify-ca sslrootcert=/ca.pem dbname=gh").unwrap();
        assert_eq!(s.connection, "host=db user=u sslmode=require dbname=gh");
        assert_eq!(
            (s.mode, s.root_cert.as_deref()),
            (SslMode::VerifyCa, Some("/ca.pem"))
        );
    }

    #[test]
    fn unknown_modes_and_missing_root_files_are_clear_errors() {
        let error = split("postgres://h/db?sslmode=verify")
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid sslmode \"verify\""), "{error}");
        let error =
            connect_settings("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
        assert!(
            error.contains("reading sslrootcert /nonexistent.pem"),
            "{error}"
        );
        let error = connect_settings("postgres://h/db?sslmode=nonsense")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("invalid sslmode"), "{error}");
    }
}

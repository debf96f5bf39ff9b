//! TLS for every connection that leaves the process: Kafka brokers (rskafka's clients and this
//! service's own broker connections) and the HTTP clients to hetida's runtime and backend.
//!
//! rustls with the `ring` provider, named explicitly (design decision 12): rustls picks a
//! process-wide default only when exactly one provider is compiled in, and aws-lc-rs must never
//! be. Trust is the system's CA certificates unless a CA bundle is named; a client certificate
//! and key (PEM, the key optionally encrypted as PKCS#8 with a password) authenticate the
//! service where the server asks for one. Without the `tls` feature the same settings are read
//! and checked, and asking for TLS is a clear startup error.

use std::path::PathBuf;

use crate::secret::Secret;

/// Where the certificates come from, as aiokafka's `create_ssl_context(cafile, certfile,
/// keyfile, password)` takes them; the defaults trust the system's CAs and send no client
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM bundle of the CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for servers that authenticate clients (mutual TLS). It may
    /// hold the key too, as Python's `load_cert_chain` allows.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate (PKCS#8, PKCS#1 or SEC1; PKCS#8 may be
    /// encrypted).
    pub key_file: Option<PathBuf>,
    /// Decrypts an encrypted key.
    pub key_password: Option<Secret>,
    /// `false` accepts any server certificate (hetida's `*_VERIFY_CERTS=false`): encryption
    /// without authentication, for test setups only.
    pub verify_server: bool,
}

impl TlsFiles {
    /// System trust, no client certificate, servers verified.
    pub fn system() -> Self {
        TlsFiles {
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_password: None,
            verify_server: true,
        }
    }
}

/// The same as [`TlsFiles::system`]: a derived default would turn verification off.
impl Default for TlsFiles {
    fn default() -> Self {
        TlsFiles::system()
    }
}

/// TLS cannot be set up as configured; each names the file or setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file cannot be read or holds nothing usable.
    #[error("{what} {}: {reason}", path.display())]
    File {
        /// "CA file", "client certificate", "client key".
        what: &'static str,
        /// The file as configured, so that the message names what to fix.
        path: PathBuf,
        /// Why it cannot be used (unreadable, no PEM, a key that does not decrypt).
        reason: String,
    },
    /// Neither a CA bundle was named nor are there CA certificates on this system.
    #[error(
        "no CA certificates found on this system ({0}); name a CA bundle (HD_KAFKA_SSL_CAFILE for Kafka, HD_CA_BUNDLE for HTTPS)"
    )]
    NoSystemRoots(String),
    /// The certificate and the key do not fit together, or rustls refuses them.
    #[error("client certificate and key: {0}")]
    ClientAuth(String),
    /// A key without certificate or the other way round.
    #[error("{0}")]
    Incomplete(&'static str),
    /// This binary was built without the `tls` feature.
    #[error(
        "TLS is not built into this binary (built with --no-default-features); use a build with the default `tls` feature"
    )]
    NotBuilt,
}

#[cfg(feature = "tls")]
pub use enabled::client_config;

/// Checks the files as [`client_config`] would read them, for a startup error before any
/// worker exists.
pub fn check(files: &TlsFiles) -> Result<(), TlsError> {
    #[cfg(feature = "tls")]
    {
        client_config(files).map(drop)
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = files;
        Err(TlsError::NotBuilt)
    }
}

/// Whether this binary can speak TLS.
pub const BUILT_IN: bool = cfg!(feature = "tls");

#[cfg(feature = "tls")]
mod enabled {
    use std::path::Path;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{
        CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime,
    };
    use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

    use super::{TlsError, TlsFiles};

    fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
        std::fs::read(path).map_err(|e| TlsError::File {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The rustls configuration for `files`; built once per worker and shared by its clients.
    pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::ClientAuth(e.to_string()))?;
        let builder = if files.verify_server {
            builder.with_root_certificates(roots(files)?)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        };
        let config = match client_identity(files)? {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::ClientAuth(e.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }

    fn roots(files: &TlsFiles) -> Result<RootCertStore, TlsError> {
        let mut store = RootCertStore::empty();
        if let Some(path) = &files.ca_file {
            let certs = certificates("CA file", path)?;
            let (_, refused) = store.add_parsable_certificates(certs);
            if store.is_empty() {
                return Err(TlsError::File {
                    what: "CA file",
                    path: path.clone(),
                    reason: format!("none of its {refused} certificate(s) is usable as a CA"),
                });
            }
            return Ok(store);
        }
        let found = rustls_native_certs::load_native_certs();
        store.add_parsable_certificates(found.certs);
        if store.is_empty() {
            let why = found
                .errors
                .first()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "none in the usual places or SSL_CERT_FILE/SSL_CERT_DIR".into());
            return Err(TlsError::NoSystemRoots(why));
        }
        Ok(store)
    }

    fn certificates(
        what: &'static str,
        path: &Path,
    ) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let pem = read(what, path)?;
        let bad = |reason: String| TlsError::File {
            what,
            path: path.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(bad("holds no PEM certificate".into()));
        }
        Ok(certs)
    }

    type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

    fn client_identity(files: &TlsFiles) -> Result<Option<Identity>, TlsError> {
        let Some(cert_file) = &files.cert_file else {
            if files.key_file.is_some() {
                return Err(TlsError::Incomplete(
                    "a client key is named but no client certificate (HD_KAFKA_SSL_CERTFILE)",
                ));
            }
            return Ok(None);
        };
        let chain = certificates("client certificate", cert_file)?;
        let (what, key_path) = match &files.key_file {
            Some(path) => ("client key", path),
            None => (
                "client certificate (no key file named, so the key)",
                cert_file,
            ),
        };
        let key = private_key(what, key_path, files)?;
        Ok(Some((chain, key)))
    }

    const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const ENCRYPTED_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";

    fn private_key(
        what: &'static str,
        path: &Path,
        files: &TlsFiles,
    ) -> Result<PrivateKeyDer<'static>, TlsError> {
        let pem = read(what, path)?;
        let bad = |reason: String| TlsError::File {
            what,
            path: path.to_owned(),
            reason,
        };
        let text = String::from_utf8_lossy(&pem);
        if let Some(start) = text.find(ENCRYPTED_BEGIN) {
            let end = text[start..]
                .find(ENCRYPTED_END)
                .map(|e| start + e + ENCRYPTED_END.len())
                .ok_or_else(|| bad("its encrypted key has no END line".into()))?;
            let Some(password) = &files.key_password else {
                return Err(bad(
                    "the key is encrypted and no password is set (HD_KAFKA_SSL_PASSWORD)".into(),
                ));
            };
            return decrypt(&text[start..end], password.expose()).map_err(bad);
        }
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
            bad(match e {
                rustls::pki_types::pem::Error::NoItemsFound => "holds no PEM private key".into(),
                other => format!("not a PEM private key: {other}"),
            })
        })
    }

    /// An encrypted PKCS#8 key (PBES2, as `openssl pkcs8 -topk8` writes) decrypted in memory.
    fn decrypt(pem: &str, password: &str) -> Result<PrivateKeyDer<'static>, String> {
        use pkcs8::der::Decode;
        let (label, der) = pkcs8::der::pem::decode_vec(pem.as_bytes())
            .map_err(|e| format!("its encrypted key is not PEM: {e}"))?;
        debug_assert_eq!(label, "ENCRYPTED PRIVATE KEY");
        let info = pkcs8::EncryptedPrivateKeyInfo::from_der(&der)
            .map_err(|e| format!("its encrypted key cannot be read: {e}"))?;
        // The decryption error says nothing a person can act on beyond this.
        let plain = info.decrypt(password).map_err(|_| {
            "the key cannot be decrypted: wrong password (HD_KAFKA_SSL_PASSWORD) or an unsupported cipher"
                .to_owned()
        })?;
        Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )))
    }

    /// Accepts any server certificate but still checks the handshake's signatures, so the
    /// connection is encrypted to whoever answered (hetida's `verify=False`).
    #[derive(Debug)]
    struct AcceptAnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyCertificate {
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
            rustls::crypto::verify_tls12_signature(
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
            rustls::crypto::verify_tls13_signature(
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
}

/// What a failed TLS handshake means for the operator: the certificate problem in words, found
/// in an error chain (rustls' own messages are precise but terse).
pub fn explain_handshake_failure(chain: &str) -> Option<&'static str> {
    const CASES: &[(&str, &str)] = &[
        (
            "UnknownIssuer",
            "the server's certificate is not trusted: it is not signed by a trusted CA (name its CA in the CA bundle: HD_KAFKA_SSL_CAFILE for Kafka, HD_CA_BUNDLE for HTTPS)",
        ),
        (
            "NotValidForName",
            "the server's certificate does not name the host connected to (name mismatch)",
        ),
        // rustls 0.23 writes the variants that carry context (what webpki reports) in words.
        (
            "certificate not valid for name",
            "the server's certificate does not name the host connected to (name mismatch)",
        ),
        ("Expired", "the server's certificate has expired"),
        (
            "certificate expired",
            "the server's certificate has expired",
        ),
        ("NotValidYet", "the server's certificate is not valid yet"),
        (
            "certificate not valid yet",
            "the server's certificate is not valid yet",
        ),
        (
            "CertificateRequired",
            "the server requires a client certificate and none was sent",
        ),
        (
            "BadCertificate",
            "the server refused the client certificate",
        ),
        (
            "UnknownCA",
            "the server does not trust the client certificate's CA",
        ),
        (
            "HandshakeFailure",
            "the server refused the handshake (no protocol version or cipher in common, or a client certificate it does not accept)",
        ),
        (
            "InvalidContentType",
            "the server did not answer in TLS: is it a plaintext port?",
        ),
        (
            "CorruptMessage",
            "the server did not answer in TLS: is it a plaintext port?",
        ),
    ];
    CASES
        .iter()
        .find(|(needle, _)| chain.contains(needle))
        .map(|(_, text)| *text)
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use std::time::Duration;

    use rustls::pki_types::UnixTime;
    use rustls::{CertificateError, Error};

    use super::explain_handshake_failure;

    /// Every certificate error rustls reports for a server, as rustls writes it into an error
    /// chain, gets its words (the handshakes the integration tests cannot stage: expired, not
    /// yet valid).
    #[test]
    fn rustls_certificate_errors_are_explained() {
        let at = |s| UnixTime::since_unix_epoch(Duration::from_secs(s));
        for (error, says) in [
            (CertificateError::UnknownIssuer, "is not trusted"),
            (CertificateError::NotValidForName, "name mismatch"),
            (CertificateError::Expired, "has expired"),
            (
                CertificateError::ExpiredContext {
                    time: at(200),
                    not_after: at(100),
                },
                "has expired",
            ),
            (CertificateError::NotValidYet, "is not valid yet"),
            (
                CertificateError::NotValidYetContext {
                    time: at(100),
                    not_before: at(200),
                },
                "is not valid yet",
            ),
        ] {
            let chain = format!(
                "client error (Connect): {}",
                Error::InvalidCertificate(error)
            );
            let explained = explain_handshake_failure(&chain);
            assert!(
                explained.is_some_and(|e| e.contains(says)),
                "{chain}: {explained:?}"
            );
        }
        assert_eq!(
            explain_handshake_failure("client error (Connect): Connection refused"),
            None
        );
    }
}

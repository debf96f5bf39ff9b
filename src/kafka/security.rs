//! How this worker reaches its brokers on one side (consumer or producer): plain TCP or TLS,
//! with or without SASL. Built once per worker from the configuration ([`BrokerAuth::new`]) and
//! handed to every client that opens a broker connection: rskafka's (through its builder) and
//! this service's own ([`super::wire::BrokerConnection`], which runs the SASL exchange itself).
//!
//! A connection that cannot be secured as configured fails with a [`SecurityError`] that says
//! what an operator must fix (credentials, trust, protocol), because retrying cannot fix it.

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::ClientBuilder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::{KafkaSecurity, SaslCredentials, SaslMechanism, SecurityProtocol};

/// How long opening one connection may take, TCP and TLS handshake together: a TLS client on
/// a plaintext port (or a silent firewall) must become an error, not a hang. Kafka's own
/// clients give `socket.connection.setup.timeout.ms` 10 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A configured connection that cannot work; not a broker being away.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecurityError {
    /// The TLS settings cannot be loaded (a file, a key password).
    #[error("Kafka TLS settings: {0}")]
    Tls(String),
    /// The broker refused our credentials or our mechanism.
    #[error(
        "broker {broker} refused SASL {mechanism} authentication as user `{username}`: {reason}"
    )]
    Authentication {
        /// host:port of the broker that refused.
        broker: String,
        /// The SASL mechanism tried (`PLAIN`, `SCRAM-SHA-256`, ...).
        mechanism: &'static str,
        /// The user as configured (never the password).
        username: String,
        /// The broker's error message, or what in its answer failed.
        reason: String,
    },
    /// The TLS handshake failed for a reason of certificates or protocol.
    #[error("TLS handshake with broker {broker} failed: {problem} ({detail})")]
    Handshake {
        /// host:port of the broker.
        broker: String,
        /// The problem in an operator's words (see [`crate::tls::explain_handshake_failure`]).
        problem: String,
        /// rustls' error as it wrote it.
        detail: String,
    },
    /// What the broker answered does not fit the configured `security_protocol`.
    #[error("broker {broker}: {problem} (security_protocol is {protocol})")]
    ProtocolMismatch {
        /// host:port of the broker.
        broker: String,
        /// The configured `security_protocol`.
        protocol: &'static str,
        /// What the broker's answer suggests instead.
        problem: String,
    },
    /// The broker hung up before its first answer, or during the TLS handshake: what it does
    /// when the client speaks another protocol, but also what a broker that is shutting down
    /// does. [`super::client`] asks again before it believes the former.
    #[error("broker {broker}: {problem} (security_protocol is {protocol})")]
    ClosedEarly {
        /// host:port of the broker.
        broker: String,
        /// The configured `security_protocol`.
        protocol: &'static str,
        /// When it hung up, and what that suggests.
        problem: String,
    },
}

/// The connection setup of one side, ready to use.
#[derive(Clone)]
pub struct BrokerAuth {
    protocol: SecurityProtocol,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<Arc<SaslCredentials>>,
}

impl std::fmt::Debug for BrokerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerAuth")
            .field("protocol", &self.protocol.name())
            .field("sasl", &self.sasl.as_ref().map(|s| s.mechanism.name()))
            .finish_non_exhaustive()
    }
}

impl Default for BrokerAuth {
    fn default() -> Self {
        BrokerAuth::plaintext()
    }
}

impl BrokerAuth {
    /// Neither TLS nor SASL.
    pub fn plaintext() -> Self {
        BrokerAuth {
            protocol: SecurityProtocol::Plaintext,
            #[cfg(feature = "tls")]
            tls: None,
            sasl: None,
        }
    }

    /// Loads the TLS configuration (files are read here, once per worker).
    pub fn new(security: &KafkaSecurity) -> Result<Self, SecurityError> {
        #[cfg(feature = "tls")]
        let tls = if security.protocol.uses_tls() {
            Some(
                crate::tls::client_config(&security.tls)
                    .map_err(|e| SecurityError::Tls(e.to_string()))?,
            )
        } else {
            None
        };
        #[cfg(not(feature = "tls"))]
        if security.protocol.uses_tls() {
            return Err(SecurityError::Tls(
                crate::tls::TlsError::NotBuilt.to_string(),
            ));
        }
        Ok(BrokerAuth {
            protocol: security.protocol,
            #[cfg(feature = "tls")]
            tls,
            sasl: security.sasl.clone().map(Arc::new),
        })
    }

    /// The protocol, as Kafka names it.
    pub fn protocol(&self) -> SecurityProtocol {
        self.protocol
    }

    /// The credentials, when SASL is on.
    pub(super) fn sasl(&self) -> Option<&SaslCredentials> {
        self.sasl.as_deref()
    }

    /// `builder` with this side's TLS and SASL settings.
    pub(super) fn configure(&self, builder: ClientBuilder) -> ClientBuilder {
        #[cfg(feature = "tls")]
        let builder = match &self.tls {
            Some(config) => builder.tls_config(config.clone()),
            None => builder,
        };
        match &self.sasl {
            Some(sasl) => builder.sasl_config(rskafka_sasl(sasl)),
            None => builder,
        }
    }

    /// A TCP connection to `broker`, inside TLS when the protocol says so; bounded by
    /// [`CONNECT_TIMEOUT`].
    pub(super) async fn connect(&self, broker: &str) -> Result<Box<dyn BrokerIo>, ConnectError> {
        let open = async {
            let tcp = TcpStream::connect(broker).await.map_err(ConnectError::Io)?;
            tcp.set_nodelay(true).map_err(ConnectError::Io)?;
            self.wrap(broker, tcp).await
        };
        tokio::time::timeout(CONNECT_TIMEOUT, open)
            .await
            .unwrap_or_else(|_| {
                // A TLS handshake that never ends stands on a TCP connection that did not.
                Err(if self.protocol.uses_tls() {
                    ConnectError::Security(SecurityError::ProtocolMismatch {
                        broker: broker.to_owned(),
                        protocol: self.protocol.name(),
                        problem: format!(
                            "no TLS handshake within {CONNECT_TIMEOUT:?}: is it a plaintext listener?"
                        ),
                    })
                } else {
                    ConnectError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("connecting took longer than {CONNECT_TIMEOUT:?}"),
                    ))
                })
            })
    }

    #[cfg(feature = "tls")]
    async fn wrap(&self, broker: &str, tcp: TcpStream) -> Result<Box<dyn BrokerIo>, ConnectError> {
        let Some(config) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let host = broker.rsplit_once(':').map_or(broker, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
            ConnectError::Security(SecurityError::Tls(format!(
                "`{host}` is not a host name TLS can verify: {e}"
            )))
        })?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        match connector.connect(name, tcp).await {
            Ok(stream) => Ok(Box::new(stream)),
            Err(e) => Err(ConnectError::Security(handshake_error(
                broker,
                self.protocol,
                &e,
            ))),
        }
    }

    #[cfg(not(feature = "tls"))]
    async fn wrap(&self, _broker: &str, tcp: TcpStream) -> Result<Box<dyn BrokerIo>, ConnectError> {
        Ok(Box::new(tcp))
    }

    /// What a connection that ended before its first answer means under this protocol: a
    /// plaintext client on a TLS or SASL listener sees the broker hang up (or answer in TLS).
    pub(super) fn early_close(&self, broker: &str, detail: &str) -> SecurityError {
        let problem = match self.protocol {
            SecurityProtocol::Plaintext => {
                "the broker closed the connection before answering: is it a TLS or SASL listener?"
            }
            SecurityProtocol::SaslPlaintext => {
                "the broker closed the connection before answering: is it a TLS listener, or one without SASL?"
            }
            SecurityProtocol::Ssl => {
                "the broker closed the connection before answering: does the listener expect SASL, or a client certificate?"
            }
            SecurityProtocol::SaslSsl => {
                "the broker closed the connection before answering: does the listener expect a client certificate, or no SASL?"
            }
        };
        SecurityError::ClosedEarly {
            broker: broker.to_owned(),
            protocol: self.protocol.name(),
            problem: format!("{problem} ({detail})"),
        }
    }
}

/// A failed handshake in an operator's words: the certificate problem named where rustls
/// says which.
#[cfg(feature = "tls")]
fn handshake_error(broker: &str, protocol: SecurityProtocol, e: &std::io::Error) -> SecurityError {
    let detail = crate::http_client::error_chain(e);
    if let Some(problem) = crate::tls::explain_handshake_failure(&detail) {
        return SecurityError::Handshake {
            broker: broker.to_owned(),
            problem: problem.to_owned(),
            detail,
        };
    }
    if matches!(
        e.kind(),
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
    ) {
        return SecurityError::ClosedEarly {
            broker: broker.to_owned(),
            protocol: protocol.name(),
            problem: format!(
                "the broker closed the connection during the TLS handshake: is it a plaintext listener, or does it require a client certificate? ({detail})"
            ),
        };
    }
    SecurityError::Handshake {
        broker: broker.to_owned(),
        problem: "the handshake was refused".to_owned(),
        detail,
    }
}

/// Opening a connection failed: the broker may be away (retry), or the setup is wrong.
#[derive(Debug)]
pub(super) enum ConnectError {
    Io(std::io::Error),
    Security(SecurityError),
}

/// A broker connection's byte stream, plain or TLS.
pub(super) trait BrokerIo: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug> BrokerIo for T {}

fn rskafka_sasl(sasl: &SaslCredentials) -> rskafka::client::SaslConfig {
    use rskafka::client::{Credentials, SaslConfig};
    let credentials = Credentials::new(sasl.username.clone(), sasl.password.expose().to_owned());
    match sasl.mechanism {
        SaslMechanism::Plain => SaslConfig::Plain(credentials),
        SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
        SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
    }
}

/// The SASL exchange as the client's side of it: rsasl's session for the mechanism (the same
/// crate and mechanisms rskafka uses), fed with the broker's answers.
pub(super) struct SaslExchange {
    session: rsasl::prelude::Session,
}

impl SaslExchange {
    pub(super) fn start(sasl: &SaslCredentials) -> Result<SaslExchange, String> {
        let config = rsasl::config::SASLConfig::with_credentials(
            None,
            sasl.username.clone(),
            sasl.password.expose().to_owned(),
        )
        .map_err(|e| e.to_string())?;
        let mechanism = rsasl::mechname::Mechname::parse(sasl.mechanism.name().as_bytes())
            .map_err(|e| e.to_string())?;
        let session = rsasl::prelude::SASLClient::new(config)
            .start_suggested(&[mechanism])
            .map_err(|e| e.to_string())?;
        Ok(SaslExchange { session })
    }

    /// The next message to send, given the broker's last answer (`None` at the start); `None`
    /// when the exchange is complete.
    pub(super) fn step(&mut self, received: Option<&[u8]>) -> Result<Step, String> {
        let mut out = std::io::Cursor::new(Vec::new());
        let state = self
            .session
            .step(received, &mut out)
            .map_err(|e| e.to_string())?;
        Ok(Step {
            send: state.has_sent_message().then(|| out.into_inner()),
            finished: state.is_finished(),
        })
    }
}

/// One step of a SASL exchange.
pub(super) struct Step {
    /// What to send to the broker, if anything.
    pub send: Option<Vec<u8>>,
    /// The exchange is over once this message (if any) is answered.
    pub finished: bool,
}

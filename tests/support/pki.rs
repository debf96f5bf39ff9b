//! Certificates the TLS tests generate for themselves (rcgen, ring): a test CA, a broker/server
//! certificate for `localhost` and `127.0.0.1` signed by it, a client certificate (plain and
//! password-encrypted key), and for the negative cases a second CA nobody trusts with a server
//! certificate of its own, and a certificate of the trusted CA for a name that is not ours.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The password of `client.enc.key`.
pub const CLIENT_KEY_PASSWORD: &str = "client-key-pass";

/// The files written into one directory, all PEM.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// The trusted CA's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// A server certificate (chain) for localhost/127.0.0.1, signed by the trusted CA, and its key.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    /// A client certificate signed by the trusted CA, its key, and the key encrypted with
    /// [`CLIENT_KEY_PASSWORD`].
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
    pub fn client_encrypted_key(&self) -> PathBuf {
        self.dir.join("client.enc.key")
    }
    /// A CA nobody is told to trust, and a localhost server certificate signed by it.
    pub fn rogue_ca(&self) -> PathBuf {
        self.dir.join("rogue-ca.pem")
    }
    pub fn rogue_server_cert(&self) -> PathBuf {
        self.dir.join("rogue-server.pem")
    }
    pub fn rogue_server_key(&self) -> PathBuf {
        self.dir.join("rogue-server.key")
    }
    /// Signed by the trusted CA, but for `elsewhere.invalid` only: a name mismatch on localhost.
    pub fn misnamed_server_cert(&self) -> PathBuf {
        self.dir.join("misnamed-server.pem")
    }
    pub fn misnamed_server_key(&self) -> PathBuf {
        self.dir.join("misnamed-server.key")
    }

    /// Generates every file into `dir` (created if missing).
    pub fn generate(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();

        let (ca, ca_key) = new_ca("hd-kafka-exec test CA");
        write("ca.pem", &ca.pem());
        let local = ["localhost", "127.0.0.1"];
        let (server, server_key) = leaf(&local, Role::Server, &ca, &ca_key);
        write("server.pem", &server);
        write("server.key", &server_key.serialize_pem());
        let (client, client_key) = leaf(&["hd-kafka-exec-client"], Role::Client, &ca, &ca_key);
        write("client.pem", &client);
        write("client.key", &client_key.serialize_pem());
        write("client.enc.key", &encrypt(&client_key, CLIENT_KEY_PASSWORD));
        let (misnamed, misnamed_key) = leaf(&["elsewhere.invalid"], Role::Server, &ca, &ca_key);
        write("misnamed-server.pem", &misnamed);
        write("misnamed-server.key", &misnamed_key.serialize_pem());

        let (rogue, rogue_key) = new_ca("rogue CA nobody trusts");
        write("rogue-ca.pem", &rogue.pem());
        let (rogue_server, rogue_server_key) = leaf(&local, Role::Server, &rogue, &rogue_key);
        write("rogue-server.pem", &rogue_server);
        write("rogue-server.key", &rogue_server_key.serialize_pem());
        Pki {
            dir: dir.to_owned(),
        }
    }
}

/// The server side of TLS for a test server presenting the certificate chain and key in these
/// PEM files (e.g. [`Pki::server_cert`] and [`Pki::server_key`]); no client certificate asked.
pub fn tls_acceptor(cert: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

enum Role {
    Server,
    Client,
}

fn new_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    (cert, key)
}

/// A certificate for `names` signed by `ca`, as PEM, and its key.
fn leaf(
    names: &[&str],
    role: Role,
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> (String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match role {
        Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    let cert = params.signed_by(&key, ca, ca_key).unwrap();
    (cert.pem(), key)
}

/// `key` as an encrypted PKCS#8 PEM (PBES2: PBKDF2-SHA256, AES-256-CBC).
fn encrypt(key: &KeyPair, password: &str) -> String {
    use pkcs8::der::Decode;
    let der = key.serialize_der();
    let info = pkcs8::PrivateKeyInfo::from_der(&der).unwrap();
    let salt: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    let iv: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    let params =
        pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(2048, &salt, &iv).unwrap();
    let doc = info.encrypt_with_params(params, password).unwrap();
    doc.to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
        .unwrap()
        .to_string()
}

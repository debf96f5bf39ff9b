//! The rustls client configuration built from files the test generates: every way to name
//! trust and a client identity, and each mistake an operator can make with them.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)]

mod support;

use hd_kafka_exec::secret::Secret;
use hd_kafka_exec::tls::{TlsFiles, client_config};
use support::pki::{CLIENT_KEY_PASSWORD, Pki};

fn pki() -> (tempfile::TempDir, Pki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    (dir, pki)
}

#[test]
fn ca_bundle_and_client_identity_in_every_form_load() {
    let (_dir, pki) = pki();
    let mut files = TlsFiles::system();
    files.ca_file = Some(pki.ca());
    let config = client_config(&files).unwrap();
    assert!(!config.client_auth_cert_resolver.has_certs());

    files.cert_file = Some(pki.client_cert());
    files.key_file = Some(pki.client_key());
    let config = client_config(&files).unwrap();
    assert!(config.client_auth_cert_resolver.has_certs());

    files.key_file = Some(pki.client_encrypted_key());
    files.key_password = Some(Secret::new(CLIENT_KEY_PASSWORD));
    let config = client_config(&files).unwrap();
    assert!(config.client_auth_cert_resolver.has_certs());

    // Certificate and key in one file, as Python's load_cert_chain(certfile) takes them.
    let both = pki.dir.join("both.pem");
    let text = std::fs::read_to_string(pki.client_cert()).unwrap()
        + &std::fs::read_to_string(pki.client_key()).unwrap();
    std::fs::write(&both, text).unwrap();
    files.cert_file = Some(both);
    files.key_file = None;
    files.key_password = None;
    assert!(
        client_config(&files)
            .unwrap()
            .client_auth_cert_resolver
            .has_certs()
    );
}

#[test]
fn mistakes_name_the_file_and_the_fix() {
    let (_dir, pki) = pki();
    let err = |files: &TlsFiles| client_config(files).unwrap_err().to_string();
    let base = TlsFiles {
        ca_file: Some(pki.ca()),
        ..TlsFiles::system()
    };

    let missing = pki.dir.join("nope.pem");
    let e = err(&TlsFiles {
        ca_file: Some(missing.clone()),
        ..base.clone()
    });
    assert!(e.contains("CA file") && e.contains("nope.pem"), "{e}");

    // A key is not a CA bundle.
    let e = err(&TlsFiles {
        ca_file: Some(pki.client_key()),
        ..base.clone()
    });
    assert!(e.contains("holds no PEM certificate"), "{e}");

    let e = err(&TlsFiles {
        cert_file: Some(pki.client_cert()),
        key_file: Some(pki.client_encrypted_key()),
        ..base.clone()
    });
    assert!(
        e.contains("encrypted") && e.contains("HD_KAFKA_SSL_PASSWORD"),
        "{e}"
    );

    let e = err(&TlsFiles {
        cert_file: Some(pki.client_cert()),
        key_file: Some(pki.client_encrypted_key()),
        key_password: Some(Secret::new("wrong-password-123")),
        ..base.clone()
    });
    assert!(e.contains("wrong password"), "{e}");
    assert!(!e.contains("wrong-password-123"), "the password leaks: {e}");

    // The key of another certificate.
    let e = err(&TlsFiles {
        cert_file: Some(pki.client_cert()),
        key_file: Some(pki.server_key()),
        ..base.clone()
    });
    assert!(e.contains("client certificate and key"), "{e}");

    let e = err(&TlsFiles {
        key_file: Some(pki.client_key()),
        ..base.clone()
    });
    assert!(e.contains("no client certificate"), "{e}");

    // A certificate file without key and no key file.
    let e = err(&TlsFiles {
        cert_file: Some(pki.client_cert()),
        ..base
    });
    assert!(e.contains("holds no PEM private key"), "{e}");
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let files = TlsFiles {
        key_password: Some(Secret::new("hunter2-very-secret")),
        ..TlsFiles::system()
    };
    let shown = format!("{files:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
}

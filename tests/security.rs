//! Secured Kafka end to end (issue 16), on a real broker with SSL, mutual-TLS, SASL_PLAINTEXT
//! and SASL_SSL listeners and certificates this test generates (`support::secure_kafka`):
//!
//! * the service executes requests over each security protocol, with another client of the
//!   same settings producing the requests and reading the responses (Kafka's own console tools,
//!   and aiokafka, hetida's client, where it can: SASL_PLAINTEXT);
//! * group offsets are committed through the secured connection (`kafka-consumer-groups` over
//!   SASL_SSL shows them);
//! * each misconfiguration stops the service with a message that names the problem, and the
//!   password never shows in its output.
//!
//! The runtime is the project's runtime double (`support::runtime_double`).
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::pki::CLIENT_KEY_PASSWORD;
use support::runtime_double::RuntimeDouble;
use support::secure_kafka::SecureCluster;
use support::service::{ServiceProcess, Topics, add_request};
use support::wait::{Shown, eventually};

const WAIT: Duration = Duration::from_secs(90);

/// One way to reach the cluster: a listener and the settings the service (and the peers) use.
struct Case {
    /// The listener's name in the test cluster.
    listener: &'static str,
    /// The aiokafka option object's security part (merged into both option objects).
    options: String,
    /// `HD_KAFKA_SSL_*` variables.
    env: Vec<(&'static str, String)>,
    /// The SASL mechanism the console tools use, if any.
    mechanism: Option<&'static str>,
}

fn sasl_options(protocol: &str, mechanism: &str, user: &str, password: &str) -> String {
    format!(
        r#""security_protocol": "{protocol}", "sasl_mechanism": "{mechanism}", "sasl_plain_username": "{user}", "sasl_plain_password": "{password}""#
    )
}

fn cases(cluster: &SecureCluster) -> Vec<Case> {
    let pki = cluster.pki();
    let (user, password) = cluster.user();
    let ca = ("HD_KAFKA_SSL_CAFILE", pki.ca().display().to_string());
    vec![
        Case {
            listener: "SSL",
            options: r#""security_protocol": "SSL""#.into(),
            env: vec![ca.clone()],
            mechanism: None,
        },
        Case {
            listener: "MTLS",
            options: r#""security_protocol": "SSL""#.into(),
            env: vec![
                ca.clone(),
                (
                    "HD_KAFKA_SSL_CERTFILE",
                    pki.client_cert().display().to_string(),
                ),
                (
                    "HD_KAFKA_SSL_KEYFILE",
                    pki.client_encrypted_key().display().to_string(),
                ),
                ("HD_KAFKA_SSL_PASSWORD", CLIENT_KEY_PASSWORD.into()),
            ],
            mechanism: None,
        },
        Case {
            listener: "SASL_PLAINTEXT",
            options: sasl_options("SASL_PLAINTEXT", "PLAIN", user, password),
            env: vec![],
            mechanism: Some("PLAIN"),
        },
        Case {
            listener: "SASL_SSL",
            options: sasl_options("SASL_SSL", "SCRAM-SHA-512", user, password),
            env: vec![ca],
            mechanism: Some("SCRAM-SHA-512"),
        },
    ]
}

/// `serve` against `bootstrap` with `options` in both aiokafka option objects.
fn serve(
    bootstrap: &str,
    topics: &Topics,
    engine_url: &str,
    options: &str,
    env: &[(&'static str, String)],
) -> ServiceProcess {
    let consumer = format!(
        r#"{{"bootstrap_servers": "{bootstrap}", "group_id": "{}", "auto_offset_reset": "earliest", {options}}}"#,
        topics.group
    );
    let producer = format!(r#"{{"bootstrap_servers": "{bootstrap}", {options}}}"#);
    let mut vars: Vec<(&str, &str)> = vec![
        ("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", &consumer),
        ("HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS", &producer),
    ];
    vars.extend(env.iter().map(|(k, v)| (*k, v.as_str())));
    ServiceProcess::start_on(bootstrap, topics, engine_url, &["--workers", "1"], &vars)
}

#[track_caller]
fn wait_for_log(service: &ServiceProcess, needle: &str) {
    eventually(WAIT, format!("`{needle}` in the log"), || {
        let log = service.log_text();
        if log.contains(needle) {
            Ok(())
        } else {
            Err(Shown(log))
        }
    });
}

fn topics_on(cluster: &SecureCluster, prefix: &str) -> Topics {
    let topics = Topics::named(prefix);
    for topic in [&topics.requests, &topics.responses, &topics.dead_letters] {
        cluster.create_topic(topic, 1);
    }
    topics
}

/// Acceptance: the request round-trips over SSL, SSL with a client certificate (its key
/// encrypted), SASL_PLAINTEXT/PLAIN and SASL_SSL/SCRAM-SHA-512; Kafka's console tools with the
/// same settings produce the request and read the response; over SASL_SSL the committed offset
/// shows in `kafka-consumer-groups`; no password in the service's output.
/// The runtime double's runtime: the tests themselves are synchronous, as the cluster's tools.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn requests_round_trip_over_every_security_protocol() {
    let cluster = SecureCluster::start();
    let rt = runtime();
    let double = rt.block_on(RuntimeDouble::start());
    let (_, password) = cluster.user();
    for case in cases(&cluster) {
        let topics = topics_on(&cluster, &format!("sec-{}", case.listener.to_lowercase()));
        let bootstrap = cluster.listener(case.listener);
        let service = serve(
            &bootstrap,
            &topics,
            &double.engine_url(),
            &case.options,
            &case.env,
        );
        wait_for_log(&service, "worker consuming");

        let job = uuid::Uuid::new_v4();
        let request = String::from_utf8(add_request(job)).unwrap();
        cluster.produce(case.listener, case.mechanism, &topics.requests, &[request]);
        let responses = cluster.consume(case.listener, case.mechanism, &topics.responses, 1, WAIT);
        assert_eq!(responses.len(), 1, "{}: {responses:?}", case.listener);
        let response: serde_json::Value = serde_json::from_str(&responses[0]).unwrap();
        assert_eq!(response["job_id"], job.to_string(), "{}", case.listener);
        assert_eq!(response["result"], "ok", "{}: {response}", case.listener);

        if case.listener == "SASL_SSL" {
            // The commit went through the coordinator connection of our own, over SASL_SSL.
            eventually(WAIT, "offset 1 committed", || {
                let table = cluster.groups(case.listener, case.mechanism, &topics.group);
                let committed = table.lines().any(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.contains(&topics.requests.as_str()) && cols.get(3) == Some(&"1")
                });
                if committed { Ok(()) } else { Err(Shown(table)) }
            });
        }
        let log = service.log_text();
        assert!(
            !log.contains(password) && !log.contains(CLIENT_KEY_PASSWORD),
            "{}: a password shows in the log:\n{log}",
            case.listener
        );
        assert!(
            log.contains(&format!("over {}", case.options_protocol())),
            "{}: no summary of the Kafka connections:\n{log}",
            case.listener
        );
    }
}

impl Case {
    fn options_protocol(&self) -> &'static str {
        if self.options.contains("SASL_SSL") {
            "SASL_SSL"
        } else if self.options.contains("SASL_PLAINTEXT") {
            "SASL_PLAINTEXT"
        } else {
            "SSL"
        }
    }
}

/// Acceptance: hetida's own client, aiokafka, with the same SASL_PLAINTEXT settings produces
/// the request and reads the response.
#[test]
fn aiokafka_over_sasl_plaintext_talks_to_the_service() {
    let cluster = SecureCluster::start();
    let rt = runtime();
    let double = rt.block_on(RuntimeDouble::start());
    let (user, password) = cluster.user();
    let topics = topics_on(&cluster, "sec-aiokafka");
    let bootstrap = cluster.listener("SASL_PLAINTEXT");
    let options = sasl_options("SASL_PLAINTEXT", "SCRAM-SHA-256", user, password);
    let service = serve(&bootstrap, &topics, &double.engine_url(), &options, &[]);
    wait_for_log(&service, "worker consuming");

    let job = uuid::Uuid::new_v4();
    let script = r#"
import asyncio, json, sys
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
bootstrap, user, password, requests, responses, request, job = sys.argv[1:8]
security = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                sasl_plain_username=user, sasl_plain_password=password)
async def main():
    consumer = AIOKafkaConsumer(responses, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", **security)
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **security)
    await producer.start()
    await producer.send_and_wait(requests, request.encode())
    await producer.stop()
    try:
        async def first():
            async for record in consumer:
                answer = json.loads(record.value)
                if answer["job_id"] == job:
                    return answer
        print(json.dumps(await asyncio.wait_for(first(), 60)))
    finally:
        await consumer.stop()
asyncio.run(main())
"#;
    let request = String::from_utf8(add_request(job)).unwrap();
    let out = support::kafka::python_with_aiokafka()
        .args(["-c", script, &bootstrap, user, password])
        .args([&topics.requests, &topics.responses, &request])
        .arg(job.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aiokafka failed: {}\nservice log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        service.log_text()
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["result"], "ok", "{answer}");
    assert!(!service.log_text().contains(password));
}

/// A local TLS server presenting `cert`, which hangs up after the handshake: enough for a
/// client's certificate check, without a broker.
fn tls_server(
    rt: &tokio::runtime::Runtime,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    address
}

/// One misconfiguration and what the service must say about it.
struct Refusal {
    what: &'static str,
    bootstrap: String,
    /// The security part of the option objects.
    options: String,
    /// `HD_KAFKA_SSL_*` variables.
    env: Vec<(&'static str, String)>,
    /// What the log must say.
    expected: Vec<String>,
}

/// The service stops (its worker fails to boot every time) and its log says `expected`; the
/// password given never shows.
fn assert_refused(mut service: ServiceProcess, what: &str, expected: &[&str], secret: &str) {
    let status = service.wait_exit(WAIT);
    let log = service.log_text();
    assert!(
        status.is_some_and(|s| !s.success()),
        "{what}: the service did not stop with an error ({status:?}):\n{log}"
    );
    for needle in expected {
        assert!(log.contains(needle), "{what}: no `{needle}` in:\n{log}");
    }
    assert!(
        !log.contains(secret),
        "{what}: the password shows in the log:\n{log}"
    );
}

/// Acceptance: each misconfiguration is a clear startup error, within the connect timeout
/// rather than a hang: a wrong password (naming mechanism, user and broker), an untrusted CA,
/// a certificate for another name, TLS against a plaintext port and plaintext against a TLS
/// port, and a missing client certificate.
#[test]
fn misconfigured_connections_stop_the_service_with_what_to_fix() {
    let cluster = SecureCluster::start();
    let rt = runtime();
    let double = rt.block_on(RuntimeDouble::start());
    let pki = cluster.pki().clone();
    let (user, password) = cluster.user();
    let url = double.engine_url();
    let ca = ("HD_KAFKA_SSL_CAFILE", pki.ca().display().to_string());
    let topics = topics_on(&cluster, "sec-neg");

    let wrong = "wrong-password-4711";
    let sasl_ssl = cluster.listener("SASL_SSL");
    let ssl = cluster.listener("SSL");
    let rogue = ("HD_KAFKA_SSL_CAFILE", pki.rogue_ca().display().to_string());
    let misnamed = tls_server(&rt, &pki.misnamed_server_cert(), &pki.misnamed_server_key());
    let ssl_options = r#""security_protocol": "SSL""#.to_owned();
    let refusals = vec![
        Refusal {
            what: "wrong password",
            bootstrap: sasl_ssl.clone(),
            options: sasl_options("SASL_SSL", "SCRAM-SHA-512", user, wrong),
            env: vec![ca.clone()],
            expected: vec![
                format!(
                    "broker {sasl_ssl} refused SASL SCRAM-SHA-512 authentication as user `{user}`"
                ),
                "invalid credentials".into(),
            ],
        },
        Refusal {
            what: "unknown CA",
            bootstrap: ssl.clone(),
            options: ssl_options.clone(),
            env: vec![rogue],
            expected: vec!["certificate is not trusted".into(), ssl.clone()],
        },
        Refusal {
            what: "name mismatch",
            bootstrap: misnamed,
            options: ssl_options.clone(),
            env: vec![ca.clone()],
            expected: vec!["does not name the host connected to".into()],
        },
        Refusal {
            what: "TLS against a plaintext port",
            bootstrap: cluster.listener("PLAINTEXT"),
            options: ssl_options.clone(),
            env: vec![ca.clone()],
            expected: vec!["is it a plaintext listener".into()],
        },
        Refusal {
            what: "plaintext against a TLS port",
            bootstrap: ssl,
            options: r#""security_protocol": "PLAINTEXT""#.into(),
            env: vec![],
            expected: vec!["security_protocol is PLAINTEXT".into(), "TLS".into()],
        },
        Refusal {
            what: "no client certificate",
            bootstrap: cluster.listener("MTLS"),
            options: ssl_options,
            env: vec![ca],
            expected: vec!["client certificate".into()],
        },
    ];
    // All at once: each waits out its own connect attempts.
    let services: Vec<_> = refusals
        .iter()
        .map(|r| serve(&r.bootstrap, &topics, &url, &r.options, &r.env))
        .collect();
    for (service, r) in services.into_iter().zip(&refusals) {
        let expected: Vec<&str> = r.expected.iter().map(String::as_str).collect();
        let secret = if r.what == "wrong password" {
            wrong
        } else {
            password
        };
        assert_refused(service, r.what, &expected, secret);
    }
}

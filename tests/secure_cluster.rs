//! The secured test broker itself (`scripts/kafka start --security`), proven with Kafka's own
//! console tools before our client is judged against it: records round-trip over every secured
//! listener and mechanism, a group's committed offsets are visible over SASL_SSL, and a wrong
//! SCRAM password or a missing client certificate on MTLS is refused.
//!
//! One broker serves every case (Kafka takes seconds to start) and the cases run at once, since
//! each console tool is a JVM that takes seconds too.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::process::Output;
use std::time::Duration;

use support::kafka::unique_topic;
use support::secure_kafka::SecureCluster;

/// How long a consumer waits for a record that should be there; generous, as JVMs started side
/// by side on a busy machine are slow.
const WAIT: Duration = Duration::from_secs(60);

#[test]
fn console_tools_work_over_every_secured_listener_and_refuse_bad_credentials() {
    let cluster = SecureCluster::start();
    let round_trips = [
        ("SSL", None),
        ("MTLS", None),
        ("SASL_PLAINTEXT", Some("PLAIN")),
        ("SASL_SSL", Some("SCRAM-SHA-512")),
        ("SASL_SSL", Some("SCRAM-SHA-256")),
    ];
    let topics: Vec<String> = round_trips
        .iter()
        .map(|_| unique_topic("secure-round-trip"))
        .collect();
    let wrong_password = unique_topic("secure-wrong-password");
    let no_client_cert = unique_topic("secure-no-client-cert");
    for topic in topics.iter().chain([&wrong_password, &no_client_cert]) {
        cluster.create_topic(topic, 1);
    }
    let wrong_user = format!("{}:not-the-password", cluster.user().0);
    let group = "secure-cluster-group";

    std::thread::scope(|scope| {
        for ((listener, mechanism), topic) in round_trips.iter().zip(&topics) {
            let cluster = &cluster;
            scope.spawn(move || {
                let lines: Vec<String> = (0..3)
                    .map(|i| format!("{listener} {mechanism:?} record {i}"))
                    .collect();
                cluster.produce(listener, *mechanism, topic, &lines);
                let got = if *mechanism == Some("SCRAM-SHA-512") {
                    // Read in a group, whose committed offset is looked at below.
                    cluster.consume_in_group(group, listener, *mechanism, topic, 3, WAIT)
                } else {
                    cluster.consume(listener, *mechanism, topic, 3, WAIT)
                };
                assert_eq!(got, lines, "round trip over {listener} {mechanism:?}");
            });
        }
        scope.spawn(|| {
            let out = cluster.try_produce(
                "SASL_SSL",
                &["--mechanism", "SCRAM-SHA-512", "--user", &wrong_user],
                &wrong_password,
                &["refused".to_owned()],
            );
            assert_refused(&out, "Authentication failed", "a wrong SCRAM password");
        });
        scope.spawn(|| {
            let out = cluster.try_produce(
                "MTLS",
                &["--no-client-cert"],
                &no_client_cert,
                &["refused".to_owned()],
            );
            // TLS 1.3 sends the client's certificate after the server's Finished, so the
            // client learns of the refusal from the broker's alert after its own handshake.
            assert_refused(
                &out,
                "SslAuthenticationException",
                "MTLS without a certificate",
            );
        });
    });

    assert_eq!(
        cluster.end_offset(&wrong_password, 0),
        0,
        "a refused user wrote"
    );
    assert_eq!(
        cluster.end_offset(&no_client_cert, 0),
        0,
        "a refused client wrote"
    );

    // The group consumed topics[3] (SASL_SSL, SCRAM-SHA-512) to its end: offset 3, lag 0,
    // described through SASL_SSL with the other SCRAM mechanism.
    let described = cluster.groups("SASL_SSL", Some("SCRAM-SHA-256"), group);
    let row: Vec<&str> = described
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(&topics[3]))
        .unwrap_or_else(|| panic!("no row of {} in:\n{described}", topics[3]))
        .split_whitespace()
        .collect();
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG …
    assert_eq!(
        row[..6],
        [group, &topics[3], "0", "3", "3", "0"],
        "{described}"
    );
}

fn assert_refused(out: &Output, reason: &str, case: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{case}: the console producer succeeded: {stderr}"
    );
    assert!(
        stderr.contains(reason),
        "{case}: refused, but not with {reason:?}: {stderr}"
    );
}

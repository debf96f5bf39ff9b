//! A real Prometheus server scraping the service's metrics endpoint, and a small HTTP/1 GET for
//! the service's own endpoints (`/metrics`, `/livez`, `/readyz`) and Prometheus' API.
//!
//! `scripts/test` installs Debian's `prometheus` package and exports `HD_TEST_PROMETHEUS` and
//! `HD_TEST_PROMTOOL`; a test that needs them fails, never skips, when they are missing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, SystemTime};

use super::wait::{Shown, eventually};

/// The job name the service's target is scraped under.
pub const JOB: &str = "hd-kafka-exec";

/// A free port on 127.0.0.1 (bound once and let go; the tests' own processes take it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A binary the tests need from `scripts/test` (`env`), else `name` on PATH; panics, saying
/// how to get it, when it does not run.
fn tool(env: &str, name: &str) -> PathBuf {
    let bin = std::env::var_os(env).map_or_else(|| PathBuf::from(name), PathBuf::from);
    let probe = Command::new(&bin).arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "{name} ({}) is not available: scripts/test installs it (apt-get install prometheus) \
         and exports {env}",
        bin.display()
    );
    bin
}

/// `promtool` (`HD_TEST_PROMTOOL`, else on PATH).
pub fn promtool() -> Command {
    Command::new(tool("HD_TEST_PROMTOOL", "promtool"))
}

/// One HTTP response: status code, headers (names lower-cased) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` on `addr` (host:port), one connection per request. HTTP/1.0, so the server
/// delimits the body by closing (or a Content-Length), never with chunks; chunks are decoded
/// anyway should a server send them. Errors (refused, timed out, malformed) are returned, not
/// panicked on: a test polls an endpoint that is not up yet.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<Response> {
    http_get_accepting(addr, path, "*/*")
}

/// Like [`http_get`] with the request's `Accept` header.
pub fn http_get_accepting(addr: &str, path: &str, accept: &str) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let to: SocketAddr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| bad("no address"))?;
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of the response head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body).ok_or_else(|| bad("malformed chunked body"))?;
    } else if let Some(len) = headers.get("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        if body.len() < len {
            return Err(bad("body shorter than its content-length"));
        }
        body.truncate(len);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// Percent-encodes a query parameter value (everything but RFC 3986's unreserved characters).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Labels of one series of a query result.
pub type Labels = BTreeMap<String, String>;

/// A Prometheus server of the test's own, scraping `target` every second; stopped when dropped.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    /// host:port of its web API.
    pub addr: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus in a temporary directory with one job ([`JOB`]) scraping `target`
    /// (host:port, path `/metrics`), and waits until it reports ready.
    pub fn start(target: &str) -> Prometheus {
        let bin = tool("HD_TEST_PROMETHEUS", "prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        // scrape_timeout may not exceed the interval. Every second, so a test's waits on
        // counters follow the service closely.
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut prometheus = Prometheus { child, addr, dir };
        eventually(Duration::from_secs(60), "prometheus ready", || {
            if http_get(&prometheus.addr, "/-/ready").is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            assert!(
                prometheus.child.try_wait().unwrap().is_none(),
                "prometheus exited; its log:\n{}",
                prometheus.log_text()
            );
            Err(Shown(prometheus.log_text()))
        });
        prometheus
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Every series of an instant query at the current time, with its value (a scalar result
    /// is one series without labels). A query Prometheus rejects panics with its error.
    pub fn query_vector(&self, expr: &str) -> Vec<(Labels, f64)> {
        let path = format!("/api/v1/query?query={}", encode(expr));
        let response = http_get(&self.addr, &path)
            .unwrap_or_else(|e| panic!("querying prometheus for {expr}: {e}"));
        let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_else(|e| {
            panic!(
                "prometheus answered {expr} with no JSON ({e}): {}",
                response.text()
            )
        });
        assert_eq!(
            json["status"], "success",
            "prometheus rejected {expr}: {json}"
        );
        let value = |v: &serde_json::Value| -> f64 {
            let text = v[1].as_str().unwrap();
            text.parse()
                .unwrap_or_else(|_| panic!("not a number in {expr}'s result: {text}"))
        };
        let data = &json["data"];
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let labels = s["metric"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect();
                    (labels, value(&s["value"]))
                })
                .collect(),
            Some("scalar") => vec![(Labels::new(), value(&data["result"]))],
            other => panic!("{expr}: a result of type {other:?}, not an instant vector: {json}"),
        }
    }

    /// The sum over every series of an instant query; `None` when it has no series (the
    /// metric not scraped yet, or no series matching).
    pub fn query(&self, expr: &str) -> Option<f64> {
        let series = self.query_vector(expr);
        (!series.is_empty()).then(|| series.iter().map(|(_, v)| v).sum())
    }

    /// Queries `expr` (see [`query`](Self::query)) until `done` holds for its value, and
    /// returns that value; panics after `timeout` with the last value and how the scrapes went.
    #[track_caller]
    pub fn wait_until(
        &self,
        expr: &str,
        done: impl Fn(Option<f64>) -> bool,
        timeout: Duration,
    ) -> Option<f64> {
        eventually(timeout, format!("{expr} at the expected value"), || {
            let value = self.query(expr);
            if done(value) {
                Ok(value)
            } else {
                Err(Shown(format!("{value:?}; scrapes: {}", self.targets())))
            }
        })
    }

    /// Waits until Prometheus has a scrape of the service that began after `after`, and
    /// asserts that it succeeded: what the queries see from then on was served after `after`.
    pub fn wait_for_scrape_after(&self, after: SystemTime, timeout: Duration) {
        let after = after
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // timestamp() of a plain selector is the sample's own (the scrape's start); of any
        // other expression (`up == 1`, say) it would be the evaluation time.
        self.wait_until(
            &format!(r#"max(timestamp(up{{job="{JOB}"}}))"#),
            |t| t.is_some_and(|t| t > after),
            timeout,
        );
        let up = self.query(&format!(r#"up{{job="{JOB}"}}"#));
        assert_eq!(up, Some(1.0), "the scrape failed: {}", self.targets());
    }

    /// The scrape targets' health and last error, as Prometheus reports them (for messages).
    pub fn targets(&self) -> String {
        match http_get(&self.addr, "/api/v1/targets") {
            Ok(r) => match serde_json::from_slice::<serde_json::Value>(&r.body) {
                Ok(json) => json["data"]["activeTargets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        format!(
                            "{} {} (last error: {:?})",
                            t["scrapeUrl"], t["health"], t["lastError"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                Err(_) => r.text(),
            },
            Err(e) => format!("targets unknown: {e}"),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A raw HTTP "runtime" that answers however a test says: exact bytes, chunked, broken off,
//! or not at all. The runtime double speaks proper HTTP through hyper and cannot misbehave on
//! the wire; this one can. Its act can change while it runs, and `{JOB}` in an answer body
//! becomes the job id of the request it answers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What it does with every request, once it has read it whole.
#[derive(Debug, Clone)]
pub enum Act {
    /// An answer with a Content-Length.
    Answer { status: u16, body: Vec<u8> },
    /// An answer in chunked encoding (no Content-Length), `chunk` bytes a chunk.
    Chunked {
        status: u16,
        body: Vec<u8>,
        chunk: usize,
    },
    /// A Content-Length of `announced`, `body` (shorter), then a TCP reset.
    ResetMidBody {
        status: u16,
        announced: usize,
        body: Vec<u8>,
    },
    /// A Content-Length of `announced`, `body` (shorter), then silence.
    HangMidBody {
        status: u16,
        announced: usize,
        body: Vec<u8>,
    },
    /// No answer at all, the connection kept open.
    Hang,
}

#[derive(Debug)]
pub struct Runtime {
    addr: SocketAddr,
    /// What it does with the next request.
    act: Arc<Mutex<Act>>,
}

impl Runtime {
    pub async fn start(act: Act) -> Runtime {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let act = Arc::new(Mutex::new(act));
        let shared = act.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Runtime { addr, act }
    }

    /// From the next request on, act like this.
    pub fn set_act(&self, act: Act) {
        *self.act.lock().unwrap() = act;
    }

    pub fn engine_url(&self) -> String {
        format!("http://{}/engine/", self.addr)
    }
}

/// The request's job id (the last `"job_id": "…"` of the runtime request), for `{JOB}`.
fn job_of(request: &[u8]) -> String {
    let text = String::from_utf8_lossy(request);
    text.rfind("\"job_id\": \"")
        .and_then(|i| text.get(i + 11..i + 47))
        .unwrap_or_default()
        .to_owned()
}

fn with_job(body: &[u8], job: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.windows(5).position(|w| w == b"{JOB}") {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(job.as_bytes());
        rest = &rest[i + 5..];
    }
    out.extend_from_slice(rest);
    out
}

async fn serve(stream: TcpStream, act: Arc<Mutex<Act>>) -> std::io::Result<()> {
    let mut conn = BufReader::new(stream);
    loop {
        let mut content_length = 0;
        loop {
            let mut line = String::new();
            if conn.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap();
            }
        }
        let mut request = vec![0; content_length];
        conn.read_exact(&mut request).await?;
        let head = |status: u16, length: &str| {
            format!("HTTP/1.1 {status} Whatever\r\ncontent-type: application/json\r\n{length}\r\n")
                .into_bytes()
        };
        let stream = conn.get_mut();
        let job = job_of(&request);
        let act = match act.lock().unwrap().clone() {
            Act::Answer { status, body } => Act::Answer {
                status,
                body: with_job(&body, &job),
            },
            other => other,
        };
        match &act {
            Act::Answer { status, body } => {
                stream
                    .write_all(&head(
                        *status,
                        &format!("content-length: {}\r\n", body.len()),
                    ))
                    .await?;
                stream.write_all(body).await?;
            }
            Act::Chunked {
                status,
                body,
                chunk,
            } => {
                stream
                    .write_all(&head(*status, "transfer-encoding: chunked\r\n"))
                    .await?;
                for piece in body.chunks(*chunk) {
                    stream
                        .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                        .await?;
                    stream.write_all(piece).await?;
                    stream.write_all(b"\r\n").await?;
                }
                stream.write_all(b"0\r\n\r\n").await?;
            }
            Act::ResetMidBody {
                status,
                announced,
                body,
            } => {
                stream
                    .write_all(&head(*status, &format!("content-length: {announced}\r\n")))
                    .await?;
                stream.write_all(body).await?;
                stream.flush().await?;
                // Let the client read what was sent before the reset discards it.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                stream.set_zero_linger()?;
                return Ok(());
            }
            Act::HangMidBody {
                status,
                announced,
                body,
            } => {
                stream
                    .write_all(&head(*status, &format!("content-length: {announced}\r\n")))
                    .await?;
                stream.write_all(body).await?;
                std::future::pending::<()>().await;
            }
            Act::Hang => std::future::pending::<()>().await,
        }
    }
}

//! A mail webhook of the test's own: a tiny HTTP/1.1 server on loopback (keep-alive,
//! content-length or chunked bodies) that records every request and answers a scripted
//! sequence of statuses, so a test can count e-mails exactly and make deliveries fail.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One request the sink received, and the status it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub content_type: Option<String>,
    /// The body as JSON; `Null` when it was not JSON.
    pub body: Value,
    /// The status the sink answered.
    pub answered: u16,
}

#[derive(Default)]
struct SinkState {
    /// Statuses to answer, in order; 200 once it is empty.
    script: VecDeque<u16>,
    received: Vec<Received>,
}

/// A mail webhook on 127.0.0.1 that records every request.
pub struct MailSink {
    addr: SocketAddr,
    state: Arc<Mutex<SinkState>>,
    task: JoinHandle<()>,
}

impl MailSink {
    /// Starts the sink; it answers `script` in order, then 200.
    pub async fn start(script: &[u16]) -> MailSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sink");
        let addr = listener.local_addr().expect("sink address");
        let state = Arc::new(Mutex::new(SinkState {
            script: script.iter().copied().collect(),
            received: Vec::new(),
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, state).await {
                        eprintln!("[mail sink] connection error: {e:#}");
                    }
                });
            }
        });
        MailSink { addr, state, task }
    }

    /// The webhook URL for `mail_webhook_url`.
    pub fn url(&self) -> String {
        format!("http://{}/mail", self.addr)
    }

    /// `http://127.0.0.1:PORT`, for `mail_webhook_origin` (allowed_outbound_hosts).
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("sink state").received.clone()
    }

    /// The requests answered with a 2xx: e-mails the webhook accepted.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<Mutex<SinkState>>) -> Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await? == 0 {
            return Ok(()); // the client closed the connection
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            ensure!(stream.read_line(&mut line).await? > 0, "EOF in headers");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            read_chunked(&mut stream).await?
        } else {
            let length: usize = header("content-length")
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or(0);
            let mut body = vec![0; length];
            stream.read_exact(&mut body).await?;
            body
        };
        let status = {
            let mut state = state.lock().expect("sink state");
            let status = state.script.pop_front().unwrap_or(200);
            state.received.push(Received {
                method,
                path,
                idempotency_key: header("idempotency-key"),
                content_type: header("content-type"),
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                answered: status,
            });
            status
        };
        let reply = format!(
            "HTTP/1.1 {status} Sink\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
        );
        stream.get_mut().write_all(reply.as_bytes()).await?;
    }
}

async fn read_chunked(stream: &mut BufReader<TcpStream>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        ensure!(
            stream.read_line(&mut size_line).await? > 0,
            "EOF in chunk size"
        );
        let size_text = size_line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16).context("chunk size")?;
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            loop {
                let mut line = String::new();
                ensure!(stream.read_line(&mut line).await? > 0, "EOF in trailers");
                if line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        stream.read_exact(&mut body[start..]).await?;
        let mut crlf = [0u8; 2];
        stream.read_exact(&mut crlf).await?;
    }
}

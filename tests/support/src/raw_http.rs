//! A minimal blocking HTTP/1.1 GET over one TCP socket. Host tests use it where a client
//! library's connection pooling and retries would hide what the host did with exactly one
//! request on one connection.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, Result};

/// `GET url` with `Connection: close` and any extra headers.
pub struct RawGet {
    url: String,
    headers: Vec<(String, String)>,
}

/// Starts a [`RawGet`] for an `http://` URL.
pub fn raw_get(url: &str) -> RawGet {
    RawGet {
        url: url.to_owned(),
        headers: Vec::new(),
    }
}

impl RawGet {
    pub fn header(mut self, name: &str, value: &str) -> RawGet {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends the request and reads the connection to its end: status and body (de-chunked
    /// when the response was chunked). Status 0 when the answer had no status line.
    pub fn send(self) -> Result<(u16, String)> {
        let rest = self
            .url
            .strip_prefix("http://")
            .with_context(|| format!("not an http:// URL: {}", self.url))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let mut stream = std::net::TcpStream::connect(authority)
            .with_context(|| format!("connecting to {authority}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .with_context(|| format!("reading the answer to GET {}", self.url))?;
        Ok(parse_response(&String::from_utf8_lossy(&raw)))
    }
}

/// Status and body of a whole HTTP/1.1 response.
fn parse_response(text: &str) -> (u16, String) {
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let chunked = headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

/// The data of a chunked body, up to its last chunk or the first malformed one.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_answer_is_joined() {
        let text =
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(text), (200, "abcde".to_owned()));
    }

    #[test]
    fn a_plain_answer_is_kept_and_no_status_is_zero() {
        let text = "HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope";
        assert_eq!(parse_response(text), (404, "nope".to_owned()));
        assert_eq!(parse_response("").0, 0);
    }
}

//! A small, purpose-built HTTP/1.1 client over `rustls::StreamOwned`, one connection per
//! request (`Connection: close`), for the handful of Proxmox API calls `upload` makes.
//!
//! Why not the `ureq` agent that `net` uses: ureq 3 takes a root store or "no verification",
//! but not a custom rustls `ServerCertVerifier`, so fingerprint pinning *in the handshake*
//! (refuse before the token is sent) is not possible through its stable API; and a streamed
//! upload must carry an exact `Content-Length` (Proxmox rejects chunked bodies), which is
//! simplest to guarantee when we write the request head ourselves. The handshake is completed
//! explicitly before the first request byte is written.
//!
//! This module owns the wire format only; it never interprets Proxmox's answers, never
//! retries (the caller decides what is safe to repeat) and never prints the secret: the
//! `Authorization` header is assembled straight into the TLS stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::UploadError;
use super::config::{ApiUrl, TokenId, TokenSecret};
use super::tls::FingerprintMismatch;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: u64 = 16 * 1024 * 1024;

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A response: status and (small, JSON) body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The reason phrase (Proxmox puts its error message there).
    pub reason: String,
    /// The body.
    pub body: Vec<u8>,
}

/// Speaks HTTP/1.1 over TLS to one Proxmox API root, authenticated with an API token.
pub struct Client {
    url: ApiUrl,
    tls: Arc<ClientConfig>,
    token_id: TokenId,
    token_secret: TokenSecret,
}

impl Client {
    /// A client for `url`; nothing is contacted yet.
    pub fn new(
        url: ApiUrl,
        tls: Arc<ClientConfig>,
        token_id: TokenId,
        token_secret: TokenSecret,
    ) -> Self {
        Client {
            url,
            tls,
            token_id,
            token_secret,
        }
    }

    /// The full URL of an API path, for messages.
    pub fn url_of(&self, path: &str) -> String {
        self.url.display(path)
    }

    /// `GET {api}{path}`.
    pub fn get(&self, path: &str) -> Result<Response, UploadError> {
        let mut stream = self.connect(path)?;
        self.write_head(&mut stream, "GET", path, None)
            .and_then(|()| stream.flush())
            .map_err(|e| self.transfer(path, "sending the request", e))?;
        self.read_response(&mut stream, path)
    }

    /// `POST {api}{path}` with a body of exactly `length` bytes written by `body`. If the
    /// server answers before the body is complete (401, 403, …), that answer is returned.
    pub fn post(
        &self,
        path: &str,
        content_type: &str,
        length: u64,
        body: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<Response, UploadError> {
        let mut stream = self.connect(path)?;
        let sent = self
            .write_head(&mut stream, "POST", path, Some((content_type, length)))
            .and_then(|()| body(&mut stream))
            .and_then(|()| stream.flush());
        match (sent, self.read_response(&mut stream, path)) {
            (_, Ok(response)) => Ok(response),
            (Err(e), Err(_)) => Err(self.transfer(path, "sending the request body", e)),
            (Ok(()), Err(e)) => Err(e),
        }
    }

    fn connect(&self, path: &str) -> Result<Tls, UploadError> {
        let url = self.url_of(path);
        let connect_err = |message: String| UploadError::Connect {
            url: url.clone(),
            message,
        };
        let addrs = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()
            .map_err(|e| connect_err(format!("cannot resolve {}: {e}", self.url.host)))?;
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(format!("{addr}: {e}")),
            }
        }
        let mut tcp = tcp.ok_or_else(|| {
            connect_err(last.unwrap_or_else(|| format!("{} has no address", self.url.host)))
        })?;
        for r in [
            tcp.set_read_timeout(Some(IO_TIMEOUT)),
            tcp.set_write_timeout(Some(IO_TIMEOUT)),
            tcp.set_nodelay(true),
        ] {
            r.map_err(|e| connect_err(e.to_string()))?;
        }
        let name =
            ServerName::try_from(self.url.host.clone()).map_err(|e| UploadError::Config {
                message: format!("PM_API_URL host {:?}: {e}", self.url.host),
            })?;
        let mut conn =
            ClientConnection::new(self.tls.clone(), name).map_err(|e| UploadError::Tls {
                url: url.clone(),
                message: e.to_string(),
            })?;
        // Finish the handshake (and so the certificate check) before any request byte exists.
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)
                .map_err(|e| handshake_error(&url, e))?;
        }
        Ok(StreamOwned::new(conn, tcp))
    }

    fn write_head(
        &self,
        out: &mut Tls,
        method: &str,
        path: &str,
        body: Option<(&str, u64)>,
    ) -> std::io::Result<()> {
        let host = if self.url.host.contains(':') {
            format!("[{}]", self.url.host)
        } else {
            self.url.host.clone()
        };
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: ingot/{}\r\n\
             Accept: application/json\r\nConnection: close\r\n",
            self.url.base_path,
            self.url.port,
            env!("CARGO_PKG_VERSION"),
        );
        if let Some((content_type, length)) = body {
            head.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {length}\r\n"
            ));
        }
        let mut bytes = head.into_bytes();
        for part in [
            "Authorization: PVEAPIToken=",
            self.token_id.as_str(),
            "=",
            self.token_secret.expose(),
            "\r\n\r\n",
        ] {
            bytes.extend_from_slice(part.as_bytes());
        }
        out.write_all(&bytes)
    }

    fn read_response(&self, stream: &mut Tls, path: &str) -> Result<Response, UploadError> {
        let url = self.url_of(path);
        let protocol = |message: String| UploadError::Protocol {
            url: url.clone(),
            message,
        };
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        let (status, reason, head_len, length, chunked) = loop {
            let n = read_some(stream, &mut chunk)
                .map_err(|e| self.transfer(path, "reading the response", e))?;
            if n == 0 {
                return Err(self.transfer(
                    path,
                    "reading the response",
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = parsed.code.unwrap_or(0);
                    let reason = parsed.reason.unwrap_or("").to_string();
                    let mut length = None;
                    let mut chunked = false;
                    for h in parsed.headers.iter() {
                        let value = String::from_utf8_lossy(h.value);
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length =
                                Some(value.trim().parse::<u64>().map_err(|_| {
                                    protocol(format!("bad Content-Length {value:?}"))
                                })?);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = value.to_ascii_lowercase().contains("chunked");
                        }
                    }
                    break (status, reason, head_len, length, chunked);
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
                Ok(httparse::Status::Partial) => {
                    return Err(protocol("response head larger than 64 KiB".into()));
                }
                Err(e) => return Err(protocol(format!("malformed response: {e}"))),
            }
        };
        let rest = std::io::Cursor::new(buf.split_off(head_len));
        let mut reader = BufReader::new(rest.chain(TolerantEof(stream)));
        let body = if chunked {
            read_chunked(&mut reader).map_err(|e| protocol(format!("chunked body: {e}")))?
        } else {
            let limit = length.unwrap_or(MAX_BODY).min(MAX_BODY);
            let mut body = Vec::new();
            (&mut reader)
                .take(limit)
                .read_to_end(&mut body)
                .map_err(|e| self.transfer(path, "reading the response body", e))?;
            if length.is_some_and(|l| body.len() as u64 != l) {
                return Err(protocol(format!(
                    "body of {} bytes, Content-Length said {length:?}",
                    body.len()
                )));
            }
            body
        };
        Ok(Response {
            status,
            reason,
            body,
        })
    }

    fn transfer(&self, path: &str, doing: &str, e: std::io::Error) -> UploadError {
        UploadError::Transfer {
            url: self.url_of(path),
            message: format!("{doing}: {e}"),
        }
    }
}

/// Read, retrying on EINTR.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Treats a TCP close without TLS `close_notify` as the end of a `Connection: close` body;
/// the length checks above still catch truncation.
struct TolerantEof<'a>(&'a mut Tls);

impl Read for TolerantEof<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }
}

fn read_chunked(r: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        r.take(1024).read_line(&mut line)?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size = u64::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // Trailers until the empty line.
            loop {
                line.clear();
                if r.take(1024).read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() as u64 + size > MAX_BODY {
            return Err(bad("body larger than 16 MiB"));
        }
        r.take(size).read_to_end(&mut body)?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
}

/// Turn a failed handshake into the error that says what to do.
fn handshake_error(url: &str, e: std::io::Error) -> UploadError {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            match other.0.downcast_ref::<FingerprintMismatch>() {
                Some(m) => UploadError::FingerprintMismatch {
                    url: url.to_string(),
                    expected: m.expected.to_string(),
                    actual: m.actual.to_string(),
                },
                None => UploadError::Tls {
                    url: url.to_string(),
                    message: other.to_string(),
                },
            }
        }
        Some(rustls::Error::InvalidCertificate(c)) => UploadError::Tls {
            url: url.to_string(),
            message: format!(
                "certificate not trusted ({c:?}); pass the cluster CA with --ca-file \
                 (/etc/pve/pve-root-ca.pem) or pin it with --fingerprint"
            ),
        },
        Some(other) => UploadError::Tls {
            url: url.to_string(),
            message: other.to_string(),
        },
        None => UploadError::Connect {
            url: url.to_string(),
            message: format!("TLS handshake: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_and_bad_ones_fail() {
        let mut ok = &b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nTrailer: 1\r\n\r\n"[..];
        assert_eq!(read_chunked(&mut ok).unwrap(), b"Wikipedia");
        let mut bad = &b"zz\r\n"[..];
        assert!(read_chunked(&mut bad).is_err());
        let mut no_crlf = &b"2\r\nabXY0\r\n\r\n"[..];
        assert!(read_chunked(&mut no_crlf).is_err());
    }
}

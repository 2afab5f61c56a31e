//! The network transport that `archive` and `fetch` share: `http://`, `https://` and `file://`
//! URLs, with retries.
//!
//! One shared HTTP agent (connection reuse); transient failures (connection errors, 5xx, 429,
//! truncated bodies) are retried with exponential backoff, permanent ones (404, 403, bad
//! scheme) are not. This module knows nothing of Debian: verification is the caller's job.
//!
//! Trust: `https://` servers are checked against the Mozilla roots built into ingot, or only
//! against the CA certificates of a PEM file ([`Transport::for_jobs_trusting`], `--ca-file`:
//! an internal mirror under a private CA); an untrusted certificate is an error of its own,
//! never retried. A transfer that starts on `https://` never continues on plain HTTP.
//!
//! Name lookups: ureq 3 asks its resolver on *every* request, a pooled connection or not, so
//! a resolver that stalls now and then stalls a build over and over. The agent therefore uses
//! [`CachingResolver`]: one lookup per host and port for the transport's lifetime (one build),
//! concurrent first requests waiting for that one lookup, lookups of different hosts never
//! waiting for each other. The pool keeps as many idle connections per host as there are
//! parallel downloads, so each worker keeps its own connection.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// A failed transfer, naming the URL.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The server (or the file system) says the resource does not exist.
    #[error("{url}: not found")]
    NotFound {
        /// The URL asked for.
        url: String,
    },
    /// An HTTP status other than success or 404.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL asked for.
        url: String,
        /// The status code.
        status: u16,
    },
    /// Network or file-system failure.
    #[error("{url}: {message}")]
    Io {
        /// The URL asked for.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The URL has a scheme we do not speak.
    #[error("{url}: unsupported URL scheme (expected http://, https:// or file://)")]
    Scheme {
        /// The URL asked for.
        url: String,
    },
    /// An `https://` transfer was redirected to a URL that is not `https://`.
    #[error("{url}: redirected away from https ({message}): refusing to downgrade")]
    Downgrade {
        /// The URL asked for.
        url: String,
        /// Where the redirect led, as the HTTP client words it.
        message: String,
    },
    /// The server's TLS certificate is not trusted (or not valid for its name).
    #[error(
        "{url}: the server's certificate is not trusted ({message}); for a mirror under a \
         private CA pass its certificate with --ca-file (INGOT_CA_FILE)"
    )]
    Certificate {
        /// The URL asked for.
        url: String,
        /// What the TLS library says is wrong with the certificate.
        message: String,
    },
    /// The body was larger than the caller allowed.
    #[error("{url}: larger than the expected {limit} bytes")]
    TooLarge {
        /// The URL asked for.
        url: String,
        /// The limit in bytes.
        limit: u64,
    },
}

impl TransportError {
    /// Whether trying again could help (the one place that classifies failures).
    pub fn should_retry(&self) -> bool {
        match self {
            TransportError::Status { status, .. } => *status == 429 || *status >= 500,
            TransportError::Io { url, .. } => !url.starts_with("file://"),
            _ => false,
        }
    }
}

/// Resolves each host (and port) once and remembers the addresses; wraps ureq's default
/// resolver. A failed lookup is not remembered, so a retry looks the name up again.
#[derive(Debug, Default)]
pub struct CachingResolver {
    inner: DefaultResolver,
    /// One slot per `host:port`; its own lock, so a slow lookup holds up only its host.
    hosts: Mutex<HashMap<String, Arc<Mutex<Option<ResolvedSocketAddrs>>>>>,
    lookups: Arc<AtomicUsize>,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => DefaultResolver::host_and_port(scheme, authority),
            _ => None,
        };
        let Some(key) = key else {
            return self.inner.resolve(uri, config, timeout);
        };
        let slot = {
            let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(hosts.entry(key).or_default())
        };
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(addrs) = slot.as_ref() {
            return Ok(addrs.clone());
        }
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let addrs = self.inner.resolve(uri, config, timeout)?;
        *slot = Some(addrs.clone());
        Ok(addrs)
    }
}

/// Fetches URLs; cheap to share between threads (clones share the agent, its connection
/// pool and its resolved addresses).
#[derive(Clone)]
pub struct Transport {
    agent: ureq::Agent,
    lookups: Arc<AtomicUsize>,
    retries: u32,
    backoff: Duration,
    /// A limit on each whole request (tests of stalling servers); `None`: the agent's.
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("lookups", &self.lookups())
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl Default for Transport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport {
    /// A transport for 8 parallel downloads ([`Transport::for_jobs`]).
    pub fn new() -> Self {
        Self::for_jobs(8)
    }

    /// A transport with 4 retries, a 30 s connect timeout, one lookup per host, and a pool
    /// that keeps `jobs` idle connections per host (so `jobs` parallel downloads each keep
    /// their connection) for up to a minute. HTTPS servers are checked against the Mozilla
    /// roots built into ingot.
    pub fn for_jobs(jobs: usize) -> Self {
        Self::with_tls(jobs, ureq::tls::TlsConfig::default())
    }

    /// [`Transport::for_jobs`], with HTTPS servers checked against the CA certificates of the
    /// PEM file `ca_file` *instead of* the built-in roots: an internal mirror under a private
    /// CA. (To trust both, give a file holding both, e.g. the system bundle plus the CA.)
    pub fn for_jobs_trusting(jobs: usize, ca_file: &Path) -> Result<Self, CaFileError> {
        let roots: Vec<ureq::tls::Certificate<'static>> = read_ca_file(ca_file)?
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
            .build();
        Ok(Self::with_tls(jobs, tls))
    }

    fn with_tls(jobs: usize, tls: ureq::tls::TlsConfig) -> Self {
        let jobs = jobs.max(1);
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(300)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .max_idle_connections_per_host(jobs)
            .max_idle_connections(jobs.saturating_mul(4))
            .max_idle_age(Duration::from_secs(60))
            .http_status_as_error(false)
            .user_agent(concat!("ingot/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build();
        let resolver = CachingResolver::default();
        let lookups = Arc::clone(&resolver.lookups);
        Transport {
            agent: ureq::Agent::with_parts(config, DefaultConnector::default(), resolver),
            lookups,
            retries: 4,
            backoff: Duration::from_millis(250),
            timeout: None,
        }
    }

    /// How many name lookups this transport (and its clones) has made so far.
    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Set how often a transient failure is retried (tests use 0 or 1).
    pub fn with_retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    /// Give up on any one request (connect, response and body) after `limit`: a stalling
    /// server becomes an error naming the URL.
    pub fn with_timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The whole body of `url`, at most `limit` bytes.
    pub fn get_bytes(&self, url: &str, limit: u64) -> Result<Vec<u8>, TransportError> {
        self.with_retry(url, || {
            let mut buf = Vec::new();
            self.copy_once(url, &mut buf, limit)?;
            Ok(buf)
        })
    }

    /// Stream `url` into `dest` (created or truncated), at most `limit` bytes; returns the size.
    pub fn download_to(&self, url: &str, dest: &Path, limit: u64) -> Result<u64, TransportError> {
        let mut f = std::fs::File::create(dest).map_err(|e| TransportError::Io {
            url: url.to_string(),
            message: format!("{}: {e}", dest.display()),
        })?;
        self.download_into(url, &mut f, dest, limit)
    }

    /// Stream `url` into the open file `file` (at `shown`, for messages), at most `limit`
    /// bytes; every attempt starts again from an empty file. Returns the size.
    pub fn download_into(
        &self,
        url: &str,
        file: &mut std::fs::File,
        shown: &Path,
        limit: u64,
    ) -> Result<u64, TransportError> {
        use std::io::Seek;
        self.with_retry(url, || {
            let io = |e: std::io::Error| TransportError::Io {
                url: url.to_string(),
                message: format!("{}: {e}", shown.display()),
            };
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            let n = self.copy_once(url, file, limit)?;
            file.flush().map_err(io)?;
            Ok(n)
        })
    }

    fn with_retry<T>(
        &self,
        url: &str,
        mut op: impl FnMut() -> Result<T, TransportError>,
    ) -> Result<T, TransportError> {
        let _ = url;
        let mut attempt = 0;
        loop {
            match op() {
                Err(e) if e.should_retry() && attempt < self.retries => {
                    std::thread::sleep(self.backoff * 2u32.pow(attempt));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn copy_once(&self, url: &str, out: &mut dyn Write, limit: u64) -> Result<u64, TransportError> {
        let io = |e: std::io::Error| TransportError::Io {
            url: url.to_string(),
            message: e.to_string(),
        };
        if let Some(path) = file_url_path(url) {
            let f = std::fs::File::open(&path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    TransportError::NotFound {
                        url: url.to_string(),
                    }
                } else {
                    io(e)
                }
            })?;
            return copy_limited(url, f, out, limit);
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(TransportError::Scheme {
                url: url.to_string(),
            });
        }
        let resp = self.call(url)?;
        let status = resp.status().as_u16();
        if status == 404 || status == 410 {
            return Err(TransportError::NotFound {
                url: url.to_string(),
            });
        }
        if !(200..300).contains(&status) {
            return Err(TransportError::Status {
                url: url.to_string(),
                status,
            });
        }
        let reader = resp.into_body().into_reader();
        copy_limited(url, reader, out, limit)
    }
}

impl Transport {
    /// GET `url`. A transfer that starts on `https://` stays on `https://`: the same
    /// `https_only` policy applies to every redirect the client follows, so a man in the middle
    /// of a redirect chain cannot move it to plain HTTP.
    fn call(&self, url: &str) -> Result<ureq::http::Response<ureq::Body>, TransportError> {
        self.call_with(url, url.starts_with("https://"))
    }

    fn call_with(
        &self,
        url: &str,
        https_only: bool,
    ) -> Result<ureq::http::Response<ureq::Body>, TransportError> {
        self.agent
            .get(url)
            .config()
            .https_only(https_only)
            .timeout_global(self.timeout)
            .build()
            .call()
            .map_err(|e| match e {
                ureq::Error::RequireHttpsOnly(to) => TransportError::Downgrade {
                    url: url.to_string(),
                    message: format!("to {to}"),
                },
                e => match certificate_problem(&e) {
                    Some(message) => TransportError::Certificate {
                        url: url.to_string(),
                        message,
                    },
                    None => TransportError::Io {
                        url: url.to_string(),
                        message: e.to_string(),
                    },
                },
            })
    }
}

/// What is wrong with the server's certificate, when that is why `e` happened (rustls reports
/// it directly or inside the I/O error of the handshake).
fn certificate_problem(e: &ureq::Error) -> Option<String> {
    let tls = match e {
        ureq::Error::Rustls(tls) => Some(tls),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match tls? {
        rustls::Error::InvalidCertificate(why) => Some(format!("{why:?}")),
        _ => None,
    }
}

/// A CA file that cannot serve as a TLS trust root.
#[derive(Debug, thiserror::Error)]
#[error("CA file {path}: {reason}")]
pub struct CaFileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// The certificates of the PEM file `path` (one or more `BEGIN CERTIFICATE` blocks), each
/// checked to be usable as a trust anchor; a file without any is refused. Shared by the
/// archive transport and `upload`.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let bad = |reason: String| CaFileError {
        path: path.to_path_buf(),
        reason,
    };
    let mut certs = Vec::new();
    let mut anchors = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        anchors
            .add(cert.clone())
            .map_err(|e| bad(format!("certificate {}: {e}", certs.len() + 1)))?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(bad(
            "no PEM certificate in it (expected -----BEGIN CERTIFICATE----- blocks)".into(),
        ));
    }
    Ok(certs)
}

fn copy_limited(
    url: &str,
    src: impl Read,
    out: &mut dyn Write,
    limit: u64,
) -> Result<u64, TransportError> {
    let mut limited = src.take(limit.saturating_add(1));
    let n = std::io::copy(&mut limited, out).map_err(|e| TransportError::Io {
        url: url.to_string(),
        message: e.to_string(),
    })?;
    if n > limit {
        return Err(TransportError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    Ok(n)
}

/// The local path of a `file://` URL (percent-escapes decoded), or None for other schemes.
pub fn file_url_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("file://")?;
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
}

/// Join an archive root URL and a path inside it (`dists/noble/InRelease`).
pub fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// `s` percent-encoded (RFC 3986): every byte but the unreserved ones (letters, digits,
/// `-._~`) and those of `also_keep` as `%XX`. One encoder for purls, API forms and paths, and
/// registry queries.
pub fn percent_encode(s: &str, also_keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || also_keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_and_limits() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a b");
        std::fs::write(&p, b"hello").unwrap();
        let url = format!("file://{}", d.path().join("a%20b").display());
        let t = Transport::new();
        assert_eq!(t.get_bytes(&url, 100).unwrap(), b"hello");
        assert!(matches!(
            t.get_bytes(&url, 3),
            Err(TransportError::TooLarge { .. })
        ));
        let missing = format!("file://{}/nope", d.path().display());
        assert!(matches!(
            t.get_bytes(&missing, 3),
            Err(TransportError::NotFound { .. })
        ));
        assert!(matches!(
            t.get_bytes("ftp://x/y", 3),
            Err(TransportError::Scheme { .. })
        ));
        assert_eq!(
            join_url("http://a/ubuntu/", "/dists/x"),
            "http://a/ubuntu/dists/x"
        );
    }

    #[test]
    fn an_https_transfer_never_reaches_plain_http() {
        // The policy an https URL's request carries (and every redirect it follows) refuses a
        // plain-http hop before connecting: no listener is needed to prove it.
        let t = Transport::new().with_retries(0, Duration::from_millis(1));
        let err = t
            .call_with("http://127.0.0.1:9/dists/noble/InRelease", true)
            .unwrap_err();
        assert!(matches!(err, TransportError::Downgrade { .. }), "{err}");
        assert!(!err.should_retry());
        assert!(
            err.to_string()
                .contains("http://127.0.0.1:9/dists/noble/InRelease")
        );
        // A plain-http request is not held to it.
        let err = t.call_with("http://127.0.0.1:9/x", false).unwrap_err();
        assert!(matches!(err, TransportError::Io { .. }), "{err}");
    }
}

//! `ingot push`: an OCI image archive (`<image>-v<N>.oci.tar`) to a registry over the OCI
//! distribution API — blobs first (`HEAD`, then `POST` + monolithic `PUT ?digest=`), then the
//! manifest under a tag — never replacing a tag that names another manifest.
//!
//! Authentication follows the registry's `WWW-Authenticate` challenge on `GET /v2/`: `Basic`
//! with the credentials given, or `Bearer` (the token flow: `GET realm?service&scope` with
//! those credentials, the token then sent with every request). Credentials come from the
//! caller (the CLI reads the environment or a Docker `config.json`); this module never prints
//! them and never puts them in an error.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::oci::{self, LayerLocation};

/// Everything that can go wrong pushing.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The reference is not `HOST[:PORT]/NAME:TAG`.
    #[error(
        "image reference {reference:?}: expected HOST[:PORT]/NAME:TAG (a registry host, a \
         repository name, a tag), e.g. registry.example.com:5000/golden/ubuntu:v3"
    )]
    BadReference {
        /// What was given.
        reference: String,
    },
    /// The archive cannot be read as an OCI image.
    #[error(transparent)]
    Archive(#[from] oci::OciError),
    /// The `--ca-file` cannot be used.
    #[error(transparent)]
    CaFile(#[from] crate::net::CaFileError),
    /// A Docker `config.json` that cannot be read.
    #[error("{path}: {detail}")]
    DockerConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The registry could not be reached or the connection broke.
    #[error("{method} {url}: {message}")]
    Transport {
        /// The request method.
        method: &'static str,
        /// The URL.
        url: String,
        /// The cause.
        message: String,
    },
    /// The registry answered something else than the protocol says.
    #[error("{method} {url}: HTTP {status}, expected {expected}: {body}")]
    Unexpected {
        /// The request method.
        method: &'static str,
        /// The URL.
        url: String,
        /// The status received.
        status: u16,
        /// What was expected.
        expected: &'static str,
        /// The start of the answer's body.
        body: String,
    },
    /// The registry wants credentials that were not given or refused them.
    #[error(
        "{url}: the registry refused access ({detail}); give credentials in INGOT_REGISTRY_USERNAME/INGOT_REGISTRY_PASSWORD or a Docker config.json"
    )]
    Unauthorized {
        /// The URL.
        url: String,
        /// What happened.
        detail: String,
    },
    /// The tag names another manifest.
    #[error(
        "{reference} already names manifest {existing}, not this image's {ours}: a tag is never \
         overwritten (push under a new tag)"
    )]
    TagTaken {
        /// The reference.
        reference: String,
        /// The registry's manifest digest.
        existing: String,
        /// Ours.
        ours: String,
    },
    /// The registry stored other bytes than those sent.
    #[error("{url}: the registry answered digest {got}, expected {want}")]
    DigestMismatch {
        /// The URL.
        url: String,
        /// What the registry said.
        got: String,
        /// What was sent.
        want: String,
    },
}

impl PushError {
    /// Whether the user's input is at fault (exit 2): the reference, the archive, the CA file,
    /// a Docker config.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            PushError::BadReference { .. }
                | PushError::Archive(_)
                | PushError::CaFile(_)
                | PushError::DockerConfig { .. }
        )
    }
}

/// `HOST[:PORT]/NAME:TAG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`.
    pub registry: String,
    /// The repository, e.g. `golden/ubuntu`.
    pub repository: String,
    /// The tag.
    pub tag: String,
}

impl std::str::FromStr for Reference {
    type Err = PushError;
    fn from_str(s: &str) -> Result<Self, PushError> {
        let bad = || PushError::BadReference {
            reference: s.to_string(),
        };
        let (registry, rest) = s.split_once('/').ok_or_else(bad)?;
        let (repository, tag) = rest.rsplit_once(':').ok_or_else(bad)?;
        let registry_ok = !registry.is_empty()
            && (registry.contains('.') || registry.contains(':') || registry == "localhost")
            && registry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        // The distribution spec's grammar, simplified: lowercase components.
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|c| {
                !c.is_empty()
                    && c.chars().all(|ch| {
                        ch.is_ascii_lowercase()
                            || ch.is_ascii_digit()
                            || matches!(ch, '.' | '_' | '-')
                    })
            });
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if registry_ok && repo_ok && tag_ok {
            Ok(Reference {
                registry: registry.to_string(),
                repository: repository.to_string(),
                tag: tag.to_string(),
            })
        } else {
            Err(bad())
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

/// A user name and password (or token) for the registry.
#[derive(Clone)]
pub struct Credentials {
    /// The user.
    pub username: String,
    /// The password or token; never shown.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.username)
    }
}

/// The credentials for `registry` in a Docker `config.json` (`auths.<registry>.auth`, base64
/// of `user:password`, or `username`/`password`), if it names the registry.
pub fn docker_config_credentials(
    path: &Path,
    registry: &str,
) -> Result<Option<Credentials>, PushError> {
    let bad = |detail: String| PushError::DockerConfig {
        path: path.to_path_buf(),
        detail,
    };
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let auths = &doc["auths"];
    let entry = [
        registry.to_string(),
        format!("https://{registry}"),
        format!("https://{registry}/v2/"),
    ]
    .iter()
    .find_map(|k| auths.get(k))
    .cloned();
    let Some(entry) = entry else { return Ok(None) };
    if let Some(auth) = entry["auth"].as_str() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .map_err(|_| bad(format!("auths.{registry}.auth is not base64")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| bad(format!("auths.{registry}.auth is not UTF-8")))?;
        let (u, p) = decoded
            .split_once(':')
            .ok_or_else(|| bad(format!("auths.{registry}.auth is not user:password")))?;
        return Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    match (entry["username"].as_str(), entry["password"].as_str()) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })),
        _ => Err(bad(format!(
            "auths.{registry} has neither auth nor username and password"
        ))),
    }
}

/// A finished push.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    /// `host/name:tag`.
    pub reference: String,
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
    /// Blobs sent.
    pub blobs_uploaded: usize,
    /// Blobs the registry had already.
    pub blobs_present: usize,
    /// The tag named this manifest already: nothing was sent.
    pub already_tagged: bool,
}

struct Registry {
    agent: ureq::Agent,
    base: String,
    auth: Option<String>,
}

fn body_text(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    let mut s = String::new();
    let _ = resp.body_mut().as_reader().take(512).read_to_string(&mut s);
    s.trim().replace('\n', " ")
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `key="value"` parameters of a `WWW-Authenticate` challenge.
fn challenge_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_string(), &q[end + 1..]),
                None => (q.to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].to_string(), &after[end..]),
                None => (after.to_string(), ""),
            }
        };
        out.push((key.to_ascii_lowercase(), value));
        rest = next;
    }
    out
}

fn percent_encode(s: &str) -> String {
    crate::net::percent_encode(s, b"")
}

impl Registry {
    fn transport(method: &'static str, url: &str, e: ureq::Error) -> PushError {
        PushError::Transport {
            method,
            url: url.to_string(),
            message: e.to_string(),
        }
    }

    fn with_auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    /// `GET /v2/`, answering the challenge if there is one.
    fn authenticate(
        &mut self,
        reference: &Reference,
        credentials: Option<&Credentials>,
    ) -> Result<(), PushError> {
        let url = format!("{}/v2/", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| Self::transport("GET", &url, e))?;
        if resp.status() == 200 {
            return Ok(());
        }
        if resp.status() != 401 {
            return Err(PushError::Unexpected {
                method: "GET",
                url,
                status: resp.status().as_u16(),
                expected: "200 or 401",
                body: body_text(&mut resp),
            });
        }
        let challenge = header(&resp, "www-authenticate").unwrap_or_default();
        let basic = credentials.map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password))
            )
        });
        let unauthorized = |detail: &str| PushError::Unauthorized {
            url: url.clone(),
            detail: detail.to_string(),
        };
        let (scheme, params) = challenge.split_once(' ').unwrap_or((&challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            self.auth = Some(
                basic.ok_or_else(|| unauthorized("Basic authentication, no credentials given"))?,
            );
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let params = challenge_params(params);
            let get = |k: &str| {
                params
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
            };
            let realm =
                get("realm").ok_or_else(|| unauthorized("a Bearer challenge without realm"))?;
            let scope = format!("repository:{}:pull,push", reference.repository);
            let mut token_url = format!("{realm}?scope={}", percent_encode(&scope));
            if let Some(service) = get("service") {
                token_url.push_str(&format!("&service={}", percent_encode(&service)));
            }
            let req = self.agent.get(&token_url);
            let req = match &basic {
                Some(b) => req.header("Authorization", b),
                None => req,
            };
            let mut resp = req
                .call()
                .map_err(|e| Self::transport("GET", &token_url, e))?;
            if resp.status() != 200 {
                return Err(unauthorized(&format!(
                    "the token service {realm} answered HTTP {}",
                    resp.status().as_u16()
                )));
            }
            let mut text = Vec::new();
            resp.body_mut()
                .as_reader()
                .take(1 << 20)
                .read_to_end(&mut text)
                .map_err(|e| PushError::Transport {
                    method: "GET",
                    url: token_url.clone(),
                    message: e.to_string(),
                })?;
            let doc: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|_| unauthorized("the token service answered no JSON"))?;
            let token = doc["token"]
                .as_str()
                .or_else(|| doc["access_token"].as_str())
                .ok_or_else(|| unauthorized("the token service answered no token"))?;
            self.auth = Some(format!("Bearer {token}"));
        } else {
            return Err(unauthorized(&format!("unknown challenge {scheme:?}")));
        }
        let resp = self
            .with_auth(self.agent.get(&url))
            .call()
            .map_err(|e| Self::transport("GET", &url, e))?;
        if resp.status() != 200 {
            return Err(unauthorized(&format!(
                "HTTP {} with the credentials given",
                resp.status().as_u16()
            )));
        }
        Ok(())
    }

    /// The manifest digest the tag names now, if any.
    fn tag_digest(&self, reference: &Reference, accept: &str) -> Result<Option<String>, PushError> {
        let url = format!(
            "{}/v2/{}/manifests/{}",
            self.base, reference.repository, reference.tag
        );
        let mut resp = self
            .with_auth(self.agent.get(&url))
            .header("Accept", accept)
            .call()
            .map_err(|e| Self::transport("GET", &url, e))?;
        match resp.status().as_u16() {
            404 => Ok(None),
            200 => {
                let mut body = Vec::new();
                resp.body_mut()
                    .as_reader()
                    .take(4 << 20)
                    .read_to_end(&mut body)
                    .map_err(|e| PushError::Transport {
                        method: "GET",
                        url: url.clone(),
                        message: e.to_string(),
                    })?;
                Ok(Some(format!(
                    "sha256:{}",
                    hex::encode(Sha256::digest(&body))
                )))
            }
            status => Err(PushError::Unexpected {
                method: "GET",
                url,
                status,
                expected: "200 or 404",
                body: body_text(&mut resp),
            }),
        }
    }

    /// Uploads one blob unless the registry has it; true if it was sent.
    fn put_blob(
        &self,
        reference: &Reference,
        digest: &str,
        size: u64,
        body: &mut dyn Read,
    ) -> Result<bool, PushError> {
        let blob_url = format!("{}/v2/{}/blobs/{digest}", self.base, reference.repository);
        let resp = self
            .with_auth(self.agent.head(&blob_url))
            .call()
            .map_err(|e| Self::transport("HEAD", &blob_url, e))?;
        if resp.status() == 200 {
            return Ok(false);
        }
        let start = format!("{}/v2/{}/blobs/uploads/", self.base, reference.repository);
        let mut resp = self
            .with_auth(self.agent.post(&start))
            .header("Content-Length", "0")
            .send_empty()
            .map_err(|e| Self::transport("POST", &start, e))?;
        if resp.status() != 202 {
            return Err(PushError::Unexpected {
                method: "POST",
                url: start,
                status: resp.status().as_u16(),
                expected: "202 Accepted",
                body: body_text(&mut resp),
            });
        }
        let location = header(&resp, "location").ok_or_else(|| PushError::Unexpected {
            method: "POST",
            url: start.clone(),
            status: 202,
            expected: "a Location header",
            body: String::new(),
        })?;
        let location = if location.starts_with("http://") || location.starts_with("https://") {
            location
        } else {
            format!("{}{location}", self.base)
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={}", percent_encode(digest));
        let mut resp = self
            .with_auth(self.agent.put(&put))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", size.to_string())
            .send(ureq::SendBody::from_reader(body))
            .map_err(|e| Self::transport("PUT", &put, e))?;
        if resp.status() != 201 {
            return Err(PushError::Unexpected {
                method: "PUT",
                url: blob_url,
                status: resp.status().as_u16(),
                expected: "201 Created",
                body: body_text(&mut resp),
            });
        }
        if let Some(got) = header(&resp, "docker-content-digest")
            && got != digest
        {
            return Err(PushError::DigestMismatch {
                url: blob_url,
                got,
                want: digest.to_string(),
            });
        }
        Ok(true)
    }
}

/// The HTTPS agent for a registry: TLS verified against `ca_file` when given, else the
/// built-in roots; no redirects followed, statuses returned rather than errors.
fn agent(ca_file: Option<&Path>) -> Result<ureq::Agent, PushError> {
    let tls = match ca_file {
        Some(path) => {
            let roots: Vec<ureq::tls::Certificate<'static>> = crate::net::read_ca_file(path)?
                .iter()
                .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
                .collect();
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                .build()
        }
        None => ureq::tls::TlsConfig::default(),
    };
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(300)))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("ingot/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build();
    Ok(ureq::Agent::new_with_config(config))
}

/// The manifest digest `reference`'s tag names for an anonymous client — what Proxmox's
/// `oci-registry-pull` is (`skopeo copy` without credentials) — or `None` if the registry
/// has no such tag. A registry that wants a login is [`PushError::Unauthorized`]; a
/// `Bearer` challenge is answered with an anonymous token request, as skopeo does.
pub fn anonymous_tag_digest(
    reference: &Reference,
    ca_file: Option<&Path>,
) -> Result<Option<String>, PushError> {
    let mut registry = Registry {
        agent: agent(ca_file)?,
        base: format!("https://{}", reference.registry),
        auth: None,
    };
    registry.authenticate(reference, None)?;
    registry.tag_digest(
        reference,
        "application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json,\
         application/vnd.docker.distribution.manifest.v2+json,\
         application/vnd.docker.distribution.manifest.list.v2+json",
    )
}

/// Pushes the OCI archive at `archive` to `reference`: blobs, then the manifest under the
/// tag; an existing tag is accepted only if it names the same manifest (then nothing is
/// sent). TLS is verified against `ca_file` when given, else the built-in roots.
pub fn push(
    archive: &Path,
    reference: &Reference,
    credentials: Option<&Credentials>,
    ca_file: Option<&Path>,
) -> Result<Pushed, PushError> {
    let image: LayerLocation = oci::locate_layer(archive)?;
    let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&image.manifest)));
    let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&image.config)));
    let mut registry = Registry {
        agent: agent(ca_file)?,
        base: format!("https://{}", reference.registry),
        auth: None,
    };
    registry.authenticate(reference, credentials)?;
    let accept = format!(
        "{},application/vnd.oci.image.index.v1+json",
        image.manifest_media_type
    );
    match registry.tag_digest(reference, &accept)? {
        Some(existing) if existing == manifest_digest => {
            return Ok(Pushed {
                reference: reference.to_string(),
                manifest_digest,
                blobs_uploaded: 0,
                blobs_present: 0,
                already_tagged: true,
            });
        }
        Some(existing) => {
            return Err(PushError::TagTaken {
                reference: reference.to_string(),
                existing,
                ours: manifest_digest,
            });
        }
        None => {}
    }
    let (mut uploaded, mut present) = (0, 0);
    let mut layer = std::io::BufReader::with_capacity(1 << 20, oci::open_layer(archive, &image)?);
    let layer_digest = format!("sha256:{}", image.sha256);
    for sent in [
        registry.put_blob(reference, &layer_digest, image.size, &mut layer)?,
        registry.put_blob(
            reference,
            &config_digest,
            image.config.len() as u64,
            &mut &image.config[..],
        )?,
    ] {
        if sent {
            uploaded += 1;
        } else {
            present += 1;
        }
    }
    let url = format!(
        "{}/v2/{}/manifests/{}",
        registry.base, reference.repository, reference.tag
    );
    let mut resp = registry
        .with_auth(registry.agent.put(&url))
        .header("Content-Type", &image.manifest_media_type)
        .send(&image.manifest[..])
        .map_err(|e| Registry::transport("PUT", &url, e))?;
    if resp.status() != 201 {
        return Err(PushError::Unexpected {
            method: "PUT",
            url,
            status: resp.status().as_u16(),
            expected: "201 Created",
            body: body_text(&mut resp),
        });
    }
    if let Some(got) = header(&resp, "docker-content-digest")
        && got != manifest_digest
    {
        return Err(PushError::DigestMismatch {
            url,
            got,
            want: manifest_digest,
        });
    }
    Ok(Pushed {
        reference: reference.to_string(),
        manifest_digest,
        blobs_uploaded: uploaded,
        blobs_present: present,
        already_tagged: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_strictly() {
        let r: Reference = "127.0.0.1:5000/golden/ubuntu:v3".parse().unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_str()),
            ("127.0.0.1:5000", "golden/ubuntu", "v3")
        );
        for bad in [
            "ubuntu:v3",
            "host.example/Ubuntu:v3",
            "host.example/u",
            "host.example/u:",
            "host.example/u:-x",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bearer_challenges_are_split() {
        let p = challenge_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#,
        );
        assert_eq!(p[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(p[1], ("service".into(), "registry.example".into()));
        assert_eq!(p[2].0, "scope");
    }
}

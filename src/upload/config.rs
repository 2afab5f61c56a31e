//! What `ingot upload` needs to know about the Proxmox side: the API URL, the token (id and
//! secret), the nodes, the storage and how to trust the server's certificate — parsed and
//! checked before anything touches the network.
//!
//! The secret lives only in [`TokenSecret`], whose `Debug` is redacted and which has no
//! `Display`: it cannot end up in an error, a log line or `{:?}` output by accident. It is read
//! from the environment or a file, never from a command-line value (the process list is
//! world-readable).

use std::fmt;
use std::path::{Path, PathBuf};

use super::UploadError;

/// `https://host[:port]/api2/json`, split for the HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl {
    /// Host name or IP address (without brackets for IPv6).
    pub host: String,
    /// TCP port (443 when the URL names none; Proxmox listens on 8006).
    pub port: u16,
    /// Path prefix without a trailing slash, e.g. `/api2/json`.
    pub base_path: String,
}

impl ApiUrl {
    /// Parse `PM_API_URL`. Only `https://` is accepted: the token must never travel in clear.
    pub fn parse(url: &str) -> Result<ApiUrl, UploadError> {
        let bad = |why: &str| UploadError::Config {
            message: format!(
                "PM_API_URL {url:?}: {why} (expected e.g. https://proxmox1:8006/api2/json)"
            ),
        };
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| bad("must start with https://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("no host (or credentials in the URL)"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("junk after the IPv6 address")),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad("invalid port"))?,
            None => 443,
        };
        if host.is_empty() || path.contains(['?', '#', ' ']) {
            return Err(bad("invalid host or path"));
        }
        Ok(ApiUrl {
            host,
            port,
            base_path: path.trim_end_matches('/').to_string(),
        })
    }

    /// The URL of `path` under the API root, for messages.
    pub fn display(&self, path: &str) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("https://{host}:{}{}{path}", self.port, self.base_path)
    }
}

/// `user@realm!tokenname`, as Proxmox shows it when the token is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenId(String);

impl TokenId {
    /// Check the shape of `PM_API_TOKEN_ID`.
    pub fn parse(id: &str) -> Result<TokenId, UploadError> {
        let ok = match id.split_once('!') {
            Some((user, name)) => {
                user.contains('@')
                    && !name.is_empty()
                    && id.chars().all(|c| c.is_ascii_graphic() && c != '=')
            }
            None => false,
        };
        if ok {
            Ok(TokenId(id.to_string()))
        } else {
            Err(UploadError::Config {
                message: format!(
                    "PM_API_TOKEN_ID {id:?}: expected user@realm!tokenname (e.g. ingot@pve!upload)"
                ),
            })
        }
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The token secret. `Debug` prints `TokenSecret(<redacted>)`; there is no `Display`.
#[derive(Clone)]
pub struct TokenSecret(String);

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

impl TokenSecret {
    /// From a value (the environment variable `PM_API_TOKEN_SECRET`); `origin` names it in
    /// errors. Refuses empty values and control characters (they would break the header).
    pub fn new(value: &str, origin: &str) -> Result<TokenSecret, UploadError> {
        let v = value.trim();
        if v.is_empty() || v.chars().any(|c| c.is_control() || c == ' ') {
            return Err(UploadError::Config {
                message: format!(
                    "{origin}: the token secret is empty or contains spaces or control characters"
                ),
            });
        }
        Ok(TokenSecret(v.to_string()))
    }

    /// From a file holding only the secret (a trailing newline is fine).
    pub fn from_file(path: &Path) -> Result<TokenSecret, UploadError> {
        let text = std::fs::read_to_string(path).map_err(|e| UploadError::Config {
            message: format!("--token-secret-file {}: {e}", path.display()),
        })?;
        TokenSecret::new(&text, &format!("--token-secret-file {}", path.display()))
    }

    /// The secret itself; only the HTTP client calls this, to write the header.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

/// A SHA-256 certificate fingerprint, 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Parse Proxmox's notation (`AB:CD:…`, 32 colon-separated hex bytes); plain 64 hex digits
    /// are accepted too, case-insensitively.
    pub fn parse(s: &str) -> Result<Fingerprint, UploadError> {
        let digits: String = s.trim().chars().filter(|c| *c != ':').collect();
        let colons_ok = !s.contains(':') || s.trim().split(':').all(|b| b.len() == 2);
        let mut out = [0u8; 32];
        match hex::decode_to_slice(&digits, &mut out) {
            Ok(()) if colons_ok => Ok(Fingerprint(out)),
            _ => Err(UploadError::Config {
                message: format!(
                    "fingerprint {s:?}: expected a SHA-256 fingerprint, 32 colon-separated hex \
                     bytes (AB:CD:…), as `pvenode cert info` shows it"
                ),
            }),
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// How the server's certificate is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The public web PKI roots (a Proxmox node with an ACME certificate).
    WebPki,
    /// Only the CA certificates in this PEM file (the cluster's `pve-root-ca.pem`).
    CaFile(PathBuf),
    /// Exactly this leaf certificate, by SHA-256 (chain and name are not checked).
    Fingerprint(Fingerprint),
    /// Anything (`--insecure`): the CLI warns.
    Insecure,
}

/// Everything an upload needs besides the tarball.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The API root.
    pub url: ApiUrl,
    /// The token id.
    pub token_id: TokenId,
    /// The token secret (redacted in `Debug`).
    pub token_secret: TokenSecret,
    /// The node(s): one for shared storage, each node for node-local storage.
    pub nodes: Vec<String>,
    /// The storage id (`local`, `cephfs`, …).
    pub storage: String,
    /// Certificate trust.
    pub trust: Trust,
    /// How often a transient failure is retried.
    pub retries: u32,
    /// First backoff between retries (doubles each time).
    pub backoff: std::time::Duration,
    /// Delay between task status polls.
    pub poll_interval: std::time::Duration,
    /// How long to wait for a task before giving up (the task itself goes on).
    pub task_timeout: std::time::Duration,
}

/// Split `PM_NODE` (`pve1` or `pve1,pve2`), checking each name.
pub fn parse_nodes(s: &str) -> Result<Vec<String>, UploadError> {
    let nodes: Vec<String> = s
        .split(',')
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    if nodes.is_empty() || !nodes.iter().all(|n| is_safe_name(n)) {
        return Err(UploadError::Config {
            message: format!("PM_NODE {s:?}: expected node names separated by commas (pve1,pve2)"),
        });
    }
    Ok(nodes)
}

/// Check `PM_STORAGE`.
pub fn parse_storage(s: &str) -> Result<String, UploadError> {
    if is_safe_name(s) {
        Ok(s.to_string())
    } else {
        Err(UploadError::Config {
            message: format!("PM_STORAGE {s:?}: expected a storage id such as local or cephfs"),
        })
    }
}

/// Names Proxmox accepts for nodes and storages: letters, digits, `-`, `_`, `.`. Anything else
/// would need escaping in the URL path, and Proxmox would refuse it anyway.
fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_forms() {
        let u = ApiUrl::parse("https://proxmox1:8006/api2/json/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.base_path.as_str()),
            ("proxmox1", 8006, "/api2/json")
        );
        let u = ApiUrl::parse("https://[::1]:8006/api2/json").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8006));
        assert_eq!(u.display("/x"), "https://[::1]:8006/api2/json/x");
        assert_eq!(ApiUrl::parse("https://pve").unwrap().port, 443);
        for bad in [
            "http://pve:8006/api2/json",
            "https://:8006/",
            "https://u:p@pve/",
            "https://pve:99999/",
            "pve:8006",
        ] {
            assert!(ApiUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_id_and_secret() {
        assert!(TokenId::parse("ingot@pve!upload").is_ok());
        assert!(TokenId::parse("ingot@pve").is_err());
        assert!(TokenId::parse("ingot!x").is_err());
        let s = TokenSecret::new("abc-def\n", "env").unwrap();
        assert_eq!(s.expose(), "abc-def");
        assert_eq!(format!("{s:?}"), "TokenSecret(<redacted>)");
        assert!(TokenSecret::new("a\r\nX-Evil: 1", "env").is_err());
        assert!(TokenSecret::new("  ", "env").is_err());
    }

    #[test]
    fn fingerprint_notations() {
        let colon = (0..32)
            .map(|i| format!("{i:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let f = Fingerprint::parse(&colon).unwrap();
        assert_eq!(f.0[31], 31);
        assert_eq!(f.to_string(), colon.to_uppercase());
        assert_eq!(Fingerprint::parse(&colon.replace(':', "")).unwrap(), f);
        assert!(Fingerprint::parse("AB:CD").is_err());
        assert!(Fingerprint::parse(&colon.replacen(':', "", 1)).is_err());
    }

    #[test]
    fn node_lists() {
        assert_eq!(parse_nodes("pve1, pve2").unwrap(), ["pve1", "pve2"]);
        assert!(parse_nodes("pve1/../x").is_err());
        assert!(parse_nodes(",").is_err());
        assert!(parse_storage("local-lvm").is_ok());
        assert!(parse_storage("a b").is_err());
    }
}

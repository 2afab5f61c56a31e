//! `ingot upload`: put a published image on Proxmox storage as a container template, through
//! the Proxmox VE API with an API token — never SSH, never a shell on a node.
//!
//! Order of work, each step refusing before the next can send anything:
//! 1. the tarball: an allowed name (`.tar.gz`, `.tar.xz`, `.tar.zst`, `.tar`; Proxmox also
//!    takes `.tar.bz2`, which `verify` cannot read, so it is refused),
//!    its SHA-256, the `.sha256` sidecar when there is one, and `verify` (the golden contract)
//!    unless the caller skips it;
//! 2. TLS as configured ([`config::Trust`]), checked during the handshake;
//! 3. `GET /storage/{storage}` (shared or node-local; the storage index when the token may not
//!    read the storage's configuration), then the template list of every target node: an
//!    existing name is refused, because Proxmox would silently replace it;
//! 4. the multipart upload, streamed from the file with an exact `Content-Length`;
//! 5. the task polled to its end; a failed task shows its log tail.
//!
//! By reference instead of by bytes ([`remote`]): `--from-url` asks each node to
//! `download-url` the template itself (checked by its SHA-256), `--from-registry` asks it to
//! `oci-registry-pull` a tag; the same list-first refusal and task polling apply.
//!
//! Owns: Proxmox API access for uploads. Must never: use SSH, print or log the token secret,
//! overwrite a template, or report success for an upload whose task did not end `OK`.

pub mod api;
pub mod config;
pub mod http;
pub mod multipart;
pub mod remote;
pub mod tls;

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::progress::Reporter;
use api::{Api, Progress};
use config::{Settings, TokenId, TokenSecret, Trust};
use http::Client;
use multipart::TemplateForm;

/// Template file endings ingot uploads as `vztmpl` (those of Proxmox that `verify` can read).
pub const TEMPLATE_EXTENSIONS: [&str; 4] = [".tar.gz", ".tar.xz", ".tar.zst", ".tar"];

/// Why an upload did not happen (or did not finish).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// A setting is missing or malformed (exit 2).
    #[error("{message}")]
    Config {
        /// What is wrong and what was expected.
        message: String,
    },
    /// The tarball cannot be read, or its name is not a template name Proxmox accepts (exit 2).
    #[error("{path}: {message}")]
    Tarball {
        /// The tarball.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `--from-url`: the URL (or the template name it ends in) is not usable (exit 2).
    #[error("{url}: {message}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// `--from-url` without a local image: `URL.sha256` is missing or malformed (exit 2).
    #[error("{url}: {message}")]
    UrlSidecar {
        /// The sidecar's URL.
        url: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// `--from-registry`: the reference is not one Proxmox can pull (exit 2).
    #[error("image reference {reference:?}: {message}")]
    Reference {
        /// What was given.
        reference: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// `--from-registry`: the registry, asked as the node will ask it (anonymously), does
    /// not serve the tag.
    #[error("{reference}: {message}; not asking Proxmox to pull it")]
    Registry {
        /// The reference.
        reference: String,
        /// What the registry said and what to do.
        message: String,
    },
    /// The `.sha256` sidecar is unreadable or not in `sha256sum` format (exit 2).
    #[error("{path}: {message}")]
    Sidecar {
        /// The sidecar.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The tarball does not match its sidecar.
    #[error("{path}: SHA-256 is {actual}, but {sidecar} says {expected}; not uploading")]
    ChecksumMismatch {
        /// The tarball.
        path: PathBuf,
        /// The sidecar.
        sidecar: PathBuf,
        /// What the sidecar says.
        expected: String,
        /// What the file hashes to.
        actual: String,
    },
    /// The tarball breaks the golden-image contract.
    #[error(
        "{path}: breaks the golden-image contract ({count} violation(s), first: {first}); \
         not uploading (see `ingot verify {path}`, or pass --no-verify)"
    )]
    VerifyFailed {
        /// The tarball.
        path: PathBuf,
        /// How many violations.
        count: usize,
        /// The first one.
        first: String,
    },
    /// `verify` could not read the tarball at all.
    #[error(transparent)]
    Unreadable(#[from] crate::verify::VerifyError),
    /// `--require-signature`: the provenance is missing, not signed by the key, or does not
    /// match the tarball.
    #[error("{0}; not uploading (--require-signature)")]
    Provenance(#[from] crate::provenance::ProvenanceError),
    /// The template name already exists on the storage (Proxmox would silently replace it).
    #[error(
        "{volid} already exists on node(s) {nodes}; refusing to replace it (old images are \
         kept: build a new version, or remove the old one in Proxmox first)"
    )]
    Exists {
        /// The volume id.
        volid: String,
        /// Where it exists, comma-separated.
        nodes: String,
    },
    /// The name appeared on the storage after an upload attempt failed: that attempt landed.
    #[error(
        "{volid} appeared on node {node} after a failed upload attempt; not sending it again \
         (check the node's task list)"
    )]
    Appeared {
        /// The volume id.
        volid: String,
        /// The node.
        node: String,
    },
    /// No TCP connection (or it broke during the handshake).
    #[error("{url}: cannot connect: {message}")]
    Connect {
        /// The URL.
        url: String,
        /// The cause.
        message: String,
    },
    /// The connection broke during a request.
    #[error("{url}: {message}")]
    Transfer {
        /// The URL.
        url: String,
        /// The cause.
        message: String,
    },
    /// The TLS handshake failed (untrusted certificate, protocol error); nothing was sent.
    #[error("{url}: TLS: {message}; nothing was sent")]
    Tls {
        /// The URL.
        url: String,
        /// The cause and what to do.
        message: String,
    },
    /// The pinned fingerprint does not match; nothing was sent.
    #[error(
        "{url}: TLS: the server's certificate has SHA-256 fingerprint {actual}, not the \
         expected {expected}; refused before sending anything"
    )]
    FingerprintMismatch {
        /// The URL.
        url: String,
        /// The pinned fingerprint.
        expected: String,
        /// The server's.
        actual: String,
    },
    /// The server's answer is not what the Proxmox API sends.
    #[error("{url}: unexpected answer: {message}")]
    Protocol {
        /// The URL.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// An HTTP error status, explained.
    #[error("{url}: HTTP {status} {reason}: {}", explain_status(*status))]
    Http {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// Proxmox's reason phrase (it carries the error message) and error details.
        reason: String,
    },
    /// The upload was accepted but its task failed.
    #[error(
        "node {node}: task {upid} failed: {exitstatus} (last log line: {})",
        log_tail.last().map(String::as_str).unwrap_or("-")
    )]
    TaskFailed {
        /// The node.
        node: String,
        /// The task id.
        upid: String,
        /// The task's exit status.
        exitstatus: String,
        /// The last lines of the task log.
        log_tail: Vec<String>,
    },
    /// The task did not end in time; it may still succeed on the node.
    #[error(
        "node {node}: task {upid} still running after {seconds} s; stopped waiting \
         (the template may still appear: check the node's task list)"
    )]
    TaskTimeout {
        /// The node.
        node: String,
        /// The task id.
        upid: String,
        /// How long we waited.
        seconds: u64,
    },
    /// Some nodes got the image, then another failed.
    #[error("uploaded to {done} only, then: {source}")]
    Partial {
        /// Nodes that got the image, comma-separated.
        done: String,
        /// The failure.
        source: Box<UploadError>,
    },
}

impl UploadError {
    /// Whether trying the same request again could help (the one place that classifies).
    pub fn should_retry(&self) -> bool {
        match self {
            UploadError::Connect { .. } | UploadError::Transfer { .. } => true,
            UploadError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// Bad usage or input (exit 2) rather than a failed upload (exit 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            UploadError::Config { .. }
                | UploadError::Tarball { .. }
                | UploadError::Sidecar { .. }
                | UploadError::Url { .. }
                | UploadError::UrlSidecar { .. }
                | UploadError::Reference { .. }
        ) || matches!(self, UploadError::Provenance(e) if e.is_bad_input())
    }
}

/// One line saying what an HTTP error status from Proxmox usually means.
fn explain_status(status: u16) -> &'static str {
    match status {
        401 => "authentication failed: check PM_API_TOKEN_ID and the token secret",
        403 => {
            "permission denied: the token (with privilege separation, the token itself) needs \
             Datastore.AllocateTemplate and Datastore.Audit on /storage/<storage>"
        }
        404 => "not found: check PM_API_URL (…/api2/json), PM_NODE and PM_STORAGE",
        400 => "the server refused a parameter",
        500..=599 => "server error (retried; try again later)",
        _ => "unexpected status",
    }
}

/// What to upload and how.
#[derive(Debug)]
pub struct UploadRequest {
    /// The image tarball.
    pub tarball: PathBuf,
    /// Skip the golden-contract check (the checksum is still checked).
    pub no_verify: bool,
    /// Require provenance signed by this public key (SPKI PEM) and matching the tarball.
    pub require_signature: Option<PathBuf>,
    /// The Proxmox side.
    pub settings: Settings,
}

/// A finished upload, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Uploaded {
    /// `<storage>:vztmpl/<file>`.
    pub volid: String,
    /// Bytes (`null` when the node fetched a file ingot did not read: `--from-url` without a
    /// local image, `--from-registry`).
    pub size: Option<u64>,
    /// SHA-256 of the file, hex, checked by Proxmox too (`null` for `--from-registry`).
    pub sha256: Option<String>,
    /// Where the node(s) fetched it from: the URL or the image reference (absent for an
    /// upload of bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The storage id.
    pub storage: String,
    /// Whether the storage is shared (then one upload serves every node).
    pub shared: bool,
    /// The node(s) uploaded through.
    pub nodes: Vec<String>,
    /// Each node's task: id and exit status.
    pub tasks: Vec<TaskResult>,
}

/// One upload task's result.
#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    /// The node.
    pub node: String,
    /// The task id.
    pub upid: String,
    /// `OK` or `WARNINGS: n`.
    pub exitstatus: String,
}

/// A local image that passed every check before the network: its template name, SHA-256
/// and size.
#[derive(Debug, Clone)]
pub(crate) struct CheckedImage {
    /// The file name Proxmox will store.
    pub name: String,
    /// SHA-256, hex.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// The checks an image passes before anything is sent: its name, its SHA-256 against the
/// `.sha256` sidecar, the provenance signature when required, and `verify --proxmox` unless
/// skipped.
pub(crate) fn check_image(
    path: &Path,
    no_verify: bool,
    require_signature: Option<&Path>,
    progress: &dyn Reporter,
) -> Result<CheckedImage, UploadError> {
    let name = template_name(path)?;
    progress.begin("checksum", None);
    let (sha256, size) = crate::fetch::hash_file(path).map_err(|e| UploadError::Tarball {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    check_sidecar(path, &name, &sha256)?;
    progress.finish(&format!("{name}: sha256 {sha256}, {size} bytes"));
    if let Some(key) = require_signature {
        progress.begin("provenance", None);
        let key = crate::provenance::keys::PublicKey::load(key)
            .map_err(crate::provenance::ProvenanceError::from)?;
        let check = crate::provenance::verify_beside(path, &key)?;
        progress.finish(&format!(
            "{} signed by {}, subject sha256 {}",
            check.envelope.display(),
            check.keyid,
            check.sha256
        ));
    }
    if !no_verify {
        progress.begin("verify", None);
        // What `pct create` reads and writes is checked too (`verify --proxmox`).
        let report = crate::verify::verify_tarball_with(
            path,
            &crate::verify::VerifyOptions {
                proxmox: true,
                architecture: None,
            },
        )?;
        if let Some(first) = report.violations.first() {
            return Err(UploadError::VerifyFailed {
                path: path.to_path_buf(),
                count: report.violations.len(),
                first: first.to_string(),
            });
        }
        progress.finish(&format!(
            "golden contract holds ({} entries)",
            report.entries
        ));
    }
    Ok(CheckedImage { name, sha256, size })
}

/// The API client for the settings (nothing is contacted yet).
pub(crate) fn connect(s: &Settings) -> Result<Api, UploadError> {
    let tls = tls::client_config(&s.trust)?;
    let client = Client::new(
        s.url.clone(),
        tls,
        s.token_id.clone(),
        s.token_secret.clone(),
    );
    Ok(Api::new(client, s.retries, s.backoff))
}

/// The nodes to act on — the first one for shared storage, every one for node-local
/// storage — and whether the storage is shared; refuses (before anything is sent) when
/// `volid` exists on any of them, because Proxmox would silently replace it.
pub(crate) fn targets_without(
    api: &Api,
    s: &Settings,
    volid: &str,
) -> Result<(bool, Vec<String>), UploadError> {
    let first = s.nodes.first().ok_or_else(|| UploadError::Config {
        message: "PM_NODE names no node".into(),
    })?;
    let shared = api.storage_is_shared(&s.storage)?;
    let targets: Vec<String> = if shared {
        vec![first.clone()]
    } else {
        s.nodes.clone()
    };
    let mut present = Vec::new();
    for node in &targets {
        if api
            .templates(node, &s.storage)?
            .iter()
            .any(|t| t.volid == volid)
        {
            present.push(node.clone());
        }
    }
    if !present.is_empty() {
        return Err(UploadError::Exists {
            volid: volid.to_string(),
            nodes: present.join(","),
        });
    }
    Ok((shared, targets))
}

/// `e`, or [`UploadError::Partial`] when some nodes already got the image.
pub(crate) fn after(tasks: &[TaskResult], e: UploadError) -> UploadError {
    if tasks.is_empty() {
        e
    } else {
        UploadError::Partial {
            done: tasks
                .iter()
                .map(|t| t.node.as_str())
                .collect::<Vec<_>>()
                .join(","),
            source: Box::new(e),
        }
    }
}

/// Check the tarball, then upload it to every target node; see the module docs for the order.
pub fn upload(req: &UploadRequest, progress: &dyn Reporter) -> Result<Uploaded, UploadError> {
    let path = &req.tarball;
    let s = &req.settings;
    let image = check_image(
        path,
        req.no_verify,
        req.require_signature.as_deref(),
        progress,
    )?;
    let api = connect(s)?;
    let volid = format!("{}:vztmpl/{}", s.storage, image.name);
    let (shared, targets) = targets_without(&api, s, &volid)?;

    let boundary = multipart::random_boundary().map_err(|e| UploadError::Config {
        message: format!("/dev/urandom: {e}"),
    })?;
    let form = TemplateForm::new(&boundary, &image.name, image.size, &image.sha256);
    let mut file = File::open(path).map_err(|e| UploadError::Tarball {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut tasks: Vec<TaskResult> = Vec::new();
    for node in &targets {
        let mut payload = api::Payload {
            form: &form,
            file: &mut file,
            path,
            volid: &volid,
        };
        let task =
            upload_to(&api, node, s, &mut payload, progress).map_err(|e| after(&tasks, e))?;
        tasks.push(task);
    }
    Ok(Uploaded {
        volid,
        size: Some(image.size),
        sha256: Some(image.sha256),
        source: None,
        storage: s.storage.clone(),
        shared,
        nodes: targets,
        tasks,
    })
}

/// Upload to one node and wait for its task.
fn upload_to(
    api: &Api,
    node: &str,
    s: &Settings,
    payload: &mut api::Payload<'_>,
    progress: &dyn Reporter,
) -> Result<TaskResult, UploadError> {
    let file_size = payload.form.file_size();
    let volid = payload.volid.to_string();
    progress.begin(&format!("upload {node}"), Some(file_size));
    let upid = api.upload(node, &s.storage, payload, &mut |p| match p {
        Progress::Sent(n) => progress.advance(n),
        Progress::Retry(why) => progress.message(&format!("retrying after: {why}")),
        Progress::Restart => progress.begin(&format!("upload {node}"), Some(file_size)),
    })?;
    progress.finish(&format!("accepted by {node} as task {upid}"));
    wait_task(api, node, upid, s, &volid, progress)
}

/// Poll the task `upid` on `node` until it stops: `OK` (or `WARNINGS`) is its result,
/// anything else a [`UploadError::TaskFailed`] with the log's last lines; giving up after
/// the task timeout is [`UploadError::TaskTimeout`].
pub(crate) fn wait_task(
    api: &Api,
    node: &str,
    upid: String,
    s: &Settings,
    volid: &str,
    progress: &dyn Reporter,
) -> Result<TaskResult, UploadError> {
    progress.begin(&format!("task {node}"), None);
    let started = std::time::Instant::now();
    let end = loop {
        if let Some(end) = api.task_end(node, &upid)? {
            break end;
        }
        if started.elapsed() >= s.task_timeout {
            return Err(UploadError::TaskTimeout {
                node: node.to_string(),
                upid,
                seconds: s.task_timeout.as_secs(),
            });
        }
        std::thread::sleep(s.poll_interval);
    };
    if !end.ok() {
        let log_tail = api.task_log_tail(node, &upid, 10).unwrap_or_default();
        return Err(UploadError::TaskFailed {
            node: node.to_string(),
            upid,
            exitstatus: end.exitstatus,
            log_tail,
        });
    }
    progress.finish(&format!("{volid} on {node}: {}", end.exitstatus));
    Ok(TaskResult {
        node: node.to_string(),
        upid,
        exitstatus: end.exitstatus,
    })
}

/// The file name Proxmox will store, checked: an allowed ending and only `[A-Za-z0-9._-]`
/// (Proxmox would silently rewrite anything else, and the name goes into a header).
pub fn template_name(path: &Path) -> Result<String, UploadError> {
    let bad = |message: String| UploadError::Tarball {
        path: path.to_path_buf(),
        message,
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad("no file name".into()))?;
    check_template_name(name).map_err(bad)?;
    Ok(name.to_string())
}

/// Why `name` is not a template name ingot hands to Proxmox (see [`template_name`]).
pub(crate) fn check_template_name(name: &str) -> Result<(), String> {
    if name.ends_with(".tar.bz2") {
        return Err(
            "a bzip2 template cannot be checked (`ingot verify` reads gzip, zstd, xz and plain \
             tar): recompress it as .tar.gz, .tar.zst or .tar.xz"
                .into(),
        );
    }
    if !TEMPLATE_EXTENSIONS
        .iter()
        .any(|ext| name.len() > ext.len() && name.ends_with(ext))
    {
        return Err(format!(
            "a container template name must end in {}",
            TEMPLATE_EXTENSIONS.join(", ")
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("a template name may hold only letters, digits, '.', '_' and '-'".into());
    }
    Ok(())
}

/// Compare with `<tarball>.sha256` (`sha256sum` format) when it exists.
fn check_sidecar(path: &Path, name: &str, actual: &str) -> Result<(), UploadError> {
    let mut sidecar = path.as_os_str().to_owned();
    sidecar.push(".sha256");
    let sidecar = PathBuf::from(sidecar);
    let text = match std::fs::read_to_string(&sidecar) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(UploadError::Sidecar {
                path: sidecar,
                message: e.to_string(),
            });
        }
    };
    let expected = sidecar_sha256(&text, name).map_err(|message| UploadError::Sidecar {
        path: sidecar.clone(),
        message,
    })?;
    if expected != actual {
        return Err(UploadError::ChecksumMismatch {
            path: path.to_path_buf(),
            sidecar,
            expected,
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// The SHA-256 (lowercase hex) a `.sha256` sidecar gives for `name`: its first line,
/// `<64 hex digits>  <file name>` as `sha256sum` writes it (the name may be missing, but if
/// present it must be `name`).
pub(crate) fn sidecar_sha256(text: &str, name: &str) -> Result<String, String> {
    let line = text.lines().next().unwrap_or("").trim();
    let mut fields = line.split_whitespace();
    let expected = fields.next().unwrap_or("").to_ascii_lowercase();
    if expected.len() != 64 || !expected.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("expected `<64 hex digits>  <file name>` as sha256sum writes it".into());
    }
    if let Some(listed) = fields.next() {
        let listed = listed.trim_start_matches('*');
        if Path::new(listed).file_name().and_then(|n| n.to_str()) != Some(name) {
            return Err(format!("names {listed}, not {name}"));
        }
    }
    Ok(expected)
}

/// `ingot upload` as the CLI runs it: flags (already merged with their `PM_*` environment
/// variables by the CLI parser) plus the secret from `PM_API_TOKEN_SECRET` or a file.
#[derive(Debug, Default)]
pub struct UploadCommand {
    /// The tarball (optional with `--from-url`, none with `--from-registry`).
    pub tarball: Option<PathBuf>,
    /// `--from-url`: the node downloads this URL itself.
    pub from_url: Option<String>,
    /// `--from-registry`: the node pulls this tagged OCI image reference.
    pub from_registry: Option<String>,
    /// `--no-verify-certificates`: the node does not check the URL's TLS certificate.
    pub no_verify_certificates: bool,
    /// `INGOT_REGISTRY_CA_FILE`: the CA the registry's certificate is checked against when
    /// `--from-registry` first asks the registry for the tag.
    pub registry_ca_file: Option<PathBuf>,
    /// `PM_API_URL`.
    pub api_url: Option<String>,
    /// `PM_API_TOKEN_ID`.
    pub token_id: Option<String>,
    /// A file holding the secret (else `PM_API_TOKEN_SECRET`).
    pub token_secret_file: Option<PathBuf>,
    /// `PM_NODE`.
    pub node: Option<String>,
    /// `PM_STORAGE`.
    pub storage: Option<String>,
    /// `PM_TLS_CA`.
    pub ca_file: Option<PathBuf>,
    /// `PM_TLS_FINGERPRINT`.
    pub fingerprint: Option<String>,
    /// Accept any certificate.
    pub insecure: bool,
    /// Skip `verify`.
    pub no_verify: bool,
    /// Retries of transient failures.
    pub retries: u32,
    /// Seconds to wait for each upload task.
    pub task_timeout: u64,
    /// Print the result as JSON.
    pub json: bool,
    /// No progress output.
    pub quiet: bool,
    /// `PM_REQUIRE_SIGNATURE`: the public key the image's provenance must be signed with.
    pub require_signature: Option<PathBuf>,
}

impl UploadCommand {
    /// Resolve the settings; every missing or malformed one is a [`UploadError::Config`].
    pub fn settings(&self) -> Result<Settings, UploadError> {
        let need = |v: &Option<String>, var: &str, flag: &str| {
            v.clone()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| UploadError::Config {
                    message: format!("{var} is not set (or pass {flag})"),
                })
        };
        let url = config::ApiUrl::parse(&need(&self.api_url, "PM_API_URL", "--api-url")?)?;
        let token_id = TokenId::parse(&need(&self.token_id, "PM_API_TOKEN_ID", "--token-id")?)?;
        let token_secret = match &self.token_secret_file {
            Some(p) => TokenSecret::from_file(p)?,
            None => match std::env::var("PM_API_TOKEN_SECRET") {
                Ok(v) => TokenSecret::new(&v, "PM_API_TOKEN_SECRET")?,
                Err(_) => {
                    return Err(UploadError::Config {
                        message: "PM_API_TOKEN_SECRET is not set (or pass --token-secret-file \
                                  FILE; the secret is never taken from a flag value)"
                            .into(),
                    });
                }
            },
        };
        let nodes = config::parse_nodes(&need(&self.node, "PM_NODE", "--node")?)?;
        let storage = config::parse_storage(&need(&self.storage, "PM_STORAGE", "--storage")?)?;
        // The strongest check given wins: a pin, then a CA, and --insecure only when neither
        // is configured (a stray PM_TLS_INSECURE must not switch off a pin).
        let trust = if let Some(f) = self.fingerprint.as_deref().filter(|f| !f.is_empty()) {
            Trust::Fingerprint(config::Fingerprint::parse(f)?)
        } else if let Some(ca) = self.ca_file.as_ref().filter(|p| !p.as_os_str().is_empty()) {
            Trust::CaFile(ca.clone())
        } else if self.insecure {
            Trust::Insecure
        } else {
            Trust::WebPki
        };
        Ok(Settings {
            url,
            token_id,
            token_secret,
            nodes,
            storage,
            trust,
            retries: self.retries,
            backoff: std::time::Duration::from_secs(1),
            poll_interval: std::time::Duration::from_millis(500),
            task_timeout: std::time::Duration::from_secs(self.task_timeout),
        })
    }
}

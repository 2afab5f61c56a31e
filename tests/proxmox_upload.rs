//! `ingot upload` against a loopback HTTPS server that behaves as the Proxmox VE API does
//! (a real Proxmox cannot run here): token auth, the vztmpl list, the multipart upload with
//! its part order, `Content-Length` and checksum rules, silent overwrites, task status and
//! log, shared and node-local storage.
//!
//! The certificates come from `rcgen` (a CA and a leaf for 127.0.0.1), the server is rustls.
//! The first tests prove the fake is as strict as Proxmox (chunked body, part order, checksum,
//! 401/403, silent overwrite), so that ingot passing against it means something. The
//! tarballs are real: a minimal root filesystem packed by GNU tar, checked by `ingot verify`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sha2::{Digest, Sha256};

const TOKEN_ID: &str = "ingot@pve!upload";
const SECRET: &str = "5f0e3c1a-7d2b-4a9e-b8c6-0d1e2f3a4b5c";
/// Datastore.AllocateTemplate + Datastore.Audit: what an uploader needs, and no more.
const UPLOADER_TOKEN: &str = "builder@pve!ci";
const UPLOADER_SECRET: &str = "11111111-2222-3333-4444-555555555555";
/// Datastore.Audit only.
const AUDIT_ONLY_TOKEN: &str = "audit@pve!ro";
const AUDIT_ONLY_SECRET: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

// ---------------------------------------------------------------------------------------------
// The fake Proxmox VE API.

/// What the server saw and how it should behave; tests set the knobs and read the counters.
#[derive(Default)]
struct State {
    /// Whether the storage is shared between nodes.
    shared: bool,
    /// Node names the cluster knows.
    nodes: Vec<String>,
    /// Number of POSTs to …/upload received (any outcome).
    upload_requests: usize,
    /// Whether any request carried an Authorization header.
    auth_seen: bool,
    /// Every request line, in order.
    requests: Vec<String>,
    /// Answer this many upload requests with 503 (after reading their body).
    fail_uploads_with_503: usize,
    /// Close this many upload connections after reading a few body bytes, without answering.
    drop_mid_body: usize,
    /// Store this many uploads, then close the connection without answering (the upload
    /// landed, the client never hears so).
    drop_after_store: usize,
    /// The exit status upload tasks end with (`OK` unless set).
    task_exitstatus: Option<String>,
    /// Report a task as running this many times before it stops.
    running_polls: usize,
    /// Tasks: upid → (polls so far, exit status).
    tasks: HashMap<String, (usize, String)>,
    /// Store uploaded files (false for the 1 GiB memory test: hash only).
    discard: bool,
    /// SHA-256 of the last file received.
    last_sha256: Option<String>,
    /// Every `download-url` and `oci-registry-pull` POST: (node, call, its parameters).
    fetch_posts: Vec<(String, String, BTreeMap<String, String>)>,
    /// Task logs written by the `download-url` and `oci-registry-pull` workers: upid → lines.
    task_logs: HashMap<String, Vec<String>>,
    /// The exit status of `oci-registry-pull` tasks (`OK` unless set).
    pull_exitstatus: Option<String>,
}

struct FakePve {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    storage_root: PathBuf,
    ca_pem: PathBuf,
    leaf_fingerprint: String,
    _dir: tempfile::TempDir,
}

impl FakePve {
    fn start(nodes: &[&str], shared: bool) -> FakePve {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "Proxmox Virtual Environment (test)",
        );
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        let ca_pem = dir.path().join("pve-root-ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        let leaf_fingerprint = colon_hex(&Sha256::digest(leaf.der()));

        let chain = vec![leaf.der().clone(), ca.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
        );
        let storage_root = dir.path().join("storage");
        std::fs::create_dir_all(&storage_root).unwrap();
        let state = Arc::new(Mutex::new(State {
            shared,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            ..State::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (st, root) = (Arc::clone(&state), storage_root.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (config, st, root) = (Arc::clone(&config), Arc::clone(&st), root.clone());
                std::thread::spawn(move || serve(conn, config, &st, &root));
            }
        });
        FakePve {
            addr,
            state,
            storage_root,
            ca_pem,
            leaf_fingerprint,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/api2/json", self.addr.port())
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Where the file `name` lives for `node`.
    fn stored(&self, node: &str, name: &str) -> PathBuf {
        let shared = self.with(|s| s.shared);
        let dir = if shared { "shared" } else { node };
        self.storage_root.join(dir).join(name)
    }

    /// Put a template on a node's storage as if uploaded earlier.
    fn preload(&self, node: &str, name: &str, bytes: &[u8]) {
        let p = self.stored(node, name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn serve(tcp: TcpStream, config: Arc<rustls::ServerConfig>, state: &Mutex<State>, root: &Path) {
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // The handshake happens on first read; a client that refuses our certificate ends here.
    let mut reader = BufReader::new(&mut tls);
    let Some((method, target, headers)) = read_head(&mut reader) else {
        return;
    };
    let (status, reason, body) = handle(&method, &target, &headers, &mut reader, state, root);
    drop(reader);
    if status == 0 {
        return; // hang up without a word
    }
    let body = body.to_string();
    let _ = write!(
        tls,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json;charset=UTF-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn read_head(r: &mut impl BufRead) -> Option<(String, String, HashMap<String, String>)> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = HashMap::new();
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        if line.trim().is_empty() {
            return Some((method, target, headers));
        }
        let (k, v) = line.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
}

type Answer = (u16, &'static str, serde_json::Value);

fn error(status: u16, reason: &'static str) -> Answer {
    (status, reason, serde_json::json!({ "data": null }))
}

fn handle(
    method: &str,
    target: &str,
    headers: &HashMap<String, String>,
    body: &mut impl BufRead,
    state: &Mutex<State>,
    root: &Path,
) -> Answer {
    let mut st = state.lock().unwrap();
    st.requests.push(format!("{method} {target}"));
    let path = target.split('?').next().unwrap_or("");
    let segments: Vec<String> = path
        .trim_start_matches("/api2/json/")
        .split('/')
        .map(percent_decode)
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let is_upload = method == "POST" && matches!(seg[..], ["nodes", _, "storage", _, "upload"]);
    if is_upload {
        st.upload_requests += 1;
    }
    let length: Option<u64> = headers.get("content-length").and_then(|v| v.parse().ok());
    // Whatever the answer, read the body first so the client is not cut off mid-send.
    let drain = |body: &mut dyn BufRead| {
        if let Some(n) = length {
            let _ = std::io::copy(&mut body.take(n), &mut std::io::sink());
        }
    };

    let token = match headers.get("authorization") {
        Some(a) => {
            st.auth_seen = true;
            a.strip_prefix("PVEAPIToken=").unwrap_or("").to_string()
        }
        None => String::new(),
    };
    let full = format!("{TOKEN_ID}={SECRET}");
    let uploader = format!("{UPLOADER_TOKEN}={UPLOADER_SECRET}");
    let audit = format!("{AUDIT_ONLY_TOKEN}={AUDIT_ONLY_SECRET}");
    if token != full && token != audit && token != uploader {
        drain(body);
        return error(401, "authentication failure");
    }
    let node_ok = |n: &str| st.nodes.iter().any(|k| k == n);
    let local = serde_json::json!({
        "storage": "local", "type": "dir", "content": "vztmpl,iso,backup",
        "shared": if st.shared { 1 } else { 0 }, "digest": "0123abcd" });
    match (method, &seg[..]) {
        // Reading one storage's configuration needs Datastore.Allocate; the index only Audit.
        ("GET", ["storage", "local"]) if token != full => error(
            403,
            "Permission check failed (/storage/local, Datastore.Allocate)",
        ),
        ("GET", ["storage", "local"]) => (200, "OK", serde_json::json!({ "data": local })),
        ("GET", ["storage"]) => (200, "OK", serde_json::json!({ "data": [local] })),
        ("GET", ["nodes", node, "storage", "local", "content"]) if node_ok(node) => {
            let dir = root.join(if st.shared { "shared" } else { node });
            let mut data = Vec::new();
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                data.push(serde_json::json!({
                    "volid": format!("local:vztmpl/{name}"), "format": "tgz",
                    "content": "vztmpl", "size": e.metadata().map(|m| m.len()).unwrap_or(0),
                }));
            }
            (200, "OK", serde_json::json!({ "data": data }))
        }
        ("POST", ["nodes", node, "storage", "local", "upload"]) if node_ok(node) => {
            let node = node.to_string();
            if headers
                .get("transfer-encoding")
                .is_some_and(|v| v.contains("chunked"))
                || length.is_none()
            {
                return error(501, "upload without content length header not supported");
            }
            if token == audit {
                drain(body);
                return error(
                    403,
                    "Permission check failed (/storage/local, Datastore.AllocateTemplate)",
                );
            }
            if st.fail_uploads_with_503 > 0 {
                st.fail_uploads_with_503 -= 1;
                drain(body);
                return error(503, "Service Unavailable");
            }
            if st.drop_mid_body > 0 {
                st.drop_mid_body -= 1;
                let _ = body.take(100).read_to_end(&mut Vec::new());
                return (0, "", serde_json::Value::Null);
            }
            let discard = st.discard;
            let dir = root.join(if st.shared { "shared" } else { &node });
            drop(st);
            let mut limited = body.take(length.unwrap_or(0));
            let received = receive_template(&mut limited, headers, &dir, discard);
            let _ = std::io::copy(&mut limited, &mut std::io::sink());
            let mut st = state.lock().unwrap();
            match received {
                Err(reason) => error(400, reason),
                Ok(_) if st.drop_after_store > 0 => {
                    st.drop_after_store -= 1;
                    (0, "", serde_json::Value::Null)
                }
                Ok(sha) => {
                    st.last_sha256 = Some(sha);
                    let upid = format!(
                        "UPID:{node}:0000{:04X}:00A1B2C3:65A0B1C2:imgcopy::{TOKEN_ID}:",
                        st.tasks.len()
                    );
                    let exit = st.task_exitstatus.clone().unwrap_or_else(|| "OK".into());
                    st.tasks.insert(upid.clone(), (0, exit));
                    (200, "OK", serde_json::json!({ "data": upid }))
                }
            }
        }
        ("GET", ["nodes", _, "tasks", upid, "status"]) => {
            let running_polls = st.running_polls;
            match st.tasks.get_mut(*upid) {
                Some((polls, exit)) => {
                    *polls += 1;
                    let data = if *polls <= running_polls {
                        serde_json::json!({ "status": "running", "upid": upid })
                    } else {
                        serde_json::json!({ "status": "stopped", "exitstatus": exit, "upid": upid })
                    };
                    (200, "OK", serde_json::json!({ "data": data }))
                }
                None => error(500, "no such task"),
            }
        }
        ("GET", ["nodes", _, "tasks", upid, "log"]) if st.task_logs.contains_key(*upid) => {
            let data: Vec<_> = st.task_logs[*upid]
                .iter()
                .enumerate()
                .map(|(i, t)| serde_json::json!({ "n": i + 1, "t": t }))
                .collect();
            (200, "OK", serde_json::json!({ "data": data }))
        }
        (
            "POST",
            [
                "nodes",
                node,
                "storage",
                "local",
                call @ ("download-url" | "oci-registry-pull"),
            ],
        ) if node_ok(node) => {
            let (node, call) = (node.to_string(), call.to_string());
            let mut raw = Vec::new();
            let _ = body.take(length.unwrap_or(0)).read_to_end(&mut raw);
            let params = match parse_form(headers, &raw) {
                Ok(p) => p,
                Err(answer) => return answer,
            };
            st.fetch_posts
                .push((node.clone(), call.clone(), params.clone()));
            if token == audit {
                return error(
                    403,
                    "Permission check failed (/storage/local, Datastore.AllocateTemplate)",
                );
            }
            let dir = root.join(if st.shared { "shared" } else { &node });
            drop(st);
            let worker = if call == "download-url" {
                download_url(&params, &dir)
            } else {
                let exit = state.lock().unwrap().pull_exitstatus.clone();
                oci_registry_pull(&params, &dir, exit)
            };
            let (exit, log) = match worker {
                Ok(done) => done,
                Err(answer) => return answer,
            };
            let mut st = state.lock().unwrap();
            let kind = if call == "download-url" {
                "download"
            } else {
                "ociregistrypull"
            };
            let upid = format!(
                "UPID:{node}:0000{:04X}:00A1B2C3:65A0B1C2:{kind}:x:{TOKEN_ID}:",
                st.tasks.len()
            );
            st.tasks.insert(upid.clone(), (0, exit));
            st.task_logs.insert(upid.clone(), log);
            (200, "OK", serde_json::json!({ "data": upid }))
        }
        ("GET", ["nodes", node, "tasks", upid, "log"]) => match st.tasks.get(*upid) {
            Some((_, exit)) => {
                let mut lines = vec![
                    "starting file import from: /var/tmp/pveupload-4e1c".to_string(),
                    format!("target node: {node}"),
                    "target file: /var/lib/vz/template/cache/x.tar.gz".to_string(),
                ];
                lines.push(if exit == "OK" {
                    "TASK OK".into()
                } else {
                    format!("TASK ERROR: {exit}")
                });
                let data: Vec<_> = lines
                    .iter()
                    .enumerate()
                    .map(|(i, t)| serde_json::json!({ "n": i + 1, "t": t }))
                    .collect();
                (200, "OK", serde_json::json!({ "data": data }))
            }
            None => error(500, "no such task"),
        },
        _ => {
            drain(body);
            error(501, "Method not implemented")
        }
    }
}

/// A `400 Parameter verification failed.` answer, as Proxmox gives one: the reason phrase,
/// and the parameter's problem under `errors`.
fn param_error(param: &str, message: &str) -> Answer {
    (
        400,
        "Parameter verification failed.",
        serde_json::json!({ "data": null, "errors": { param: message } }),
    )
}

/// A `die` in the API code before the worker is forked: HTTP 500 with the message as reason.
fn die(message: String) -> Answer {
    (
        500,
        Box::leak(message.into_boxed_str()),
        serde_json::json!({ "data": null }),
    )
}

/// The POST's parameters, `application/x-www-form-urlencoded` (what ingot sends) or JSON.
fn parse_form(
    headers: &HashMap<String, String>,
    raw: &[u8],
) -> Result<BTreeMap<String, String>, Answer> {
    let ct = headers.get("content-type").cloned().unwrap_or_default();
    let mut out = BTreeMap::new();
    if ct.starts_with("application/x-www-form-urlencoded") {
        for pair in String::from_utf8_lossy(raw)
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| percent_decode(&s.replace('+', " "));
            if out.insert(dec(k), dec(v)).is_some() {
                return Err(param_error(k, "duplicate parameter"));
            }
        }
        Ok(out)
    } else {
        Err(error(415, "Unsupported Media Type"))
    }
}

/// Refuse what the method's schema does not define (`additionalProperties => 0`) and what
/// it requires but lacks.
fn check_schema(
    params: &BTreeMap<String, String>,
    allowed: &[&str],
    required: &[&str],
) -> Result<(), Answer> {
    for k in params.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(param_error(
                k,
                "property is not defined in schema and the schema does not allow additional properties",
            ));
        }
    }
    for k in required {
        if !params.contains_key(*k) {
            return Err(param_error(k, "property is missing and it is not optional"));
        }
    }
    Ok(())
}

/// `PVE::Storage::normalize_content_filename`.
fn normalize_content_filename(name: &str) -> String {
    let name = name.trim_end_matches('\n');
    let name = name.rsplit(['/', '\\']).next().unwrap_or("");
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// pve-storage's `download_url` (Status.pm), with a plain-HTTP fetch: the schema, the
/// vztmpl file name rule, then the worker: download to a temp file, check the checksum,
/// rename. Returns the task's exit status and log, or the API's refusal.
fn download_url(
    params: &BTreeMap<String, String>,
    dir: &Path,
) -> Result<(String, Vec<String>), Answer> {
    check_schema(
        params,
        &[
            "url",
            "content",
            "filename",
            "checksum",
            "compression",
            "checksum-algorithm",
            "verify-certificates",
        ],
        &["url", "content", "filename"],
    )?;
    let url = &params["url"];
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(param_error("url", "value does not match the regex pattern"));
    }
    if !["iso", "vztmpl", "import"].contains(&params["content"].as_str()) {
        return Err(param_error(
            "content",
            "value is not one of the allowed values",
        ));
    }
    match (params.get("checksum"), params.get("checksum-algorithm")) {
        (Some(_), None) => return Err(param_error("checksum", "requires checksum-algorithm")),
        (None, Some(_)) => return Err(param_error("checksum-algorithm", "requires checksum")),
        _ => {}
    }
    if let Some(a) = params.get("checksum-algorithm")
        && !["md5", "sha1", "sha224", "sha256", "sha384", "sha512"].contains(&a.as_str())
    {
        return Err(param_error(
            "checksum-algorithm",
            "value is not one of the allowed values",
        ));
    }
    if let Some(v) = params.get("verify-certificates")
        && !["0", "1", "true", "false", "yes", "no", "on", "off"].contains(&v.as_str())
    {
        return Err(param_error(
            "verify-certificates",
            "type check ('boolean') failed",
        ));
    }
    if params["content"] != "vztmpl" {
        return Err(die(
            "storage 'local' is not configured for this content in the fake".into(),
        ));
    }
    let filename = normalize_content_filename(&params["filename"]);
    let ext_ok = [".tar", ".tar.gz", ".tar.xz", ".tar.zst", ".tar.bz2"]
        .iter()
        .any(|e| filename.len() > e.len() && filename.ends_with(e));
    if !ext_ok {
        return Err(param_error("filename", "wrong file extension"));
    }
    // The worker.
    let target = dir.join(&filename);
    let mut log = vec![format!("downloading {url} to {}", target.display())];
    let fetched = http_get(url);
    let bytes = match fetched {
        Ok(b) => b,
        Err(e) => {
            log.push(format!("TASK ERROR: {e}"));
            return Ok((e, log));
        }
    };
    log.push(format!("download of {} bytes finished", bytes.len()));
    if let (Some(want), Some(algo)) = (params.get("checksum"), params.get("checksum-algorithm")) {
        assert_eq!(algo, "sha256", "the fake checks SHA-256 only");
        log.push("calculating checksum...".into());
        let got = sha_hex(&bytes);
        if &got != want {
            let exit = format!("checksum mismatch: got '{got}' != expect '{want}'");
            log.push(format!("TASK ERROR: {exit}"));
            return Ok((exit, log));
        }
        log.push("checksum verified".into());
    }
    std::fs::create_dir_all(dir).unwrap();
    // Proxmox's rename replaces an existing file of the same name.
    std::fs::write(&target, &bytes).unwrap();
    log.push("TASK OK".into());
    Ok(("OK".into(), log))
}

/// pve-storage's `oci_registry_pull` (Status.pm): `reference` (the API's pattern, as far as
/// the tag goes: a tag is required, a digest is not allowed), the file name
/// `normalize_content_filename(filename // reference) . ".tar"`, a refusal of an existing file,
/// then `skopeo copy` (here: a placeholder archive) to it.
fn oci_registry_pull(
    params: &BTreeMap<String, String>,
    dir: &Path,
    exit: Option<String>,
) -> Result<(String, Vec<String>), Answer> {
    check_schema(params, &["reference", "filename"], &["reference"])?;
    let reference = &params["reference"];
    let last = reference.rsplit('/').next().unwrap_or("");
    if reference.contains('@') || !last.contains(':') {
        return Err(param_error(
            "reference",
            "value does not match the regex pattern",
        ));
    }
    let filename = format!(
        "{}.tar",
        normalize_content_filename(params.get("filename").unwrap_or(reference))
    );
    let path = dir.join(&filename);
    if path.is_file() {
        return Err(die(format!(
            "refusing to override existing file '{filename}'"
        )));
    }
    let mut log = vec![format!(
        "skopeo copy docker://{reference} oci-archive:{}.tmp.1234",
        path.display()
    )];
    let exit = exit.unwrap_or_else(|| "OK".into());
    if exit == "OK" {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&path, format!("oci archive of {reference}")).unwrap();
        log.push("TASK OK".into());
    } else {
        log.push(format!("TASK ERROR: {exit}"));
    }
    Ok((exit, log))
}

/// A plain `GET` over HTTP/1.0 (the fake's download; the test's store speaks plain HTTP).
fn http_get(url: &str) -> Result<Vec<u8>, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("the fake downloads http:// only, not {url}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut tcp = TcpStream::connect(authority).map_err(|e| format!("download failed: {e}"))?;
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response)
        .map_err(|e| format!("download failed: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("download failed: no HTTP head")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!(
            "download failed: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(response[split + 4..].to_vec())
}

/// Parse the multipart body as Proxmox does: `content`, `checksum-algorithm`, `checksum`,
/// then the file part `filename`; check the checksum; store the file (silently replacing one
/// of the same name). Returns the file's SHA-256 or the 400 reason.
fn receive_template(
    body: &mut impl BufRead,
    headers: &HashMap<String, String>,
    dir: &Path,
    discard: bool,
) -> Result<String, &'static str> {
    let boundary = headers
        .get("content-type")
        .and_then(|ct| ct.split_once("boundary="))
        .map(|(_, b)| b.trim_matches('"').to_string())
        .ok_or("not multipart/form-data")?;
    let mut fields = Vec::new();
    let mut line = String::new();
    let mut filename = None;
    for expected in ["content", "checksum-algorithm", "checksum", "filename"] {
        line.clear();
        body.read_line(&mut line).map_err(|_| "truncated")?;
        if line != format!("--{boundary}\r\n") {
            return Err("malformed multipart body");
        }
        let mut name = None;
        loop {
            line.clear();
            body.read_line(&mut line).map_err(|_| "truncated")?;
            if line == "\r\n" {
                break;
            }
            if let Some(cd) = line.strip_prefix("Content-Disposition: form-data; ") {
                for attr in cd.trim_end().split("; ") {
                    if let Some(v) = attr.strip_prefix("name=") {
                        name = Some(v.trim_matches('"').to_string());
                    } else if let Some(v) = attr.strip_prefix("filename=") {
                        filename = Some(v.trim_matches('"').to_string());
                    }
                }
            }
        }
        if name.as_deref() != Some(expected) {
            return Err("Parameter verification failed: multipart parts out of order");
        }
        if expected != "filename" {
            line.clear();
            body.read_line(&mut line).map_err(|_| "truncated")?;
            fields.push(line.trim_end_matches("\r\n").to_string());
        }
    }
    if fields[0] != "vztmpl" || fields[1] != "sha256" {
        return Err("Parameter verification failed: content/checksum-algorithm");
    }
    let filename = filename.ok_or("no filename")?;
    let allowed = [".tar.gz", ".tar.xz", ".tar.zst", ".tar.bz2", ".tar"];
    if !allowed.iter().any(|e| filename.ends_with(e)) || filename.contains('/') {
        return Err("Parameter verification failed: wrong file extension");
    }
    // Stream the file part, holding back what could be the closing boundary.
    let epilogue = format!("\r\n--{boundary}--\r\n").into_bytes();
    std::fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(format!(".pveupload-{filename}"));
    let mut sink: Box<dyn Write> = if discard {
        Box::new(std::io::sink())
    } else {
        Box::new(std::fs::File::create(&tmp).unwrap())
    };
    let mut hasher = Sha256::new();
    let mut held: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = body.read(&mut buf).map_err(|_| "truncated")?;
        if n == 0 {
            break;
        }
        held.extend_from_slice(&buf[..n]);
        if held.len() > epilogue.len() {
            let out = held.len() - epilogue.len();
            sink.write_all(&held[..out]).unwrap();
            hasher.update(&held[..out]);
            held.drain(..out);
        }
    }
    drop(sink);
    if held != epilogue {
        let _ = std::fs::remove_file(&tmp);
        return Err("malformed multipart body: no closing boundary");
    }
    let sha = hex::encode(hasher.finalize());
    if sha != fields[2] {
        let _ = std::fs::remove_file(&tmp);
        return Err("Parameter verification failed: checksum mismatch");
    }
    if !discard {
        // Proxmox replaces an existing file of the same name without a word.
        std::fs::rename(&tmp, dir.join(&filename)).unwrap();
    }
    Ok(sha)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Ok(v) = u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// A raw client, to show the fake is as strict as Proxmox.

fn raw_request(pve: &FakePve, head: &str, body: &[u8]) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_file_iter(&pve.ca_pem).unwrap() {
        let c: CertificateDer<'static> = c.unwrap();
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(pve.addr).unwrap());
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(body).unwrap();
    tls.flush().unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A multipart upload body with the given parts (name, value), the file part last.
fn form(boundary: &str, parts: &[(&str, &str)], file_name: &str, file: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, value) in parts {
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    b.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; \
             filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    b.extend_from_slice(file);
    b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    b
}

fn upload_head(pve: &FakePve, token: &str, extra: &str) -> String {
    format!(
        "POST /api2/json/nodes/pve1/storage/local/upload HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
         Authorization: PVEAPIToken={token}\r\nContent-Type: multipart/form-data; boundary=BB\r\n\
         {extra}Connection: close\r\n\r\n",
        pve.addr.port()
    )
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn good_parts(sha: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content", "vztmpl".into()),
        ("checksum-algorithm", "sha256".into()),
        ("checksum", sha.to_string()),
    ]
}

fn raw_upload(pve: &FakePve, token: &str, parts: &[(&str, String)], file: &[u8]) -> (u16, String) {
    let parts: Vec<(&str, &str)> = parts.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let body = form("BB", &parts, "raw.tar.gz", file);
    let head = upload_head(pve, token, &format!("Content-Length: {}\r\n", body.len()));
    raw_request(pve, &head, &body)
}

#[test]
fn the_fake_proxmox_rejects_a_chunked_upload() {
    let pve = FakePve::start(&["pve1"], false);
    let file = b"chunked".to_vec();
    let body = form("BB", &[("content", "vztmpl")], "raw.tar.gz", &file);
    let mut chunked = format!("{:x}\r\n", body.len()).into_bytes();
    chunked.extend_from_slice(&body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let head = upload_head(
        &pve,
        &format!("{TOKEN_ID}={SECRET}"),
        "Transfer-Encoding: chunked\r\n",
    );
    let (status, text) = raw_request(&pve, &head, &chunked);
    assert_eq!(status, 501, "{text}");
    assert!(
        text.contains("upload without content length header not supported"),
        "{text}"
    );
    assert!(!pve.stored("pve1", "raw.tar.gz").exists());
}

#[test]
fn the_fake_proxmox_rejects_parts_out_of_order_and_a_wrong_checksum() {
    let pve = FakePve::start(&["pve1"], false);
    let token = format!("{TOKEN_ID}={SECRET}");
    let file = b"template bytes".to_vec();
    let mut swapped = good_parts(&sha_hex(&file));
    swapped.swap(1, 2);
    let (status, text) = raw_upload(&pve, &token, &swapped, &file);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("out of order"), "{text}");

    let (status, text) = raw_upload(&pve, &token, &good_parts(&sha_hex(b"other")), &file);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("checksum mismatch"), "{text}");
    assert!(!pve.stored("pve1", "raw.tar.gz").exists());

    let (status, text) = raw_upload(&pve, &token, &good_parts(&sha_hex(&file)), &file);
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        std::fs::read(pve.stored("pve1", "raw.tar.gz")).unwrap(),
        file
    );
}

#[test]
fn the_fake_proxmox_answers_401_and_403_and_overwrites_silently() {
    let pve = FakePve::start(&["pve1"], false);
    let file = b"first".to_vec();
    let (status, _) = raw_upload(
        &pve,
        &format!("{TOKEN_ID}=wrong"),
        &good_parts(&sha_hex(&file)),
        &file,
    );
    assert_eq!(status, 401);
    let (status, text) = raw_upload(
        &pve,
        &format!("{AUDIT_ONLY_TOKEN}={AUDIT_ONLY_SECRET}"),
        &good_parts(&sha_hex(&file)),
        &file,
    );
    assert_eq!(status, 403, "{text}");
    let token = format!("{TOKEN_ID}={SECRET}");
    assert_eq!(
        raw_upload(&pve, &token, &good_parts(&sha_hex(&file)), &file).0,
        200
    );
    let second = b"second, replacing the first".to_vec();
    assert_eq!(
        raw_upload(&pve, &token, &good_parts(&sha_hex(&second)), &second).0,
        200
    );
    assert_eq!(
        std::fs::read(pve.stored("pve1", "raw.tar.gz")).unwrap(),
        second,
        "Proxmox replaces a template of the same name without a word"
    );
}

// ---------------------------------------------------------------------------------------------
// Real tarballs and the ingot binary.

/// A minimal root filesystem that honours the golden contract, packed by GNU tar with names
/// at the archive root; `host_key` adds an SSH host key, which breaks the contract.
fn rootfs_tarball(dir: &Path, name: &str, host_key: bool) -> PathBuf {
    let root = dir.join(format!("{name}.root"));
    let files: &[(&str, &str)] = &[
        ("usr/lib/systemd/systemd", "\x7fELF systemd"),
        ("usr/bin/bash", "\x7fELF bash"),
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        ),
        (
            "etc/shadow",
            "root:!*:20000:0:99999:7:::\nnobody:*:20000:0:99999:7:::\n",
        ),
        ("etc/gshadow", "root:*::\n"),
        (
            "etc/ssh/sshd_config",
            "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\n",
        ),
        (
            "etc/ssh/sshd_config.d/00-golden.conf",
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n",
        ),
        (
            "usr/lib/os-release",
            "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\n",
        ),
        (
            "etc/lsb-release",
            "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=24.04\nDISTRIB_CODENAME=noble\n",
        ),
        ("etc/machine-id", ""),
        ("etc/hostname", "localhost\n"),
        ("root/.profile", "mesg n\n"),
    ];
    for d in [
        "boot", "dev", "home", "tmp", "var/tmp", "run", "usr/sbin", "var/log", "root",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    for (d, mode) in [
        ("tmp", 0o1777),
        ("var/tmp", 0o1777),
        ("root", 0o700),
        ("usr/lib/systemd/systemd", 0o755),
        ("usr/bin/bash", 0o755),
    ] {
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // `upload` checks what Proxmox reads too: /bin/sh's ELF header (the host's own shell,
    // so its architecture) and the systemd version init links.
    let host_sh = std::fs::read(std::fs::canonicalize("/bin/sh").unwrap()).unwrap();
    std::fs::write(root.join("usr/bin/bash"), &host_sh[..64]).unwrap();
    std::fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
    std::fs::write(root.join("usr/lib/systemd/libsystemd-shared-255.so"), "").unwrap();
    if host_key {
        std::fs::write(
            root.join("etc/ssh/ssh_host_ed25519_key"),
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap();
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("usr/sbin/init", "../lib/systemd/systemd"),
        ("etc/os-release", "../usr/lib/os-release"),
        ("usr/bin/sh", "bash"),
    ] {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
    let mut top: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    let out = dir.join(name);
    let status = Command::new("tar")
        .args(["--sort=name", "--numeric-owner", "--owner=0", "--group=0"])
        .args(["--mtime=@1700000000", "-czf"])
        .arg(&out)
        .arg("-C")
        .arg(&root)
        .args(&top)
        .status()
        .expect("GNU tar must be installed to build the test image");
    assert!(status.success(), "tar failed");
    out
}

/// The usual start: a one-node fake Proxmox and a good image `img-v1.tar.gz` in a temporary
/// directory (kept alive by the returned guard).
fn one_node_with_image() -> (FakePve, tempfile::TempDir, PathBuf) {
    let pve = FakePve::start(&["pve1"], false);
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path(), "img-v1.tar.gz", false);
    (pve, dir, tarball)
}

/// Write `<tarball>.sha256` as sha256sum does.
fn write_sidecar(tarball: &Path, hex: &str) {
    let name = tarball.file_name().unwrap().to_string_lossy();
    let mut p = tarball.as_os_str().to_owned();
    p.push(".sha256");
    std::fs::write(p, format!("{hex}  {name}\n")).unwrap();
}

fn ingot(pve: &FakePve, args: &[&str], env: &[(&str, &str)]) -> Output {
    ingot_bin(env!("CARGO_BIN_EXE_ingot"), pve, args, env)
}

fn ingot_bin(bin: &str, pve: &FakePve, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.arg("upload").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PM_") || k.starts_with("INGOT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("PM_API_URL", pve.url())
        .env("PM_API_TOKEN_ID", TOKEN_ID)
        .env("PM_API_TOKEN_SECRET", SECRET)
        .env("PM_NODE", "pve1")
        .env("PM_STORAGE", "local")
        .env("PM_TLS_CA", &pve.ca_pem)
        .env("PM_RETRIES", "2");
    // An empty value means "unset" (clap refuses empty values for path flags).
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    cmd.output().expect("run ingot")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_secret_not_shown(o: &Output) {
    let (out, err) = text(o);
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "the secret leaked:\n{out}\n{err}"
    );
}

#[test]
fn a_verified_image_is_uploaded_byte_identical_and_its_task_polled_to_ok() {
    let pve = FakePve::start(&["pve1"], false);
    pve.with(|s| s.running_polls = 2);
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path(), "ubuntu-24.04-lxc-rootfs-v1.tar.gz", false);
    let bytes = std::fs::read(&tarball).unwrap();
    write_sidecar(&tarball, &sha_hex(&bytes));

    let o = ingot(&pve, &[tarball.to_str().unwrap(), "--json"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert_secret_not_shown(&o);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["volid"], "local:vztmpl/ubuntu-24.04-lxc-rootfs-v1.tar.gz");
    assert_eq!(v["size"], bytes.len() as u64);
    assert_eq!(v["sha256"], sha_hex(&bytes));
    assert_eq!(v["tasks"][0]["exitstatus"], "OK");
    assert_eq!(
        std::fs::read(pve.stored("pve1", "ubuntu-24.04-lxc-rootfs-v1.tar.gz")).unwrap(),
        bytes,
        "the server must hold the same bytes"
    );
    let (uploads, auth, requests) =
        pve.with(|s| (s.upload_requests, s.auth_seen, s.requests.clone()));
    assert_eq!(uploads, 1);
    assert!(auth);
    assert_listed_then_posted_then_polled(&requests);
}

#[test]
fn a_second_upload_of_the_same_name_is_refused_before_any_byte_is_sent() {
    let (pve, _dir, tarball) = one_node_with_image();
    let o = ingot(&pve, &[tarball.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(text(&o).0.trim(), "local:vztmpl/img-v1.tar.gz");
    let first = std::fs::read(pve.stored("pve1", "img-v1.tar.gz")).unwrap();

    let o = ingot(&pve, &[tarball.to_str().unwrap()], &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("already exists") && err.contains("refusing"),
        "{err}"
    );
    assert_eq!(
        pve.with(|s| s.upload_requests),
        1,
        "no second upload request"
    );
    assert_eq!(
        std::fs::read(pve.stored("pve1", "img-v1.tar.gz")).unwrap(),
        first
    );
}

#[test]
fn a_wrong_fingerprint_is_refused_before_the_token_is_sent() {
    let (pve, _dir, tarball) = one_node_with_image();
    let wrong = colon_hex(&[0xAB; 32]);
    let o = ingot(
        &pve,
        &[tarball.to_str().unwrap(), "--fingerprint", &wrong],
        &[("PM_TLS_CA", "")],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&wrong) && err.contains(&pve.leaf_fingerprint),
        "{err}"
    );
    let (auth, requests) = pve.with(|s| (s.auth_seen, s.requests.len()));
    assert!(!auth, "the server saw the token");
    assert_eq!(requests, 0);

    // --insecure does not switch a pin off.
    let o = ingot(
        &pve,
        &[
            tarball.to_str().unwrap(),
            "--fingerprint",
            &wrong,
            "--insecure",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(!pve.with(|s| s.auth_seen), "the server saw the token");

    // The right one works without the CA (the certificate is pinned instead).
    let o = ingot(
        &pve,
        &[
            tarball.to_str().unwrap(),
            "--fingerprint",
            &pve.leaf_fingerprint.to_lowercase(),
        ],
        &[("PM_TLS_CA", "")],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
}

#[test]
fn an_untrusted_certificate_is_refused_by_default_and_insecure_warns() {
    let (pve, _dir, tarball) = one_node_with_image();
    let o = ingot(&pve, &[tarball.to_str().unwrap()], &[("PM_TLS_CA", "")]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not trusted") && err.contains("--ca-file"),
        "{err}"
    );
    assert!(!pve.with(|s| s.auth_seen));

    let o = ingot(
        &pve,
        &[tarball.to_str().unwrap(), "--insecure"],
        &[("PM_TLS_CA", "")],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("warning: --insecure"), "{err}");
}

#[test]
fn an_image_that_fails_verify_or_its_checksum_is_refused_before_any_request() {
    let pve = FakePve::start(&["pve1"], false);
    let dir = tempfile::tempdir().unwrap();
    let broken = rootfs_tarball(dir.path(), "broken-v1.tar.gz", true);
    let o = ingot(&pve, &[broken.to_str().unwrap()], &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("golden-image contract") && err.contains("ssh_host"),
        "{err}"
    );

    let good = rootfs_tarball(dir.path(), "good-v1.tar.gz", false);
    write_sidecar(&good, &sha_hex(b"something else"));
    let o = ingot(&pve, &[good.to_str().unwrap()], &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("SHA-256") && err.contains(".sha256"), "{err}");
    assert_eq!(pve.with(|s| s.requests.len()), 0, "no request at all");
}

#[test]
fn a_failed_task_shows_its_log_tail_exits_1_and_is_not_retried() {
    let pve = FakePve::start(&["pve1"], false);
    pve.with(|s| s.task_exitstatus = Some("import failed: No space left on device".into()));
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path(), "img-v1.tar.gz", false);
    let o = ingot(&pve, &[tarball.to_str().unwrap()], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(out.is_empty(), "nothing on stdout for a failure: {out}");
    assert!(
        err.contains("TASK ERROR: import failed: No space left on device"),
        "{err}"
    );
    assert!(err.contains("starting file import"), "the log tail: {err}");
    assert_eq!(pve.with(|s| s.upload_requests), 1);
}

#[test]
fn node_local_storage_gets_the_image_on_every_node_shared_storage_once() {
    let pve = FakePve::start(&["pve1", "pve2"], false);
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path(), "img-v1.tar.gz", false);
    let bytes = std::fs::read(&tarball).unwrap();
    let o = ingot(
        &pve,
        &[tarball.to_str().unwrap(), "--json"],
        &[("PM_NODE", "pve1,pve2")],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    for node in ["pve1", "pve2"] {
        assert_eq!(
            std::fs::read(pve.stored(node, "img-v1.tar.gz")).unwrap(),
            bytes
        );
    }
    let v: serde_json::Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    assert_eq!(v["nodes"], serde_json::json!(["pve1", "pve2"]));
    assert_eq!(pve.with(|s| s.upload_requests), 2);

    // On one node only already: refused everywhere, nothing sent.
    let pve = FakePve::start(&["pve1", "pve2"], false);
    pve.preload("pve2", "img-v1.tar.gz", b"older");
    let o = ingot(
        &pve,
        &[tarball.to_str().unwrap()],
        &[("PM_NODE", "pve1,pve2")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("pve2"), "{:?}", text(&o));
    assert_eq!(pve.with(|s| s.upload_requests), 0);

    let shared = FakePve::start(&["pve1", "pve2"], true);
    let o = ingot(
        &shared,
        &[tarball.to_str().unwrap()],
        &[("PM_NODE", "pve1,pve2")],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        shared.with(|s| s.upload_requests),
        1,
        "shared storage: once"
    );
    assert_eq!(
        std::fs::read(shared.stored("pve1", "img-v1.tar.gz")).unwrap(),
        bytes
    );
}

#[test]
fn a_bad_token_and_a_missing_permission_are_explained_and_not_retried() {
    let (pve, dir, tarball) = one_node_with_image();
    let o = ingot(
        &pve,
        &[tarball.to_str().unwrap()],
        &[("PM_API_TOKEN_SECRET", "not-the-secret")],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("401") && err.contains("authentication failed"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret"), "{err}");

    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{AUDIT_ONLY_SECRET}\n")).unwrap();
    let o = ingot(
        &pve,
        &[
            tarball.to_str().unwrap(),
            "--token-secret-file",
            secret_file.to_str().unwrap(),
        ],
        &[
            ("PM_API_TOKEN_ID", AUDIT_ONLY_TOKEN),
            ("PM_API_TOKEN_SECRET", ""),
        ],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("403") && err.contains("Datastore.AllocateTemplate"),
        "{err}"
    );
    assert!(!err.contains(AUDIT_ONLY_SECRET), "{err}");
    assert_eq!(pve.with(|s| s.upload_requests), 1, "a 403 is not retried");
}

#[test]
fn a_task_that_never_ends_is_not_reported_as_success() {
    let pve = FakePve::start(&["pve1"], false);
    pve.with(|s| s.running_polls = usize::MAX);
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path(), "img-v1.tar.gz", false);
    let o = ingot(
        &pve,
        &[tarball.to_str().unwrap(), "--task-timeout", "1"],
        &[],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("still running"), "{err}");
}

#[test]
fn a_least_privilege_token_uploads_through_the_storage_index() {
    // GET /storage/local answers 403 to a token without Datastore.Allocate; the index says
    // whether the storage is shared instead.
    let pve = FakePve::start(&["pve1", "pve2"], true);
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path(), "img-v1.tar.gz", false);
    let o = ingot(
        &pve,
        &[tarball.to_str().unwrap(), "--json"],
        &[
            ("PM_API_TOKEN_ID", UPLOADER_TOKEN),
            ("PM_API_TOKEN_SECRET", UPLOADER_SECRET),
            ("PM_NODE", "pve1,pve2"),
        ],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["shared"], true);
    assert_eq!(pve.with(|s| s.upload_requests), 1);
    let requests = pve.with(|s| s.requests.clone());
    assert!(
        requests.iter().any(|r| r == "GET /api2/json/storage"),
        "{requests:?}"
    );
}

#[test]
fn a_transient_server_error_is_retried_and_the_upload_lands_once() {
    let pve = FakePve::start(&["pve1"], false);
    pve.with(|s| s.fail_uploads_with_503 = 1);
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path(), "img-v1.tar.gz", false);
    let o = ingot(&pve, &[tarball.to_str().unwrap()], &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("retrying after") && err.contains("503"),
        "{err}"
    );
    assert_eq!(pve.with(|s| s.upload_requests), 2);
    assert_eq!(
        std::fs::read(pve.stored("pve1", "img-v1.tar.gz")).unwrap(),
        std::fs::read(&tarball).unwrap()
    );
}

#[test]
fn a_dropped_connection_is_retried_from_byte_zero() {
    let pve = FakePve::start(&["pve1"], false);
    pve.with(|s| s.drop_mid_body = 1);
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path(), "img-v1.tar.gz", false);
    let o = ingot(&pve, &[tarball.to_str().unwrap()], &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("retrying after"), "{err}");
    assert_eq!(pve.with(|s| s.upload_requests), 2);
    assert_eq!(
        std::fs::read(pve.stored("pve1", "img-v1.tar.gz")).unwrap(),
        std::fs::read(&tarball).unwrap()
    );
}

#[test]
fn an_upload_that_landed_despite_a_lost_answer_is_not_sent_again() {
    let pve = FakePve::start(&["pve1"], false);
    pve.with(|s| s.drop_after_store = 1);
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path(), "img-v1.tar.gz", false);
    let o = ingot(&pve, &[tarball.to_str().unwrap()], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("appeared") && err.contains("not sending it again"),
        "{err}"
    );
    assert_eq!(pve.with(|s| s.upload_requests), 1, "never sent twice");
}

#[test]
fn missing_or_malformed_settings_are_bad_input() {
    let (pve, dir, tarball) = one_node_with_image();
    let t = tarball.to_str().unwrap();
    for (env, needle) in [
        (("PM_API_URL", ""), "PM_API_URL is not set"),
        (("PM_API_URL", "http://127.0.0.1:1/api2/json"), "https://"),
        (("PM_API_TOKEN_SECRET", ""), "PM_API_TOKEN_SECRET"),
        (("PM_API_TOKEN_ID", "root"), "user@realm!tokenname"),
        (("PM_TLS_FINGERPRINT", "AB:CD"), "fingerprint"),
    ] {
        let o = ingot(&pve, &[t], &[env]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains(needle), "{env:?}: {err}");
    }
    let odd = dir.path().join("image.img");
    std::fs::copy(&tarball, &odd).unwrap();
    let o = ingot(&pve, &[odd.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert_eq!(pve.with(|s| s.requests.len()), 0);
}

/// Peak memory of a 1 GiB upload with the release binary (`cargo build --release` first):
/// `cargo test --release --test proxmox_upload -- --ignored --nocapture`.
#[test]
#[ignore = "needs target/release/ingot and 1 GiB of disk; run by hand for the figure"]
fn peak_memory_of_a_1_gib_upload_stays_under_50_mb() {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/ingot");
    assert!(
        bin.is_file(),
        "{} missing: cargo build --release",
        bin.display()
    );
    assert!(
        Path::new("/usr/bin/time").is_file(),
        "/usr/bin/time (package `time`) is needed"
    );
    let pve = FakePve::start(&["pve1"], false);
    pve.with(|s| s.discard = true);
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big-v1.tar.gz");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v")
        .arg(&bin)
        .args(["upload", big.to_str().unwrap(), "--no-verify", "--json"]);
    cmd.env("PM_API_URL", pve.url())
        .env("PM_API_TOKEN_ID", TOKEN_ID)
        .env("PM_API_TOKEN_SECRET", SECRET)
        .env("PM_NODE", "pve1")
        .env("PM_STORAGE", "local")
        .env("PM_TLS_CA", &pve.ca_pem);
    let o = cmd.output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let kb: u64 = err
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("time -v output");
    let wall = err
        .lines()
        .find(|l| l.contains("Elapsed (wall clock)"))
        .unwrap_or("");
    println!(
        "1 GiB upload: peak RSS {kb} kB ({:.1} MB); {}",
        kb as f64 / 1024.0,
        wall.trim()
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["size"], 1u64 << 30);
    assert_eq!(
        pve.with(|s| s.last_sha256.clone()).as_deref(),
        v["sha256"].as_str()
    );
    assert!(kb < 50 * 1024, "peak RSS {kb} kB is not under 50 MB");
}

/// Sidecars as a build writes them for `tarball`: manifest and SBOM naming its digest, and a
/// provenance envelope signed by `key`.
fn sign_like_a_build(tarball: &Path, key: &ingot::provenance::keys::SignKey) {
    let sha = sha_hex(&std::fs::read(tarball).unwrap());
    let name = tarball.file_name().unwrap().to_string_lossy().into_owned();
    let side = |suffix: &str| PathBuf::from(format!("{}{suffix}", tarball.display()));
    std::fs::write(
        side(".manifest.json"),
        serde_json::json!({ "output": { "sha256": sha } }).to_string(),
    )
    .unwrap();
    std::fs::write(
        side(".spdx.json"),
        serde_json::json!({ "packages": [{ "SPDXID": "SPDXRef-Image",
            "checksums": [{ "algorithm": "SHA256", "checksumValue": sha }] }] })
        .to_string(),
    )
    .unwrap();
    let statement: ingot::provenance::statement::Statement =
        serde_json::from_value(serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{ "name": name, "digest": { "sha256": sha } }],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {
                "buildDefinition": {
                    "buildType": ingot::provenance::statement::BUILD_TYPE,
                    "externalParameters": { "recipe": "img", "recipeDigest": "00",
                        "files": {}, "lock": null },
                    "internalParameters": { "buildEpoch": 1700000000, "epochSource": "lock",
                        "compression": "gzip", "staging": "auto", "baseCache": true,
                        "architecture": "amd64", "components": ["main"] },
                    "resolvedDependencies": [],
                },
                "runDetails": {
                    "builder": { "id": "x", "version": {} },
                    "metadata": { "startedOn": "2026-01-01T00:00:00Z",
                        "finishedOn": "2026-01-01T00:00:00Z" },
                },
            },
        }))
        .unwrap();
    std::fs::write(
        side(".provenance.json"),
        ingot::provenance::render_envelope(&statement, Some(key)),
    )
    .unwrap();
}

#[test]
fn require_signature_refuses_before_any_request_an_image_not_signed_by_the_key() {
    let (pve, dir, tarball) = one_node_with_image();
    let signer = ingot::provenance::keys::SignKey::generate().unwrap();
    let public = signer.write_pair(&dir.path().join("signer.pem")).unwrap();
    let other = ingot::provenance::keys::SignKey::generate()
        .unwrap()
        .write_pair(&dir.path().join("other.pem"))
        .unwrap();
    let image = tarball.to_str().unwrap();

    // No provenance at all.
    let o = ingot(
        &pve,
        &[image, "--require-signature", public.to_str().unwrap()],
        &[],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no provenance"), "{err}");

    // Signed, but by another key (through the environment variable).
    sign_like_a_build(&tarball, &signer);
    let o = ingot(
        &pve,
        &[image],
        &[("PM_REQUIRE_SIGNATURE", other.to_str().unwrap())],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no signature verifies"), "{err}");
    // A key file that is not a public key: bad input.
    let o = ingot(&pve, &[image, "--require-signature", image], &[]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert_eq!(pve.with(|s| s.requests.len()), 0, "no request at all");

    // Signed by the key: uploaded.
    let o = ingot(
        &pve,
        &[image, "--require-signature", public.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(pve.with(|s| s.upload_requests), 1);
}

// ---------------------------------------------------------------------------------------------
// By reference: `--from-url` (download-url) and `--from-registry` (oci-registry-pull).

/// The central HTTP store a cluster downloads templates from: plain HTTP on loopback over a
/// directory; counts the requests.
struct Store {
    url: String,
    dir: tempfile::TempDir,
    hits: Arc<Mutex<Vec<String>>>,
    server: Arc<tiny_http::Server>,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

impl Store {
    fn start() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (srv, root, seen) = (
            Arc::clone(&server),
            dir.path().to_path_buf(),
            Arc::clone(&hits),
        );
        std::thread::spawn(move || {
            for request in srv.incoming_requests() {
                let path = request.url().trim_start_matches('/').to_string();
                seen.lock().unwrap().push(path.clone());
                let response = match std::fs::read(root.join(&path)) {
                    Ok(bytes) if !path.contains("..") => tiny_http::Response::from_data(bytes),
                    _ => {
                        tiny_http::Response::from_data(b"not found".to_vec()).with_status_code(404)
                    }
                };
                let _ = request.respond(response);
            }
        });
        Store {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            hits,
            server,
        }
    }

    /// Publish `file` (and its `.sha256` sidecar when it has one) on the store.
    fn publish(&self, file: &Path) -> String {
        let name = file.file_name().unwrap().to_str().unwrap();
        std::fs::copy(file, self.dir.path().join(name)).unwrap();
        let side = PathBuf::from(format!("{}.sha256", file.display()));
        if side.is_file() {
            std::fs::copy(&side, self.dir.path().join(format!("{name}.sha256"))).unwrap();
        }
        format!("{}/{name}", self.url)
    }

    fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

fn posts(pve: &FakePve) -> Vec<String> {
    pve.with(|s| s.requests.clone())
        .into_iter()
        .filter(|r| r.starts_with("POST"))
        .collect()
}

#[test]
fn from_url_sends_exactly_the_named_parameters_and_the_node_downloads_and_checks_the_file() {
    let pve = FakePve::start(&["pve1"], false);
    pve.with(|s| s.running_polls = 2);
    let store = Store::start();
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path(), "ubuntu-24.04-lxc-rootfs-v3.tar.gz", false);
    let bytes = std::fs::read(&tarball).unwrap();
    let sha = sha_hex(&bytes);
    write_sidecar(&tarball, &sha);
    let url = store.publish(&tarball);

    let o = ingot(
        &pve,
        &["--from-url", &url, tarball.to_str().unwrap(), "--json"],
        &[],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert_secret_not_shown(&o);
    assert!(
        err.contains("golden contract holds"),
        "the local image is verified: {err}"
    );
    let posted = pve.with(|s| s.fetch_posts.clone());
    assert_eq!(posted.len(), 1, "{posted:?}");
    let (node, call, params) = &posted[0];
    assert_eq!((node.as_str(), call.as_str()), ("pve1", "download-url"));
    let want: BTreeMap<String, String> = [
        ("content", "vztmpl"),
        ("filename", "ubuntu-24.04-lxc-rootfs-v3.tar.gz"),
        ("url", url.as_str()),
        ("checksum", sha.as_str()),
        ("checksum-algorithm", "sha256"),
        ("verify-certificates", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(params, &want);
    // The node fetched it from the store (ingot itself did not need to: it had the file).
    assert_eq!(store.hits(), ["ubuntu-24.04-lxc-rootfs-v3.tar.gz"]);
    assert_eq!(
        std::fs::read(pve.stored("pve1", "ubuntu-24.04-lxc-rootfs-v3.tar.gz")).unwrap(),
        bytes
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["volid"], "local:vztmpl/ubuntu-24.04-lxc-rootfs-v3.tar.gz");
    assert_eq!(v["sha256"], sha);
    assert_eq!(v["size"], bytes.len() as u64);
    assert_eq!(v["source"], url);
    assert_eq!(v["tasks"][0]["exitstatus"], "OK");
    assert!(
        v["tasks"][0]["upid"]
            .as_str()
            .unwrap()
            .contains(":download:")
    );
    let requests = pve.with(|s| s.requests.clone());
    assert_listed_then_posted_then_polled(&requests);
}

/// The stand-in saw the template list before the `POST`, then the task polled three times
/// (running, running, stopped).
fn assert_listed_then_posted_then_polled(requests: &[String]) {
    let polls = requests.iter().filter(|r| r.ends_with("/status")).count();
    assert_eq!(polls, 3, "running, running, stopped: {requests:?}");
    let list = requests.iter().position(|r| r.contains("content=vztmpl"));
    let post = requests.iter().position(|r| r.starts_with("POST"));
    assert!(list < post, "{requests:?}");
}

#[test]
fn from_url_without_a_local_image_takes_the_checksum_from_the_urls_sidecar() {
    let pve = FakePve::start(&["pve1"], false);
    let store = Store::start();
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path(), "img-v1.tar.gz", false);
    let sha = sha_hex(&std::fs::read(&tarball).unwrap());
    write_sidecar(&tarball, &sha);
    let url = store.publish(&tarball);

    let o = ingot(
        &pve,
        &["--from-url", &url, "--no-verify-certificates", "--json"],
        &[],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("warning: --no-verify-certificates"), "{err}");
    assert_eq!(store.hits(), ["img-v1.tar.gz.sha256", "img-v1.tar.gz"]);
    let params = pve.with(|s| s.fetch_posts[0].2.clone());
    assert_eq!(params["checksum"], sha);
    assert_eq!(params["verify-certificates"], "0");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["size"], serde_json::Value::Null);
    assert!(pve.stored("pve1", "img-v1.tar.gz").is_file());

    // A sidecar naming another file, or none at all: bad input, nothing asked of Proxmox.
    let pve = FakePve::start(&["pve1"], false);
    std::fs::write(
        store.dir.path().join("img-v1.tar.gz.sha256"),
        format!("{sha}  other-v1.tar.gz\n"),
    )
    .unwrap();
    let o = ingot(&pve, &["--from-url", &url], &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("img-v1.tar.gz.sha256") && err.contains("other-v1.tar.gz"),
        "{err}"
    );
    std::fs::remove_file(store.dir.path().join("img-v1.tar.gz.sha256")).unwrap();
    let o = ingot(&pve, &["--from-url", &url], &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not found") && err.contains("TARBALL"),
        "{err}"
    );
    assert_eq!(pve.with(|s| s.requests.len()), 0);
}

#[test]
fn a_wrong_checksum_fails_the_nodes_download_task_which_shows_its_log() {
    let pve = FakePve::start(&["pve1"], false);
    let store = Store::start();
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path(), "img-v1.tar.gz", false);
    let url = store.publish(&tarball);
    // The store's sidecar says other bytes than the store serves.
    let wrong = sha_hex(b"not the image");
    std::fs::write(
        store.dir.path().join("img-v1.tar.gz.sha256"),
        format!("{wrong}  img-v1.tar.gz\n"),
    )
    .unwrap();
    let o = ingot(&pve, &["--from-url", &url], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains("task log of UPID:pve1"), "{err}");
    assert!(
        err.contains(&format!("downloading {url}")),
        "the log tail: {err}"
    );
    assert!(!pve.stored("pve1", "img-v1.tar.gz").exists());
    assert_eq!(store.hits().len(), 2, "the node downloaded it once");
}

#[test]
fn from_url_refuses_a_name_that_exists_on_any_node_before_any_post() {
    let pve = FakePve::start(&["pve1", "pve2"], false);
    pve.preload("pve2", "img-v1.tar.gz", b"older");
    let store = Store::start();
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path(), "img-v1.tar.gz", false);
    let url = store.publish(&tarball);
    let o = ingot(
        &pve,
        &["--from-url", &url, tarball.to_str().unwrap()],
        &[("PM_NODE", "pve1,pve2")],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("already exists") && err.contains("pve2"),
        "{err}"
    );
    assert_eq!(posts(&pve), Vec::<String>::new());
    assert!(store.hits().is_empty(), "nobody downloaded anything");
    assert_eq!(
        std::fs::read(pve.stored("pve2", "img-v1.tar.gz")).unwrap(),
        b"older"
    );
}

#[test]
fn from_url_asks_every_node_of_node_local_storage_and_one_of_shared_storage() {
    let store = Store::start();
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path(), "img-v1.tar.gz", false);
    let bytes = std::fs::read(&tarball).unwrap();
    let url = store.publish(&tarball);
    let pve = FakePve::start(&["pve1", "pve2"], false);
    let o = ingot(
        &pve,
        &["--from-url", &url, tarball.to_str().unwrap(), "--json"],
        &[("PM_NODE", "pve1,pve2")],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let posted: Vec<String> = pve.with(|s| s.fetch_posts.iter().map(|p| p.0.clone()).collect());
    assert_eq!(posted, ["pve1", "pve2"]);
    for node in ["pve1", "pve2"] {
        assert_eq!(
            std::fs::read(pve.stored(node, "img-v1.tar.gz")).unwrap(),
            bytes
        );
    }
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["nodes"], serde_json::json!(["pve1", "pve2"]));
    assert_eq!(v["tasks"].as_array().unwrap().len(), 2);

    let shared = FakePve::start(&["pve1", "pve2"], true);
    let o = ingot(
        &shared,
        &["--from-url", &url, tarball.to_str().unwrap()],
        &[("PM_NODE", "pve1,pve2")],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(posts(&shared).len(), 1, "shared storage: once");
}

#[test]
fn from_url_refuses_a_bad_url_or_a_local_image_of_another_name_before_any_request() {
    let (pve, dir, tarball) = one_node_with_image();
    let other = rootfs_tarball(dir.path(), "other-v1.tar.gz", false);
    for (url, image, needle) in [
        ("ftp://store.example/img-v1.tar.gz", None, "http://"),
        ("https://store.example/img-v1.img", None, "must end in"),
        (
            "https://u:pw@store.example/img-v1.tar.gz",
            None,
            "credentials",
        ),
        (
            "https://store.example/img-v1.tar.gz",
            Some(&other),
            "other-v1.tar.gz",
        ),
    ] {
        let mut args = vec!["--from-url", url];
        if let Some(i) = image {
            args.push(i.to_str().unwrap());
        }
        let o = ingot(&pve, &args, &[]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{url}: {err}");
        assert!(err.contains(needle), "{url}: {err}");
        assert!(!err.contains("pw@"), "{err}");
    }
    // A signature cannot be required of bytes ingot does not have.
    let key = dir.path().join("signer.pem");
    let public = ingot::provenance::keys::SignKey::generate()
        .unwrap()
        .write_pair(&key)
        .unwrap();
    let o = ingot(
        &pve,
        &[
            "--from-url",
            "https://store.example/img-v1.tar.gz",
            "--require-signature",
            public.to_str().unwrap(),
        ],
        &[],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--require-signature") && err.contains("TARBALL"),
        "{err}"
    );
    // A local image that fails verify is refused as for an upload.
    let broken = rootfs_tarball(dir.path(), "broken-v1.tar.gz", true);
    let o = ingot(
        &pve,
        &[
            "--from-url",
            "http://127.0.0.1:1/broken-v1.tar.gz",
            broken.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(text(&o).1.contains("golden-image contract"));
    assert_eq!(pve.with(|s| s.requests.len()), 0);
    drop(tarball);
}

#[test]
fn from_registry_asks_for_oci_registry_pull_with_the_reference_and_polls_the_task() {
    let pve = FakePve::start(&["pve1"], false);
    pve.with(|s| s.running_polls = 1);
    let reference = "127.0.0.1:5000/golden/ubuntu-24.04-lxc-rootfs:v3";
    let o = ingot(&pve, &["--from-registry", reference, "--json"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let posted = pve.with(|s| s.fetch_posts.clone());
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].1, "oci-registry-pull");
    assert_eq!(
        posted[0].2,
        BTreeMap::from([("reference".to_string(), reference.to_string())])
    );
    // The name Proxmox gives it, which ingot listed first.
    let name = "ubuntu-24.04-lxc-rootfs_v3.tar";
    assert!(pve.stored("pve1", name).is_file());
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["volid"], format!("local:vztmpl/{name}"));
    assert_eq!(v["source"], reference);
    assert_eq!(v["tasks"][0]["exitstatus"], "OK");
    let requests = pve.with(|s| s.requests.clone());
    assert_eq!(
        requests.iter().filter(|r| r.ends_with("/status")).count(),
        2
    );

    // Again: the name exists now, refused before any POST.
    let o = ingot(&pve, &["--from-registry", reference], &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("already exists") && err.contains(name),
        "{err}"
    );
    assert_eq!(posts(&pve).len(), 1);
}

#[test]
fn a_failed_registry_pull_shows_its_log_and_node_lists_are_each_asked() {
    let pve = FakePve::start(&["pve1", "pve2"], false);
    let o = ingot(
        &pve,
        &["--from-registry", "127.0.0.1:1/golden/img:v1"],
        &[("PM_NODE", "pve1,pve2")],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let posted: Vec<String> = pve.with(|s| s.fetch_posts.iter().map(|p| p.0.clone()).collect());
    assert_eq!(posted, ["pve1", "pve2"]);

    let pve = FakePve::start(&["pve1"], false);
    pve.with(|s| {
        s.pull_exitstatus = Some(
            "command 'skopeo copy docker://127.0.0.1:1/golden/img:v1 …' failed: exit code 1".into(),
        )
    });
    let o = ingot(&pve, &["--from-registry", "127.0.0.1:1/golden/img:v1"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("skopeo copy") && err.contains("task log of"),
        "{err}"
    );
}

#[test]
fn a_digest_or_untagged_reference_is_refused_before_any_request() {
    let pve = FakePve::start(&["pve1"], false);
    for (reference, needle) in [
        (
            "registry.example.com/golden/img@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "tags only",
        ),
        ("registry.example.com:5000/golden/img", "no tag"),
        ("registry.example.com/Golden/img:v1", "lowercase"),
    ] {
        let o = ingot(&pve, &["--from-registry", reference], &[]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{reference}: {err}");
        assert!(out.is_empty());
        assert!(err.contains(needle), "{reference}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert_eq!(pve.with(|s| s.requests.len()), 0, "no request at all");
}

#[test]
fn the_fake_proxmox_refuses_parameters_download_url_does_not_define() {
    let pve = FakePve::start(&["pve1"], false);
    let post = |body: &str| {
        let head = format!(
            "POST /api2/json/nodes/pve1/storage/local/download-url HTTP/1.1\r\n\
             Host: 127.0.0.1\r\nAuthorization: PVEAPIToken={TOKEN_ID}={SECRET}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        raw_request(&pve, &head, body.as_bytes())
    };
    let (status, text) = post(
        "content=vztmpl&filename=a.tar.gz&url=http%3A%2F%2F127.0.0.1%3A1%2Fa.tar.gz&sha256=00",
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not defined in schema"), "{text}");
    let (status, text) = post("content=vztmpl&filename=a.img&url=http%3A%2F%2Fx%2Fa.img");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("wrong file extension"), "{text}");
    let (status, text) =
        post("content=vztmpl&filename=a.tar&url=http%3A%2F%2Fx%2Fa.tar&checksum=00");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("requires checksum-algorithm"), "{text}");
}

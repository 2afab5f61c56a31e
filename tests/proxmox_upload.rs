//! `ingot upload` against a loopback HTTPS server that behaves as the Proxmox VE API does
//! (a real Proxmox cannot run here): token auth, the vztmpl list, the multipart upload with
//! its part order, `Content-Length` and checksum rules, silent overwrites, task status and
//! log, shared and node-local storage.
//!
//! The certificates come from `rcgen` (a CA and a leaf for 127.0.0.1), the server is rustls.
//! The first tests prove the fake is as strict as Proxmox (chunked body, part order, checksum,
//! 401/403, silent overwrite), so that ingot passing against it means something. The
//! tarballs are real: a minimal root filesystem packed by GNU tar, checked by `ingot verify`.

use std::collections::HashMap;
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
    let polls = requests.iter().filter(|r| r.ends_with("/status")).count();
    assert_eq!(polls, 3, "running, running, stopped: {requests:?}");
    // The list came before the upload.
    let list = requests.iter().position(|r| r.contains("content=vztmpl"));
    let post = requests.iter().position(|r| r.starts_with("POST"));
    assert!(list < post, "{requests:?}");
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

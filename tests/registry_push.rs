//! `ingot push` against a real registry: Debian's `docker-registry` (the CNCF distribution
//! server), started here on loopback with TLS (a private CA made by rcgen) and htpasswd
//! (bcrypt) authentication. The pushed image is read back by skopeo (`inspect`, `copy` to an
//! `oci:` directory) and unpacked by umoci; the tree equals the tarball's as GNU tar extracts
//! it. Credentials from the environment and from a Docker `config.json`; no credentials, an
//! untrusted certificate and a tag that names another manifest are refused.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const INGOT: &str = env!("CARGO_BIN_EXE_ingot");

/// Fails (never skips) when a tool the test needs is missing.
fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is not installed: apt-get install {package} (.ci/run installs it)"
    );
}

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

struct RegistryGuard(Child);

impl Drop for RegistryGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The registry's TLS: a private CA (`dir/ca.pem`) and a leaf for 127.0.0.1 signed by it
/// (`dir/cert.pem` with the chain, `dir/key.pem`).
struct RegistryTls {
    ca_pem: PathBuf,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    leaf: rcgen::Certificate,
    leaf_key: rcgen::KeyPair,
}

fn registry_tls(dir: &Path) -> RegistryTls {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ingot test registry CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let ca_pem = dir.join("ca.pem");
    fs::write(&ca_pem, ca.pem()).unwrap();
    fs::write(dir.join("cert.pem"), format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
    RegistryTls {
        ca_pem,
        ca,
        leaf,
        leaf_key,
    }
}

/// A registry on 127.0.0.1 with TLS and htpasswd user `pusher`/`s3cret`: (host:port, CA PEM).
fn start_registry(dir: &Path) -> (String, PathBuf, RegistryGuard) {
    start_registry_with(dir, true)
}

/// The same, with htpasswd authentication or open to anyone (`htpasswd` false).
fn start_registry_with(dir: &Path, htpasswd: bool) -> (String, PathBuf, RegistryGuard) {
    let ca_pem = registry_tls(dir).ca_pem;
    let auth = if htpasswd {
        let file = run(Command::new("htpasswd").args(["-Bbn", "pusher", "s3cret"]));
        fs::write(dir.join("htpasswd"), &file.stdout).unwrap();
        format!(
            "auth:\n  htpasswd:\n    realm: ingot-test\n    path: {}\n",
            dir.join("htpasswd").display()
        )
    } else {
        String::new()
    };
    let (port, guard) = serve_registry(dir, &auth);
    (format!("127.0.0.1:{port}"), ca_pem, guard)
}

/// Start docker-registry on a free loopback port with TLS from `dir` (cert.pem, key.pem),
/// storage under it and the config's `auth` section `auth` (empty: none); returns once it
/// listens.
fn serve_registry(dir: &Path, auth: &str) -> (u16, RegistryGuard) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("config.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {}\n    key: {}\n{auth}",
            dir.join("storage").display(),
            dir.join("cert.pem").display(),
            dir.join("key.pem").display(),
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(fs::File::create(dir.join("registry.log")).unwrap())
        .stderr(fs::File::create(dir.join("registry.err")).unwrap())
        .spawn()
        .expect("docker-registry must be installed (apt-get install docker-registry)");
    let guard = RegistryGuard(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the registry did not listen within 20 s: {}",
            fs::read_to_string(dir.join("registry.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (port, guard)
}

/// A small root filesystem tarball by GNU tar (owners 0, an xattr) and its OCI archive, via
/// the library that `build --oci` uses.
fn oci_archive(dir: &Path, name: &str, motd: &str) -> (PathBuf, PathBuf) {
    let root = dir.join(format!("{name}.root"));
    for d in ["etc", "usr/bin", "var/tmp", "dev"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("etc/motd"), motd).unwrap();
    fs::write(root.join("usr/bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        root.join("usr/bin/hello"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fs::set_permissions(root.join("var/tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    xattr::set(root.join("usr/bin/hello"), "user.ingot.test", b"kept").unwrap();
    let tarball = dir.join(format!("{name}.tar.gz"));
    run(Command::new("tar")
        .args([
            "--sort=name",
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--mtime=@1700000000",
        ])
        .args(["--xattrs", "--xattrs-include=user.*", "-czf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&root)
        .args(["bin", "dev", "etc", "usr", "var"]));
    let bytes = fs::read(&tarball).unwrap();
    let layer_sha = hex::encode(Sha256::digest(&bytes));
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain).unwrap();
    let diff_id = hex::encode(Sha256::digest(&plain));
    let archive = dir.join(format!("{name}.oci.tar"));
    let mut out = fs::File::create(&archive).unwrap();
    ingot::oci::write_archive(
        &mut out,
        &ingot::oci::OciImage {
            layer_path: &tarball,
            layer_sha256: &layer_sha,
            layer_size: bytes.len() as u64,
            compression: ingot::export::compress::Compression::Gzip,
            diff_id: &diff_id,
            debian_arch: "amd64",
            epoch: ingot::epoch::BuildEpoch(1_700_000_000),
            ref_name: "v1",
            version: "1",
            revision: "test",
            source: "recipes/test",
        },
    )
    .unwrap();
    (tarball, archive)
}

fn push(
    archive: &Path,
    reference: &str,
    ca: Option<&Path>,
    env: &[(&str, &str)],
    home: &Path,
) -> Output {
    let mut cmd = Command::new(INGOT);
    cmd.arg("push").arg(archive).arg(reference);
    if let Some(ca) = ca {
        cmd.arg("--ca-file").arg(ca);
    }
    cmd.env_remove("INGOT_REGISTRY_USERNAME")
        .env_remove("INGOT_REGISTRY_PASSWORD")
        .env_remove("DOCKER_CONFIG")
        .env_remove("INGOT_REGISTRY_CA_FILE")
        .env("HOME", home);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if md.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if md.is_dir() {
                "dir".into()
            } else {
                format!(
                    "file {}",
                    hex::encode(Sha256::digest(fs::read(&p).unwrap()))
                )
            };
            let mut xattrs: Vec<String> = xattr::list(&p)
                .unwrap()
                .map(|n| {
                    format!(
                        "{}={}",
                        n.to_string_lossy(),
                        hex::encode(xattr::get(&p, &n).unwrap().unwrap_or_default())
                    )
                })
                .collect();
            xattrs.sort();
            out.insert(
                rel,
                format!(
                    "{what} mode {:o} owner {}:{} [{}]",
                    md.mode() & 0o7777,
                    md.uid(),
                    md.gid(),
                    xattrs.join(",")
                ),
            );
            if md.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn push_to_a_real_registry_with_tls_and_htpasswd_then_skopeo_and_umoci_read_it_back() {
    require_tool("docker-registry", "docker-registry");
    require_tool("htpasswd", "apache2-utils");
    require_tool("skopeo", "skopeo");
    require_tool("umoci", "umoci");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    fs::create_dir_all(&home).unwrap();
    let (host, ca, _registry) = start_registry(dir);
    let (tarball, archive) = oci_archive(dir, "one", "one\n");
    let reference = format!("{host}/golden/mini:v1");
    let creds = [
        ("INGOT_REGISTRY_USERNAME", "pusher"),
        ("INGOT_REGISTRY_PASSWORD", "s3cret"),
    ];

    // No credentials: refused by the registry, said in one line, exit 1.
    let o = push(&archive, &reference, Some(&ca), &[], &home);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("refused access"), "{err}");
    // The registry's certificate not trusted (built-in roots only): refused.
    let o = push(&archive, &reference, None, &creds, &home);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Wrong password: refused, and the password is not in the message.
    let o = push(
        &archive,
        &reference,
        Some(&ca),
        &[
            ("INGOT_REGISTRY_USERNAME", "pusher"),
            ("INGOT_REGISTRY_PASSWORD", "wrong-pw"),
        ],
        &home,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("wrong-pw"), "{err}");

    // Pushed with the environment's credentials.
    let o = push(&archive, &reference, Some(&ca), &creds, &home);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let digest = line.rsplit_once('@').unwrap().1.to_string();
    assert!(digest.starts_with("sha256:"), "{line}");

    // The same image again: accepted, nothing sent.
    let o = push(&archive, &reference, Some(&ca), &creds, &home);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing sent"));

    // Another image under the same tag: refused, the tag unchanged.
    let (_, other) = oci_archive(dir, "two", "two\n");
    let o = push(&other, &reference, Some(&ca), &creds, &home);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("never overwritten"), "{err}");

    // Credentials from a Docker config.json, under another tag.
    let docker = dir.join("docker");
    fs::create_dir_all(&docker).unwrap();
    fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#,
            base64_of("pusher:s3cret")
        ),
    )
    .unwrap();
    let o = push(
        &other,
        &format!("{host}/golden/mini:v2"),
        Some(&ca),
        &[("DOCKER_CONFIG", docker.to_str().unwrap())],
        &home,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // skopeo reads what the registry holds.
    let certs = dir.join("certs");
    fs::create_dir_all(&certs).unwrap();
    fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let skopeo = |args: &[&str]| {
        run(Command::new("skopeo")
            .args(&args[..1])
            .args([
                "--cert-dir",
                certs.to_str().unwrap(),
                "--creds",
                "pusher:s3cret",
            ])
            .args(&args[1..]))
    };
    let inspect = skopeo(&["inspect", &format!("docker://{reference}")]);
    let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(doc["Digest"], digest, "{doc}");
    assert_eq!(doc["Architecture"], "amd64");
    let layout = dir.join("layout");
    run(Command::new("skopeo")
        .args([
            "copy",
            "--src-cert-dir",
            certs.to_str().unwrap(),
            "--src-creds",
            "pusher:s3cret",
        ])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:v1", layout.display())));
    let bundle = dir.join("bundle");
    let mut umoci = Command::new("umoci");
    umoci.arg("unpack");
    let root = nix_is_root();
    if !root {
        umoci.arg("--rootless");
    }
    run(umoci
        .arg("--image")
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle));
    let extracted = dir.join("extracted");
    fs::create_dir(&extracted).unwrap();
    run(Command::new("tar")
        .args([
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=user.*",
            "-xpzf",
        ])
        .arg(&tarball)
        .arg("-C")
        .arg(&extracted));
    let (want, got) = (tree(&extracted), tree(&bundle.join("rootfs")));
    assert!(
        want.values().any(|v| v.contains("user.ingot.test=")),
        "{want:?}"
    );
    let strip = |m: BTreeMap<String, String>| -> BTreeMap<String, String> {
        // Rootless umoci records owners in user.rootlesscontainers, so only root compares them.
        m.into_iter()
            .map(|(k, v)| {
                let v = if root {
                    v
                } else {
                    v.split(" owner ").next().unwrap_or_default().to_string()
                        + &v[v.find(" [").unwrap_or(v.len())..]
                };
                (
                    k,
                    v.replace(",user.rootlesscontainers", "")
                        .replace("user.rootlesscontainers", ""),
                )
            })
            .collect()
    };
    assert_eq!(
        strip(want),
        strip(got),
        "umoci's tree differs from the tarball's"
    );
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

// ---------------------------------------------------------------------------------------------
// The Bearer token flow: docker-registry with `auth: token`, against a token server of ours.

/// A raw ECDSA signature from ring's ASN.1 DER `SEQUENCE { r INTEGER, s INTEGER }` to the
/// JWS form (`r || s`, 32 bytes each) that ES256 needs.
fn der_to_jws(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30, "an ASN.1 sequence");
    let mut i = 2;
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "an ASN.1 integer");
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the token server saw: (scope asked for, whether the credentials were right).
type TokenLog = std::sync::Arc<std::sync::Mutex<Vec<(String, bool)>>>;

/// A token server on 127.0.0.1 over TLS (leaf `tls_cert`/`tls_key`), issuing JWTs (ES256,
/// `x5c` = the signing certificate) for user `pusher`/`s3cret` with the access asked for.
/// Returns the realm URL and what it saw.
fn start_token_server(
    tls_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    tls_key: rustls::pki_types::PrivateKeyDer<'static>,
    signer: rcgen::KeyPair,
    signer_der: Vec<u8>,
) -> (String, TokenLog) {
    use std::io::{BufRead, BufReader, Write};
    let config = std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(tls_chain, tls_key)
        .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: TokenLog = Default::default();
    let seen = log.clone();
    let signer = std::sync::Arc::new(signer);
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut reader = BufReader::new(&mut tls);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut auth = String::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    auth = v.trim().to_string();
                }
            }
            drop(reader);
            let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
            let param = |name: &str| {
                query.split('&').find_map(|kv| {
                    kv.strip_prefix(&format!("{name}=")).map(|v| {
                        v.replace("%3A", ":")
                            .replace("%2C", ",")
                            .replace("%2F", "/")
                    })
                })
            };
            let scope = param("scope").unwrap_or_default();
            let good = auth == format!("Basic {}", base64_of("pusher:s3cret"));
            seen.lock().unwrap().push((scope.clone(), good));
            let (status, body) = if !good {
                (
                    "401 Unauthorized",
                    r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_string(),
                )
            } else {
                // `repository:NAME:ACTIONS` → the access claim the registry checks.
                let access: Vec<serde_json::Value> = scope
                    .split(' ')
                    .filter_map(|s| {
                        let mut p = s.splitn(3, ':');
                        let (t, n, a) = (p.next()?, p.next()?, p.next()?);
                        Some(serde_json::json!({ "type": t, "name": n,
                            "actions": a.split(',').collect::<Vec<_>>() }))
                    })
                    .collect();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = serde_json::json!({ "typ": "JWT", "alg": "ES256",
                    "x5c": [base64_of_bytes(&signer_der)] });
                let claims = serde_json::json!({
                    "iss": "ingot-test-issuer", "sub": "pusher", "aud": "ingot-test-registry",
                    "exp": now + 300, "nbf": now - 10, "iat": now - 10,
                    "jti": format!("jti-{now}-{}", seen.lock().unwrap().len()),
                    "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    b64url(header.to_string().as_bytes()),
                    b64url(claims.to_string().as_bytes())
                );
                use rcgen::SigningKey;
                let sig = der_to_jws(&signer.sign(signing_input.as_bytes()).unwrap());
                let token = format!("{signing_input}.{}", b64url(&sig));
                (
                    "200 OK",
                    serde_json::json!({ "token": token, "expires_in": 300 }).to_string(),
                )
            };
            let _ = write!(
                tls,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (format!("https://127.0.0.1:{port}/token"), log)
}

fn base64_of_bytes(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn push_follows_the_bearer_token_flow_of_a_real_registry_and_a_wrong_password_is_refused() {
    require_tool("docker-registry", "docker-registry");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    fs::create_dir_all(&home).unwrap();

    // TLS for the registry and the token server: one private CA.
    let RegistryTls {
        ca_pem,
        ca,
        leaf,
        leaf_key,
    } = registry_tls(dir);

    // The token issuer: its own CA (the registry's rootcertbundle) and a signing certificate
    // that the tokens carry in `x5c`; distribution wants digitalSignature on it.
    let issuer_ca_key = rcgen::KeyPair::generate().unwrap();
    let mut issuer_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    issuer_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    issuer_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ingot test token CA");
    issuer_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let issuer_ca = rcgen::CertifiedIssuer::self_signed(issuer_params, issuer_ca_key).unwrap();
    let signer = rcgen::KeyPair::generate().unwrap();
    let mut signer_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    signer_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ingot test token signer");
    signer_params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let signer_cert = signer_params.signed_by(&signer, &issuer_ca).unwrap();
    fs::write(dir.join("token-ca.pem"), issuer_ca.pem()).unwrap();

    let chain = vec![leaf.der().clone(), ca.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        leaf_key.serialize_der(),
    ));
    let (realm, tokens) = start_token_server(chain, key, signer, signer_cert.der().to_vec());

    let auth = format!(
        "auth:\n  token:\n    realm: {realm}\n    service: ingot-test-registry\n    \
         issuer: ingot-test-issuer\n    rootcertbundle: {}\n",
        dir.join("token-ca.pem").display(),
    );
    let (port, _registry) = serve_registry(dir, &auth);
    let registry_log = || fs::read_to_string(dir.join("registry.err")).unwrap_or_default();
    let (_, archive) = oci_archive(dir, "bearer", "bearer\n");
    let reference = format!("127.0.0.1:{port}/golden/mini:v1");

    // A wrong password: the token server refuses, push says so in one line, exit 1.
    let o = push(
        &archive,
        &reference,
        Some(&ca_pem),
        &[
            ("INGOT_REGISTRY_USERNAME", "pusher"),
            ("INGOT_REGISTRY_PASSWORD", "wrong-pw"),
        ],
        &home,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused access") && err.contains("token service") && err.contains("401"),
        "{err}"
    );
    assert!(!err.contains("wrong-pw"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(
        tokens.lock().unwrap().as_slice(),
        [("repository:golden/mini:pull,push".to_string(), false)]
    );

    // The right one: 401 from the registry, a token from the realm, the push accepted.
    let creds = [
        ("INGOT_REGISTRY_USERNAME", "pusher"),
        ("INGOT_REGISTRY_PASSWORD", "s3cret"),
    ];
    let o = push(&archive, &reference, Some(&ca_pem), &creds, &home);
    assert!(
        o.status.success(),
        "{}\nregistry: {}",
        String::from_utf8_lossy(&o.stderr),
        registry_log()
    );
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(
        line.starts_with(&reference) && line.contains("@sha256:"),
        "{line}"
    );
    assert_eq!(tokens.lock().unwrap().len(), 2);
    assert!(tokens.lock().unwrap()[1].1);

    // Without a token the registry answers 401 with the Bearer challenge (what made push ask).
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&[
                        ureq::tls::Certificate::from_der(ca.der().as_ref()).to_owned(),
                    ]))
                    .build(),
            )
            .build(),
    );
    let resp = agent
        .get(&format!(
            "https://127.0.0.1:{port}/v2/golden/mini/manifests/v1"
        ))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(&realm),
        "{challenge}"
    );

    // Pushed again: the tag names this manifest already, nothing sent.
    let o = push(&archive, &reference, Some(&ca_pem), &creds, &home);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing sent"));
}

/// `ingot upload --from-registry` against a Proxmox API that cannot be reached: what happened
/// before it tried shows on stderr.
fn upload_from_registry(reference: &str, ca: &Path) -> Output {
    let mut cmd = Command::new(INGOT);
    cmd.args(["upload", "--from-registry", reference]);
    for (k, _) in std::env::vars() {
        if k.starts_with("PM_") || k.starts_with("INGOT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("PM_API_URL", "https://127.0.0.1:1/api2/json")
        .env("PM_API_TOKEN_ID", "ingot@pve!upload")
        .env("PM_API_TOKEN_SECRET", "x")
        .env("PM_NODE", "pve1")
        .env("PM_STORAGE", "local")
        .env("PM_RETRIES", "0")
        .env("INGOT_REGISTRY_CA_FILE", ca);
    cmd.output().unwrap()
}

#[test]
fn upload_from_registry_first_asks_the_registry_for_the_tag_as_proxmox_will() {
    require_tool("docker-registry", "docker-registry");
    require_tool("htpasswd", "apache2-utils");
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let open_dir = tmp.path().join("open");
    fs::create_dir_all(&open_dir).unwrap();
    let (host, ca, _open) = start_registry_with(&open_dir, false);
    let (_, archive) = oci_archive(&open_dir, "one", "one\n");
    let o = push(
        &archive,
        &format!("{host}/golden/mini:v1"),
        Some(&ca),
        &[],
        &home,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The tag is there, readable without login: Proxmox is asked (here: cannot be reached).
    let o = upload_from_registry(&format!("{host}/golden/mini:v1"), &ca);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("names manifest sha256:"), "{err}");
    assert!(
        err.contains("127.0.0.1:1") && err.contains("cannot connect"),
        "{err}"
    );

    // No such tag: refused before Proxmox is asked.
    let o = upload_from_registry(&format!("{host}/golden/mini:v9"), &ca);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no such tag") && !err.contains("cannot connect"),
        "{err}"
    );

    // A registry that wants a login: Proxmox could not pull from it either.
    let locked_dir = tmp.path().join("locked");
    fs::create_dir_all(&locked_dir).unwrap();
    let (host, ca, _locked) = start_registry_with(&locked_dir, true);
    let (_, archive) = oci_archive(&locked_dir, "two", "two\n");
    let creds = [
        ("INGOT_REGISTRY_USERNAME", "pusher"),
        ("INGOT_REGISTRY_PASSWORD", "s3cret"),
    ];
    let o = push(
        &archive,
        &format!("{host}/golden/mini:v1"),
        Some(&ca),
        &creds,
        &home,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = upload_from_registry(&format!("{host}/golden/mini:v1"), &ca);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("anonymous pull") && !err.contains("cannot connect"),
        "{err}"
    );
}

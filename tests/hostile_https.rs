//! The archive over HTTPS, as an air-gapped site serves it: an internal mirror under a private
//! CA, trusted through `--ca-file` / `INGOT_CA_FILE`, and a man in the middle who redirects
//! it to plain HTTP. Both servers are real loopback servers over the generated, signed mini
//! archive (`support/mini_recipe.rs`): HTTPS by rustls with an `rcgen` CA and a leaf for
//! 127.0.0.1, HTTP in the clear. Each counts the connections it accepted, so a test can
//! prove that a refused transfer never reached plain HTTP.

#[path = "support/mini_recipe.rs"]
mod mini_recipe;
#[path = "support/minidistro.rs"]
mod minidistro;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Component, Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mini_recipe::{arg, assert_ok, ingot};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use support::FixtureOptions;

/// A private CA (its PEM file) and a server configuration whose leaf, for 127.0.0.1 and
/// localhost, it signed.
struct PrivatePki {
    ca_pem: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

fn private_pki(dir: &Path) -> PrivatePki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ingot test mirror CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let ca_pem = dir.join("mirror-ca.pem");
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
    .unwrap();
    PrivatePki {
        ca_pem,
        server: Arc::new(server),
    }
}

/// A loopback server over an archive directory; counts the connections it accepted.
struct Mirror {
    url: String,
    connections: Arc<AtomicUsize>,
}

impl Mirror {
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Serve `root` on 127.0.0.1 (HTTPS when `tls` is given), one request per connection. With
/// `redirect_inrelease_to`, every `…/InRelease` gets a 302 to the same path on that base URL.
fn serve(
    root: &Path,
    tls: Option<Arc<rustls::ServerConfig>>,
    redirect_inrelease_to: Option<String>,
) -> Mirror {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let (root, count) = (root.to_path_buf(), Arc::clone(&connections));
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            let (root, tls, redirect) = (root.clone(), tls.clone(), redirect_inrelease_to.clone());
            std::thread::spawn(move || match tls {
                Some(config) => {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut stream = rustls::StreamOwned::new(conn, tcp);
                    answer(&mut stream, &root, redirect.as_deref());
                    stream.conn.send_close_notify();
                    let _ = stream.flush();
                }
                None => answer(&mut { tcp }, &root, redirect.as_deref()),
            });
        }
    });
    Mirror { url, connections }
}

/// Read one request from `stream` and answer it: a redirect, the file, or 404.
fn answer<S: Read + Write>(stream: &mut S, root: &Path, redirect: Option<&str>) {
    let mut reader = BufReader::new(&mut *stream);
    let mut line = String::new();
    // A client that refuses the certificate ends the handshake here.
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(n) if n > 0 && !header.trim().is_empty() => {}
            _ => break,
        }
    }
    drop(reader);
    let reply = |stream: &mut S, head: String, body: &[u8]| {
        let _ = write!(
            stream,
            "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(body);
    };
    let rel = Path::new(path.trim_start_matches('/'));
    let inside = rel.components().all(|c| matches!(c, Component::Normal(_)));
    match (redirect, std::fs::read(root.join(rel))) {
        (Some(base), _) if path.ends_with("/InRelease") => reply(
            stream,
            format!("HTTP/1.1 302 Found\r\nLocation: {base}{path}"),
            b"",
        ),
        (_, Ok(body)) if inside => reply(stream, "HTTP/1.1 200 OK".into(), &body),
        _ => reply(stream, "HTTP/1.1 404 Not Found".into(), b"not found"),
    }
}

/// The mini archive's recipe and a private PKI, in one temp folder.
fn fixture() -> (mini_recipe::MiniRecipe, PrivatePki) {
    let m = mini_recipe::mini_recipe(&[], &[], FixtureOptions::default());
    let pki = private_pki(&m.dir);
    (m, pki)
}

/// The refusal's stderr, after checking that it is one line and `o` exited with `code`.
fn one_line_refusal(o: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

/// `ingot resolve` of the fixture's recipe against `mirror`, with these extra arguments.
fn resolve(m: &mini_recipe::MiniRecipe, mirror: &str, extra: &[&str]) -> Output {
    let cache = m.dir.join("cache");
    let mut args = vec![
        "resolve",
        arg(&m.recipe),
        "--mirror",
        mirror,
        "--cache-dir",
        arg(&cache),
    ];
    args.extend_from_slice(extra);
    ingot(&args)
}

#[test]
fn an_https_mirror_redirecting_to_plain_http_is_refused_before_any_http_request() {
    let (m, pki) = fixture();
    // The man in the middle's plain-HTTP copy serves the same valid, signed bytes: only the
    // downgrade itself can make ingot refuse.
    let plain = serve(&m.mirror, None, None);
    let https = serve(&m.mirror, Some(pki.server), Some(plain.url.clone()));
    let o = resolve(&m, &https.url, &["--ca-file", arg(&pki.ca_pem)]);
    let err = one_line_refusal(&o, 1);
    let inrelease = format!("{}/dists/mini/InRelease", https.url);
    assert!(
        err.contains(&inrelease) && err.contains("refusing to downgrade"),
        "must name {inrelease} and refuse the downgrade: {err}"
    );
    assert!(
        https.connections() >= 1,
        "the HTTPS mirror was asked (the redirect was seen)"
    );
    assert_eq!(
        plain.connections(),
        0,
        "the plain-HTTP server must see no request at all"
    );
}

#[test]
fn an_https_mirror_under_a_private_ca_serves_resolve_and_fetch_with_its_ca_file() {
    let (m, pki) = fixture();
    let https = serve(&m.mirror, Some(pki.server), None);
    let o = resolve(&m, &https.url, &["--ca-file", arg(&pki.ca_pem)]);
    assert_ok(&o);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("mini-hello"),
        "the plan lists the recipe's package: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    // The same through the environment, and the packages themselves over HTTPS.
    let cache = m.dir.join("cache");
    let o = std::process::Command::new(mini_recipe::INGOT)
        .args(["fetch", arg(&m.recipe), "--mirror", &https.url, "--quiet"])
        .args(["--cache-dir", arg(&cache)])
        .env("INGOT_CA_FILE", &pki.ca_pem)
        .output()
        .unwrap();
    assert_ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("3 downloaded"), "{out}");
}

#[test]
fn an_https_mirror_under_a_private_ca_is_refused_without_its_ca_file() {
    let (m, pki) = fixture();
    let https = serve(&m.mirror, Some(pki.server), None);
    let o = resolve(&m, &https.url, &[]);
    let err = one_line_refusal(&o, 1);
    let inrelease = format!("{}/dists/mini/InRelease", https.url);
    assert!(
        err.contains(&inrelease)
            && err.contains("certificate is not trusted")
            && err.contains("UnknownIssuer")
            && err.contains("--ca-file"),
        "must name {inrelease}, the untrusted certificate and the way out: {err}"
    );
    assert_eq!(
        https.connections(),
        1,
        "an untrusted certificate is not retried"
    );
}

#[test]
fn a_ca_file_without_a_certificate_is_refused_as_bad_input() {
    let (m, pki) = fixture();
    let https = serve(&m.mirror, Some(pki.server), None);
    let not_pem = m.recipe.join("recipe.toml");
    let o = resolve(&m, &https.url, &["--ca-file", arg(&not_pem)]);
    let err = one_line_refusal(&o, 2);
    assert!(
        err.contains(&*not_pem.to_string_lossy()) && err.contains("no PEM certificate"),
        "{err}"
    );
    assert_eq!(https.connections(), 0, "refused before connecting");
}

#[test]
fn a_build_from_an_https_mirror_under_a_private_ca_records_its_https_urls() {
    support::privilege::require_build_privileges(mini_recipe::INGOT);
    let (m, pki) = fixture();
    let https = serve(&m.mirror, Some(pki.server), None);
    let (cache, out) = (m.dir.join("cache"), m.dir.join("out"));
    let o = ingot(&[
        "build",
        arg(&m.recipe),
        "--mirror",
        &https.url,
        "--ca-file",
        arg(&pki.ca_pem),
        "--cache-dir",
        arg(&cache),
        "--out",
        arg(&out),
    ]);
    assert_ok(&o);
    let image = mini_recipe::stdout_path(&o);
    assert!(image.is_file(), "{}", image.display());
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(format!("{}.manifest.json", image.display())).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["suites"][0]["inrelease_url"],
        format!("{}/dists/mini/InRelease", https.url),
        "the suite was read over HTTPS"
    );
}

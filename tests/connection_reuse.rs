//! Connection reuse and name lookups: 150 downloads through `fetch_plan` over loopback HTTP
//! look the host name up once and open no more TCP connections than there are parallel
//! downloads. A minimal keep-alive HTTP server on loopback counts every TCP connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ingot::fetch::{Cache, fetch_plan};
use ingot::net::Transport;
use ingot::plan::{Plan, PlannedPackage};
use ingot::progress::Silent;
use sha2::{Digest, Sha256};

mod support;

const FILES: usize = 150;

/// A minimal HTTP/1.1 server over `root` that keeps connections alive and counts them: every
/// accepted TCP connection is counted, every GET answered with the file or a 404.
fn counting_server(root: PathBuf) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("server address").port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let root = root.clone();
            std::thread::spawn(move || serve_connection(&root, conn));
        }
    });
    (port, count)
}

fn serve_connection(root: &Path, conn: TcpStream) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" || header == "\n" {
                break;
            }
        }
        let path = request_line.split(' ').nth(1).unwrap_or("/");
        let rel = path.trim_start_matches('/');
        let body = if rel.split('/').any(|c| c == ".." || c.is_empty()) {
            None
        } else {
            std::fs::read(root.join(rel)).ok()
        };
        let (status, body) = match body {
            Some(b) => ("200 OK", b),
            None => ("404 Not Found", b"not found".to_vec()),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&body).is_err() {
            return;
        }
    }
}

fn write_files(dir: &Path) -> Vec<PlannedPackage> {
    (0..FILES)
        .map(|i| {
            let name = format!("pkg{i:03}");
            // Real packages: fetch checks each one's control against the index.
            let filename = format!("pool/{name}_1_amd64.deb");
            let content = format!("{name} ").repeat(200 + i);
            let built = support::DebSpec::new(&name, "1")
                .file(&format!("/usr/share/{name}"), content.as_bytes(), 0o644)
                .build(&dir.join("pool"));
            assert_eq!(
                built,
                dir.join(&filename),
                "DebSpec names the file as the index does"
            );
            let body = std::fs::read(&built).unwrap();
            PlannedPackage {
                name: name.clone(),
                version: "1".into(),
                architecture: "amd64".into(),
                essential: false,
                priority: None,
                size: body.len() as u64,
                sha256: hex::encode(Sha256::digest(&body)),
                filename,
                mirror: String::new(),
                suite: "stable".into(),
                source: name,
                pre_depends_on: vec![],
                depends_on: vec![],
            }
        })
        .collect()
}

#[test]
fn downloads_share_one_lookup_and_one_connection_per_worker() {
    let dir = tempfile::tempdir().unwrap();
    let mirror_dir = dir.path().join("mirror");
    let mut packages = write_files(&mirror_dir);
    let (port, connections) = counting_server(mirror_dir);
    // A host *name*, so the transport has something to look up.
    let mirror = format!("http://localhost:{port}");
    for p in &mut packages {
        p.mirror = mirror.clone();
    }
    let plan = Plan {
        packages,
        auto_installed: vec![],
    };
    let jobs = 6;
    let transport = Transport::for_jobs(jobs);
    let cache = Cache::new(dir.path().join("cache"));
    let (debs, summary) = fetch_plan(&transport, &plan, &cache, jobs, &Silent).unwrap();
    assert_eq!(summary.downloaded, FILES);
    assert_eq!(debs.len(), FILES);
    let after_first = connections.load(Ordering::SeqCst);
    assert_eq!(
        transport.lookups(),
        1,
        "one lookup of localhost for {FILES} downloads"
    );
    assert!(
        (1..=jobs).contains(&after_first),
        "{FILES} downloads with {jobs} workers opened {after_first} connections"
    );

    // A second round of downloads (a fresh cache) reuses the pooled connections and lookup.
    let cache2 = Cache::new(dir.path().join("cache2"));
    fetch_plan(&transport, &plan, &cache2, jobs, &Silent).unwrap();
    assert_eq!(transport.lookups(), 1);
    let after_second = connections.load(Ordering::SeqCst);
    assert!(
        after_second <= jobs,
        "a second round opened new connections: {after_first} then {after_second}"
    );
}

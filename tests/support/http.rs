//! A loopback HTTP server over a directory, so tests can use `http://` as well as `file://`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Stops the server and joins its thread when dropped.
pub struct HttpGuard {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for HttpGuard {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serve the files under `dir` on `127.0.0.1:<free port>`; returns the base URL (no trailing
/// slash) and the guard that keeps the server alive. GET only; missing files and paths with
/// `..` get 404.
pub fn serve_http(dir: &Path) -> (String, HttpGuard) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0"));
    let port = server.server_addr().to_ip().expect("an IP listener").port();
    let root = dir.to_path_buf();
    let srv = Arc::clone(&server);
    let thread = std::thread::spawn(move || {
        for request in srv.incoming_requests() {
            let response = match resolve(&root, request.url()) {
                Some(path) if path.is_file() => match std::fs::read(&path) {
                    Ok(bytes) => tiny_http::Response::from_data(bytes),
                    Err(_) => tiny_http::Response::from_data(Vec::new()).with_status_code(500),
                },
                _ => tiny_http::Response::from_data(b"not found".to_vec()).with_status_code(404),
            };
            let _ = request.respond(response);
        }
    });
    (
        format!("http://127.0.0.1:{port}"),
        HttpGuard {
            server,
            thread: Some(thread),
        },
    )
}

/// The file a request path names inside `root`, or None if it tries to leave it.
fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path)?;
    let rel = Path::new(decoded.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// How the loopback server misbehaves on paths containing its needle.
#[derive(Clone, Copy)]
pub enum Fault {
    /// Send the headers and half the body, then close.
    Drop,
    /// Send nothing, keep the connection open.
    Stall,
    /// Answer with this status.
    Status(u16),
    /// Answer normally once this flag is set (or the server is dropped).
    HoldUntil(&'static AtomicBool),
}

/// A loopback HTTP/1.0 server over `root` that applies `fault` to paths containing `needle`.
pub struct FaultyServer {
    /// The base URL (no trailing slash).
    pub url: String,
    stop: Arc<AtomicBool>,
    faults: Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultyServer {
    /// How many requests met the fault so far.
    pub fn faults(&self) -> usize {
        self.faults.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

pub fn faulty_server(root: &Path, needle: &'static str, fault: Fault) -> FaultyServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (root, flag, count) = (root.to_path_buf(), Arc::clone(&stop), Arc::clone(&faults));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (root, flag, count) = (root.clone(), Arc::clone(&flag), Arc::clone(&count));
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(&conn).read_line(&mut line);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let file = root.join(path.trim_start_matches('/'));
                let body = std::fs::read(&file).ok();
                let faulty = path.contains(needle);
                if faulty {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                let reply = |conn: &mut std::net::TcpStream, status: u16, body: &[u8]| {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(body);
                };
                match (faulty, fault, body) {
                    (true, Fault::Stall, _) => {
                        while !flag.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    (true, Fault::Status(code), _) => reply(&mut conn, code, b"fault"),
                    (true, Fault::HoldUntil(released), body) => {
                        while !released.load(Ordering::SeqCst) && !flag.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        match body {
                            Some(body) => reply(&mut conn, 200, &body),
                            None => reply(&mut conn, 404, b"not found"),
                        }
                    }
                    (true, Fault::Drop, Some(body)) => {
                        let _ = write!(
                            conn,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        let _ = conn.write_all(&body[..body.len() / 2]);
                    }
                    (_, _, Some(body)) => reply(&mut conn, 200, &body),
                    (_, _, None) => reply(&mut conn, 404, b"not found"),
                }
            });
        }
    });
    FaultyServer { url, stop, faults }
}

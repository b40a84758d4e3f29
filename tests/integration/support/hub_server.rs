//! A test-only HTTP/1.1 server on 127.0.0.1 speaking the parts of the Hugging Face hub API that
//! hf-hub uses, serving generated trajectories as branches:
//!
//! - `GET /api/models/{org}/{name}/refs` — branches with their commits;
//! - `GET /api/models/{org}/{name}/tree/{rev}` — the files of a revision with sizes (+ `lfs`);
//! - `HEAD|GET /{org}/{name}/resolve/{rev}/{file}` — small files answered directly with `ETag`
//!   and `X-Repo-Commit`; weights (LFS) answered with a 302 to `/cdn/{sha256}` carrying
//!   `X-Linked-Etag`, `X-Linked-Size` and `X-Repo-Commit`, as the real hub does;
//! - `HEAD|GET /cdn/{sha256}` — the bytes, with `Range` support.
//!
//! Failure injection ([`Faults`]): the next N requests answered 429 (with `Retry-After`), the
//! next N weights bodies cut off halfway (the connection dropped mid-body), private repos
//! answering 401 without the right token, unknown repos 404. Every request is logged so tests
//! can check what was (not) fetched. Each connection serves one request (`Connection: close`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A stable fake commit hash for a branch.
pub fn commit_of(repo: &str, branch: &str) -> String {
    sha256_hex(format!("{repo}@{branch}").as_bytes())[..40].to_string()
}

#[derive(Clone, Debug)]
pub struct Branch {
    pub name: String,
    pub commit: String,
    /// (path, bytes)
    pub files: Vec<(String, Vec<u8>)>,
}

#[derive(Clone, Debug, Default)]
pub struct Repo {
    pub branches: Vec<Branch>,
    /// Needs `Authorization: Bearer <token>`.
    pub private: bool,
}

impl Repo {
    /// One branch per sub-folder (its files at the root), plus `main` pointing at the last
    /// (highest-step) one, as Pythia's `main` is `step143000`.
    pub fn from_dir(repo_id: &str, dir: &Path) -> Repo {
        let mut folders: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        folders.sort_by_key(|n| {
            n.trim_start_matches("step")
                .parse::<u64>()
                .unwrap_or(u64::MAX)
        });
        let mut branches = Vec::new();
        for name in &folders {
            let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join(name))
                .unwrap()
                .flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().to_string(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect();
            files.sort();
            branches.push(Branch {
                name: name.clone(),
                commit: commit_of(repo_id, name),
                files,
            });
        }
        if let Some(last) = branches.last().cloned() {
            branches.push(Branch {
                name: "main".into(),
                ..last
            });
        }
        Repo {
            branches,
            private: false,
        }
    }

    pub fn with_branches(branches: Vec<Branch>) -> Repo {
        Repo {
            branches,
            private: false,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer this many of the next requests with 429.
    pub rate_limit: usize,
    /// `Retry-After` seconds sent with a 429.
    pub retry_after: Option<u64>,
    /// Cut off this many of the next weights (CDN) bodies halfway and drop the connection.
    pub drop_body: usize,
    /// Answer this many of the next weights (CDN) GETs with a 503 error page.
    pub error_page: usize,
    /// Send half of this many of the next weights bodies, then go silent for 3 s.
    pub stall_body: usize,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, Repo>,
    token: Option<String>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<String>>,
}

pub struct HubServer {
    addr: SocketAddr,
    cdn_addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    cdn_addr: SocketAddr,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let st = state.clone();
            std::thread::spawn(move || {
                let _ = handle(conn, &st, cdn_addr);
            });
        }
    })
}

impl HubServer {
    /// Serves `repos` (`ORG/NAME` → repo); private repos accept `token`. Weights are served
    /// from a second port, standing in for the hub's CDN (another host to HTTP clients, so they
    /// read the file metadata from the redirect and drop the token, as with the real hub).
    pub fn start(repos: Vec<(&str, Repo)>, token: Option<&str>) -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cdn_addr = cdn.local_addr().unwrap();
        let state = Arc::new(State {
            repos: repos.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            token: token.map(str::to_string),
            ..Default::default()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            accept_loop(listener, state.clone(), stop.clone(), cdn_addr),
            accept_loop(cdn, state.clone(), stop.clone(), cdn_addr),
        ];
        HubServer {
            addr,
            cdn_addr,
            state,
            stop,
            threads,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_faults(&self, f: Faults) {
        *self.state.faults.lock().unwrap() = f;
    }

    /// `METHOD /path` of every request so far.
    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.state.log.lock().unwrap().clear();
    }

    /// Stops accepting connections; the ports then refuse connections.
    pub fn stop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        let _ = TcpStream::connect(self.cdn_addr);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

fn read_request(stream: &TcpStream) -> std::io::Result<Request> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut body = vec![0; n];
        reader.read_exact(&mut body)?;
    }
    let path = target.split('?').next().unwrap_or("/").to_string();
    Ok(Request {
        method,
        path: percent_decode(&path),
        headers,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes (after announcing all of them), then drop the connection.
    cut_at: Option<usize>,
    /// Go silent this long after `cut_at` before dropping the connection.
    stall: Option<std::time::Duration>,
}

impl Response {
    fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            cut_at: None,
            stall: None,
        }
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    fn json(mut self, v: serde_json::Value) -> Self {
        self.body = serde_json::to_vec(&v).unwrap();
        self.header("Content-Type", "application/json")
    }
    fn error(status: u16, code: Option<&str>, message: &str) -> Self {
        let mut r = Response::new(status).json(serde_json::json!({ "error": message }));
        if let Some(c) = code {
            r = r.header("X-Error-Code", c);
        }
        r
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        _ => "Other",
    }
}

fn handle(mut stream: TcpStream, st: &State, cdn_addr: SocketAddr) -> std::io::Result<()> {
    let req = read_request(&stream)?;
    st.log
        .lock()
        .unwrap()
        .push(format!("{} {}", req.method, req.path));
    let resp = route(&req, st, cdn_addr);
    let head = req.method == "HEAD";
    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    let has_len = resp
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_len {
        out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    out.push_str("Connection: close\r\n\r\n");
    stream.write_all(out.as_bytes())?;
    if !head {
        let n = resp.cut_at.unwrap_or(resp.body.len()).min(resp.body.len());
        stream.write_all(&resp.body[..n])?;
        if let Some(d) = resp.stall {
            stream.flush()?;
            std::thread::sleep(d);
        }
    }
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}

fn is_lfs(path: &str) -> bool {
    path.ends_with(".bin") || path.ends_with(".safetensors")
}

fn route(req: &Request, st: &State, cdn_addr: SocketAddr) -> Response {
    {
        let mut f = st.faults.lock().unwrap();
        if f.rate_limit > 0 {
            f.rate_limit -= 1;
            let mut r = Response::error(429, None, "You have been rate-limited");
            if let Some(s) = f.retry_after {
                r = r.header("Retry-After", s.to_string());
            }
            return r;
        }
    }
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", "models", owner, name, "refs"] => with_repo(st, req, owner, name, |repo| {
            let branches: Vec<_> = repo
                .branches
                .iter()
                .map(|b| {
                    serde_json::json!({
                        "name": b.name, "ref": format!("refs/heads/{}", b.name),
                        "targetCommit": b.commit,
                    })
                })
                .collect();
            Response::new(200)
                .json(serde_json::json!({ "branches": branches, "tags": [], "converts": [] }))
        }),
        ["api", "models", owner, name, "tree", rev, ..] => {
            with_repo(st, req, owner, name, |repo| match branch(repo, rev) {
                None => Response::error(404, Some("RevisionNotFound"), "Invalid rev id"),
                Some(b) => {
                    let files: Vec<_> = b
                        .files
                        .iter()
                        .map(|(p, data)| {
                            let mut e = serde_json::json!({
                                "type": "file", "oid": etag_small(data), "size": data.len(), "path": p,
                            });
                            if is_lfs(p) {
                                e["lfs"] = serde_json::json!({
                                    "oid": sha256_hex(data), "size": data.len(), "pointerSize": 134,
                                });
                            }
                            e
                        })
                        .collect();
                    Response::new(200).json(serde_json::Value::Array(files))
                }
            })
        }
        ["cdn", sha] => {
            let data = st
                .repos
                .values()
                .flat_map(|r| r.branches.iter())
                .flat_map(|b| b.files.iter())
                .find(|(_, d)| sha256_hex(d) == *sha)
                .map(|(_, d)| d.clone());
            let Some(data) = data else {
                return Response::error(404, None, "no such object");
            };
            let mut f = st.faults.lock().unwrap();
            if f.error_page > 0 && req.method == "GET" {
                f.error_page -= 1;
                return Response::error(503, None, "Service temporarily unavailable");
            }
            let cut = if f.drop_body > 0 && req.method == "GET" {
                f.drop_body -= 1;
                Some(data.len() / 2)
            } else {
                None
            };
            let stall = if cut.is_none() && f.stall_body > 0 && req.method == "GET" {
                f.stall_body -= 1;
                true
            } else {
                false
            };
            drop(f);
            let mut resp = match req
                .headers
                .get("range")
                .and_then(|r| parse_range(r, data.len()))
            {
                Some((a, b)) => {
                    let mut r = Response::new(206)
                        .header("Content-Range", format!("bytes {a}-{b}/{}", data.len()));
                    r.body = data[a..=b].to_vec();
                    r
                }
                None => {
                    let mut r = Response::new(200);
                    r.body = data;
                    r
                }
            };
            resp.cut_at = cut.map(|c| c.min(resp.body.len() / 2));
            if stall {
                resp.cut_at = Some(resp.body.len() / 2);
                resp.stall = Some(std::time::Duration::from_secs(3));
            }
            resp.header("ETag", format!("\"{sha}\""))
                .header("Accept-Ranges", "bytes")
        }
        [owner, name, "resolve", rev, file @ ..] if !file.is_empty() => {
            let file = file.join("/");
            with_repo(st, req, owner, name, |repo| {
                let Some(b) = branch(repo, rev) else {
                    return Response::error(404, Some("RevisionNotFound"), "Invalid rev id");
                };
                let Some((_, data)) = b.files.iter().find(|(p, _)| *p == file) else {
                    return Response::error(404, Some("EntryNotFound"), "Entry not found")
                        .header("X-Repo-Commit", b.commit.clone());
                };
                if is_lfs(&file) {
                    let sha = sha256_hex(data);
                    Response::new(302)
                        .header("Location", format!("http://{cdn_addr}/cdn/{sha}"))
                        .header("X-Repo-Commit", b.commit.clone())
                        .header("X-Linked-Etag", format!("\"{sha}\""))
                        .header("X-Linked-Size", data.len().to_string())
                        .header("ETag", format!("\"{sha}\""))
                } else {
                    let mut r = Response::new(200)
                        .header("X-Repo-Commit", b.commit.clone())
                        .header("ETag", format!("\"{}\"", etag_small(data)));
                    r.body = data.clone();
                    r
                }
            })
        }
        _ => Response::error(404, None, "Not Found"),
    }
}

/// Small files are named by their git blob id on the real hub; any stable 40-hex id will do.
fn etag_small(data: &[u8]) -> String {
    sha256_hex(data)[..40].to_string()
}

fn branch<'a>(repo: &'a Repo, rev: &str) -> Option<&'a Branch> {
    repo.branches
        .iter()
        .find(|b| b.name == rev || b.commit == rev)
}

fn with_repo(
    st: &State,
    req: &Request,
    owner: &str,
    name: &str,
    f: impl FnOnce(&Repo) -> Response,
) -> Response {
    let Some(repo) = st.repos.get(&format!("{owner}/{name}")) else {
        return Response::error(404, Some("RepoNotFound"), "Repository not found");
    };
    if repo.private {
        let ok = match (&st.token, req.headers.get("authorization")) {
            (Some(t), Some(h)) => h == &format!("Bearer {t}"),
            _ => false,
        };
        if !ok {
            return Response::error(401, None, "Invalid credentials in Authorization header");
        }
    }
    f(repo)
}

/// `bytes=a-b` / `bytes=a-` → inclusive (a, b).
fn parse_range(h: &str, len: usize) -> Option<(usize, usize)> {
    let spec = h.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let a: usize = a.trim().parse().ok()?;
    let b: usize = if b.trim().is_empty() {
        len.checked_sub(1)?
    } else {
        b.trim().parse().ok()?
    };
    (a <= b && b < len).then_some((a, b))
}

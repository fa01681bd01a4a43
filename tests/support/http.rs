//! A small HTTP/1.1 server for the stateful test forges, with the fault
//! modes the effect ledger must survive. A framework server cannot drop a
//! connection after doing the work, so this one speaks HTTP itself (one
//! request per connection, `Connection: close`).
//!
//! Fault modes (each applies to the next N requests matching a method and
//! a path fragment):
//! - [`Fault::SlowAfter`]: does the work, then holds the answer until the
//!   client hangs up (its timeout), bounded at 30 s;
//! - [`Fault::ErrorAfter`]: does the work, then answers a 5xx;
//! - [`Fault::ResetAfter`]: does the work, then resets the connection;
//! - [`Fault::RefuseBefore`]: answers 503 without doing anything;
//! - [`Fault::Status`]: answers a given status and body without doing
//!   anything (429, 401, 409 … as the forge documents them).

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path as sent on the wire (percent-encoding preserved), no query.
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

impl Req {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn json(status: u16, v: serde_json::Value) -> Resp {
        Resp {
            status,
            body: v.to_string(),
            headers: Vec::new(),
        }
    }
    pub fn text(status: u16, body: &str) -> Resp {
        Resp {
            status,
            body: body.to_string(),
            headers: vec![("content-type".into(), "text/plain".into())],
        }
    }
}

/// What goes wrong with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    SlowAfter,
    ErrorAfter(u16),
    ResetAfter,
    RefuseBefore,
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
}

impl Fault {
    /// The four modes the fault matrix runs every action through.
    pub fn modes() -> [Fault; 4] {
        [
            Fault::SlowAfter,
            Fault::ErrorAfter(502),
            Fault::ResetAfter,
            Fault::RefuseBefore,
        ]
    }
    pub fn name(&self) -> String {
        match self {
            Fault::SlowAfter => "slow after the work".into(),
            Fault::ErrorAfter(s) => format!("{s} after the work"),
            Fault::ResetAfter => "reset after the work".into(),
            Fault::RefuseBefore => "refuse (503) before the work".into(),
            Fault::Status { status, .. } => format!("{status} before the work"),
        }
    }
}

#[derive(Clone)]
struct Armed {
    method: Option<String>,
    path_contains: String,
    fault: Fault,
    remaining: usize,
}

/// The request handler of a stateful forge.
pub type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

/// A running server: its address, requests and armed faults.
#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Req>>>,
    faults: Arc<Mutex<Vec<Armed>>>,
    /// Milliseconds every write waits after doing the work, before
    /// answering: widens the window a crash drill aims at.
    write_latency_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Server {
    pub async fn start(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = Server {
            addr: listener.local_addr().expect("addr"),
            requests: Arc::default(),
            faults: Arc::default(),
            write_latency_ms: Arc::default(),
        };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (s, h) = (s.clone(), handler.clone());
                tokio::spawn(async move { s.serve(sock, h).await });
            }
        });
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().expect("lock").clone()
    }

    /// Arms `fault` for the next `times` requests with this method (any
    /// when `None`) whose path contains `path_contains`.
    pub fn arm(&self, method: Option<&str>, path_contains: &str, fault: Fault, times: usize) {
        self.faults.lock().expect("lock").push(Armed {
            method: method.map(str::to_string),
            path_contains: path_contains.into(),
            fault,
            remaining: times,
        });
    }

    /// Every write (non-GET) waits `ms` after doing the work before answering.
    pub fn set_write_latency(&self, ms: u64) {
        self.write_latency_ms
            .store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// Disarms every fault.
    pub fn disarm(&self) {
        self.faults.lock().expect("lock").clear();
    }

    fn take_fault(&self, req: &Req) -> Option<Fault> {
        let mut faults = self.faults.lock().expect("lock");
        for f in faults.iter_mut() {
            let method_ok = f.method.as_deref().is_none_or(|m| m == req.method);
            if f.remaining > 0 && method_ok && req.path.contains(&f.path_contains) {
                f.remaining -= 1;
                return Some(f.fault.clone());
            }
        }
        None
    }

    async fn serve(&self, sock: TcpStream, handler: Handler) {
        let mut reader = BufReader::new(sock);
        let Some(req) = read_request(&mut reader).await else {
            return;
        };
        self.requests.lock().expect("lock").push(req.clone());
        let fault = self.take_fault(&req);
        let mut sock = reader.into_inner();
        let resp = match &fault {
            Some(Fault::RefuseBefore) => Resp::json(
                503,
                serde_json::json!({ "message": "503 Service Unavailable" }),
            ),
            Some(Fault::Status {
                status,
                headers,
                body,
            }) => Resp {
                status: *status,
                body: body.clone(),
                headers: headers.clone(),
            },
            _ => handler(&req),
        };
        let latency = self
            .write_latency_ms
            .load(std::sync::atomic::Ordering::SeqCst);
        if latency > 0 && req.method != "GET" {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        match fault {
            Some(Fault::SlowAfter) => {
                // The work is done; answer only after the client gave up.
                let mut buf = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_secs(30), sock.read(&mut buf)).await;
            }
            Some(Fault::ResetAfter) => {
                let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
                drop(sock);
            }
            Some(Fault::ErrorAfter(status)) => {
                let r = Resp::json(
                    status,
                    serde_json::json!({ "message": format!("{status} Bad Gateway") }),
                );
                let _ = write_response(&mut sock, &r).await;
            }
            _ => {
                let _ = write_response(&mut sock, &resp).await;
            }
        }
    }
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Req> {
    let mut line = String::new();
    reader.read_line(&mut line).await.ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).await.ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await.ok()?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let query = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some(Req {
        method,
        path,
        query,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: chrono::Utc::now(),
    })
}

async fn write_response(sock: &mut TcpStream, r: &Resp) -> std::io::Result<()> {
    let reason = match r.status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n",
        r.status,
        r.body.len()
    );
    if !r
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        head.push_str("content-type: application/json\r\n");
    }
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(r.body.as_bytes()).await?;
    sock.flush().await?;
    let _ = sock.shutdown().await;
    Ok(())
}

/// One page of a list as GitHub and GitLab serve it: `page` (from 1) and
/// `per_page` (default `default_per_page`, at most 100) from the query; a
/// `Link` header with `first`/`prev`/`next`/`last` as absolute URLs on the
/// host the client used, and GitLab's `X-Page`, `X-Per-Page`, `X-Next-Page`
/// (empty on the last page), `X-Prev-Page`, `X-Total`, `X-Total-Pages`.
pub fn page(req: &Req, items: Vec<serde_json::Value>, default_per_page: usize) -> Resp {
    let num = |k: &str| req.query.get(k).and_then(|v| v.parse::<usize>().ok());
    let per = num("per_page").unwrap_or(default_per_page).clamp(1, 100);
    let total = items.len();
    let pages = total.div_ceil(per).max(1);
    let page = num("page").unwrap_or(1).max(1);
    let body: Vec<serde_json::Value> = items.into_iter().skip((page - 1) * per).take(per).collect();
    let host = req.headers.get("host").cloned().unwrap_or_default();
    let at = |p: usize| {
        let mut q: Vec<String> = req
            .query
            .iter()
            .filter(|(k, _)| k.as_str() != "page")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        q.sort();
        q.push(format!("page={p}"));
        format!("<http://{host}{}?{}>", req.path, q.join("&"))
    };
    let mut links = vec![format!("{}; rel=\"first\"", at(1))];
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", at(page - 1)));
    }
    if page < pages {
        links.push(format!("{}; rel=\"next\"", at(page + 1)));
    }
    links.push(format!("{}; rel=\"last\"", at(pages)));
    let next = if page < pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    let prev = if page > 1 {
        (page - 1).to_string()
    } else {
        String::new()
    };
    let mut resp = Resp::json(200, serde_json::Value::Array(body));
    resp.headers = vec![
        ("link".into(), links.join(", ")),
        ("x-page".into(), page.to_string()),
        ("x-per-page".into(), per.to_string()),
        ("x-next-page".into(), next),
        ("x-prev-page".into(), prev),
        ("x-total".into(), total.to_string()),
        ("x-total-pages".into(), pages.to_string()),
    ];
    resp
}

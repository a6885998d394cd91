//! A fault-injecting HTTP proxy in front of the local S3 server: kiln talks to it as to
//! S3, and each test says which requests get a 503 SlowDown, a 500, or a response body
//! cut off mid-stream (the connection dropped), a slow response, or objects written
//! to the server before a request is forwarded. It also counts the response bytes it
//! serves per key, so a test can see what kiln fetched at the store layer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What to do to a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and S3 error code instead of forwarding.
    Status(u16, &'static str),
    /// Forward, then send only the first half of the response body and drop the
    /// connection.
    CutBody,
    /// Forward after waiting this many milliseconds (a slow store).
    Delay(u64),
    /// First write these objects (path as on the wire, body) to the server, then
    /// forward: the store changes while a request sequence (a paged listing) is under way.
    PutFirst(Vec<(String, String)>),
}

/// Which requests a fault applies to, and how many times.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: Option<Method>,
    /// A substring of the path (the key, percent-encoded as on the wire).
    pub path: Option<String>,
    /// A substring of the query string (`partNumber`, `uploads`).
    pub query: Option<String>,
    pub fault: Fault,
    /// How many matching requests get the fault; `None` means all of them.
    pub times: Option<usize>,
    /// Only one matching request in this many gets it, the first of each run of them
    /// (a steady fault rate).
    pub every: Option<usize>,
    /// Matching requests seen, for `every`.
    seen: usize,
}

impl Rule {
    pub fn new(fault: Fault) -> Self {
        Rule {
            method: None,
            path: None,
            query: None,
            fault,
            times: None,
            every: None,
            seen: 0,
        }
    }
    pub fn every(mut self, n: usize) -> Self {
        self.every = Some(n.max(1));
        self
    }
    pub fn method(mut self, m: Method) -> Self {
        self.method = Some(m);
        self
    }
    pub fn path(mut self, p: &str) -> Self {
        self.path = Some(p.to_string());
        self
    }
    pub fn query(mut self, q: &str) -> Self {
        self.query = Some(q.to_string());
        self
    }
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    injected: usize,
    requests: usize,
    /// Response body bytes of successful GETs, by request path.
    served: HashMap<String, u64>,
}

/// The proxy; it runs until dropped.
pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    _runtime: tokio::runtime::Runtime,
}

type Body = BoxBody<Bytes, std::io::Error>;

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 forwarding to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let state = Arc::new(Mutex::new(State::default()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let addr: SocketAddr = listener.local_addr().expect("proxy addr");
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let upstream = upstream.trim_end_matches('/').to_string();
        {
            let state = state.clone();
            runtime.spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (state, client, upstream) =
                        (state.clone(), client.clone(), upstream.clone());
                    #[expect(
                        clippy::disallowed_methods,
                        reason = "one connection; the proxy's runtime ends them all when dropped"
                    )]
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            handle(req, state.clone(), client.clone(), upstream.clone())
                        });
                        // A cut body ends the connection with an error: expected.
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        }
        FaultProxy {
            endpoint: format!("http://{addr}"),
            state,
            _runtime: runtime,
        }
    }

    pub fn add(&self, rule: Rule) {
        self.state.lock().expect("state").rules.push(rule);
    }

    pub fn clear(&self) {
        self.state.lock().expect("state").rules.clear();
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.state.lock().expect("state").injected
    }

    /// Response bytes served for GETs of paths containing `key`.
    pub fn served(&self, key: &str) -> u64 {
        let state = self.state.lock().expect("state");
        state
            .served
            .iter()
            .filter(|(p, _)| p.contains(key))
            .map(|(_, n)| n)
            .sum()
    }
}

/// The first rule matching the request that still has uses left; uses one.
fn pick(state: &Mutex<State>, method: &Method, path: &str, query: &str) -> Option<Fault> {
    let mut st = state.lock().expect("state");
    st.requests += 1;
    let mut chosen = None;
    for (i, r) in st.rules.iter_mut().enumerate() {
        let matches = r.method.as_ref().is_none_or(|m| m == method)
            && r.path.as_ref().is_none_or(|p| path.contains(p.as_str()))
            && r.query.as_ref().is_none_or(|q| query.contains(q.as_str()))
            && r.times != Some(0);
        if !matches {
            continue;
        }
        if let Some(n) = r.every {
            // The 1st, (n+1)th, (2n+1)th... matching request.
            r.seen += 1;
            if (r.seen - 1) % n != 0 {
                continue;
            }
        }
        chosen = Some(i);
        break;
    }
    let rule = &mut st.rules[chosen?];
    if let Some(n) = &mut rule.times {
        *n -= 1;
    }
    let fault = rule.fault.clone();
    st.injected += 1;
    Some(fault)
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: String,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let fault = pick(&state, &method, &path, &query);
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(error(502, "ProxyError", &e.to_string())),
    };
    if let Some(Fault::Status(status, code)) = fault {
        return Ok(error(status, code, "injected by the test proxy"));
    }
    if let Some(Fault::Delay(ms)) = fault {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if let Some(Fault::PutFirst(objects)) = &fault {
        for (path, body) in objects {
            let put = Request::builder()
                .method(Method::PUT)
                .uri(format!("{upstream}{path}"))
                .body(Full::new(Bytes::from(body.clone())));
            let Ok(put) = put else {
                return Ok(error(502, "ProxyError", "bad PUT"));
            };
            match client.request(put).await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    return Ok(error(
                        502,
                        "ProxyError",
                        &format!("PUT {path}: {}", r.status()),
                    ));
                }
                Err(e) => return Ok(error(502, "ProxyError", &e.to_string())),
            }
        }
    }
    let uri = format!(
        "{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut forward = Request::builder().method(parts.method).uri(uri);
    for (k, v) in &parts.headers {
        forward = forward.header(k, v);
    }
    let Ok(forward) = forward.body(Full::new(body)) else {
        return Ok(error(502, "ProxyError", "bad request"));
    };
    let response = match client.request(forward).await {
        Ok(r) => r,
        Err(e) => return Ok(error(502, "ProxyError", &e.to_string())),
    };
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(error(502, "ProxyError", &e.to_string())),
    };
    if method == Method::GET && parts.status.is_success() {
        *state
            .lock()
            .expect("state")
            .served
            .entry(path.clone())
            .or_default() += body.len() as u64;
    }
    let body = if let Some(Fault::CutBody) = fault {
        // The headers promise the whole body; half of it arrives, then the connection drops.
        let half = body.slice(..body.len() / 2);
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(half)),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "cut by the test proxy",
            )),
        ];
        StreamBody::new(futures::stream::iter(frames)).boxed()
    } else {
        full(body)
    };
    Ok(Response::from_parts(parts, body))
}

fn error(status: u16, code: &str, message: &str) -> Response<Body> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message></Error>"
    );
    let mut r = Response::new(full(xml));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    r.headers_mut()
        .insert("content-type", "application/xml".parse().expect("header"));
    r
}

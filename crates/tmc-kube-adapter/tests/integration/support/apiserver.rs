//! An in-process Kubernetes API double, spoken to over HTTP on 127.0.0.1 by a real `kube::Client`.
//!
//! It implements the subset of the API the controllers use, for any resource path:
//! - list and watch with `resourceVersion`, bookmarks, `timeoutSeconds`, and 410 Gone for a
//!   resourceVersion older than the retained history;
//! - get, create (409 AlreadyExists), replace (409 on a resourceVersion conflict), delete;
//! - patch: server-side apply with managed fields and conflicts (409 unless `force`), JSON merge
//!   and strategic merge (as JSON merge), a `metadata.resourceVersion` precondition;
//! - the `status` subresource (writes to the main resource leave status alone and vice versa);
//! - kcp addressing: `/clusters/<name>/...` per logical cluster (objects get the `kcp.io/cluster`
//!   annotation) and `/clusters/*` lists and watches across all of them;
//! - discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`) for a fixed set of kinds;
//! - fault injection: answer matching requests with a given status code, and drop every open
//!   watch connection.

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{body::Frame, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Notify};

type Body = BoxBody<Bytes, Infallible>;

/// Resources whose `status` is a subresource.
const STATUS_RESOURCES: [&str; 6] =
    ["workloadplacements", "clusterregistrations", "deployments", "statefulsets", "replicasets", "jobs"];

/// Which logical cluster a request addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ClusterSel {
    /// No `/clusters/` prefix: plain Kubernetes (cluster `""`).
    Plain,
    /// `/clusters/<name>`.
    Named(String),
    /// `/clusters/*`.
    Wildcard,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ObjKey {
    cluster: String,
    group: String,
    resource: String,
    namespace: String,
    name: String,
}

#[derive(Clone, Debug)]
struct Route {
    cluster: ClusterSel,
    group: String,
    version: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

impl Route {
    fn cluster_name(&self) -> String {
        match &self.cluster {
            ClusterSel::Named(n) => n.clone(),
            _ => String::new(),
        }
    }

    fn key(&self, name: &str) -> ObjKey {
        ObjKey {
            cluster: self.cluster_name(),
            group: self.group.clone(),
            resource: self.resource.clone(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: name.to_string(),
        }
    }

    fn matches(&self, k: &ObjKey) -> bool {
        let cluster_ok = match &self.cluster {
            ClusterSel::Plain => k.cluster.is_empty(),
            ClusterSel::Named(n) => &k.cluster == n,
            ClusterSel::Wildcard => !k.cluster.is_empty(),
        };
        cluster_ok
            && k.group == self.group
            && k.resource == self.resource
            && self.namespace.as_ref().is_none_or(|ns| &k.namespace == ns)
    }

    fn has_status(&self) -> bool {
        STATUS_RESOURCES.contains(&self.resource.as_str())
    }
}

#[derive(Clone, Debug)]
struct Stored {
    object: Value,
    /// `manager|operation` to the JSON pointers of the leaves it owns.
    managed: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Clone, Debug)]
struct LogEntry {
    rv: u64,
    key: ObjKey,
    kind: &'static str,
    object: Value,
}

/// A request the double answered, for assertions.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// HTTP method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Content type of the body.
    pub content_type: String,
    /// Response status.
    pub status: u16,
}

/// A fault: matching requests are answered with `status` while `remaining > 0`.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Only this method (any when `None`).
    pub method: Option<Method>,
    /// Only paths containing this.
    pub path_contains: String,
    /// Only watch requests (`Some(true)`), only non-watch (`Some(false)`), or both.
    pub watch: Option<bool>,
    /// The status to answer.
    pub status: u16,
    /// How many more requests to fail.
    pub remaining: usize,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    uid: u64,
    objects: BTreeMap<ObjKey, Stored>,
    log: Vec<LogEntry>,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted: u64,
    requests: Vec<Recorded>,
    faults: Vec<Fault>,
}

struct State {
    inner: Mutex<Inner>,
    changed: Notify,
    drop_watches: tokio::sync::watch::Sender<u64>,
    bookmark_every: Duration,
}

/// The running API double.
pub struct ApiServer {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn status_body(code: u16, reason: &str, message: impl Into<String>) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "reason": reason, "code": code,
    })
}

fn reason_of(code: u16) -> &'static str {
    match code {
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        _ => "Unknown",
    }
}

fn full(code: u16, body: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

fn error(code: u16, message: impl Into<String>) -> Response<Body> {
    full(code, &status_body(code, reason_of(code), message))
}

fn parse_route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (cluster, rest) = match segs.as_slice() {
        ["clusters", "*", rest @ ..] => (ClusterSel::Wildcard, rest),
        ["clusters", name, rest @ ..] => (ClusterSel::Named((*name).to_string()), rest),
        rest => (ClusterSel::Plain, rest),
    };
    let (group, version, rest) = match rest {
        ["api", v, rest @ ..] => (String::new(), (*v).to_string(), rest),
        ["apis", g, v, rest @ ..] => ((*g).to_string(), (*v).to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r, rest @ ..] => (Some((*ns).to_string()), [&[*r][..], rest].concat()),
        rest => (None, rest.to_vec()),
    };
    let resource = (*rest.first()?).to_string();
    Some(Route {
        cluster,
        group,
        version,
        resource,
        namespace,
        name: rest.get(1).map(|s| (*s).to_string()),
        sub: rest.get(2).map(|s| (*s).to_string()),
    })
}

fn query_map(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

const SYSTEM_FIELDS: [&str; 9] = [
    "/apiVersion",
    "/kind",
    "/metadata/name",
    "/metadata/namespace",
    "/metadata/resourceVersion",
    "/metadata/uid",
    "/metadata/managedFields",
    "/metadata/creationTimestamp",
    "/metadata/generation",
];

/// Leaf paths (JSON pointers) and values of `v`: objects are descended, everything else
/// (arrays included, as atomic lists) is a leaf; empty objects are leaves.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                leaves(child, &format!("{prefix}/{}", escape(k)), out);
            }
        }
        other => {
            if !prefix.is_empty() {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Main { has_status: bool },
    Status,
}

fn scoped_leaves(v: &Value, scope: Scope) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    leaves(v, "", &mut all);
    all.retain(|p, _| {
        !SYSTEM_FIELDS.iter().any(|s| p == s || p.starts_with(&format!("{s}/")))
            && match scope {
                Scope::Status => p == "/status" || p.starts_with("/status/"),
                Scope::Main { has_status } => !(has_status && (p == "/status" || p.starts_with("/status/"))),
            }
    });
    all
}

fn set_ptr(root: &mut Value, ptr: &str, value: Value) {
    let tokens: Vec<String> = ptr.split('/').skip(1).map(unescape).collect();
    let mut cur = root;
    for (i, t) in tokens.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(serde_json::Map::new());
        }
        let Value::Object(map) = cur else { return };
        if i + 1 == tokens.len() {
            map.insert(t.clone(), value);
            return;
        }
        cur = map.entry(t.clone()).or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
}

fn remove_ptr(root: &mut Value, ptr: &str) {
    let tokens: Vec<String> = ptr.split('/').skip(1).map(unescape).collect();
    let Some((last, parents)) = tokens.split_last() else { return };
    let mut cur = root;
    for t in parents {
        match cur.get_mut(t) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Value::Object(map) = cur {
        map.remove(last);
    }
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn spec_of(v: &Value) -> Value {
    let mut c = v.clone();
    if let Value::Object(m) = &mut c {
        m.remove("metadata");
        m.remove("status");
    }
    c
}

fn now_rfc3339() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

/// Discovery documents for a fixed set of kinds.
fn discovery(path: &str) -> Option<Value> {
    let core = json!([
        {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": ["get", "list", "watch", "create"]},
        {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node", "verbs": ["get", "list", "watch"]},
        {"name": "secrets", "singularName": "secret", "namespaced": true, "kind": "Secret", "verbs": ["get", "list", "watch"]},
        {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace", "verbs": ["get", "list"]},
    ]);
    let apps = json!([
        {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "verbs": ["get", "list", "watch", "create", "patch"]},
        {"name": "deployments/status", "singularName": "", "namespaced": true, "kind": "Deployment", "verbs": ["get", "patch"]},
        {"name": "statefulsets", "singularName": "statefulset", "namespaced": true, "kind": "StatefulSet", "verbs": ["get", "list", "watch"]},
    ]);
    let trimmed = path.trim_end_matches('/');
    let trimmed = match trimmed.strip_prefix("/clusters/") {
        Some(rest) => rest.find('/').map(|i| &rest[i..]).unwrap_or(""),
        None => trimmed,
    };
    match trimmed {
        "/api" => Some(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})),
        "/apis" => Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
             "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}
        ]})),
        "/api/v1" => {
            Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": core}))
        }
        "/apis/apps/v1" => {
            Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": apps}))
        }
        _ => None,
    }
}

impl ApiServer {
    /// Starts the double on a random port of 127.0.0.1.
    pub async fn start() -> ApiServer {
        Self::start_with_bookmarks(Duration::from_millis(500)).await
    }

    /// Starts the double, sending watch bookmarks at the given interval.
    pub async fn start_with_bookmarks(bookmark_every: Duration) -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            inner: Mutex::new(Inner { rv: 100, ..Inner::default() }),
            changed: Notify::new(),
            drop_watches: tokio::sync::watch::channel(0).0,
            bookmark_every,
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(st, req).await) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        ApiServer { addr, state, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.state.inner.lock().unwrap_or_else(|e| e.into_inner()).faults.push(fault);
    }

    /// Closes every open watch connection (clients see the stream end).
    pub fn drop_watches(&self) {
        self.state.drop_watches.send_modify(|e| *e += 1);
    }

    /// Forgets the watch history: watches from an older resourceVersion get 410 Gone.
    pub fn compact(&self) {
        let mut inner = self.state.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.compacted = inner.rv;
        inner.log.clear();
    }

    /// The requests answered so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.inner.lock().unwrap_or_else(|e| e.into_inner()).requests.clone()
    }

    /// Every stored object of a resource (`group`, plural) in a logical cluster (`""` for plain).
    pub fn objects(&self, cluster: &str, group: &str, resource: &str) -> Vec<Value> {
        let inner = self.state.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .objects
            .iter()
            .filter(|(k, _)| k.cluster == cluster && k.group == group && k.resource == resource)
            .map(|(_, s)| s.object.clone())
            .collect()
    }
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let content_type =
        req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let q = query_map(&query);
    let is_watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(400, "unreadable body"),
    };

    let injected = {
        let mut inner = st.inner.lock().unwrap_or_else(|e| e.into_inner());
        let hit = inner.faults.iter_mut().find(|f| {
            f.remaining > 0
                && f.method.as_ref().is_none_or(|m| *m == method)
                && path.contains(&f.path_contains)
                && f.watch.is_none_or(|w| w == is_watch)
        });
        hit.map(|f| {
            f.remaining -= 1;
            f.status
        })
    };
    let response = match injected {
        Some(code) => error(code, format!("injected fault {code}")),
        None => route(&st, &method, &path, &q, &content_type, &body, is_watch),
    };
    st.inner.lock().unwrap_or_else(|e| e.into_inner()).requests.push(Recorded {
        method,
        path,
        query,
        content_type,
        status: response.status().as_u16(),
    });
    response
}

fn route(
    st: &Arc<State>,
    method: &Method,
    path: &str,
    q: &BTreeMap<String, String>,
    content_type: &str,
    body: &Bytes,
    is_watch: bool,
) -> Response<Body> {
    if method == Method::GET
        && let Some(doc) = discovery(path)
    {
        return full(200, &doc);
    }
    let Some(route) = parse_route(path) else { return error(404, format!("no route for {path}")) };
    let parsed_body = || -> Result<Value, Response<Body>> {
        serde_json::from_slice(body).map_err(|e| error(400, format!("body is not JSON: {e}")))
    };
    match (method.clone(), route.name.clone(), route.sub.as_deref()) {
        (Method::GET, None, None) if is_watch => watch(st, &route, q),
        (Method::GET, None, None) => list(st, &route),
        (Method::GET, Some(name), None | Some("status")) => get(st, &route, &name),
        (Method::POST, None, None) => match parsed_body() {
            Ok(b) => create(st, &route, b, q),
            Err(r) => r,
        },
        (Method::PUT, Some(name), sub) => match parsed_body() {
            Ok(b) => replace(st, &route, &name, b, sub == Some("status"), q),
            Err(r) => r,
        },
        (Method::PATCH, Some(name), sub) => match parsed_body() {
            Ok(b) => patch(st, &route, &name, b, content_type, sub == Some("status"), q),
            Err(r) => r,
        },
        (Method::DELETE, Some(name), None) => delete(st, &route, &name),
        _ => error(405, format!("{method} {path} is not supported by the double")),
    }
}

fn kind_for(route: &Route, inner: &Inner) -> String {
    inner
        .objects
        .iter()
        .find(|(k, _)| k.group == route.group && k.resource == route.resource)
        .and_then(|(_, s)| s.object.get("kind").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

fn api_version(route: &Route) -> String {
    if route.group.is_empty() { route.version.clone() } else { format!("{}/{}", route.group, route.version) }
}

fn list(st: &Arc<State>, route: &Route) -> Response<Body> {
    let inner = st.inner.lock().unwrap_or_else(|e| e.into_inner());
    let items: Vec<Value> =
        inner.objects.iter().filter(|(k, _)| route.matches(k)).map(|(_, s)| s.object.clone()).collect();
    let kind = kind_for(route, &inner);
    full(
        200,
        &json!({
            "kind": format!("{kind}List"), "apiVersion": api_version(route),
            "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items,
        }),
    )
}

fn get(st: &Arc<State>, route: &Route, name: &str) -> Response<Body> {
    let inner = st.inner.lock().unwrap_or_else(|e| e.into_inner());
    match inner.objects.get(&route.key(name)) {
        Some(s) => full(200, &s.object),
        None => error(404, format!("{} {name:?} not found", route.resource)),
    }
}

/// Records a change: bumps the resourceVersion, stores or removes the object, appends to the log.
fn commit(inner: &mut Inner, key: ObjKey, kind: &'static str, mut stored: Stored) -> Value {
    inner.rv += 1;
    let rv = inner.rv;
    set_ptr(&mut stored.object, "/metadata/resourceVersion", Value::String(rv.to_string()));
    let object = stored.object.clone();
    if kind == "DELETED" {
        inner.objects.remove(&key);
    } else {
        inner.objects.insert(key.clone(), stored);
    }
    inner.log.push(LogEntry { rv, key, kind, object: object.clone() });
    object
}

fn take_ownership(managed: &mut BTreeMap<String, BTreeSet<String>>, owner: &str, changed: &BTreeSet<String>) {
    for (m, owned) in managed.iter_mut() {
        if m != owner {
            owned.retain(|p| {
                !changed.iter().any(|c| p == c || p.starts_with(&format!("{c}/")) || c.starts_with(&format!("{p}/")))
            });
        }
    }
    managed.entry(owner.to_string()).or_default().extend(changed.iter().cloned());
    managed.retain(|_, owned| !owned.is_empty());
}

/// Leaves that differ between `old` and `new`, within `scope`.
fn changed_leaves(old: &Value, new: &Value, scope: Scope) -> BTreeSet<String> {
    let a = scoped_leaves(old, scope);
    let b = scoped_leaves(new, scope);
    let mut out: BTreeSet<String> = b.iter().filter(|(p, v)| a.get(*p) != Some(v)).map(|(p, _)| p.clone()).collect();
    out.extend(a.keys().filter(|p| !b.contains_key(*p)).cloned());
    out
}

fn drop_removed(managed: &mut BTreeMap<String, BTreeSet<String>>, object: &Value) {
    let mut present = BTreeMap::new();
    leaves(object, "", &mut present);
    for owned in managed.values_mut() {
        owned.retain(|p| present.contains_key(p));
    }
    managed.retain(|_, owned| !owned.is_empty());
}

fn new_uid(inner: &mut Inner) -> String {
    inner.uid += 1;
    format!("00000000-0000-4000-8000-{:012x}", inner.uid)
}

fn create(st: &Arc<State>, route: &Route, mut body: Value, q: &BTreeMap<String, String>) -> Response<Body> {
    let mut inner = st.inner.lock().unwrap_or_else(|e| e.into_inner());
    let name = body.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string);
    let name = match name {
        Some(n) if !n.is_empty() => n,
        _ => match body.pointer("/metadata/generateName").and_then(Value::as_str) {
            Some(prefix) => {
                inner.uid += 1;
                format!("{prefix}{:05x}", inner.uid)
            }
            None => return error(422, "metadata.name is required"),
        },
    };
    let key = route.key(&name);
    if inner.objects.contains_key(&key) {
        return full(409, &status_body(409, "AlreadyExists", format!("{} {name:?} already exists", route.resource)));
    }
    if route.has_status()
        && let Value::Object(m) = &mut body
    {
        m.remove("status");
    }
    let uid = new_uid(&mut inner);
    set_ptr(&mut body, "/metadata/name", Value::String(name.clone()));
    if let Some(ns) = &route.namespace {
        set_ptr(&mut body, "/metadata/namespace", Value::String(ns.clone()));
    }
    set_ptr(&mut body, "/metadata/uid", Value::String(uid));
    set_ptr(&mut body, "/metadata/creationTimestamp", Value::String(now_rfc3339()));
    set_ptr(&mut body, "/metadata/generation", json!(1));
    if !key.cluster.is_empty() {
        set_ptr(&mut body, "/metadata/annotations/kcp.io~1cluster", Value::String(key.cluster.clone()));
    }
    let manager = format!("{}|Update", q.get("fieldManager").cloned().unwrap_or_else(|| "unknown".into()));
    let mut managed = BTreeMap::new();
    let owned: BTreeSet<String> =
        scoped_leaves(&body, Scope::Main { has_status: route.has_status() }).into_keys().collect();
    take_ownership(&mut managed, &manager, &owned);
    let object = commit(&mut inner, key, "ADDED", Stored { object: body, managed });
    drop(inner);
    st.changed.notify_waiters();
    full(201, &object)
}

fn check_precondition(body: &Value, current: &Value) -> Result<(), Response<Body>> {
    if let Some(want) = body.pointer("/metadata/resourceVersion").and_then(Value::as_str)
        && !want.is_empty()
        && Some(want) != current.pointer("/metadata/resourceVersion").and_then(Value::as_str)
    {
        return Err(full(
            409,
            &status_body(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            ),
        ));
    }
    Ok(())
}

fn finish_update(
    st: &Arc<State>,
    mut inner: std::sync::MutexGuard<'_, Inner>,
    key: ObjKey,
    old: &Value,
    mut stored: Stored,
    status: bool,
    created: bool,
) -> Response<Body> {
    // System fields are the server's.
    for field in ["uid", "creationTimestamp", "generation", "name", "namespace"] {
        if let Some(v) = old.pointer(&format!("/metadata/{field}")) {
            set_ptr(&mut stored.object, &format!("/metadata/{field}"), v.clone());
        }
    }
    if !status && spec_of(old) != spec_of(&stored.object) {
        let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        set_ptr(&mut stored.object, "/metadata/generation", json!(generation));
    }
    if !created && stored.object == *old {
        // No-op writes do not bump the resourceVersion.
        inner.objects.insert(key, stored.clone());
        return full(200, &stored.object);
    }
    let object = commit(&mut inner, key, if created { "ADDED" } else { "MODIFIED" }, stored);
    drop(inner);
    st.changed.notify_waiters();
    full(if created { 201 } else { 200 }, &object)
}

fn replace(
    st: &Arc<State>,
    route: &Route,
    name: &str,
    body: Value,
    status: bool,
    q: &BTreeMap<String, String>,
) -> Response<Body> {
    let inner = st.inner.lock().unwrap_or_else(|e| e.into_inner());
    let key = route.key(name);
    let Some(current) = inner.objects.get(&key).cloned() else {
        return error(404, format!("{} {name:?} not found", route.resource));
    };
    if let Err(r) = check_precondition(&body, &current.object) {
        return r;
    }
    let mut object = current.object.clone();
    if status {
        set_ptr(&mut object, "/status", body.get("status").cloned().unwrap_or(json!({})));
    } else {
        let keep_status = current.object.get("status").cloned();
        object = body;
        if route.has_status() {
            if let Value::Object(m) = &mut object {
                m.remove("status");
            }
            if let Some(s) = keep_status {
                set_ptr(&mut object, "/status", s);
            }
        }
    }
    let scope = if status { Scope::Status } else { Scope::Main { has_status: route.has_status() } };
    let mut managed = current.managed.clone();
    let changed = changed_leaves(&current.object, &object, scope);
    let manager = format!("{}|Update", q.get("fieldManager").cloned().unwrap_or_else(|| "unknown".into()));
    take_ownership(&mut managed, &manager, &changed);
    drop_removed(&mut managed, &object);
    finish_update(st, inner, key, &current.object, Stored { object, managed }, status, false)
}

#[allow(clippy::too_many_arguments)]
fn patch(
    st: &Arc<State>,
    route: &Route,
    name: &str,
    body: Value,
    content_type: &str,
    status: bool,
    q: &BTreeMap<String, String>,
) -> Response<Body> {
    let mut inner = st.inner.lock().unwrap_or_else(|e| e.into_inner());
    let key = route.key(name);
    let current = inner.objects.get(&key).cloned();
    let scope = if status { Scope::Status } else { Scope::Main { has_status: route.has_status() } };
    let manager_name = q.get("fieldManager").cloned().unwrap_or_else(|| "unknown".into());
    let ct = content_type.split(';').next().unwrap_or_default().trim();
    match ct {
        "application/apply-patch+yaml" => {
            if manager_name == "unknown" {
                return error(422, "fieldManager is required for apply requests");
            }
            let force = q.get("force").is_some_and(|f| f == "true");
            let (old, managed, created) = match current {
                Some(c) => {
                    if let Err(r) = check_precondition(&body, &c.object) {
                        return r;
                    }
                    (c.object, c.managed, false)
                }
                None if status => return error(404, format!("{} {name:?} not found", route.resource)),
                None => {
                    let mut skeleton = json!({"apiVersion": body.get("apiVersion").cloned().unwrap_or(Value::Null),
                                              "kind": body.get("kind").cloned().unwrap_or(Value::Null),
                                              "metadata": {"name": name}});
                    let uid = new_uid(&mut inner);
                    set_ptr(&mut skeleton, "/metadata/uid", Value::String(uid));
                    set_ptr(&mut skeleton, "/metadata/creationTimestamp", Value::String(now_rfc3339()));
                    set_ptr(&mut skeleton, "/metadata/generation", json!(1));
                    if let Some(ns) = &route.namespace {
                        set_ptr(&mut skeleton, "/metadata/namespace", Value::String(ns.clone()));
                    }
                    if !route.cluster_name().is_empty() {
                        set_ptr(
                            &mut skeleton,
                            "/metadata/annotations/kcp.io~1cluster",
                            Value::String(route.cluster_name()),
                        );
                    }
                    (skeleton, BTreeMap::new(), true)
                }
            };
            apply_and_finish(st, inner, route, key, old, managed, body, &manager_name, force, scope, status, created)
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            let Some(current) = current else { return error(404, format!("{} {name:?} not found", route.resource)) };
            if let Err(r) = check_precondition(&body, &current.object) {
                return r;
            }
            let mut object = current.object.clone();
            let mut effective = body.clone();
            if let Value::Object(m) = &mut effective {
                if let Some(Value::Object(meta)) = m.get_mut("metadata") {
                    meta.remove("resourceVersion");
                }
                if status {
                    m.retain(|k, _| k == "status");
                } else if route.has_status() {
                    m.remove("status");
                }
            }
            merge_patch(&mut object, &effective);
            let mut managed = current.managed.clone();
            let changed = changed_leaves(&current.object, &object, scope);
            take_ownership(&mut managed, &format!("{manager_name}|Update"), &changed);
            drop_removed(&mut managed, &object);
            finish_update(st, inner, key, &current.object, Stored { object, managed }, status, false)
        }
        other => error(415, format!("unsupported patch type {other:?}")),
    }
}

#[allow(clippy::too_many_arguments)]
fn apply_and_finish(
    st: &Arc<State>,
    inner: std::sync::MutexGuard<'_, Inner>,
    route: &Route,
    key: ObjKey,
    old: Value,
    mut managed: BTreeMap<String, BTreeSet<String>>,
    body: Value,
    manager_name: &str,
    force: bool,
    scope: Scope,
    status: bool,
    created: bool,
) -> Response<Body> {
    let _ = route;
    let manager = format!("{manager_name}|Apply");
    let applied = scoped_leaves(&body, scope);
    if !force {
        let mut conflicts = Vec::new();
        for (p, v) in &applied {
            let current = old.pointer(p);
            if current.is_some_and(|c| c != v) {
                for (m, owned) in &managed {
                    if m != &manager && owned.contains(p) {
                        conflicts.push(format!("conflict with {:?}: {p}", m.split('|').next().unwrap_or_default()));
                    }
                }
            }
        }
        if !conflicts.is_empty() {
            return full(
                409,
                &status_body(
                    409,
                    "Conflict",
                    format!("Apply failed with {} conflict(s): {}", conflicts.len(), conflicts.join("; ")),
                ),
            );
        }
    }
    let mut object = old.clone();
    let previously: BTreeSet<String> = managed.get(&manager).cloned().unwrap_or_default();
    for p in previously.iter().filter(|p| !applied.contains_key(*p)) {
        let shared = managed.iter().any(|(m, owned)| m != &manager && owned.contains(p));
        if !shared {
            remove_ptr(&mut object, p);
        }
    }
    for (p, v) in &applied {
        set_ptr(&mut object, p, v.clone());
    }
    // Fields whose value this apply changed leave their other owners.
    let changed: BTreeSet<String> =
        applied.iter().filter(|(p, v)| old.pointer(p) != Some(v)).map(|(p, _)| p.clone()).collect();
    for (m, owned) in managed.iter_mut() {
        if m != &manager {
            owned.retain(|p| !changed.contains(p));
        }
    }
    managed.insert(manager, applied.keys().cloned().collect());
    managed.retain(|_, owned| !owned.is_empty());
    drop_removed(&mut managed, &object);
    finish_update(st, inner, key, &old, Stored { object, managed }, status, created)
}

fn delete(st: &Arc<State>, route: &Route, name: &str) -> Response<Body> {
    let mut inner = st.inner.lock().unwrap_or_else(|e| e.into_inner());
    let key = route.key(name);
    let Some(current) = inner.objects.get(&key).cloned() else {
        return error(404, format!("{} {name:?} not found", route.resource));
    };
    let object = commit(&mut inner, key, "DELETED", current);
    drop(inner);
    st.changed.notify_waiters();
    full(200, &object)
}

fn watch(st: &Arc<State>, route: &Route, q: &BTreeMap<String, String>) -> Response<Body> {
    let from: Option<u64> =
        q.get("resourceVersion").filter(|v| !v.is_empty() && *v != "0").and_then(|v| v.parse().ok());
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).unwrap_or(300);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(256);
    let st = st.clone();
    let route = route.clone();
    let kind = kind_for(&route, &st.inner.lock().unwrap_or_else(|e| e.into_inner()));
    let api_version = api_version(&route);
    tokio::spawn(async move {
        let send = |v: Value| {
            let tx = tx.clone();
            async move { tx.send(Ok(Frame::data(Bytes::from(format!("{v}\n"))))).await.is_ok() }
        };
        let mut dropped = st.drop_watches.subscribe();
        dropped.borrow_and_update();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        // Starting point.
        let (gone, initial, start) = {
            let inner = st.inner.lock().unwrap_or_else(|e| e.into_inner());
            match from {
                Some(rv) if rv < inner.compacted => (true, Vec::new(), rv),
                Some(rv) => (false, Vec::new(), rv),
                None => {
                    let initial: Vec<Value> = inner
                        .objects
                        .iter()
                        .filter(|(k, _)| route.matches(k))
                        .map(|(_, s)| json!({"type": "ADDED", "object": s.object}))
                        .collect();
                    (false, initial, inner.rv)
                }
            }
        };
        if gone {
            let status = status_body(410, "Expired", format!("too old resource version: {start}"));
            let _ = send(json!({"type": "ERROR", "object": status})).await;
            return;
        }
        for ev in initial {
            if !send(ev).await {
                return;
            }
        }
        let mut last = start;
        loop {
            let notified = st.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (events, current) = {
                let inner = st.inner.lock().unwrap_or_else(|e| e.into_inner());
                let events: Vec<LogEntry> =
                    inner.log.iter().filter(|e| e.rv > last && route.matches(&e.key)).cloned().collect();
                (events, inner.rv)
            };
            for e in events {
                last = last.max(e.rv);
                if !send(json!({"type": e.kind, "object": e.object})).await {
                    return;
                }
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(st.bookmark_every) => {
                    if bookmarks {
                        last = last.max(current);
                        let bm = json!({"type": "BOOKMARK", "object": {
                            "kind": kind, "apiVersion": api_version,
                            "metadata": {"resourceVersion": last.to_string()}}});
                        if !send(bm).await {
                            return;
                        }
                    }
                }
                _ = dropped.changed() => return,
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

//! The REST API: config documents with versions, rollback, snapshot long-poll for
//! dataplanes, and the fleet's status. Errors are OpenAI-style JSON, mapped here only.

use crate::store::{Store, StoreError};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// The committed OpenAPI document (`admin/openapi.json`); a test keeps it in step with
/// the router.
pub const OPENAPI: &str = include_str!("../openapi.json");

#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeInfo {
    pub name: String,
    /// Version the node last reported as applied (0: none yet).
    pub version_applied: u64,
    pub last_error: Option<String>,
    /// Unix milliseconds of the node's last poll or report.
    pub last_seen_ms: u64,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub token: Arc<String>,
    pub version: Arc<watch::Sender<u64>>,
    pub nodes: Arc<Mutex<BTreeMap<String, NodeInfo>>>,
    pub max_wait: Duration,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/config", get(get_config).put(put_config))
        .route("/v1/config/versions", get(list_versions))
        .route("/v1/config/versions/{n}", get(get_version))
        .route("/v1/config/rollback/{n}", post(rollback))
        .route("/v1/snapshot", get(snapshot))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/{name}/status", post(node_status))
        .merge(crate::entities::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/openapi.json",
            get(|| async { json_text(OPENAPI.to_string()) }),
        )
        .merge(api)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .with_state(state)
}

/// An API error: status, OpenAI-style `code`, message, and for config errors the JSON
/// path of the offending field.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    path: Option<String>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            path: None,
        }
    }

    pub(crate) fn internal(message: String) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 422 for an entity body that does not parse.
    pub(crate) fn invalid(path: String, message: String) -> ApiError {
        ApiError::invalid_config(path, message)
    }

    fn invalid_config(path: String, message: String) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_config",
            message,
            path: Some(path),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "version_conflict", e.to_string())
            }
            StoreError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "version_not_found", e.to_string())
            }
            StoreError::Db(_) => {
                tracing::error!(error = %e, "store failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_error",
                    "the config store failed",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let typ = if self.status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        let body = json!({"error": {
            "message": self.message,
            "type": typ,
            "code": self.code,
            "path": self.path,
        }});
        (self.status, Json(body)).into_response()
    }
}

/// Every API call needs `Authorization: Bearer <token>`, compared in constant time.
async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), st.token.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "missing or invalid admin token (Authorization: Bearer …)",
        ));
    }
    Ok(next.run(req).await)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .map(|s| s.trim().trim_matches('"'))
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_if_match",
                    "If-Match must be a version number",
                )
            }),
    }
}

pub(crate) fn etag(version: u64) -> [(header::HeaderName, HeaderValue); 1] {
    let v = HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or(HeaderValue::from_static("\"0\""));
    [(header::ETAG, v)]
}

fn json_text(text: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// Validates a document with the dataplane's own parse and compile step (so what the
/// admin accepts the dataplane can load) and returns its canonical JSON.
pub(crate) async fn validate_config(body: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let cfg = weir::config::Config::from_document(&body)
            .map_err(|e| ApiError::invalid_config(e.path, e.message))?;
        weir::config::compile(&cfg).map_err(|e| ApiError::invalid_config(e.path, e.message))?;
        serde_json::to_string(&cfg).map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

async fn put_config(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    // Secrets sent back masked keep their stored values.
    let mut cfg = weir::config::Config::from_document(&body)
        .map_err(|e| ApiError::invalid_config(e.path, e.message))?;
    let current = st.store.current_version()?;
    if current > 0 {
        let old: weir::config::Config = serde_json::from_str(&st.store.get(current)?)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        crate::secrets::restore(&mut cfg, &old)?;
    }
    let body = serde_json::to_string(&cfg).map_err(|e| ApiError::internal(e.to_string()))?;
    let json = validate_config(body).await?;
    let version = st.store.put(&json, "put /v1/config", expected)?;
    st.version.send_replace(version);
    tracing::info!(version, "config stored");
    Ok((etag(version), Json(json!({ "version": version }))).into_response())
}

async fn get_config(State(st): State<AppState>) -> Result<Response, ApiError> {
    let version = st.store.current_version()?;
    if version == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_config",
            "no config stored yet",
        ));
    }
    let text = st.store.get(version)?;
    Ok((
        etag(version),
        json_text(crate::secrets::masked_text(&text)?),
    )
        .into_response())
}

async fn list_versions(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "current": st.store.current_version()?, "versions": st.store.list()? }),
    ))
}

async fn get_version(State(st): State<AppState>, Path(n): Path<u64>) -> Result<Response, ApiError> {
    let text = st.store.get(n)?;
    Ok((etag(n), json_text(crate::secrets::masked_text(&text)?)).into_response())
}

async fn rollback(
    State(st): State<AppState>,
    Path(n): Path<u64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let text = st.store.get(n)?;
    let version = st.store.put(&text, &format!("rollback to {n}"), expected)?;
    st.version.send_replace(version);
    tracing::info!(version, from = n, "rolled back");
    Ok((
        etag(version),
        Json(json!({ "version": version, "rolled_back_to": n })),
    )
        .into_response())
}

#[derive(serde::Deserialize)]
struct SnapshotQuery {
    #[serde(default)]
    after: u64,
    node: Option<String>,
    wait_ms: Option<u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn touch_node(st: &AppState, name: &str, update: impl FnOnce(&mut NodeInfo)) {
    let mut nodes = st.nodes.lock().unwrap_or_else(|p| p.into_inner());
    let n = nodes.entry(name.to_string()).or_insert_with(|| NodeInfo {
        name: name.to_string(),
        version_applied: 0,
        last_error: None,
        last_seen_ms: 0,
    });
    n.last_seen_ms = now_ms();
    update(n);
}

/// Long-poll: answers at once when a version newer than `after` exists, else holds the
/// request until one is stored or the wait ends (204).
async fn snapshot(
    State(st): State<AppState>,
    Query(q): Query<SnapshotQuery>,
) -> Result<Response, ApiError> {
    if let Some(node) = &q.node {
        if node.is_empty() || node.len() > 128 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_node",
                "invalid node name",
            ));
        }
        touch_node(&st, node, |_| {});
    }
    let wait = q
        .wait_ms
        .map(Duration::from_millis)
        .unwrap_or(st.max_wait)
        .min(st.max_wait);
    let mut rx = st.version.subscribe();
    let current = *rx.borrow();
    let version = if current > q.after {
        current
    } else {
        match tokio::time::timeout(wait, rx.wait_for(|v| *v > q.after)).await {
            Ok(Ok(v)) => *v,
            _ => return Ok(StatusCode::NO_CONTENT.into_response()),
        }
    };
    let config = st.store.get(version)?;
    Ok(json_text(format!(
        "{{\"version\":{version},\"config\":{config}}}"
    )))
}

#[derive(serde::Deserialize)]
struct NodeStatus {
    version: u64,
    error: Option<String>,
}

async fn node_status(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Json(s): Json<NodeStatus>,
) -> Result<StatusCode, ApiError> {
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_node",
            "invalid node name",
        ));
    }
    touch_node(&st, &name, |n| match s.error {
        None => {
            n.version_applied = s.version;
            n.last_error = None;
        }
        Some(e) => n.last_error = Some(format!("version {}: {e}", s.version)),
    });
    Ok(StatusCode::NO_CONTENT)
}

async fn list_nodes(State(st): State<AppState>) -> Json<Value> {
    let nodes: Vec<NodeInfo> = st
        .nodes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    Json(json!({ "current": *st.version.borrow(), "nodes": nodes }))
}

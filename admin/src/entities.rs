//! Entity collections on top of the config document, in the manner of Kong's Admin API:
//! upstreams, routes and model aliases can be listed, read, created, replaced and deleted
//! one by one. Each write reads the current document, changes one entity, validates the
//! whole document with the dataplane's compile step and stores it as a new version,
//! conditioned on the version it read (a concurrent writer gets 409, never a lost update).

use crate::api::{etag, validate_config, ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use weir::config::{Config, RouteConfig, UpstreamConfig};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/upstreams", get(list_upstreams).post(create_upstream))
        .route(
            "/v1/upstreams/{name}",
            get(get_upstream).put(put_upstream).delete(delete_upstream),
        )
        .route("/v1/routes", get(list_routes).post(create_route))
        .route(
            "/v1/routes/{name}",
            get(get_route).put(put_route).delete(delete_route),
        )
        .route("/v1/model_aliases", get(list_aliases))
        .route(
            "/v1/model_aliases/{from}",
            get(get_alias).put(put_alias).delete(delete_alias),
        )
}

/// The current document and its version (an empty document at version 0).
fn current(st: &AppState) -> Result<(u64, Config), ApiError> {
    let version = st.store.current_version()?;
    if version == 0 {
        let empty = Config::from_document("{}").map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok((version, empty));
    }
    let text = st.store.get(version)?;
    let cfg = serde_json::from_str(&text).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((version, cfg))
}

/// Validates and stores `cfg` as the successor of `read` (or of the If-Match version).
async fn save(
    st: &AppState,
    headers: &HeaderMap,
    read: u64,
    cfg: &Config,
    comment: String,
    status: StatusCode,
    entity: Value,
) -> Result<Response, ApiError> {
    let expected = crate::api::if_match(headers)?.unwrap_or(read);
    let text = serde_json::to_string(cfg).map_err(|e| ApiError::internal(e.to_string()))?;
    let json = validate_config(text).await?;
    let version = st.store.put(&json, &comment, Some(expected))?;
    st.version.send_replace(version);
    tracing::info!(version, %comment, "config stored");
    Ok((
        status,
        etag(version),
        Json(json!({ "version": version, "entity": entity })),
    )
        .into_response())
}

fn not_found(kind: &str, name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no {kind} named `{name}`"),
    )
}

fn name_mismatch(kind: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "name_mismatch",
        format!("the {kind}'s `name` in the body differs from the one in the path"),
    )
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string()))
}

/// Parses a request body as an entity, with a 422 that names the problem.
fn parse<T: serde::de::DeserializeOwned>(body: &str, kind: &str) -> Result<T, ApiError> {
    serde_yaml::from_str(body).map_err(|e| ApiError::invalid(kind.to_string(), e.to_string()))
}

// ---------------------------------------------------------------- upstreams

async fn list_upstreams(State(st): State<AppState>) -> Result<Response, ApiError> {
    let (v, cfg) = current(&st)?;
    Ok((etag(v), Json(json!({ "data": cfg.upstreams }))).into_response())
}

async fn get_upstream(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (v, cfg) = current(&st)?;
    let u = cfg
        .upstreams
        .iter()
        .find(|u| u.name == name)
        .ok_or_else(|| not_found("upstream", &name))?;
    Ok((etag(v), Json(to_value(u)?)).into_response())
}

async fn create_upstream(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let u: UpstreamConfig = parse(&body, "upstream")?;
    let (v, mut cfg) = current(&st)?;
    if cfg.upstreams.iter().any(|x| x.name == u.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("upstream `{}` exists", u.name),
        ));
    }
    let entity = to_value(&u)?;
    let comment = format!("create upstream {}", u.name);
    cfg.upstreams.push(u);
    save(&st, &headers, v, &cfg, comment, StatusCode::CREATED, entity).await
}

async fn put_upstream(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let mut body_v: Value = parse(&body, "upstream")?;
    if let Some(obj) = body_v.as_object_mut() {
        match obj.get("name").and_then(Value::as_str) {
            Some(n) if n != name => return Err(name_mismatch("upstream")),
            _ => {
                obj.insert("name".into(), Value::String(name.clone()));
            }
        }
    }
    let u: UpstreamConfig = serde_json::from_value(body_v)
        .map_err(|e| ApiError::invalid("upstream".into(), e.to_string()))?;
    let (v, mut cfg) = current(&st)?;
    let entity = to_value(&u)?;
    let (status, comment) = match cfg.upstreams.iter_mut().find(|x| x.name == name) {
        Some(slot) => {
            *slot = u;
            (StatusCode::OK, format!("replace upstream {name}"))
        }
        None => {
            cfg.upstreams.push(u);
            (StatusCode::CREATED, format!("create upstream {name}"))
        }
    };
    save(&st, &headers, v, &cfg, comment, status, entity).await
}

async fn delete_upstream(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (v, mut cfg) = current(&st)?;
    let before = cfg.upstreams.len();
    cfg.upstreams.retain(|u| u.name != name);
    if cfg.upstreams.len() == before {
        return Err(not_found("upstream", &name));
    }
    // A route still pointing here fails validation with its path: 422, nothing changes.
    save(
        &st,
        &headers,
        v,
        &cfg,
        format!("delete upstream {name}"),
        StatusCode::OK,
        Value::Null,
    )
    .await
}

// ---------------------------------------------------------------- routes

#[derive(serde::Deserialize)]
struct Position {
    /// Insert at this index (routes match in order); default: last.
    position: Option<usize>,
}

fn route_name(r: &RouteConfig) -> Option<&str> {
    r.name.as_deref()
}

async fn list_routes(State(st): State<AppState>) -> Result<Response, ApiError> {
    let (v, cfg) = current(&st)?;
    Ok((etag(v), Json(json!({ "data": cfg.routes }))).into_response())
}

async fn get_route(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (v, cfg) = current(&st)?;
    let r = cfg
        .routes
        .iter()
        .find(|r| route_name(r) == Some(&name))
        .ok_or_else(|| not_found("route", &name))?;
    Ok((etag(v), Json(to_value(r)?)).into_response())
}

async fn create_route(
    State(st): State<AppState>,
    Query(pos): Query<Position>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let r: RouteConfig = parse(&body, "route")?;
    let Some(name) = r.name.clone() else {
        return Err(ApiError::invalid(
            "route.name".into(),
            "routes created through the API need a `name`".into(),
        ));
    };
    let (v, mut cfg) = current(&st)?;
    if cfg.routes.iter().any(|x| route_name(x) == Some(&name)) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("route `{name}` exists"),
        ));
    }
    let entity = to_value(&r)?;
    let at = pos
        .position
        .unwrap_or(cfg.routes.len())
        .min(cfg.routes.len());
    cfg.routes.insert(at, r);
    save(
        &st,
        &headers,
        v,
        &cfg,
        format!("create route {name}"),
        StatusCode::CREATED,
        entity,
    )
    .await
}

async fn put_route(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let mut r: RouteConfig = parse(&body, "route")?;
    match r.name.as_deref() {
        Some(n) if n != name => return Err(name_mismatch("route")),
        _ => r.name = Some(name.clone()),
    }
    let (v, mut cfg) = current(&st)?;
    let entity = to_value(&r)?;
    let (status, comment) = match cfg.routes.iter_mut().find(|x| route_name(x) == Some(&name)) {
        Some(slot) => {
            *slot = r;
            (StatusCode::OK, format!("replace route {name}"))
        }
        None => {
            cfg.routes.push(r);
            (StatusCode::CREATED, format!("create route {name}"))
        }
    };
    save(&st, &headers, v, &cfg, comment, status, entity).await
}

async fn delete_route(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (v, mut cfg) = current(&st)?;
    let before = cfg.routes.len();
    cfg.routes.retain(|r| route_name(r) != Some(&name));
    if cfg.routes.len() == before {
        return Err(not_found("route", &name));
    }
    save(
        &st,
        &headers,
        v,
        &cfg,
        format!("delete route {name}"),
        StatusCode::OK,
        Value::Null,
    )
    .await
}

// ---------------------------------------------------------------- model aliases

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Alias {
    to: String,
}

async fn list_aliases(State(st): State<AppState>) -> Result<Response, ApiError> {
    let (v, cfg) = current(&st)?;
    Ok((etag(v), Json(json!({ "data": cfg.model_aliases }))).into_response())
}

async fn get_alias(
    State(st): State<AppState>,
    Path(from): Path<String>,
) -> Result<Response, ApiError> {
    let (v, cfg) = current(&st)?;
    let to = cfg
        .model_aliases
        .get(&from)
        .ok_or_else(|| not_found("model alias", &from))?;
    Ok((etag(v), Json(json!({ "from": from, "to": to }))).into_response())
}

async fn put_alias(
    State(st): State<AppState>,
    Path(from): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let a: Alias = parse(&body, "model_alias")?;
    let (v, mut cfg) = current(&st)?;
    let status = if cfg.model_aliases.contains_key(&from) {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let entity = json!({ "from": from, "to": a.to });
    cfg.model_aliases.insert(from.clone(), a.to);
    save(
        &st,
        &headers,
        v,
        &cfg,
        format!("set model alias {from}"),
        status,
        entity,
    )
    .await
}

async fn delete_alias(
    State(st): State<AppState>,
    Path(from): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (v, mut cfg) = current(&st)?;
    if cfg.model_aliases.remove(&from).is_none() {
        return Err(not_found("model alias", &from));
    }
    save(
        &st,
        &headers,
        v,
        &cfg,
        format!("delete model alias {from}"),
        StatusCode::OK,
        Value::Null,
    )
    .await
}

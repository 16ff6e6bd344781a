//! Entity collections on top of the config document, in the manner of Kong's Admin API:
//! upstreams, routes, model aliases, policies, consumers and consumer groups can be listed, read, created,
//! replaced and deleted one by one; consumer keys are made here (returned once, stored
//! as salted hashes) and revoked. Each write reads the current document, changes one entity, validates the
//! whole document with the dataplane's compile step and stores it as a new version,
//! conditioned on the version it read (a concurrent writer gets 409, never a lost update).

use crate::api::{etag, validate_config, ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use weir::auth::{ConsumerConfig, ConsumerGroupConfig, KeyConfig};
use weir::config::{Config, PolicyConfig, RouteConfig, UpstreamConfig};

pub fn routes() -> Router<AppState> {
    let r = named::<UpstreamConfig>(Router::new(), "/v1/upstreams");
    let r = named::<PolicyConfig>(r, "/v1/policies");
    let r = named::<ConsumerConfig>(r, "/v1/consumers");
    let r = named::<ConsumerGroupConfig>(r, "/v1/consumer_groups");
    r.route("/v1/consumers/{name}/keys", axum::routing::post(create_key))
        .route(
            "/v1/consumers/{name}/keys/{id}",
            axum::routing::delete(delete_key),
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
    mut entity: Value,
) -> Result<Response, ApiError> {
    let expected = crate::api::if_match(headers)?.unwrap_or(read);
    // Secrets sent back masked keep their stored values; answers never show them.
    let mut cfg = cfg.clone();
    crate::secrets::restore(&mut cfg, &current(st)?.1)?;
    crate::secrets::mask(&mut entity);
    let text = serde_json::to_string(&cfg).map_err(|e| ApiError::internal(e.to_string()))?;
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

// ---------------------------------------------------------------- named collections

/// An entity kept in a list of the config document and addressed by its `name`:
/// upstreams, policies, consumers. (Routes have an optional name and an order, and
/// aliases are a map: they have their own handlers below.)
trait Named: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {
    /// The singular noun in messages and comments, and the body's JSON path prefix.
    const KIND: &'static str;
    fn name(&self) -> &str;
    fn id_mut(&mut self) -> &mut Option<String>;
    fn id(&self) -> Option<&str>;
    fn list(cfg: &mut Config) -> &mut Vec<Self>;
    /// Whether `key` (from a path) is this entity's name or id.
    fn is(&self, key: &str) -> bool {
        self.name() == key || self.id() == Some(key)
    }
}

/// A new entity id: a random (version 4) UUID.
fn new_id() -> Result<String, ApiError> {
    let mut b = weir::auth::random_bytes::<16>()
        .ok_or_else(|| ApiError::internal("no entropy source for an id".into()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// Gives `id` a fresh value unless the body chose one; refuses one already in use.
fn assign_id(id: &mut Option<String>, mut taken: impl FnMut(&str) -> bool) -> Result<(), ApiError> {
    match id {
        Some(i) if taken(i) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("id `{i}` is in use"),
        )),
        Some(_) => Ok(()),
        None => {
            *id = Some(new_id()?);
            Ok(())
        }
    }
}

/// The `Named` impl of a config entity with `name` and `id` fields kept in `cfg.$list`.
macro_rules! named_entity {
    ($ty:ty, $kind:literal, $list:ident) => {
        impl Named for $ty {
            const KIND: &'static str = $kind;
            fn name(&self) -> &str {
                &self.name
            }
            fn id(&self) -> Option<&str> {
                self.id.as_deref()
            }
            fn id_mut(&mut self) -> &mut Option<String> {
                &mut self.id
            }
            fn list(cfg: &mut Config) -> &mut Vec<Self> {
                &mut cfg.$list
            }
        }
    };
}

named_entity!(UpstreamConfig, "upstream", upstreams);
named_entity!(PolicyConfig, "policy", policies);
named_entity!(ConsumerConfig, "consumer", consumers);
named_entity!(ConsumerGroupConfig, "consumer group", consumer_groups);

async fn list_named<T: Named>(State(st): State<AppState>) -> Result<Response, ApiError> {
    let (v, mut cfg) = current(&st)?;
    let mut data = to_value(T::list(&mut cfg))?;
    crate::secrets::mask(&mut data);
    Ok((etag(v), Json(json!({ "data": data }))).into_response())
}

async fn get_named<T: Named>(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (v, mut cfg) = current(&st)?;
    let e = T::list(&mut cfg)
        .iter()
        .find(|e| e.is(&name))
        .ok_or_else(|| not_found(T::KIND, &name))?;
    let mut e = to_value(e)?;
    crate::secrets::mask(&mut e);
    Ok((etag(v), Json(e)).into_response())
}

async fn create_named<T: Named>(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let mut e: T = parse(&body, T::KIND)?;
    let (v, mut cfg) = current(&st)?;
    let name = e.name().to_string();
    assign_id(e.id_mut(), |i| T::list(&mut cfg).iter().any(|x| x.is(i)))?;
    if T::list(&mut cfg).iter().any(|x| x.name() == name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("{} `{name}` exists", T::KIND),
        ));
    }
    let entity = to_value(&e)?;
    T::list(&mut cfg).push(e);
    let comment = format!("create {} {name}", T::KIND);
    save(&st, &headers, v, &cfg, comment, StatusCode::CREATED, entity).await
}

async fn put_named<T: Named>(
    State(st): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let mut body_v: Value = parse(&body, T::KIND)?;
    let (v, mut cfg) = current(&st)?;
    let existing = T::list(&mut cfg).iter().position(|x| x.is(&key));
    // The entity keeps its name and id: the path names it (by either), the body may
    // repeat them but not change them.
    let (name, id) = match existing.and_then(|i| T::list(&mut cfg).get(i)) {
        Some(x) => (x.name().to_string(), x.id().map(str::to_string)),
        None => (key.clone(), None),
    };
    if let Some(obj) = body_v.as_object_mut() {
        if obj
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n != name)
        {
            return Err(name_mismatch(T::KIND));
        }
        obj.insert("name".into(), Value::String(name.clone()));
        match (obj.get("id").and_then(Value::as_str), &id) {
            (Some(b), Some(i)) if b != i => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "id_mismatch",
                    format!("the {}'s `id` cannot change", T::KIND),
                ))
            }
            (_, Some(i)) => {
                obj.insert("id".into(), Value::String(i.clone()));
            }
            _ => {}
        }
    }
    let mut e: T = serde_json::from_value(body_v)
        .map_err(|err| ApiError::invalid(T::KIND.into(), err.to_string()))?;
    let (status, comment) = match existing {
        Some(i) => {
            let entity = to_value(&e)?;
            if let Some(slot) = T::list(&mut cfg).get_mut(i) {
                *slot = e;
            }
            let comment = format!("replace {} {name}", T::KIND);
            return save(&st, &headers, v, &cfg, comment, StatusCode::OK, entity).await;
        }
        None => {
            assign_id(e.id_mut(), |i| T::list(&mut cfg).iter().any(|x| x.is(i)))?;
            (StatusCode::CREATED, format!("create {} {name}", T::KIND))
        }
    };
    let entity = to_value(&e)?;
    T::list(&mut cfg).push(e);
    save(&st, &headers, v, &cfg, comment, status, entity).await
}

async fn delete_named<T: Named>(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (v, mut cfg) = current(&st)?;
    let list = T::list(&mut cfg);
    let before = list.len();
    list.retain(|e| !e.is(&name));
    if list.len() == before {
        return Err(not_found(T::KIND, &name));
    }
    // Whatever still refers to it (a route to an upstream or a policy) fails validation
    // with its path: 422, nothing changes.
    let comment = format!("delete {} {name}", T::KIND);
    save(&st, &headers, v, &cfg, comment, StatusCode::OK, Value::Null).await
}

/// `GET`/`POST` on the collection, `GET`/`PUT`/`DELETE` on one entity.
fn named<T: Named>(router: Router<AppState>, collection: &str) -> Router<AppState> {
    router
        .route(collection, get(list_named::<T>).post(create_named::<T>))
        .route(
            &format!("{collection}/{{name}}"),
            get(get_named::<T>)
                .put(put_named::<T>)
                .delete(delete_named::<T>),
        )
}

// ---------------------------------------------------------------- consumer keys

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewKey {
    /// Default: `key-N`.
    id: Option<String>,
    /// RFC 3339.
    expires: Option<String>,
}

/// Makes a key for a consumer: only its salted hash is stored; the key itself is in
/// this response and nowhere else.
async fn create_key(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let req: NewKey = if body.trim().is_empty() {
        NewKey::default()
    } else {
        parse(&body, "key")?
    };
    let (v, mut cfg) = current(&st)?;
    let consumer = cfg
        .consumers
        .iter_mut()
        .find(|c| c.is(&name))
        .ok_or_else(|| not_found("consumer", &name))?;
    let id = req
        .id
        .unwrap_or_else(|| format!("key-{}", consumer.keys.len() + 1));
    if consumer.keys.iter().any(|k| k.id == id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("consumer `{name}` has a key `{id}`"),
        ));
    }
    let (Some(key), Some(salt)) = (weir::auth::new_key(), weir::auth::random_bytes::<16>()) else {
        return Err(ApiError::internal("no entropy source for a key".into()));
    };
    consumer.keys.push(KeyConfig {
        id: id.clone(),
        hash: weir::auth::hash_key(key.as_bytes(), salt),
        expires: req.expires.clone(),
    });
    let entity = json!({ "consumer": name, "id": id, "key": key, "expires": req.expires });
    let comment = format!("create key {id} of consumer {name}");
    save(&st, &headers, v, &cfg, comment, StatusCode::CREATED, entity).await
}

async fn delete_key(
    State(st): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (v, mut cfg) = current(&st)?;
    let consumer = cfg
        .consumers
        .iter_mut()
        .find(|c| c.is(&name))
        .ok_or_else(|| not_found("consumer", &name))?;
    let before = consumer.keys.len();
    consumer.keys.retain(|k| k.id != id);
    if consumer.keys.len() == before {
        return Err(not_found("key", &id));
    }
    let comment = format!("delete key {id} of consumer {name}");
    save(&st, &headers, v, &cfg, comment, StatusCode::OK, Value::Null).await
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

/// Whether `key` (from a path) is the route's name or id.
fn route_is(r: &RouteConfig, key: &str) -> bool {
    route_name(r) == Some(key) || r.id.as_deref() == Some(key)
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
        .find(|r| route_is(r, &name))
        .ok_or_else(|| not_found("route", &name))?;
    Ok((etag(v), Json(to_value(r)?)).into_response())
}

async fn create_route(
    State(st): State<AppState>,
    Query(pos): Query<Position>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let mut r: RouteConfig = parse(&body, "route")?;
    let Some(name) = r.name.clone() else {
        return Err(ApiError::invalid(
            "route.name".into(),
            "routes created through the API need a `name`".into(),
        ));
    };
    let (v, mut cfg) = current(&st)?;
    assign_id(&mut r.id, |i| cfg.routes.iter().any(|x| route_is(x, i)))?;
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
    let (v, mut cfg) = current(&st)?;
    let existing = cfg.routes.iter().position(|x| route_is(x, &name));
    let (name, id) = match existing.and_then(|i| cfg.routes.get(i)) {
        Some(x) => (route_name(x).unwrap_or(&name).to_string(), x.id.clone()),
        None => (name, None),
    };
    match r.name.as_deref() {
        Some(n) if n != name => return Err(name_mismatch("route")),
        _ => r.name = Some(name.clone()),
    }
    if id.is_some() && r.id.is_some() && r.id != id {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "id_mismatch",
            "the route's `id` cannot change".to_string(),
        ));
    }
    match id {
        Some(i) => r.id = Some(i),
        None => assign_id(&mut r.id, |i| cfg.routes.iter().any(|x| route_is(x, i)))?,
    }
    let entity = to_value(&r)?;
    let (status, comment) = match existing.and_then(|i| cfg.routes.get_mut(i)) {
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
    cfg.routes.retain(|r| !route_is(r, &name));
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

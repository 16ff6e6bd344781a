//! Weir's dataplane: a shard-per-core reverse proxy for OpenAI-compatible traffic.
//!
//! The way of one request through a shard is in [`proxy`]; connections and HTTP/1.1
//! framing in [`conn`] and [`http`]; configuration and the compiled snapshot in
//! [`config`]; upstream connection pools in [`upstream`]; shards, listeners and
//! shutdown in [`server`].

pub mod accesslog;
pub mod auth;
pub mod config;
pub mod conn;
pub mod control;
pub mod error;
pub mod http;
pub mod inspect;
pub mod jwt;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod pricing;
pub mod proxy;
pub mod server;
pub mod shard;
pub mod sock;
pub mod status;
pub mod tap;
pub mod upstream;

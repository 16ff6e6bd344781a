//! Inspection of request and response bodies, with no I/O: the request scan (routing
//! fields and the texts that reach the model), the token estimate, response usage and
//! the incremental SSE scanner. Kept free of sockets and shards so each part can be
//! tested, fuzzed and benchmarked alone.

pub mod guard;
pub(crate) mod literal;
pub mod pass;
pub mod pii;
pub mod request;
pub mod skim;
pub mod sse;
pub mod tokens;
pub mod usage;

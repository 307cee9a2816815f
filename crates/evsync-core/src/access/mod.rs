//! Access rules of the sync endpoint, shared by every adapter (the native
//! server, the Cloudflare Worker, the client's URL builder): which tenant a
//! path names and whether a request's credentials open it. Pure functions
//! over strings, so both deployables answer exactly like the original
//! worker (see SEED-WORKER.md).

mod auth;
mod path;

pub use auth::{AuthConfig, AuthDecision, Credentials, PROTOCOL_PREFIX};
pub use path::{PathError, is_valid_tenant, parse_path};

//! Access rules of the sync endpoint, shared by every adapter (the native
//! server, the Cloudflare Worker, the client's URL builder): which protocol
//! and tenant a path names, whether a request's credentials open it, and
//! the one admission decision that runs those checks in order. Pure
//! functions over strings, so both deployables answer exactly like the
//! original worker (see SEED-WORKER.md).

mod admin;
mod admission;
mod auth;
mod conn_grants;
mod grant;
mod path;
mod refusal_log;
pub mod signed_token;

pub use admin::{
    AdminRefusal, AdminRoute, AdminToken, MIN_ADMIN_TOKEN_BYTES, admit_admin, admit_admin_on,
    admit_operator, is_admin_path, wants_replace,
};
pub use admission::{Admission, HttpRequest, Protocol, Refusal, admit, refused_tenant, route};
pub use auth::{AuthConfig, AuthDecision, Credentials, DenyReason, PROTOCOL_PREFIX};
pub use conn_grants::{ConnGrants, Forbidden};
pub use grant::Grant;
pub use path::{PathError, is_valid_tenant, parse_path};
pub use refusal_log::{
    DEFAULT_BURST, DEFAULT_LINES_PER_SECOND, LogLimiter, LogVerdict, MAX_LOGGED_HEADER_BYTES,
    RefusalLine, clip_header,
};

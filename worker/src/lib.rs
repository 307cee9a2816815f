//! evsync as a Cloudflare Worker and Durable Object.
//!
//! A drop-in replacement for the original TypeScript Worker: the same
//! routes, statuses, auth rules, bindings and variables (see
//! `docs/cloudflare.md`), but the protocol is served by the same sans-IO
//! [`evsync_core::proto::v3::Engine`] as the native server, so Ping/Pong,
//! StopChanges, per-subscriber delivery and bounded chunk reassembly behave
//! exactly as there.
//!
//! Layout, one job per file, dependencies running one way (top to
//! bottom):
//! - `routes`: the Worker's HTTP surface (the admission itself is
//!   `evsync_core::access::admit`, shared with the native server) and the
//!   hand-off to the tenant's Durable Object;
//! - `selftest` (test build only, feature `selftest`): the storage
//!   conformance suite, run inside workerd on request;
//! - `durable_object`: the `SyncDurableObject` class (hibernatable
//!   sockets, the timeout alarm);
//! - `tenant_ops`: operators' delete, export and import of the object's
//!   tenant (the admin API);
//! - `tenant_index`: the names of the tenants in DO SQLite mode, kept by
//!   one object of the class for the admin list;
//! - `driver`: runs the engine's actions (send, close, storage);
//! - `alarm`: the Durable Object alarm set from the engine's next deadline;
//! - `attachment`: what a socket carries across hibernation;
//! - `object_meta`: the tenant an object serves, kept for after hibernation;
//! - `storage`: the Durable Object SQLite and D1 backends;
//! - `auth`, `config`: reading the Worker's variables (token rules and
//!   boolean spellings are `evsync_core`'s, shared with the native server);
//! - `http`: the headers and plain-text answers the Worker and the object
//!   share;
//! - `js`: the few JavaScript calls the `worker` crate does not wrap;
//! - `log`: the log lines, JSON in the native server's `--log-format json`
//!   shape.

mod alarm;
mod attachment;
mod auth;
mod config;
mod driver;
mod durable_object;
mod http;
mod idle;
mod js;
mod log;
mod object_meta;
mod refusals;
mod routes;
#[cfg(feature = "selftest")]
mod selftest;
mod storage;
mod tenant_index;
mod tenant_ops;

pub use durable_object::SyncDurableObject;

use worker::{Context, Env, Request, Response, Result, event};

/// Runs once per isolate (test build only): records panic messages where
/// the self-test can read them (a panic aborts the wasm instance, so it
/// cannot answer itself).
#[cfg(feature = "selftest")]
#[event(start)]
fn start() {
    selftest::install_panic_hook();
}

/// The Worker entry point: every request goes through [`routes::handle`].
#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    routes::handle(req, env).await
}

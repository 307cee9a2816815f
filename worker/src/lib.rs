//! evsync as a Cloudflare Worker and Durable Object.
//!
//! A drop-in replacement for the original TypeScript Worker: the same
//! routes, statuses, auth rules, bindings and variables (see
//! `docs/cloudflare.md`), but the protocol is served by the same sans-IO
//! [`evsync_core::engine::Engine`] as the native server, so Ping/Pong,
//! StopChanges, per-subscriber delivery and bounded chunk reassembly behave
//! exactly as there.
//!
//! Layout, one job per file:
//! - `routes`: the Worker's HTTP surface (path, tenant, auth, upgrade) and
//!   the hand-off to the tenant's Durable Object;
//! - `auth`, `config`: reading the Worker's variables (the token and path
//!   rules themselves are `evsync_core::access`, shared with the native
//!   server);
//! - `durable_object`: the `SyncDurableObject` class (hibernatable sockets);
//! - `driver`: runs the engine's actions (send, close, storage);
//! - `attachment`: what a socket carries across hibernation;
//! - `object_meta`: the tenant an object serves, kept for after hibernation;
//! - `storage`: the Durable Object SQLite and D1 backends;
//! - `selftest`: the conformance suite, run inside workerd on request;
//! - `js`: the few JavaScript calls the `worker` crate does not wrap.

mod attachment;
mod auth;
mod config;
mod driver;
mod durable_object;
mod js;
mod object_meta;
mod routes;
mod selftest;
mod storage;

pub use durable_object::SyncDurableObject;

use worker::{Context, Env, Request, Response, Result, event};

/// Runs once per isolate: records panic messages where the self-test can
/// read them (a panic aborts the wasm instance, so it cannot answer itself).
#[event(start)]
fn start() {
    js::install_panic_hook();
}

/// The Worker entry point: every request goes through [`routes::handle`].
#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    routes::handle(req, env).await
}

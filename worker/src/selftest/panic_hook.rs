//! Where a failed self-test assertion goes: a panic aborts the wasm
//! instance (`panic = "abort"`, no unwinding), so the hook writes the
//! message into the scratch Durable Object's SQLite before the abort, and
//! the next request (on a fresh instance) reads it from there.

use super::status;
use js_sys::Reflect;
use std::cell::RefCell;
use std::sync::Once;
use wasm_bindgen::JsValue;
use worker::SqlStorage;

thread_local! {
    /// The scratch Durable Object's SQL storage while a self-test runs, so
    /// the panic hook can persist the failed assertion before the abort.
    static PANIC_SINK: RefCell<Option<(SqlStorage, String)>> = const { RefCell::new(None) };
}

/// The JS global that also receives the last panic message (readable by
/// whatever runs next in this isolate, even after the wasm instance reset).
pub const PANIC_GLOBAL: &str = "__evsyncLastPanic";

/// Installs (once per wasm instance) a panic hook that records the message
/// in [`PANIC_GLOBAL`] and in the self-test's SQL sink, then runs the hook
/// that was there before (the `worker` crate's, which marks the instance
/// for re-initialisation).
pub fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info.to_string();
            let _ = Reflect::set(
                &js_sys::global(),
                &PANIC_GLOBAL.into(),
                &JsValue::from_str(&message),
            );
            PANIC_SINK.with(|sink| {
                if let Ok(sink) = sink.try_borrow()
                    && let Some((sql, what)) = sink.as_ref()
                {
                    status::set(sql, &format!("FAIL {what}: {message}"));
                }
            });
            previous(info);
        }));
    });
}

/// Sets or clears the SQL storage the panic hook writes to, and the name
/// of the run it reports for.
pub fn set_sink(sql: Option<SqlStorage>, what: &str) {
    PANIC_SINK.with(|sink| *sink.borrow_mut() = sql.map(|sql| (sql, what.to_string())));
}

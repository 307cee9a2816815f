//! The few JavaScript calls the `worker` crate does not wrap: the clock,
//! random bytes, `transactionSync`, and a panic hook that leaves the panic
//! message where the self-test can find it.

use js_sys::{Function, Reflect, Uint8Array};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Once;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::SqlStorage;

/// Milliseconds since the Unix epoch. Inside a Worker the clock advances
/// only across I/O, which is all the engine's chunk expiry needs.
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// Cryptographically random bytes from `crypto.getRandomValues` (used for
/// the remoteId; the core takes random bytes rather than owning an RNG).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let global = js_sys::global();
    let crypto = Reflect::get(&global, &"crypto".into()).map_err(describe)?;
    let get: Function = Reflect::get(&crypto, &"getRandomValues".into())
        .map_err(describe)?
        .dyn_into()
        .map_err(|_| "crypto.getRandomValues is not a function".to_string())?;
    let array = Uint8Array::new_with_length(N as u32);
    get.call1(&crypto, &array).map_err(describe)?;
    let mut out = [0u8; N];
    array.copy_to(&mut out);
    Ok(out)
}

/// Runs `body` inside `ctx.storage.transactionSync` (`storage` is
/// `ctx.storage`), so that every SQL statement it runs commits together or
/// not at all. (DO SQL refuses `BEGIN`/`COMMIT`; the `worker` crate has no
/// wrapper for this call.) An `Err` from `body` rolls the transaction back
/// and is returned as is. `body` is `'static` because JS receives it as a
/// function; callers move cheap clones of their handles into it.
pub fn transaction_sync<T: 'static>(
    storage: &JsValue,
    body: impl FnOnce() -> Result<T, String> + 'static,
) -> Result<T, String> {
    let run: Function = Reflect::get(storage, &"transactionSync".into())
        .map_err(describe)?
        .dyn_into()
        .map_err(|_| "ctx.storage.transactionSync is not available".to_string())?;
    let out: Rc<RefCell<Option<Result<T, String>>>> = Rc::new(RefCell::new(None));
    let slot = Rc::clone(&out);
    let callback = Closure::once(move || -> Result<JsValue, JsValue> {
        let result = body();
        let failed = result.is_err();
        *slot.borrow_mut() = Some(result);
        if failed {
            // Throwing is what makes transactionSync roll back.
            Err(JsValue::from_str("evsync: transaction rolled back"))
        } else {
            Ok(JsValue::UNDEFINED)
        }
    });
    let called = run.call1(storage, callback.as_ref().unchecked_ref());
    drop(callback);
    let result = out.borrow_mut().take();
    match (result, called) {
        (Some(Err(err)), _) => Err(err),
        (Some(Ok(value)), Ok(_)) => Ok(value),
        (_, Err(err)) => Err(format!("transaction failed: {}", describe(err))),
        (None, Ok(_)) => Err("transactionSync did not run its callback".into()),
    }
}

/// A readable message from a JS exception or value.
pub fn describe(value: JsValue) -> String {
    if let Some(err) = value.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

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
pub fn install_panic_hook() {
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
                    crate::selftest::record_panic(sql, what, &message);
                }
            });
            previous(info);
        }));
    });
}

/// Sets or clears the SQL storage the panic hook writes to, and the name
/// of the run it reports for.
pub fn set_panic_sink(sql: Option<SqlStorage>, what: &str) {
    PANIC_SINK.with(|sink| *sink.borrow_mut() = sql.map(|sql| (sql, what.to_string())));
}

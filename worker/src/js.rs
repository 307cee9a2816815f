//! The few JavaScript calls the `worker` crate does not wrap: the clock,
//! random bytes and `transactionSync`. (The self-test's panic hook lives
//! with the self-test, so this module depends on nothing of the crate.)

use js_sys::{Function, Reflect, Uint8Array};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

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

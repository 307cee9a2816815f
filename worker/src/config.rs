//! The Worker's variables, read the way the original reads them.

use js_sys::Reflect;
use wasm_bindgen::JsValue;
use worker::Env;

/// A variable or secret as text. `[vars]` may hold a TOML table (for
/// `SYNC_AUTH_TOKENS`), which arrives as a JS object: it is returned as
/// its JSON text so that both spellings parse the same way.
pub fn text(env: &Env, name: &str) -> Option<String> {
    let value = Reflect::get(env.as_ref(), &JsValue::from_str(name)).ok()?;
    if value.is_undefined() || value.is_null() {
        return None;
    }
    if let Some(text) = value.as_string() {
        return Some(text);
    }
    if value.is_object() {
        return js_sys::JSON::stringify(&value).ok().map(String::from);
    }
    if let Some(b) = value.as_bool() {
        return Some(b.to_string());
    }
    value.as_f64().map(|n| n.to_string())
}

/// A boolean switch: on for `true` or `1` (`SYNC_ALLOW_QUERY_TOKEN`,
/// `SYNC_DEBUG`, `SYNC_SELF_TEST`), as in the original.
pub fn flag(env: &Env, name: &str) -> bool {
    text(env, name).is_some_and(|v| {
        let v = v.trim();
        v == "1" || v.eq_ignore_ascii_case("true")
    })
}

/// `SYNC_STORAGE`: which backend the Durable Object stores logs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageChoice {
    /// Unset: D1 when `SYNC_DB` is bound, else Durable Object SQLite.
    Auto,
    /// `"do"`: Durable Object SQLite even when `SYNC_DB` is bound.
    DurableObject,
    /// `"d1"`: the `SYNC_DB` binding; an error when it is missing.
    D1,
}

impl StorageChoice {
    /// Reads `SYNC_STORAGE`. Any other value than `do`/`d1` (the original
    /// compares exactly) behaves as unset, with a warning in the log.
    pub fn from_env(env: &Env) -> StorageChoice {
        match text(env, "SYNC_STORAGE").as_deref().map(str::trim) {
            None | Some("") => StorageChoice::Auto,
            Some(v) if v.eq_ignore_ascii_case("do") => StorageChoice::DurableObject,
            Some(v) if v.eq_ignore_ascii_case("d1") => StorageChoice::D1,
            Some(other) => {
                worker::console_warn!(
                    "evsync: SYNC_STORAGE={other:?} is neither \"do\" nor \"d1\"; choosing automatically"
                );
                StorageChoice::Auto
            }
        }
    }
}

/// Name of the D1 binding, as in the original's wrangler.toml.
pub const D1_BINDING: &str = "SYNC_DB";

/// Name of the Durable Object namespace binding.
pub const DO_BINDING: &str = "SYNC_DO";

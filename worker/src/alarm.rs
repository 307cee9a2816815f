//! The Durable Object alarm that wakes the engine at its next deadline.
//!
//! The engine's timeouts (an incomplete chunked message older than its age
//! limit) used to run only when a message arrived, so a peer that sent
//! part of a message and went quiet held its reassembly memory for as long
//! as the socket stayed open. After each drain the driver hands
//! `Engine::poll_timeout()` to [`Alarm::sync`], which sets the object's
//! alarm to it (or deletes the alarm when nothing is due); the object's
//! `alarm()` handler then calls `handle_timeout` and drains.
//!
//! Alarms are stored by the platform and survive hibernation, but the
//! partial messages they guard live in memory and do not: an alarm that
//! fires on an object woken from hibernation finds nothing to expire. The
//! time last set is remembered here only to skip storage calls when it has
//! not moved (most messages leave it unchanged); an instance starts out
//! assuming no alarm, which at worst lets a stale one fire once, harmlessly.

use evsync_core::time::Timestamp;
use std::cell::Cell;
use wasm_bindgen::JsValue;
use worker::{ScheduledTime, Storage};

/// What this instance last asked the platform for.
#[derive(Default)]
pub struct Alarm {
    set_for: Cell<Option<Timestamp>>,
}

impl Alarm {
    /// Sets the stored alarm to `deadline`, or deletes it when `None`,
    /// unless it already is. Returns true when it awaited storage (other
    /// events may have fed the engine meanwhile: the caller drains again).
    pub async fn sync(&self, storage: &Storage, deadline: Option<Timestamp>) -> bool {
        if self.set_for.get() == deadline {
            return false;
        }
        self.set_for.set(deadline);
        let result = match deadline {
            Some(at) => {
                let date = js_sys::Date::new(&JsValue::from_f64(at.0 as f64));
                storage.set_alarm(ScheduledTime::new(date)).await
            }
            None => storage.delete_alarm().await,
        };
        if let Err(err) = result {
            // Not retried until the deadline moves (retrying at once could
            // spin); expiry then falls back to the next message's check.
            crate::log::error!("cannot set the timeout alarm", error = err.to_string());
        }
        true
    }

    /// The alarm fired: the platform no longer holds one.
    pub fn fired(&self) {
        self.set_for.set(None);
    }
}

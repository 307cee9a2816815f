//! The one way the server takes a std mutex, at the bottom of the module
//! graph so that everything may use it.

use std::sync::{Mutex, MutexGuard};

/// Locks a std mutex, ignoring poisoning: every critical section in this crate
/// leaves the map consistent even if a panic interrupted it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

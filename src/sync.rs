//! Locks that survive a panic elsewhere. A poisoned mutex still holds usable data (every
//! critical section in opsdeck leaves its data consistent between statements), so one place
//! recovers it instead of every caller.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, taking the data even if another thread panicked while holding it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

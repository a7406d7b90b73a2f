//! Handles: what `MsfDecomposer*`, `MsfTracker*` and `MsfResult*` really are.
//!
//! A handle is **not** a pointer to memory. It is a key into a process-wide table of live objects:
//! `(serial << 8) | TAG | kind`, where `serial` comes from a counter that is never reset, `TAG`
//! (0x50) marks the value as ours and `kind` (1, 2, 3) says which type it is. `*_create` inserts an
//! entry, `*_destroy` removes it, and every entry point looks its handle up before using it. So:
//!
//! - double destroy and use after destroy are always reported (`MSF_STATUS_INVALID_HANDLE`): a
//!   destroyed serial is never handed out again (on 64-bit targets; a 32-bit target wraps after
//!   2^24 handles and then a very old stale handle could alias a live one);
//! - a handle of another type (a result cast to a decomposer), a garbage value or a pointer to
//!   something else is reported the same way: nothing is ever dereferenced through a handle;
//! - destroying a handle while another thread is inside a call on it is safe: the call holds its
//!   own reference to the object, which is freed when the last reference goes.
//!
//! What cannot be detected: the pointers *into* a result (`msf_result_mask`, `msf_result_slots`, ...)
//! are plain memory, freed by `msf_result_destroy`; reading them afterwards is a use after free.

use crate::result::ResultData;
use crate::status::{FfiResult, Failure, MsfStatus};
use runtime::{Decomposer, Tracker};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};

/// Opaque handle to a loaded model (`msf_decomposer_create`). Thread-safe: one decomposer may be
/// used by any number of threads at once. See the crate docs for what a handle is.
pub struct MsfDecomposer {
    _opaque: [u8; 0],
}

/// Opaque handle to the temporal state of one video stream (`msf_tracker_create`). Calls on one
/// tracker are serialised; use one tracker per stream.
pub struct MsfTracker {
    _opaque: [u8; 0],
}

/// Opaque handle to the decomposition of one frame (`msf_decompose`, `msf_tracker_step`).
/// Immutable: it may be read from several threads.
pub struct MsfResult {
    _opaque: [u8; 0],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Decomposer = 1,
    Tracker = 2,
    Result = 3,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Decomposer => "MsfDecomposer",
            Kind::Tracker => "MsfTracker",
            Kind::Result => "MsfResult",
        }
    }
}

pub(crate) enum Object {
    Decomposer(Arc<Decomposer>),
    Tracker(Arc<Mutex<Tracker>>),
    Result(Arc<ResultData>),
}

impl Object {
    fn kind(&self) -> Kind {
        match self {
            Object::Decomposer(_) => Kind::Decomposer,
            Object::Tracker(_) => Kind::Tracker,
            Object::Result(_) => Kind::Result,
        }
    }
}

const TAG: usize = 0x50;
const TAG_MASK: usize = 0xf0;
const KIND_MASK: usize = 0x0f;

static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);
static LIVE: LazyLock<RwLock<HashMap<usize, Object>>> = LazyLock::new(|| RwLock::new(HashMap::new()));

/// Insert `obj` and return its handle value.
pub(crate) fn register(obj: Object) -> usize {
    let kind = obj.kind() as usize;
    let mut live = LIVE.write().unwrap_or_else(PoisonError::into_inner);
    loop {
        // Truncates on 32-bit targets (see the module docs); skip values still in use.
        let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed) as usize;
        let h = (serial << 8) | TAG | kind;
        if serial << 8 != 0 && !live.contains_key(&h) {
            live.insert(h, obj);
            return h;
        }
    }
}

/// Why `h` is not a live handle of `want`.
fn explain(h: usize, want: Kind, live: &HashMap<usize, Object>, arg: &str) -> Failure {
    let name = want.name();
    if h == 0 {
        return Failure::null(arg);
    }
    let why = if let Some(other) = live.get(&h) {
        format!("`{arg}` is a live {}, not an {name}", other.kind().name())
    } else if h & TAG_MASK == TAG && h & KIND_MASK == want as usize {
        format!("`{arg}` is an {name} that was already destroyed (use after destroy or double destroy)")
    } else if h & TAG_MASK == TAG && (1..=3).contains(&(h & KIND_MASK)) {
        format!("`{arg}` is not an {name} (it looks like a destroyed handle of another type)")
    } else {
        format!("`{arg}` ({h:#x}) is not a handle created by this library")
    };
    Failure::new(MsfStatus::InvalidHandle, why)
}

fn lookup<T>(h: usize, want: Kind, arg: &str, get: impl FnOnce(&Object) -> Option<T>) -> FfiResult<T> {
    let live = LIVE.read().unwrap_or_else(PoisonError::into_inner);
    match live.get(&h).and_then(get) {
        Some(t) => Ok(t),
        None => Err(explain(h, want, &live, arg)),
    }
}

pub(crate) fn decomposer(h: *const MsfDecomposer, arg: &str) -> FfiResult<Arc<Decomposer>> {
    lookup(h as usize, Kind::Decomposer, arg, |o| match o {
        Object::Decomposer(d) => Some(d.clone()),
        _ => None,
    })
}

pub(crate) fn tracker(h: *const MsfTracker, arg: &str) -> FfiResult<Arc<Mutex<Tracker>>> {
    lookup(h as usize, Kind::Tracker, arg, |o| match o {
        Object::Tracker(t) => Some(t.clone()),
        _ => None,
    })
}

pub(crate) fn result(h: *const MsfResult, arg: &str) -> FfiResult<Arc<ResultData>> {
    lookup(h as usize, Kind::Result, arg, |o| match o {
        Object::Result(r) => Some(r.clone()),
        _ => None,
    })
}

/// `*_destroy`: NULL is a no-op; anything else must be a live handle of `want`. The object is
/// dropped after the table lock is released (dropping a model can take a moment).
pub(crate) fn destroy(h: usize, want: Kind, arg: &str) -> FfiResult {
    if h == 0 {
        return Ok(());
    }
    let removed = {
        let mut live = LIVE.write().unwrap_or_else(PoisonError::into_inner);
        match live.get(&h) {
            Some(o) if o.kind() == want => live.remove(&h),
            _ => return Err(explain(h, want, &live, arg)),
        }
    };
    drop(removed);
    Ok(())
}

/// Number of live handles of each kind (decomposers, trackers, results): for leak checks in tests.
#[doc(hidden)]
pub fn live_handle_counts() -> [usize; 3] {
    let live = LIVE.read().unwrap_or_else(PoisonError::into_inner);
    let mut n = [0; 3];
    for o in live.values() {
        n[o.kind() as usize - 1] += 1;
    }
    n
}

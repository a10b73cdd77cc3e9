//! Diagnosis slots and cancellation: how a diagnosis request holds one of the `--concurrency`
//! slots for exactly as long as its work runs, and how that work learns to stop.
//!
//! - [`admit`] (middleware on the diagnosis routes, inside the token check and before the body
//!   is read) takes a slot or answers 503 `overloaded` with `Retry-After` at once;
//! - [`run`] moves the slot into the blocking task that diagnoses, so a request that times out
//!   (504) or whose client goes away does not free its slot while its scripts still run. The
//!   request future owns a guard that raises the task's cancel flag when the future is dropped;
//!   the engine checks the flag before every script and live fact (`Options::cancel`), and live
//!   facts are never awaited past the request's own deadline. The slot comes back when the
//!   task has really ended.
//!
//! Two numbers show it in `/metrics`: `whyfail_diagnoses_running` (blocking diagnoses running
//! now, finished requests included) and `whyfail_diagnoses_cancelled_total`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ServerState;
use super::error::ApiError;

/// Seconds a client is asked to wait after a 503 `overloaded`: a slot frees when a diagnosis
/// ends, and one that overruns is stopped at its request's timeout.
pub(crate) const RETRY_AFTER_SECS: u64 = 1;

/// The `--concurrency` slots and the counters about the work that holds them.
#[derive(Debug)]
pub(crate) struct Slots {
    sem: Arc<Semaphore>,
    pub(crate) concurrency: usize,
    request_timeout: Duration,
    /// Blocking diagnoses running now.
    pub(crate) running: AtomicI64,
    /// Diagnoses stopped (or never started) because their request had ended.
    pub(crate) cancelled: AtomicU64,
}

impl Slots {
    pub(crate) fn new(concurrency: usize, request_timeout: Duration) -> Slots {
        Slots {
            sem: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            request_timeout,
            running: AtomicI64::new(0),
            cancelled: AtomicU64::new(0),
        }
    }

    /// Slots taken now.
    pub(crate) fn in_use(&self) -> usize {
        self.concurrency
            .saturating_sub(self.sem.available_permits())
    }
}

/// A slot taken by [`admit`] for one request, handed to the handler through the request's
/// extensions. Whoever takes the permit out owns the slot; left in place, it is released with
/// the request.
#[derive(Clone)]
pub(crate) struct Slot {
    permit: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    /// When the request times out: live facts are not awaited beyond it.
    deadline: Instant,
}

impl Slot {
    fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.permit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Middleware for the routes that count against `--concurrency`.
pub(crate) async fn admit(
    State(state): State<Arc<ServerState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let slots = &state.slots;
    match slots.sem.clone().try_acquire_owned() {
        Ok(permit) => {
            req.extensions_mut().insert(Slot {
                permit: Arc::new(Mutex::new(Some(permit))),
                deadline: Instant::now() + slots.request_timeout,
            });
            next.run(req).await
        }
        Err(_) => overloaded().into_response(),
    }
}

pub(crate) fn overloaded() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "every diagnosis slot is busy (--concurrency); retry shortly",
    )
    .retry_after(RETRY_AFTER_SECS)
}

/// What the blocking work gets: the cancel flag to pass to the engine and the time left for
/// live facts.
pub(crate) struct Ctl {
    flag: Arc<AtomicBool>,
    deadline: Instant,
    facts: Duration,
}

impl Ctl {
    /// The flag for `Options::cancel`.
    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.flag
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// The live-fact budget for a diagnosis starting now: the server's `--deadline`, cut to
    /// what is left of the request's time.
    pub(crate) fn facts_deadline(&self) -> Duration {
        self.facts
            .min(self.deadline.saturating_duration_since(Instant::now()))
    }
}

/// Raises the flag when the request future is dropped (timeout, client gone) or done.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Decrements the running gauge however the task ends (a panicking script included).
struct Running<'a>(&'a AtomicI64);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `work` on the blocking pool holding `slot` until it returns. `None` when the request
/// was already over before the work started.
pub(crate) async fn run<T: Send + 'static>(
    state: &Arc<ServerState>,
    slot: Option<Slot>,
    work: impl FnOnce(&Ctl) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let flag = Arc::new(AtomicBool::new(false));
    let _cancel = CancelOnDrop(flag.clone());
    let permit = slot.as_ref().and_then(Slot::take);
    let ctl = Ctl {
        flag,
        deadline: slot.map_or_else(
            || Instant::now() + state.slots.request_timeout,
            |s| s.deadline,
        ),
        facts: state.deadline,
    };
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        // Declared first, dropped last: the slot is free only once the work is over.
        let _permit = permit;
        st.slots.running.fetch_add(1, Ordering::Relaxed);
        let _running = Running(&st.slots.running);
        if ctl.cancelled() {
            st.slots.cancelled.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let out = work(&ctl);
        if ctl.cancelled() {
            st.slots.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        Some(out)
    })
    .await
    .map_err(|e| ApiError::internal(format!("the diagnosis crashed: {e}")))?
    .ok_or_else(|| ApiError::for_status(StatusCode::GATEWAY_TIMEOUT))
}

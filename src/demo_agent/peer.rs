//! The demo agent's side of the connection: whole-line writes to the client
//! under one lock, and the table of the agent's own requests still waiting for
//! the client's answer. Shared by the dispatch loop and every turn thread.

use crate::core::rpc::{self, RpcError, code};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Mutex, MutexGuard};

/// What a running turn is woken with.
#[derive(Debug)]
pub enum TurnEvent {
    /// `session/cancel` for the turn's session.
    Cancel,
    /// The client answered the agent's request `id`.
    Reply {
        id: u64,
        result: Result<Value, RpcError>,
    },
}

/// The client connection. Every line written is complete and flushed before
/// the lock is released, so lines from concurrent turns never interleave.
pub struct Peer {
    out: Mutex<Box<dyn Write + Send>>,
    /// Agent → client requests awaiting an answer, by id, with the turn to wake.
    pending: Mutex<HashMap<u64, Sender<TurnEvent>>>,
    next_id: AtomicU64,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Peer {
    pub fn new(out: Box<dyn Write + Send>) -> Peer {
        Peer {
            out: Mutex::new(out),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// Writes one line (a newline is added) and flushes it.
    pub fn line(&self, line: &[u8]) {
        let mut w = lock(&self.out);
        let written = w
            .write_all(line)
            .and_then(|()| w.write_all(b"\n"))
            .and_then(|()| w.flush());
        if let Err(e) = written {
            log::debug!("demo agent: cannot write to the client: {e}");
        }
    }

    /// Runs `f` holding the output lock, for bulk writers that batch many
    /// lines per lock; `f` must leave only whole lines behind.
    pub fn with_output<R>(&self, f: impl FnOnce(&mut dyn Write) -> R) -> R {
        let mut w = lock(&self.out);
        f(&mut **w)
    }

    pub fn respond(&self, id: &Value, result: Value) {
        self.line(&rpc::response(id, result));
    }

    pub fn respond_error(&self, id: &Value, err: &RpcError) {
        self.line(&rpc::error_response(id, err));
    }

    pub fn notify(&self, method: &str, params: Value) {
        self.line(&rpc::notification(method, params));
    }

    /// A `session/update` notification for `session_id`.
    pub fn update(&self, session_id: &str, update: Value) {
        self.notify(
            "session/update",
            json!({ "sessionId": session_id, "update": update }),
        );
    }

    /// Sends a request whose answer will be delivered to `wake` as
    /// [`TurnEvent::Reply`]; returns its id.
    pub fn request(&self, method: &str, params: Value, wake: Sender<TurnEvent>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(id, wake);
        self.line(&rpc::request(&json!(id), method, params));
        id
    }

    /// Stops waiting for request `id`; a later answer is ignored.
    pub fn forget(&self, id: u64) {
        lock(&self.pending).remove(&id);
    }

    /// Routes the client's answer to the turn that asked. Returns false when
    /// no request with that id is outstanding.
    pub fn route_reply(&self, id: &Value, result: Result<Value, RpcError>) -> bool {
        let Some(n) = id.as_u64() else { return false };
        let Some(wake) = lock(&self.pending).remove(&n) else {
            return false;
        };
        // The turn may have ended meanwhile; then nobody needs the answer.
        let _ = wake.send(TurnEvent::Reply { id: n, result });
        true
    }
}

/// The `error` member of a client's answer as an [`RpcError`].
pub fn error_from_value(v: &Value) -> RpcError {
    let code = v
        .get("code")
        .and_then(Value::as_i64)
        .unwrap_or(code::INTERNAL);
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("error without a message");
    let mut err = RpcError::new(code, message);
    err.data = v.get("data").cloned();
    err
}

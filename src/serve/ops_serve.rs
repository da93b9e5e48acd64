//! Ops tasks of a running relay: SIGHUP (re-read the config file and the
//! token), the token file watch (`acp-relay token --rotate` takes effect
//! without a restart), and the `--metrics-listen` port. File reads run off
//! the executor thread.

use crate::config::Reload;
use crate::notify::deliver::Dispatcher;
use crate::serve::Shared;
use crate::serve::http;
use crate::store::token;
use futures_lite::AsyncWriteExt;
use smol::net::TcpListener;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

/// How often the token file is checked for a rotation.
pub const TOKEN_WATCH: Duration = Duration::from_secs(2);
/// Connections the metrics port serves at once.
pub const MAX_METRICS_CONNS: usize = 8;
/// A metrics client must send its request head within this.
pub const METRICS_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// SIGHUP: the config (notifications, log level) and the token, again. A
/// changed key only a restart applies is named in one line; a config that
/// does not parse keeps the running one (the token is still re-read).
pub async fn reload(shared: &Rc<Shared>, dispatcher: &Rc<Dispatcher>, hook: Option<&Reload>) {
    log::info!("received SIGHUP; reloading the config file and the token");
    let mut ok = true;
    if let Some(hook) = hook {
        let f = hook.0.clone();
        match smol::unblock(move || f()).await {
            Ok(r) => {
                log::set_max_level(r.log);
                dispatcher.reconfigure(r.notify);
                if !r.restart.is_empty() {
                    log::warn!(
                        "reload: {} changed; restart the relay to apply {} (it runs with the old value until then)",
                        r.restart.join(", "),
                        if r.restart.len() == 1 { "it" } else { "them" }
                    );
                }
            }
            Err(e) => {
                log::error!("reload: {e}; keeping the running configuration");
                ok = false;
            }
        }
    }
    reload_token(shared, "SIGHUP").await;
    if ok {
        log::info!("reloaded");
    }
}

/// Re-reads the token file; `why` (SIGHUP, the file watch) goes in the log line.
async fn reload_token(shared: &Rc<Shared>, why: &str) {
    let dir = shared.data_dir.clone();
    match smol::unblock(move || token::load(&dir)).await {
        Ok(t) => {
            let changed = *shared.token.borrow() != t;
            if changed {
                *shared.token.borrow_mut() = t;
                log::info!("token changed (read on {why}); new connections need the new one");
            }
        }
        Err(e) => log::warn!(
            "{e}; keeping the current token (create one with `acp-relay token --rotate`)"
        ),
    }
}

/// Re-reads the token when its file changes (never creates it).
pub async fn watch_token(shared: Rc<Shared>) {
    let dir = shared.data_dir.clone();
    let stamp_of = |dir: std::path::PathBuf| smol::unblock(move || token::stamp(&dir));
    let mut last = stamp_of(dir.clone()).await;
    loop {
        smol::Timer::after(TOKEN_WATCH).await;
        let now = stamp_of(dir.clone()).await;
        if now != last {
            last = now;
            if now.is_some() {
                reload_token(&shared, "file watch").await;
            }
        }
    }
}

/// Serves `/metrics` (no token) and `/healthz` on the `--metrics-listen` port.
pub async fn metrics_accept(shared: Rc<Shared>, listener: TcpListener) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let Ok((mut stream, _peer)) = listener.accept().await else {
            smol::Timer::after(Duration::from_millis(50)).await;
            continue;
        };
        if open.get() >= MAX_METRICS_CONNS {
            continue;
        }
        open.set(open.get() + 1);
        let (shared, open) = (shared.clone(), open.clone());
        let ex = shared.relay.ex.clone();
        ex.spawn(async move {
            let head = futures_lite::future::or(
                async { crate::serve::socket::read_head(&mut stream).await.ok() },
                async {
                    smol::Timer::after(METRICS_HEAD_TIMEOUT).await;
                    None
                },
            )
            .await;
            if let Some(head) = head {
                let reply = if head.method == "GET"
                    && (head.path == "/metrics" || head.path == "/healthz")
                {
                    http::ops_endpoint(&shared, &head, true)
                } else {
                    http::text(
                        404,
                        "Not Found",
                        &[],
                        "this port serves /metrics and /healthz",
                    )
                };
                let _ = stream.write_all(&reply).await;
                let _ = stream.flush().await;
            }
            open.set(open.get().saturating_sub(1));
        })
        .detach();
    }
}

//! `acp-relay connect URL`: a stdio ↔ WebSocket bridge to a relay's `/acp`.

/// Options of `acp-relay connect`.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `ws://host:port/acp` or `wss://...`.
    pub url: String,
    /// The pairing token (`--token` or `ACP_RELAY_TOKEN`).
    pub token: Option<String>,
}

/// Bridges stdin/stdout to the relay until stdin closes.
pub fn run(opts: ConnectOptions) -> Result<(), String> {
    Err(format!("connect to {} is not built yet", opts.url))
}

//! The built-in demo ACP agent (`acp-relay demo-agent`).

/// Options of `acp-relay demo-agent`.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {}

/// Runs the agent on stdin/stdout until stdin closes.
pub fn run(_opts: DemoOptions) -> std::io::Result<()> {
    Ok(())
}

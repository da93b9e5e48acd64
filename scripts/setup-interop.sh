#!/usr/bin/env bash
# Installs the ACP peers the interop tests (tests/interop_*.rs) run against,
# into target/interop/ (never into the repository tree):
#   node/  npm @agentclientprotocol/sdk (its experimental/ws-client is the
#          WebSocket client), ws (Node 20 has no global WebSocket), and acpx
#          (a headless stdio ACP client; the 0.1.x line runs on Node 20)
#   venv/  a Python venv with PyPI agent-client-protocol (the official SDK)
#   agent/ npm @zed-industries/codex-acp, a real coding agent (one native
#          binary, ~230 MB, the smallest and fastest to install of the three
#          real agents that speak ACP), run by tests/interop_real_agent.rs
#          against the scripted model tests/interop/fake_model.py
# Idempotent and fast when done: each part has a stamp naming what it holds.
# Exit 0 when everything is installed; exit 3 (after saying what is missing
# and how to get it) when a registry or a tool is missing. scripts/test.sh
# then fails under CI=true, and elsewhere the tests that need that part
# print SKIPPED and pass.
set -uo pipefail
cd "$(dirname "$0")/.."

# Pinned so every machine tests against the same peers. Bump on purpose.
SDK_VERSION="2.4.0"
WS_VERSION="8.23.0"
ACPX_VERSION="0.1.15"
PY_SDK_VERSION="0.12.1"
CODEX_ACP_VERSION="0.16.0"
# Each install may take this long (seconds) before it counts as unreachable.
INSTALL_TIMEOUT="${INTEROP_INSTALL_TIMEOUT:-300}"

DIR="target/interop"
mkdir -p "$DIR"
say() { echo "setup-interop: $*" >&2; }
MISSING=()
missing() {
  MISSING+=("$*")
  say "MISSING: $*"
}
with_timeout() {
  if command -v timeout >/dev/null; then timeout "$INSTALL_TIMEOUT" "$@"; else "$@"; fi
}

setup_node() {
  local want="sdk=$SDK_VERSION ws=$WS_VERSION acpx=$ACPX_VERSION"
  local stamp="$DIR/node/.stamp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "npm peers already installed ($want)"
    return 0
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    missing "node/npm not found: install Node.js 20+ (the Node SDK, acpx and real-agent tests need it)"
    return 0
  fi
  local major
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if [ "$major" -lt 18 ]; then
    missing "node $(node --version) is too old: install Node.js 20+"
    return 0
  fi
  mkdir -p "$DIR/node"
  if [ ! -f "$DIR/node/package.json" ]; then
    printf '{\n  "name": "acp-relay-interop-peers",\n  "private": true,\n  "type": "module"\n}\n' \
      >"$DIR/node/package.json"
  fi
  say "installing npm @agentclientprotocol/sdk@$SDK_VERSION ws@$WS_VERSION acpx@$ACPX_VERSION into $DIR/node"
  local log="$DIR/node/install.log"
  if (cd "$DIR/node" && with_timeout npm install --no-audit --no-fund \
    --fetch-retries=1 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000 --fetch-timeout=30000 \
    "@agentclientprotocol/sdk@$SDK_VERSION" "ws@$WS_VERSION" "acpx@$ACPX_VERSION") >"$log" 2>&1; then
    if [ -f "$DIR/node/node_modules/@agentclientprotocol/sdk/dist/transports/ws-stream.js" ] &&
      [ -f "$DIR/node/node_modules/acpx/dist/cli.js" ]; then
      echo "$want" >"$stamp"
      say "npm peers installed ($want)"
    else
      missing "npm install finished but the SDK's ws-client or acpx is missing; see $log"
    fi
  else
    missing "could not install the npm peers (npm registry unreachable?); see $log"
    tail -n 5 "$log" >&2 || true
  fi
}

setup_python() {
  local want="agent-client-protocol=$PY_SDK_VERSION"
  local stamp="$DIR/venv/.stamp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$DIR/venv/bin/python" ]; then
    say "Python SDK already installed ($want)"
    return 0
  fi
  local py=""
  for c in python3 python; do
    if command -v "$c" >/dev/null &&
      "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
      py="$c"
      break
    fi
  done
  if [ -z "$py" ]; then
    missing "no Python 3.10+ found: install python3 (3.10+) with venv"
    return 0
  fi
  if [ ! -x "$DIR/venv/bin/python" ]; then
    if ! "$py" -m venv "$DIR/venv" >/dev/null 2>&1; then
      rm -rf "$DIR/venv"
      missing "'$py -m venv' failed: install python3-venv (Debian: apt-get install python3-venv)"
      return 0
    fi
  fi
  say "installing PyPI agent-client-protocol==$PY_SDK_VERSION into $DIR/venv"
  local log="$DIR/venv/install.log"
  if with_timeout "$DIR/venv/bin/python" -m pip install --disable-pip-version-check -q \
    --timeout 30 --retries 1 "agent-client-protocol==$PY_SDK_VERSION" >"$log" 2>&1 &&
    "$DIR/venv/bin/python" -c 'import acp' 2>>"$log"; then
    echo "$want" >"$stamp"
    say "Python SDK installed ($want)"
  else
    missing "could not install PyPI agent-client-protocol==$PY_SDK_VERSION (PyPI unreachable?); see $log"
    tail -n 5 "$log" >&2 || true
  fi
}

# npm's name for this machine's codex-acp build, or empty.
codex_platform() {
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) echo linux-x64 ;;
    Linux-aarch64 | Linux-arm64) echo linux-arm64 ;;
    *) echo "" ;;
  esac
}

setup_agent() {
  local want="codex-acp=$CODEX_ACP_VERSION"
  local stamp="$DIR/agent/.stamp"
  local plat
  plat="$(codex_platform)"
  if [ -z "$plat" ]; then
    missing "codex-acp ships no build for $(uname -s)-$(uname -m): the real-agent test cannot run here"
    return 0
  fi
  local bin="$DIR/agent/node_modules/@zed-industries/codex-acp-$plat/bin/codex-acp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$bin" ]; then
    say "real agent already installed ($want)"
    return 0
  fi
  if ! command -v npm >/dev/null; then
    missing "npm not found: install Node.js 20+ (npm installs the real agent @zed-industries/codex-acp)"
    return 0
  fi
  mkdir -p "$DIR/agent"
  if [ ! -f "$DIR/agent/package.json" ]; then
    printf '{\n  "name": "acp-relay-interop-agent",\n  "private": true\n}\n' >"$DIR/agent/package.json"
  fi
  say "installing npm @zed-industries/codex-acp@$CODEX_ACP_VERSION into $DIR/agent"
  local log="$DIR/agent/install.log"
  if (cd "$DIR/agent" && with_timeout npm install --no-audit --no-fund \
    --fetch-retries=1 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000 --fetch-timeout=60000 \
    "@zed-industries/codex-acp@$CODEX_ACP_VERSION") >"$log" 2>&1 && [ -x "$bin" ]; then
    echo "$want" >"$stamp"
    say "real agent installed ($want)"
  else
    missing "could not install npm @zed-industries/codex-acp@$CODEX_ACP_VERSION (npm registry unreachable?); see $log"
    tail -n 5 "$log" >&2 || true
  fi
}

setup_node
setup_python
setup_agent
if [ "${#MISSING[@]}" -gt 0 ]; then
  say "${#MISSING[@]} part(s) could not be installed:"
  for m in "${MISSING[@]}"; do say "  - $m"; done
  exit 3
fi
exit 0

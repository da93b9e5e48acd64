#!/usr/bin/env bash
# The Pi binary runs: the static aarch64 build under qemu-user (Debian's
# qemu-user-static) serves the demo agent to one device, which prompts, drops
# after the first chunk, reconnects with last_seq and must get the rest with
# no gap, then the turn's end. Exits non-zero on any failure.
#
# Not in CI: it builds a cross target and runs under emulation (about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { echo "pi-smoke: $*" >&2; }

QEMU=$(command -v qemu-aarch64-static || true)
if [ -z "$QEMU" ]; then
  say "installing qemu-user-static (Debian)"
  if ! apt-get install -y qemu-user-static >&2; then
    apt-get update >&2 && apt-get install -y qemu-user-static >&2
  fi
  QEMU=$(command -v qemu-aarch64-static) || { say "qemu-aarch64-static is not available"; exit 1; }
fi

scripts/build-static.sh aarch64 >&2
cargo build --release --example bench >&2
PI_BIN=$ROOT/target/aarch64-unknown-linux-musl/release/acp-relay
BENCH=$ROOT/target/release/examples/bench

WORK=$(mktemp -d "${TMPDIR:-/tmp}/acp-pi-smoke.XXXXXX")
RELAY_PID=""
cleanup() {
  if [ -n "$RELAY_PID" ]; then
    kill "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/data" "$WORK/ws"

file -b "$PI_BIN" | grep -q 'ARM aarch64' || { say "$PI_BIN is not an aarch64 binary"; exit 1; }

# The relay starts its demo agent from its own path (current_exe). Under
# qemu-user that path is the aarch64 binary, which the kernel can only exec
# when binfmt_misc sends aarch64 ELF files to qemu; without that, name the
# agent through qemu explicitly.
agent=()
how="built-in demo agent (binfmt_misc runs aarch64 children)"
if ! grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
  agent=(--agent "$QEMU $PI_BIN demo-agent --state-dir $WORK/data/demo-agent")
  how="demo agent through --agent '$QEMU ... demo-agent' (no binfmt_misc for aarch64 here)"
fi

"$QEMU" "$PI_BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" --workspace "$WORK/ws" \
  "${agent[@]}" --log info >"$WORK/stdout" 2>"$WORK/stderr" &
RELAY_PID=$!
for _ in $(seq 300); do
  grep -q 'listening on' "$WORK/stdout" 2>/dev/null && break
  kill -0 "$RELAY_PID" 2>/dev/null || break
  sleep 0.1
done
PORT=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$WORK/stdout" | sed 's/.*://' || true)
if [ -z "$PORT" ]; then
  say "the aarch64 relay did not start:"
  cat "$WORK/stderr" >&2
  exit 1
fi
say "$(head -1 "$WORK/stdout") under $(basename "$QEMU"); $how"

if result=$("$BENCH" smoke --url "ws://127.0.0.1:$PORT" --token "$(cat "$WORK/data/token")" --cwd "$WORK/ws"); then
  echo "$result"
  say "PASS: prompt, drop after the first chunk, resume with last_seq: no gap, turn ended"
else
  echo "$result"
  say "FAIL; relay log:"
  tail -20 "$WORK/stderr" >&2
  exit 1
fi

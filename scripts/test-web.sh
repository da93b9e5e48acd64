#!/bin/sh
# Browser tests of the built-in web client: builds the binary, then drives it
# in Debian's chromium through playwright (tests/web/test_web.py). Each test
# starts its own relay (temp dirs, port 0) and kills it on exit.
# With CI=true a missing browser or driver fails the run; locally it is
# SKIPPED, loudly. Screenshots go to target/web-shots/.
set -u
cd "$(dirname "$0")/.."
VENV=target/web-venv
missing=""
if [ ! -x /usr/bin/chromium ] || [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import playwright' 2>/dev/null; then
    sh scripts/setup-web.sh || missing="chromium and the playwright driver (run scripts/setup-web.sh: apt-get install chromium; pip install playwright into $VENV)"
fi
if [ -n "$missing" ]; then
    if [ "${CI:-}" = "true" ]; then
        echo "test-web: FAILED: missing $missing" >&2
        exit 1
    fi
    echo "==================================================================" >&2
    echo "SKIPPED: web browser tests: missing $missing" >&2
    echo "==================================================================" >&2
    exit 0
fi
cargo build --quiet ${ACP_RELAY_CARGO_FEATURES:+--features "$ACP_RELAY_CARGO_FEATURES"} || exit 1
BIN=target/debug/acp-relay
SHOTS=target/web-shots
mkdir -p "$SHOTS"
# The tests' relays are their own process groups; the runner kills them on
# exit, and this trap ends the runner if this script is interrupted.
# Every tests/web/test_*.py: test_web.py (this client) takes the binary and
# the screenshot folder; the others (the terminal's) read ACP_RELAY_BIN.
rc=0
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; fi' EXIT INT TERM HUP
for t in tests/web/test_*.py; do
    case "$t" in
        */test_web.py) ACP_RELAY_BIN="$BIN" "$VENV/bin/python" "$t" "$BIN" "$SHOTS" "$@" & ;;
        *) [ $# -gt 0 ] && continue; ACP_RELAY_BIN="$BIN" "$VENV/bin/python" "$t" & ;;
    esac
    pid=$!
    wait "$pid" || { echo "test-web: $t FAILED" >&2; rc=1; }
    pid=""
done
trap - EXIT
echo "test-web: screenshots in $SHOTS"
exit "$rc"

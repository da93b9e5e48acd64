#!/bin/sh
# Installs the web client's browser-test peers: Debian's chromium (never a
# downloaded browser build), htop (best effort) and the Python playwright
# driver in a venv under target/. Exit 0 when ready, 3 when they could not be installed.
set -u
cd "$(dirname "$0")/.."
VENV=target/web-venv
if ! command -v chromium >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core) >target/setup-web-apt.log 2>&1 || {
            echo "setup-web: could not install chromium with apt-get (see target/setup-web-apt.log)" >&2
            exit 3
        }
    else
        echo "setup-web: chromium is missing and apt-get is not available" >&2
        exit 3
    fi
fi
# htop for the terminal test's full-screen check (it skips that check, saying
# so, without htop): best effort, never a reason to fail.
if ! command -v htop >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    mkdir -p target
    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq htop ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq htop; }) >target/setup-web-apt-htop.log 2>&1 ||
        echo "setup-web: could not install htop with apt-get (see target/setup-web-apt-htop.log); the terminal test skips its htop check" >&2
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import playwright' 2>/dev/null; then
    mkdir -p target
    python3 -m venv "$VENV" >/dev/null 2>&1 || { echo "setup-web: python3 -m venv failed (install python3-venv)" >&2; exit 3; }
    # The driver only: never `playwright install` (it would download a browser).
    "$VENV/bin/pip" install -q playwright >target/setup-web-pip.log 2>&1 || {
        echo "setup-web: pip install playwright failed (see target/setup-web-pip.log)" >&2
        exit 3
    }
fi
echo "setup-web: chromium $(chromium --version 2>/dev/null | head -1), playwright in $VENV"
exit 0

#!/bin/sh
# Installs the web client's browser-test peers: Debian's chromium (never a
# downloaded browser build), htop and a CJK font (best effort) and the Python playwright
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
# For the terminal test, best effort (never a reason to fail): htop for its
# full-screen check (skipped, saying so, without it) and a CJK font so its
# wide characters show in the screenshots (their cells are asserted anyway).
extra=""
command -v htop >/dev/null 2>&1 || extra="htop"
[ -e /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] || extra="$extra fonts-droid-fallback"
if [ -n "$extra" ] && command -v apt-get >/dev/null 2>&1; then
    mkdir -p target
    # shellcheck disable=SC2086 # $extra is a list of package names
    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $extra ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $extra; }) >target/setup-web-apt-extra.log 2>&1 ||
        echo "setup-web: could not install$extra with apt-get (see target/setup-web-apt-extra.log); the terminal test skips its htop check without htop" >&2
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

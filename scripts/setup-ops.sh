#!/bin/sh
# Peers of the ops tests: `systemd-analyze` (Debian's `systemd` package) to
# verify scripts/acp-relay.service. Exit 0 when present, 3 when it could not
# be installed (scripts/test.sh then fails under CI=true, skips locally).
set -u
if command -v systemd-analyze >/dev/null 2>&1; then
    echo "setup-ops: systemd-analyze present"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-ops: systemd-analyze missing and no apt-get; install systemd" >&2
    exit 3
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "setup-ops: systemd-analyze missing; run as root: apt-get install systemd" >&2
        exit 3
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null 2>&1 || true
if $SUDO apt-get install -y -qq --no-install-recommends systemd >/dev/null 2>&1 \
    && command -v systemd-analyze >/dev/null 2>&1; then
    echo "setup-ops: installed systemd (systemd-analyze)"
    exit 0
fi
echo "setup-ops: could not install systemd (apt-get install systemd failed)" >&2
exit 3

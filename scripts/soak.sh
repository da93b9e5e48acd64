#!/usr/bin/env bash
# Soak: the real relay with the demo agent under faults for N minutes
# (default 10), then a table (turns, frames per device, reconnects, resets,
# slow drops, crashes injected and recovered, frames lost / duplicated /
# numbers reused, RSS and fds with their slope after warm-up). Exits 1 when a
# frame was lost, duplicated or a number reused. Loopback only.
#
#   scripts/soak.sh [--minutes N] [--seed S] [--release] [--keep] [--no-disk]
#                   [--sessions K] [--watchers W]
#
# The driver is examples/soak.rs (its doc lists the faults). As root the
# relay's data dir is a 384 MiB tmpfs that the soak fills now and then (a
# full disk for a few seconds); otherwise that fault is skipped with a
# message. 384 MiB holds three sessions' transcripts at their 64 MiB bound
# and the demo agent's histories, so the disk is full only when the soak
# fills it (with 128 MiB a long soak ran on a disk full for good).
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=10
SEED="${SOAK_SEED:-$(date +%s)}"
PROFILE=debug
KEEP=""
NO_DISK="${SOAK_NO_DISK:-}"
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --release) PROFILE=release; shift ;;
    --keep) KEEP=1; shift ;;
    --no-disk) NO_DISK=1; shift ;;
    --sessions|--watchers) EXTRA+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

say() { echo "soak: $*" >&2; }

if [ "$PROFILE" = release ]; then
  cargo build --release --bin acp-relay --example soak >&2
else
  cargo build ${ACP_RELAY_CARGO_FEATURES:+--features "$ACP_RELAY_CARGO_FEATURES"} --bin acp-relay --example soak >&2
fi
BIN="$PWD/target/$PROFILE/acp-relay"
DRIVER="$PWD/target/$PROFILE/examples/soak"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/acp-soak.XXXXXX")"
mkdir -p "$WORK/data"
MOUNTED=""
cleanup() {
  if [ -n "$MOUNTED" ]; then
    umount "$WORK/data" 2>/dev/null || umount -l "$WORK/data" 2>/dev/null || true
  fi
  if [ -z "$KEEP" ] && [ "${SOAK_OK:-}" = 1 ]; then
    rm -rf "$WORK"
  else
    say "files kept in $WORK (soak.log, relay-*.log)"
  fi
}
trap cleanup EXIT

TMPFS=()
if [ -n "$NO_DISK" ]; then
  say "full disk: SKIPPED (--no-disk)"
elif [ "$(id -u)" = 0 ]; then
  if err="$(mount -t tmpfs -o size=384m acp-soak "$WORK/data" 2>&1)"; then
    MOUNTED=1
    TMPFS=(--tmpfs)
    say "data dir on a 384 MiB tmpfs (full-disk faults on)"
  else
    say "full disk: SKIPPED (could not mount a tmpfs: $err)"
  fi
else
  say "full disk: SKIPPED (needs root to mount a small tmpfs)"
fi

say "seed $SEED (rerun with --seed $SEED)"
set +e
"$DRIVER" --bin "$BIN" --minutes "$MINUTES" --seed "$SEED" --work "$WORK" "${TMPFS[@]}" "${EXTRA[@]}"
rc=$?
set -e
[ "$rc" = 0 ] && SOAK_OK=1
exit "$rc"

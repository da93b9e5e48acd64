#!/usr/bin/env bash
# The whole test suite, the same on a laptop and in CI (`.ci/run`):
#   1. every scripts/setup-*.sh (each installs the peers its tests need:
#      exit 0 done, exit 3 could not install; anything else is a failure)
#   2. cargo fmt --check; cargo clippy --all-targets -D warnings, also with
#      --features tls
#   3. the cargo tests (cargo-nextest when installed, else cargo test), all
#      of them, --no-fail-fast; then the TLS build's test
#   4. scripts/test-web.sh when present; a one-minute scripts/soak.sh
#   5. a summary: every step, and everything SKIPPED
# With CI=true a peer that could not be installed fails the run (and the
# tests that need it fail too, saying what to install); elsewhere it is
# SKIPPED, loudly, and listed at the end. Every step runs even after an
# earlier one failed; the exit status is 1 when any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo is not installed; install the Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi

CI="${CI:-}"
in_ci() { [ "$CI" = "true" ] || [ "$CI" = "1" ]; }

# Tests append "<test>: <why>" here when a peer is missing (tests/common's
# peer_missing), so that the summary can list them.
mkdir -p target
SKIP_LOG="$PWD/target/test-skipped.log"
: >"$SKIP_LOG"
export ACP_RELAY_SKIP_LOG="$SKIP_LOG"
# No rc files for any shell the suite starts, whoever runs it.
unset BASH_ENV ENV

RESULTS=()
FAILED=0
SKIPS=()

# step NAME CMD...: runs CMD, records ok/FAIL with its duration.
step() {
  local name="$1"
  shift
  echo
  echo "==> $name: $*"
  local t0=$SECONDS
  if "$@"; then
    RESULTS+=("ok      $name ($((SECONDS - t0))s)")
  else
    RESULTS+=("FAILED  $name ($((SECONDS - t0))s)")
    FAILED=1
  fi
}

# 1. Setup scripts.
for setup in scripts/setup-*.sh; do
  [ -e "$setup" ] || continue
  name="$(basename "$setup")"
  echo
  echo "==> $name"
  t0=$SECONDS
  bash "$setup"
  rc=$?
  case "$rc" in
    0) RESULTS+=("ok      $name ($((SECONDS - t0))s)") ;;
    3)
      if in_ci; then
        RESULTS+=("FAILED  $name: could not install what its tests need (CI=true); see its output above")
        FAILED=1
      else
        RESULTS+=("SKIPPED $name: could not install everything; see its output above")
        SKIPS+=("$name: could not install everything (see its output above); the tests that need it say SKIPPED")
        echo "*** SKIPPED: $name could not install everything; the tests that need it will be SKIPPED ***" >&2
      fi
      ;;
    *)
      RESULTS+=("FAILED  $name (exit $rc)")
      FAILED=1
      ;;
  esac
done

# 2. Format and lints.
step "cargo fmt --check" cargo fmt --check
step "cargo clippy" cargo clippy --all-targets -- -D warnings
step "cargo clippy --features tls" cargo clippy --all-targets --features tls -- -D warnings

# 3. Tests. nextest runs each test in its own process (a hung or leaking
# test cannot take others down, and it is ended with its process group);
# its last line is nextest's own summary.
THREADS="${TEST_THREADS:-4}"
TEST_LOG="$PWD/target/test-cargo.log"
run_nextest() {
  cargo nextest run --all-targets --no-fail-fast --test-threads "$THREADS" 2>&1 | tee "$TEST_LOG"
}
run_cargo_test() {
  cargo test --all-targets --no-fail-fast -- --test-threads="$THREADS" 2>&1 | tee "$TEST_LOG"
}
if cargo nextest --version >/dev/null 2>&1; then
  step "cargo nextest" run_nextest
  # nextest does not run doctests.
  step "cargo test --doc" cargo test --doc
else
  echo "test.sh: cargo-nextest is not installed; using cargo test (cargo install cargo-nextest for per-test processes)"
  step "cargo test" run_cargo_test
fi
# The optional built-in TLS (ring needs the C compiler every machine here has).
step "cargo test --features tls --test tls" cargo test --features tls --test tls

# 4. Browser tests (web) and a short soak.
WEB_LOG="$PWD/target/test-web.log"
: >"$WEB_LOG"
run_web() { bash scripts/test-web.sh 2>&1 | tee "$WEB_LOG"; }
if [ -e scripts/test-web.sh ]; then
  step "scripts/test-web.sh" run_web
fi
if [ -e scripts/soak.sh ]; then
  step "scripts/soak.sh --minutes 1" bash scripts/soak.sh --minutes 1
fi

# 5. Summary: what the tests recorded, and what the browser tests printed.
while IFS= read -r line; do
  [ -n "$line" ] && SKIPS+=("$line")
done <"$SKIP_LOG"
while IFS= read -r line; do
  SKIPS+=("${line#*SKIPPED: }")
done < <(grep -a 'SKIPPED: ' "$WEB_LOG" 2>/dev/null || true)
echo
echo "==> summary"
for r in "${RESULTS[@]}"; do
  echo "  $r"
done
if [ "${#SKIPS[@]}" -gt 0 ]; then
  echo
  echo "*** SKIPPED (${#SKIPS[@]}): these were NOT tested ***"
  for s in "${SKIPS[@]}"; do
    echo "  SKIPPED: $s"
  done
else
  echo "  nothing SKIPPED"
fi
if [ "$FAILED" -ne 0 ]; then
  echo "test.sh: FAILED (see the steps above)"
else
  echo "test.sh: all steps passed"
fi
# The closing line is the test runner's own summary (nextest's "Summary
# [..] N tests run: ..." or cargo test's last "test result:" line).
closing="$(grep -E '^ *Summary \[|^test result:|^error: [0-9]+ targets? failed' "$TEST_LOG" 2>/dev/null | tail -n 1)"
[ -n "$closing" ] && echo "$closing"
exit "$FAILED"

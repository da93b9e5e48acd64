#!/usr/bin/env bash
# The whole test suite: unit tests of the core, integration tests that start the
# real relay binary on loopback ports, and interop tests against ACP peers from
# package registries (installed here when missing; skipped with a message when
# a registry cannot be reached).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo is not installed; install the Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi

if [ -x scripts/setup-interop.sh ]; then
  scripts/setup-interop.sh || echo "test.sh: interop peers could not be installed; their tests will say so and skip" >&2
fi

cargo build --all-targets
cargo test --all-targets -- --test-threads="${TEST_THREADS:-4}"
# The optional built-in TLS (ring needs the C compiler every machine here has).
cargo test --features tls --test tls

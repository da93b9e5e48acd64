#!/usr/bin/env bash
# Fully static release binaries for x86_64 and aarch64 (Raspberry Pi 3/4/5 on a
# 64-bit OS), musl libc, no C cross-compiler: aarch64 links with the
# toolchain's bundled rust-lld. Checks each with `file` and prints its size.
#
#   scripts/build-static.sh            both targets
#   scripts/build-static.sh aarch64    one (x86_64 | aarch64)
#
# Output: target/<triple>/release/acp-relay, and copies in target/static/
# (acp-relay-x86_64, acp-relay-aarch64).
set -euo pipefail
cd "$(dirname "$0")/.."

want=${1:-all}
triples=()
case $want in
  all) triples=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl) ;;
  x86_64 | x86_64-unknown-linux-musl) triples=(x86_64-unknown-linux-musl) ;;
  aarch64 | aarch64-unknown-linux-musl) triples=(aarch64-unknown-linux-musl) ;;
  *) echo "build-static: unknown target '$want'; use x86_64 or aarch64" >&2; exit 2 ;;
esac

command -v rustup >/dev/null || { echo "build-static: rustup is needed to add the musl targets" >&2; exit 1; }
rustup target add "${triples[@]}" >&2

SYSROOT=$(rustc --print sysroot)
HOST=$(rustc -vV | awk '/^host:/ {print $2}')
LLD=$SYSROOT/lib/rustlib/$HOST/bin/rust-lld
[ -x "$LLD" ] || { echo "build-static: no bundled rust-lld at $LLD" >&2; exit 1; }

# The bundled rust-lld as the aarch64 linker (rustc recognises the name and passes
# -flavor gnu itself); musl targets link statically by default, crt-static says so.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=$LLD
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static"
# Non-PIE: a static-pie binary carries ~45 KB of relocations for nothing.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"

mkdir -p target/static
status=0
for t in "${triples[@]}"; do
  echo "build-static: building $t" >&2
  cargo build --release --locked --target "$t" --bin acp-relay >&2
  bin=target/$t/release/acp-relay
  info=$(file -b "$bin")
  short=${t%%-*}
  cp "$bin" "target/static/acp-relay-$short"
  size=$(stat -c %s "$bin")
  verdict="ok"
  if ! grep -Eq 'statically linked|static-pie linked' <<<"$info"; then
    verdict="NOT STATIC"
    status=1
  fi
  if [ "$size" -ge $((2 * 1024 * 1024)) ]; then
    verdict="$verdict, over the 2 MiB target"
  fi
  printf '%-28s %9d bytes  %5.2f MiB  %s\n    %s\n' "$t" "$size" "$(awk "BEGIN {print $size / 1048576}")" "$verdict" "$info"
done
exit $status

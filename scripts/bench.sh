#!/usr/bin/env bash
# Speed and footprint of the relay, side by side with websocat's plain pipe,
# in one run; prints one markdown table and writes it to target/bench/latest.md
# (raw figures, one JSON line per run, to target/bench/latest.jsonl).
#
# Never part of CI (.ci/run does not call it): it takes minutes and its figures
# depend on the machine. Loopback only. Every process it starts is ended on exit.
#
# Knobs (environment):
#   BENCH_FRAMES=200000        frames per throughput run
#   BENCH_SIZES="200 2000"     text bytes per flood chunk (the line is ~190 B more)
#   BENCH_SOCKET_QUEUE=        --socket-queue for throughput runs (default: frames+1024,
#                              so a run measures speed, not the drop rule; the default
#                              queue gets its own zero-loss row)
#   BENCH_RATE_FRAMES=5000     frames of the 1000 frames/s latency run
#   BENCH_FILL_FRAMES=3000     2000-byte frames per session to fill a default ring
#   BENCH_CG_FRAMES=20000      frames of the instruction-count run (under callgrind)
#   BENCH_SKIP_BUILD=1         use the binaries already in target/release
#   BENCH_NO_WEBSOCAT=1        skip the baseline
#   BENCH_ONLY_MEMORY=1        only the memory figures (idle RSS, 16 x 4 full rings,
#                              4 stalled devices during a flood) and the table
#   BENCH_STALL_FRAMES=40000   2000-byte frames of the stalled-devices flood
#   BENCH_ONLY_PROJECTS=1      only the projects figure (3 projects x 2 agents
#                              configured, one session in use) and the table
#   BENCH_NO_CGROUP=1          never use a cgroup
#
# The memory figures run the relay inside a 64 MiB memory cgroup when it can
# (root, and cgroup v2 with the memory controller, or v1's memory
# hierarchy); the agent is moved out of it, so the limit is the relay's
# alone. The table says whether it ran in one, its peak and OOM kills.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

N=${BENCH_FRAMES:-200000}
SIZES=${BENCH_SIZES:-"200 2000"}
QUEUE=${BENCH_SOCKET_QUEUE:-$((N + 1024))}
RATE_N=${BENCH_RATE_FRAMES:-5000}
FILL_N=${BENCH_FILL_FRAMES:-3000}
CG_N=${BENCH_CG_FRAMES:-20000}
OUT=$ROOT/target/bench
mkdir -p "$OUT"
JSONL=$OUT/latest.jsonl
: >"$JSONL"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/acp-bench.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
  cg_remove
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "bench: $*" >&2; }

# ---- build ----
if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  say "building release (binary and bench client)"
  cargo build --release --bin acp-relay --example bench >&2
fi
BIN=$ROOT/target/release/acp-relay
BENCH=$ROOT/target/release/examples/bench
[ -x "$BIN" ] && [ -x "$BENCH" ] || { say "missing $BIN or $BENCH"; exit 1; }

# ---- baseline: websocat 1.x ----
WEBSOCAT=""
if [ -z "${BENCH_NO_WEBSOCAT:-}" ]; then
  if command -v websocat >/dev/null; then
    WEBSOCAT=$(command -v websocat)
  elif [ -x "$HOME/.cargo/bin/websocat" ]; then
    WEBSOCAT=$HOME/.cargo/bin/websocat
  else
    say "installing websocat 1.x from crates.io (cargo install websocat --version '^1' --locked)"
    if cargo install websocat --version '^1' --locked >&2; then
      WEBSOCAT=$HOME/.cargo/bin/websocat
    else
      say "could not install websocat; the baseline columns will say 'unavailable'"
    fi
  fi
fi

TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_split() { awk '{print $14 " " $15}' "/proc/$1/stat"; }
# utime+stime of the process's main thread alone (the relay's executor thread).
main_ticks() { awk '{print $14 + $15}' "/proc/$1/task/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# record KEY=VALUE... : one JSON line of script-side figures.
record() {
  python3 - "$@" >>"$JSONL" <<'EOF'
import json, sys
v = {}
for a in sys.argv[1:]:
    k, _, x = a.partition("=")
    try:
        v[k] = int(x)
    except ValueError:
        try:
            v[k] = float(x)
        except ValueError:
            v[k] = x
print(json.dumps(v))
EOF
}

# add_json LABEL JSON [KEY=VALUE...]: a bench client result, labelled, plus extra figures.
add_json() {
  local label=$1 json=$2
  shift 2
  python3 - "$label" "$json" "$@" >>"$JSONL" <<'EOF'
import json, sys
label, raw = sys.argv[1], sys.argv[2]
try:
    v = json.loads(raw)
except ValueError:
    v = {"ok": False, "error": "no result: " + raw[:200]}
v["label"] = label
for a in sys.argv[3:]:
    k, _, x = a.partition("=")
    try:
        v[k] = float(x) if "." in x else int(x)
    except ValueError:
        v[k] = x
if "tck" in v:
    v["utime_s"] = v["utick"] / v["tck"]
    v["stime_s"] = v["stick"] / v["tck"]
    v["cpu_s"] = v["utime_s"] + v["stime_s"]
    if "mtick" in v:
        v["main_cpu_s"] = v["mtick"] / v["tck"]
print(json.dumps(v))
EOF
}

# start_relay NAME AGENT_FLAGS [SERVE FLAGS...]: sets RELAY_PID PORT TOKEN DATA WS.
start_relay() {
  local name=$1 agent=$2
  shift 2
  DATA=$WORK/$name
  WS=$WORK/$name-ws
  mkdir -p "$DATA" "$WS"
  ${RELAY_WRAP:-} "$BIN" serve --listen 127.0.0.1:0 --data-dir "$DATA" --workspace "$WS" \
    --agent "$BIN demo-agent $agent" --log warn "$@" >"$DATA/stdout" 2>"$DATA/stderr" &
  RELAY_PID=$!
  PIDS+=("$RELAY_PID")
  local i
  for i in $(seq 600); do
    grep -q 'listening on' "$DATA/stdout" 2>/dev/null && break
    kill -0 "$RELAY_PID" 2>/dev/null || { say "relay $name exited: $(tail -3 "$DATA/stderr")"; return 1; }
    sleep 0.1
  done
  PORT=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$DATA/stdout" | sed 's/.*://')
  [ -n "$PORT" ] || { say "relay $name did not start"; return 1; }
  TOKEN=$(cat "$DATA/token")
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_websocat AGENT_FLAGS: sets WS_PID WS_PORT. websocat starts the agent per
# connection and carries each stdout line as one text message (its line mode).
start_websocat() {
  local out=$WORK/websocat.$RANDOM i
  WS_PORT=$(free_port)
  "$WEBSOCAT" -t ws-l:127.0.0.1:"$WS_PORT" cmd:"$BIN demo-agent $1" >"$out" 2>"$out.err" &
  WS_PID=$!
  PIDS+=("$WS_PID")
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$WS_PORT") 2>/dev/null && return 0
    sleep 0.05
  done
  say "websocat did not start: $(cat "$out.err")"
  return 1
}

flood() { # flood DEVICES FRAMES [more bench flags]
  local k=$1 n=$2
  shift 2
  "$BENCH" flood --url "ws://127.0.0.1:$PORT" --token "$TOKEN" --devices "$k" --frames "$n" \
    --cwd "$WS" "$@" | head -1 || true
}


# ---- a 64 MiB memory cgroup for the memory figures, when this machine allows it ----
CG=""        # the cgroup dir, when there is one
CG_PARENT="" # where this script runs (agents are moved back there)
CG_KIND=""   # v1 or v2
CG_WHY=""    # why there is none
cg_setup() {
  [ -z "${BENCH_NO_CGROUP:-}" ] || { CG_WHY="BENCH_NO_CGROUP set"; return 0; }
  [ "$(id -u)" = 0 ] || { CG_WHY="not root"; return 0; }
  local rel
  if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
    rel=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
    CG_PARENT="/sys/fs/cgroup${rel%/}"
    grep -qw memory "$CG_PARENT/cgroup.subtree_control" 2>/dev/null ||
      echo +memory >"$CG_PARENT/cgroup.subtree_control" 2>/dev/null || true
    if mkdir "$CG_PARENT/acp-bench-$$" 2>/dev/null; then
      if echo 64M >"$CG_PARENT/acp-bench-$$/memory.max" 2>/dev/null; then
        echo 0 >"$CG_PARENT/acp-bench-$$/memory.swap.max" 2>/dev/null || true
        CG="$CG_PARENT/acp-bench-$$"
        CG_KIND=v2
        return 0
      fi
      rmdir "$CG_PARENT/acp-bench-$$" 2>/dev/null || true
    fi
  fi
  if [ -d /sys/fs/cgroup/memory ]; then
    rel=$(awk -F: '$2 == "memory" {print $3}' /proc/self/cgroup)
    CG_PARENT="/sys/fs/cgroup/memory${rel%/}"
    if mkdir "$CG_PARENT/acp-bench-$$" 2>/dev/null; then
      if echo $((64 << 20)) >"$CG_PARENT/acp-bench-$$/memory.limit_in_bytes" 2>/dev/null; then
        echo $((64 << 20)) >"$CG_PARENT/acp-bench-$$/memory.memsw.limit_in_bytes" 2>/dev/null || true
        # Charge what the relay already holds when it moves in.
        echo 3 >"$CG_PARENT/acp-bench-$$/memory.move_charge_at_immigrate" 2>/dev/null || true
        CG="$CG_PARENT/acp-bench-$$"
        CG_KIND=v1
        return 0
      fi
      rmdir "$CG_PARENT/acp-bench-$$" 2>/dev/null || true
    fi
  fi
  CG_WHY="no writable memory cgroup (v2 memory controller or v1 memory hierarchy)"
}
# cg_enter PID: the relay goes into the cgroup (before it starts its agent's work).
cg_enter() { [ -z "$CG" ] || echo "$1" >"$CG/cgroup.procs" 2>/dev/null || true; }
# cg_agents_out PID: the relay's children (its agent) go back to where this script runs.
cg_agents_out() {
  [ -n "$CG" ] || return 0
  local c
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    echo "$c" >"$CG_PARENT/cgroup.procs" 2>/dev/null || true
  done
}
# cg_reset: zero the peak before a figure.
cg_reset() {
  [ -n "$CG" ] || return 0
  if [ "$CG_KIND" = v1 ]; then echo 0 >"$CG/memory.max_usage_in_bytes" 2>/dev/null || true; fi
  if [ "$CG_KIND" = v2 ]; then echo 0 >"$CG/memory.peak" 2>/dev/null || true; fi
}
cg_peak_kib() {
  [ -n "$CG" ] || { echo ""; return 0; }
  local b=""
  if [ "$CG_KIND" = v1 ]; then b=$(cat "$CG/memory.max_usage_in_bytes" 2>/dev/null || true); fi
  if [ "$CG_KIND" = v2 ]; then b=$(cat "$CG/memory.peak" 2>/dev/null || true); fi
  [ -n "$b" ] && echo $((b / 1024)) || echo ""
}
cg_ooms() {
  [ -n "$CG" ] || { echo ""; return 0; }
  if [ "$CG_KIND" = v1 ]; then awk '/^oom_kill / {print $2}' "$CG/memory.oom_control" 2>/dev/null || echo 0; fi
  if [ "$CG_KIND" = v2 ]; then awk '/^oom_kill / {print $2}' "$CG/memory.events" 2>/dev/null || echo 0; fi
}
# cg_stat: the cgroup's own split of what it holds (anonymous vs page cache).
cg_stat() {
  [ -n "$CG" ] || return 0
  if [ "$CG_KIND" = v1 ]; then
    awk '/^total_rss / {printf "cg_rss_kib=%d ", $2/1024} /^total_cache / {printf "cg_cache_kib=%d ", $2/1024}' "$CG/memory.stat" 2>/dev/null || true
  else
    awk '/^anon / {printf "cg_rss_kib=%d ", $2/1024} /^file / {printf "cg_cache_kib=%d ", $2/1024}' "$CG/memory.stat" 2>/dev/null || true
  fi
}
# cg_oom_delta BASE: OOM kills since BASE was read.
cg_oom_delta() {
  [ -n "$CG" ] || { echo ""; return 0; }
  local now
  now=$(cg_ooms)
  echo $(( ${now:-0} - ${1:-0} ))
}
cg_remove() {
  [ -n "$CG" ] || return 0
  local p
  for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$CG" 2>/dev/null && break; sleep 0.2; done
  CG=""
}
cg_setup
if [ -n "$CG" ]; then
  say "memory figures run inside a 64 MiB cgroup ($CG_KIND: $CG)"
else
  say "memory figures run without a cgroup: $CG_WHY"
fi

ONLY_MEM="${BENCH_ONLY_MEMORY:-${BENCH_ONLY_PROJECTS:-}}"
if [ -z "$ONLY_MEM" ]; then
# ---- 1. throughput, latency and CPU: 1 and 4 devices, each frame size ----
for fb in $SIZES; do
  say "throughput at ${fb}-byte chunks, $N frames (socket queue $QUEUE)"
  start_relay "tp$fb" "--flood $N --frame-bytes $fb" --socket-queue "$QUEUE" --socket-bytes $((1 << 30)) --memory-budget 0
  for k in 1 4; do
    read -r u0 s0 < <(cpu_split "$RELAY_PID")
    m0=$(main_ticks "$RELAY_PID")
    res=$(flood "$k" "$N")
    read -r u1 s1 < <(cpu_split "$RELAY_PID")
    m1=$(main_ticks "$RELAY_PID")
    add_json "relay-$fb-$k" "$res" fb="$fb" k="$k" utick=$((u1 - u0)) stick=$((s1 - s0)) \
      mtick=$((m1 - m0)) tck="$TCK"
  done
  stop "$RELAY_PID"
  if [ -n "$WEBSOCAT" ]; then
    say "websocat plain pipe at ${fb}-byte chunks"
    start_websocat "--flood $N --frame-bytes $fb"
    read -r u0 s0 < <(cpu_split "$WS_PID")
    res=$("$BENCH" plain --url "ws://127.0.0.1:$WS_PORT" --frames "$N" --cwd "$WORK" | head -1 || true)
    read -r u1 s1 < <(cpu_split "$WS_PID")
    add_json "websocat-$fb" "$res" fb="$fb" utick=$((u1 - u0)) stick=$((s1 - s0)) tck="$TCK"
    stop "$WS_PID"
  fi
done

# ---- 2. zero loss with the default socket queue (the drop rule on) ----
say "zero loss with the default --socket-queue, 1 device, $N frames"
start_relay zl "--flood $N --frame-bytes 200"
res=$(flood 1 "$N")
add_json "relay-default-queue" "$res"
stop "$RELAY_PID"

# ---- 3. latency at 1000 frames/s to 4 devices ----
say "latency at 1000 frames/s, 4 devices, $RATE_N frames"
start_relay rate "--flood $RATE_N --frame-bytes 200 --rate 1000"
res=$(flood 4 "$RATE_N")
add_json "relay-rate" "$res"
stop "$RELAY_PID"
if [ -n "$WEBSOCAT" ]; then
  start_websocat "--flood $RATE_N --frame-bytes 200 --rate 1000"
  res=$("$BENCH" plain --url "ws://127.0.0.1:$WS_PORT" --frames "$RATE_N" --cwd "$WORK" | head -1 || true)
  add_json "websocat-rate" "$res"
  sleep 1
  record label=websocat-idle rss_kib="$(rss_kib "$WS_PID")"
  stop "$WS_PID"
fi

fi # ONLY_MEM

# ---- 4. memory: idle RSS; 16 sessions x 4 devices; 4 stalled devices during a flood ----
# Run twice when a cgroup is available: RSS figures without it, then the
# same inside the 64 MiB cgroup (does it fit, or is the relay OOM-killed).
memory_figures() { # TAG
TAG=$1
say "idle RSS, then 16 sessions x 4 devices, $FILL_N 2000-byte frames each"
# 64 devices come from one address: lift the per-address admission limit where there is one.
peer_flag=()
"$BIN" serve --help 2>&1 | grep -q -- '--max-conns-per-peer' && peer_flag=(--max-conns-per-peer 128)
oom0=$(cg_ooms)
start_relay "rss$TAG" "--flood $FILL_N --frame-bytes 2000" "${peer_flag[@]}"
cg_enter "$RELAY_PID"
sleep 1
idle=$(rss_kib "$RELAY_PID")
cg_reset
"$BENCH" flood --url "ws://127.0.0.1:$PORT" --token "$TOKEN" --devices 4 --sessions 16 \
  --frames "$FILL_N" --sequential --pause 2 --hold 20 --cwd "$WS" >"$WORK/hold.out" 2>"$WORK/hold.err" &
HOLD_PID=$!
PIDS+=("$HOLD_PID")
# Peak RSS, sampled (VmHWM is lost when the relay is killed).
( p=0; while kill -0 "$RELAY_PID" 2>/dev/null && kill -0 "$HOLD_PID" 2>/dev/null; do
    r=$(rss_kib "$RELAY_PID" 2>/dev/null || echo 0); [ -n "$r" ] && [ "$r" -gt "$p" ] && p=$r && echo "$p" >"$WORK/peak$TAG"
    sleep 0.1
  done ) &
PIDS+=("$!")
lines() { wc -l <"$WORK/hold.out" 2>/dev/null || echo 0; }
for _ in $(seq 600); do
  [ "$(lines)" -ge 1 ] && break
  kill -0 "$HOLD_PID" 2>/dev/null || break
  sleep 0.1
done
cg_agents_out "$RELAY_PID"
sleep 1
connected=$(rss_kib "$RELAY_PID")
for _ in $(seq 1800); do
  [ "$(lines)" -ge 2 ] && break
  kill -0 "$HOLD_PID" 2>/dev/null || break
  sleep 0.1
done
sleep 1
alive=1
kill -0 "$RELAY_PID" 2>/dev/null || alive=0
full=$(rss_kib "$RELAY_PID" 2>/dev/null || echo 0)
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$RELAY_PID/status" 2>/dev/null || echo 0)
add_json "relay-rss$TAG" "$(sed -n 2p "$WORK/hold.out" 2>/dev/null || echo '{}')" \
  idle_kib="$idle" connected_kib="$connected" full_kib="${full:-0}" hwm_kib="${hwm:-0}" \
  relay_alive="$alive" cg="${CG:+$CG_KIND}" cg_peak_kib="$(cg_peak_kib)" cg_ooms="$(cg_oom_delta "$oom0")" \
  sampled_peak_kib="$(cat "$WORK/peak$TAG" 2>/dev/null || echo 0)" $(cg_stat)
stop "$HOLD_PID"
stop "$RELAY_PID"

# ---- 4b. 4 devices that stop reading during a flood ----
STALL_N=${BENCH_STALL_FRAMES:-40000}
say "RSS with 4 stalled devices and 1 reader during a flood of $STALL_N 2000-byte frames"
oom0=$(cg_ooms)
start_relay "stall$TAG" "--flood $STALL_N --frame-bytes 2000 --rate 10000"
cg_enter "$RELAY_PID"
sleep 1
s_idle=$(rss_kib "$RELAY_PID")
cg_reset
"$BENCH" flood --url "ws://127.0.0.1:$PORT" --token "$TOKEN" --devices 1 --sessions 1 \
  --frames "$STALL_N" --stalled 4 --pause 1 --cwd "$WS" >"$WORK/stall.out" 2>"$WORK/stall.err" &
STALL_PID=$!
PIDS+=("$STALL_PID")
for _ in $(seq 300); do
  [ "$(wc -l <"$WORK/stall.out" 2>/dev/null || echo 0)" -ge 1 ] && break
  kill -0 "$STALL_PID" 2>/dev/null || break
  sleep 0.1
done
cg_agents_out "$RELAY_PID"
s_peak=0
while kill -0 "$STALL_PID" 2>/dev/null; do
  r=$(rss_kib "$RELAY_PID" 2>/dev/null || echo 0)
  [ -n "$r" ] && [ "$r" -gt "$s_peak" ] && s_peak=$r
  sleep 0.2
done
wait "$STALL_PID" 2>/dev/null || true
sleep 1
s_alive=1
kill -0 "$RELAY_PID" 2>/dev/null || s_alive=0
s_after=$(rss_kib "$RELAY_PID" 2>/dev/null || echo 0)
s_hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$RELAY_PID/status" 2>/dev/null || echo 0)
add_json "relay-stalled$TAG" "$(sed -n 2p "$WORK/stall.out" 2>/dev/null || echo '{}')" \
  idle_kib="$s_idle" peak_kib="$s_peak" after_kib="${s_after:-0}" hwm_kib="${s_hwm:-0}" \
  relay_alive="$s_alive" cg="${CG:+$CG_KIND}" cg_peak_kib="$(cg_peak_kib)" cg_ooms="$(cg_oom_delta "$oom0")" $(cg_stat)
stop "$RELAY_PID"
}
# ---- 4c. several projects and agents configured, one in use ----
# The relay with 3 projects x 2 agents: only the agent the session uses runs
# (the others are never started), and the relay's own RSS barely moves.
projects_figure() {
say "RSS with 3 projects x 2 agents configured and one session in use"
mkdir -p "$WORK/proj-b" "$WORK/proj-c"
start_relay projects "--flood 2000 --frame-bytes 200" \
  --workspace "b=$WORK/proj-b" --workspace "c=$WORK/proj-c" \
  --agent "second=$BIN demo-agent --flood 2000 --frame-bytes 200"
sleep 1
p_idle=$(rss_kib "$RELAY_PID")
res=$(flood 1 2000)
sleep 1
p_used=$(rss_kib "$RELAY_PID")
# The relay's agent processes (its direct children).
p_agents=$(grep -ls "^PPid:[[:space:]]*$RELAY_PID\$" /proc/[0-9]*/status 2>/dev/null | wc -l)
add_json relay-projects "$res" idle_kib="$p_idle" used_kib="$p_used" agents="$p_agents" projects=3 agent_kinds=2
stop "$RELAY_PID"
}
if [ -n "${BENCH_ONLY_PROJECTS:-}" ]; then
  projects_figure
else
CG_SAVED=$CG
CG=""
memory_figures ""
projects_figure
CG=$CG_SAVED
if [ -n "$CG" ]; then
  say "the memory figures again, inside the 64 MiB cgroup"
  memory_figures "-cg"
fi
fi
if [ -z "$ONLY_MEM" ]; then

# ---- 5. full-ring replay ----
say "replay of a full default ring"
start_relay replay "--flood $FILL_N --frame-bytes 2000"
res=$("$BENCH" replay --url "ws://127.0.0.1:$PORT" --token "$TOKEN" --frames "$FILL_N" --repeat 7 --cwd "$WS" | head -1 || true)
add_json "relay-replay" "$res"
stop "$RELAY_PID"

# ---- 6. instructions per delivered frame ----
if perf stat -e instructions true 2>&1 | grep -q 'not supported' || ! command -v perf >/dev/null; then
  if command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then
    for k in 1 4; do
      say "instructions per frame under callgrind, $k device(s), $CG_N frames"
      RELAY_WRAP="valgrind --tool=callgrind --callgrind-out-file=$WORK/cg$k.%p" \
        start_relay "cg$k" "--flood $CG_N --frame-bytes 200" --socket-queue $((CG_N + 1024)) --socket-bytes $((1 << 30)) --memory-budget 0
      flood "$k" "$CG_N" >/dev/null # warm-up: agent started, first session
      callgrind_control -d "$RELAY_PID" >/dev/null
      res=$(flood "$k" "$CG_N")
      callgrind_control -d "$RELAY_PID" >/dev/null
      ir=$(awk '/^summary:/ {print $2}' "$WORK/cg$k.$RELAY_PID.2" 2>/dev/null || echo 0)
      add_json "relay-ir-$k" "$res" ir="${ir:-0}" tool=callgrind k="$k"
      stop "$RELAY_PID"
    done
  else
    record label=relay-ir-1 tool=unavailable
  fi
else
  for k in 1 4; do
    say "instructions per frame under perf stat, $k device(s), $CG_N frames"
    start_relay "perf$k" "--flood $CG_N --frame-bytes 200" --socket-queue $((CG_N + 1024)) --socket-bytes $((1 << 30)) --memory-budget 0
    flood "$k" "$CG_N" >/dev/null
    perf stat -e instructions -x, -o "$WORK/perf$k" -p "$RELAY_PID" &
    PERF_PID=$!
    PIDS+=("$PERF_PID")
    sleep 0.2
    res=$(flood "$k" "$CG_N")
    kill -INT "$PERF_PID"
    wait "$PERF_PID" 2>/dev/null || true
    ir=$(awk -F, '/instructions/ {print $1; exit}' "$WORK/perf$k")
    add_json "relay-ir-$k" "$res" ir="${ir:-0}" tool=perf k="$k"
    stop "$RELAY_PID"
  done
fi

fi # ONLY_MEM

# ---- 7. size and dependency tree ----
static=""
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  f=$ROOT/target/$t/release/acp-relay
  [ -f "$f" ] && static="$static $t=$(stat -c %s "$f")"
done
crates=$(cargo tree -e normal --prefix none 2>/dev/null | sed 's/ (\*)$//' | sort -u | wc -l)
record label=size bin_bytes="$(stat -c %s "$BIN")" crates="$crates" static="${static# }" \
  opt_level="$(awk '/^\[profile.release\]/{f=1;next} /^\[/{f=0} f && /^opt-level/ {gsub(/[ "]/,"",$0); sub(/opt-level=/,""); print}' Cargo.toml)"

# ---- table ----
python3 - "$JSONL" "$OUT/latest.md" <<'EOF'
import json, sys, platform, os, datetime
rows = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line:
        v = json.loads(line)
        rows[v.get("label")] = v

def g(label, key, default=None):
    return rows.get(label, {}).get(key, default)

def fmt(x, unit="", digits=0):
    if x is None:
        return "unavailable"
    if isinstance(x, str):
        return x
    if digits == 0:
        return f"{x:,.0f}{unit}"
    return f"{x:,.{digits}f}{unit}"

def mark(ok):
    return "—" if ok is None else ("✅ pass" if ok else "❌ miss")

out = []
out.append(f"## acp-relay benchmark — {datetime.date.today()} — {os.cpu_count()} cores, {platform.machine()}")
out.append("")
out.append("| figure | acp-relay | websocat plain pipe | ratio | target | |")
out.append("|---|---|---|---|---|---|")

sizes = sorted({v["fb"] for v in rows.values() if "fb" in v and v.get("label", "").startswith("relay-")})
one_mbps = {}
for fb in sizes:
    r1, w = f"relay-{fb}-1", f"websocat-{fb}"
    fr = g(r1, "avg_frame_bytes")
    lossy = lambda l: "" if g(l, "ok") else f" (lost {g(l,'lost')}, {';'.join(g(l,'errors',[]) or [g(l,'error','?')])[:80]})"
    rf, wf = g(r1, "fps"), g(w, "fps")
    ratio = rf / wf if rf and wf else None
    target = 1.0 if fb <= 500 else 0.8
    out.append(f"| 1 device, {fb}-B text (~{fr} B frames): frames/s | {fmt(rf)}{lossy(r1)} | {fmt(wf)}{lossy(w) if w in rows else ''} | {fmt(ratio,'×',2)} | ≥ {target}× websocat | {mark(None if ratio is None else ratio >= target and bool(g(r1,'ok')))} |")
    rm, wm = g(r1, "mbps"), g(w, "mbps")
    one_mbps[fb] = rm
    out.append(f"| 1 device, {fb}-B: MB/s | {fmt(rm,'',1)} | {fmt(wm,'',1)} | {fmt(rm/wm if rm and wm else None,'×',2)} | | |")
    out.append(f"| 1 device, {fb}-B: latency p50 / p99 / max (flooded) | {fmt(g(r1,'lat_p50_us'),' µs')} / {fmt(g(r1,'lat_p99_us'),' µs')} / {fmt(g(r1,'lat_max_us'),' µs')} | {fmt(g(w,'lat_p50_us'),' µs')} / {fmt(g(w,'lat_p99_us'),' µs')} / {fmt(g(w,'lat_max_us'),' µs')} | | | |")
    rc, wc = g(r1, "cpu_s"), g(w, "cpu_s")
    rn, wn = g(r1, "flood_frames"), g(w, "flood_frames")
    rcpf = rc / rn * 1e6 if rc is not None and rn else None
    wcpf = wc / wn * 1e6 if wc is not None and wn else None
    mc = g(r1, "main_cpu_s")
    share = f"; executor thread {mc / rc * 100:.0f}%" if mc is not None and rc else ""
    out.append(f"| 1 device, {fb}-B: process CPU per frame (user+sys, all threads) | {fmt(rcpf,' µs',2)} ({fmt(g(r1,'utime_s'),'',2)} u + {fmt(g(r1,'stime_s'),'',2)} s{share}) | {fmt(wcpf,' µs',2)} ({fmt(g(w,'utime_s'),'',2)} u + {fmt(g(w,'stime_s'),'',2)} s) | {fmt(rcpf/wcpf if rcpf and wcpf else None,'×',2)} | | |")
    r4 = f"relay-{fb}-4"
    m4 = g(r4, "mbps")
    x = m4 / rm if m4 and rm else None
    out.append(f"| 4 devices, {fb}-B: total frames/s, MB/s | {fmt(g(r4,'fps'))}, {fmt(m4,'',1)}{lossy(r4)} | | {fmt(x,'×',2)} of our 1-device | ≥ 3× | {mark(None if x is None else x >= 3 and bool(g(r4,'ok')))} |")
    c4, n4 = g(r4, "cpu_s"), g(r4, "flood_frames")
    out.append(f"| 4 devices, {fb}-B: relay CPU per delivered frame; p50 / p99; bench client CPU / wall | {fmt(c4/n4*1e6 if c4 is not None and n4 else None,' µs',2)}; {fmt(g(r4,'lat_p50_us'),' µs')} / {fmt(g(r4,'lat_p99_us'),' µs')}; {fmt(g(r4,'client_cpu_s'),' s',2)} / {fmt(g(r4,'secs'),' s',2)} | | | | |")

zl = "relay-default-queue"
if zl in rows:
    ok = bool(g(zl, "ok"))
    det = "0 lost" if ok else f"lost {g(zl,'lost')} of {g(zl,'frames_per_device')}: {(g(zl,'errors') or [g(zl,'error','?')])[0][:90]}"
    out.append(f"| zero loss, 1 device, default --socket-queue (8192), unpaced flood | {det} | | | zero lost | {mark(ok)} |")
tp_ok = all(bool(v.get("ok")) for k, v in rows.items() if k.startswith("relay-") and "-" in k and k.split("-")[1].isdigit())
out.append(f"| zero loss in every throughput run above (queue ≥ frames) | {'0 lost' if tp_ok else 'LOSS'} | | | zero lost | {mark(tp_ok)} |")

r = "relay-rate"
if r in rows:
    p99 = g(r, "lat_p99_us")
    ok = p99 is not None and p99 < 2000 and bool(g(r, "ok"))
    out.append(f"| 1000 frames/s to 4 devices: latency p50 / p99 / max, loss | {fmt(g(r,'lat_p50_us'),' µs')} / {fmt(p99,' µs')} / {fmt(g(r,'lat_max_us'),' µs')}, lost {g(r,'lost')} | {fmt(g('websocat-rate','lat_p50_us'),' µs')} / {fmt(g('websocat-rate','lat_p99_us'),' µs')} / {fmt(g('websocat-rate','lat_max_us'),' µs')} (1 device) | | p99 < 2 ms, none lost | {mark(ok)} |")

r = "relay-rss"
idle = g(r, "idle_kib")
if idle is not None:
    wi = g("websocat-idle", "rss_kib")
    out.append(f"| idle RSS (VmRSS 1 s after start) | {idle/1024:.2f} MiB | {fmt(wi/1024 if wi else None,' MiB',2)} | | ≤ 3 MiB | {mark(idle <= 3072)} |")
    full = g(r, "full_kib")
    bound = 16 * 4 * 1024 + 2 * 1024
    delta = full - idle
    ok = delta <= bound and bool(g(r, "ok"))
    conn = g(r, "connected_kib")
    if conn is not None:
        out.append(f"| RSS, 16 sessions × 4 devices connected, empty rings | {conn/1024:.1f} MiB (+{(conn-idle)/1024:.1f} MiB, {(conn-idle)/64:.0f} KiB per device) | | | | — |")
    out.append(f"| RSS, 16 sessions × 4 devices, full default rings (4 MiB each) | {full/1024:.1f} MiB (+{delta/1024:.1f} MiB; peak {g(r,'hwm_kib',0)/1024:.1f} MiB){'' if g(r,'ok') else ' — fill run failed: lost ' + str(g(r,'lost')) + ' ' + str(g(r,'error') or (g(r,'errors') or [''])[0])[:90]} | | | +≤ 16×4 MiB + 2 MiB = 66 MiB | {mark(ok)} |")

r = "relay-projects"
if r in rows:
    pi, pu, n = g(r, "idle_kib"), g(r, "used_kib"), g(r, "agents")
    single = g("relay-rss", "idle_kib")
    vs = f"; one project and agent: {single/1024:.2f} MiB idle" if single else ""
    out.append(f"| RSS, 3 projects × 2 agents configured, one session in use | {fmt(pi/1024 if pi else None,' MiB',2)} idle, {fmt(pu/1024 if pu else None,' MiB',2)} after a 2000-frame turn{vs}; {n} agent process(es) | | | one agent process, RSS near idle | {mark(n == 1 and bool(g(r,'ok')))} |")

def cgnote(r):
    kind = g(r, "cg")
    if not kind or kind == "none":
        return "no cgroup"
    peak = g(r, "cg_peak_kib")
    ooms = g(r, "cg_ooms")
    alive = g(r, "relay_alive")
    return (f"in a 64 MiB cgroup ({kind}): peak {fmt(peak/1024 if isinstance(peak,(int,float)) else None,' MiB',1)}, "
            f"OOM kills {ooms if ooms not in (None, '') else '?'}{'' if alive != 0 else ', RELAY KILLED'}")

if "relay-rss" in rows:
    sp = g("relay-rss", "sampled_peak_kib")
    out.append(f"| RSS, 16 × 4 full rings: sampled peak during the fill | {fmt(sp/1024 if sp else None,' MiB',1)} | | | | — |")
if "relay-rss-cg" in rows:
    r = "relay-rss-cg"
    split = f"; at the end the cgroup held {fmt((g(r,'cg_rss_kib') or 0)/1024,' MiB',1)} anonymous + {fmt((g(r,'cg_cache_kib') or 0)/1024,' MiB',1)} page cache"
    fill = "fill done" if g(r, "ok") else f"fill failed ({str(g(r,'error') or (g(r,'errors') or [''])[0])[:60]})"
    out.append(f"| 16 sessions × 4 devices, full rings, inside a 64 MiB cgroup | {cgnote(r)}; {fill}{split} | | | fits 64 MiB | {mark(g(r,'relay_alive') != 0 and not g(r,'cg_ooms'))} |")
elif "relay-rss" in rows:
    out.append(f"| 16 sessions × 4 devices, full rings, inside a 64 MiB cgroup | not run: no usable memory cgroup here (needs root and cgroup v2 memory or v1) | | | fits 64 MiB | — |")

for r in ("relay-stalled", "relay-stalled-cg"):
    if r not in rows:
        continue
    si, sp, sa = g(r, "idle_kib"), g(r, "peak_kib"), g(r, "after_kib")
    drop = g(r, "stalled_dropped")
    detail = (f"idle {fmt(si/1024 if si else None,' MiB',1)}, peak {fmt(sp/1024 if sp else None,' MiB',1)}, "
              f"after {fmt(sa/1024 if sa else None,' MiB',1)}; {drop if drop is not None else '?'} of {g(r,'stalled',4)} stalled dropped; "
              f"reader lost {g(r,'lost')}; {cgnote(r)}")
    where = "" if r == "relay-stalled" else ", inside a 64 MiB cgroup"
    out.append(f"| RSS, 4 stalled devices + 1 reader during a {g(r,'frames_per_device') or ''} × 2000-B flood{where} | {detail} | | | stalled dropped, RSS back near idle | {mark(drop == g(r,'stalled',4) and bool(g(r,'ok')))} |")

r = "relay-replay"
if r in rows:
    ms = g(r, "ms_median")
    out.append(f"| full-ring replay to a last_seq=0 device (median of 7) | {fmt(ms,' ms',1)} ({g(r,'frames')} frames, {g(r,'bytes',0)/1048576:.2f} MiB; min {fmt(g(r,'ms_min'),' ms',1)}) | | | < 50 ms | {mark(ms is not None and ms < 50)} |")

for k in (1, 4):
    r = f"relay-ir-{k}"
    if r in rows:
        tool = g(r, "tool")
        ir, d = g(r, "ir"), g(r, "delivered")
        val = f"{ir/d:,.0f} ({tool}, {d:,} frames)" if tool != "unavailable" and ir and d else "unavailable (no perf counters, no callgrind)"
        out.append(f"| relay instructions per delivered frame, {k} device(s), 200-B | {val} | | | | — |")

r = "size"
b = g(r, "bin_bytes")
out.append(f"| release binary (glibc, opt-level {g(r,'opt_level')}) | {b/1048576:.2f} MiB ({b:,} B) | | | | — |")
st = g(r, "static") or ""
for part in str(st).split():
    t, _, n = part.partition("=")
    n = int(n)
    out.append(f"| static binary {t} | {n/1048576:.2f} MiB ({n:,} B) | | | < 2 MiB | {mark(n < 2 * 1048576)} |")
if not st:
    out.append("| static musl binary | not built (run scripts/build-static.sh first) | | | < 2 MiB | — |")
c = g(r, "crates")
out.append(f"| crates in `cargo tree -e normal` (incl. acp-relay) | {c} | | | ≤ 80 | {mark(c is not None and c <= 80)} |")
out.append("")
out.append("Frames are the demo agent's `--flood` `agent_message_chunk` lines (text of the given size plus ~190 B of JSON; "
           "ours also carry `\"rseq\":N`). websocat pipes the same agent's stdout, one line per text message, to one device. "
           "Latency is the agent's emit time to the device's receive time. CPU is the relay's (or websocat's) own "
           "utime+stime from /proc, agent excluded.")
text = "\n".join(out) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
EOF
say "table written to target/bench/latest.md; raw figures in target/bench/latest.jsonl"

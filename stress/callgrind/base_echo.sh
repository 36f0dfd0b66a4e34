#!/bin/bash
# The saturated echo benchmark's server, counted: instructions (callgrind) or syscalls (strace)
# per request of one real echo server process under the C load generator (100 connections,
# 64-byte echo, request/response), counting only while the measured load runs.
#
# usage: bash stress/callgrind/base_echo.sh [server] [tree] [N] [conns] [what]
#   server: threadswoole-base (default) | asyncio | epoll (bare loop) | uvloop (the peer virtualenv's, stress.peers)
#   tree:   the checkout whose stress/servers/ and threadswoole/ run (default: this one)
#   what:   instructions (default) | syscalls
# Under callgrind the server is ~50x slower, so each epoll wake-up sees more ready connections
# than at full speed: the per-wake-up share is smaller here than in stress/bench.
here=$(cd "$(dirname "$0")" && pwd); server=${1:-threadswoole-base}; tree=${2:-$(cd "$here/../.." && pwd)}
n=${3:-20000}; conns=${4:-100}; what=${5:-instructions}
PY=${PYTHON:-$(pyenv which python3 2>/dev/null || command -v python3)}  # the interpreter itself, not a shim
case $server in
  threadswoole-base) cmd="$PY -m stress.servers.threadswoole_echo" ;;
  asyncio) cmd="$PY -m stress.servers.asyncio_echo" ;;
  epoll) cmd="$PY -m stress.servers.epoll_echo" ;;  # the bare select.epoll loop: the floor
  uvloop) cmd="$(cd "$here/../.." && $PY -m stress.peers path)/bin/python -m stress.servers.asyncio_echo --loop uvloop" ;;
  *) echo "unknown server $server" >&2; exit 2 ;;
esac
work=$(mktemp -d /tmp/base-echo.XXXXXX); [ -n "$KEEP" ] && echo "keeping $work" >&2 || trap 'rm -rf "$work"' EXIT
loadgen=$work/loadgen
source=${THREADSWOOLE_LOADGEN_C:-$here/../../../shared/tools/loadgen.c}  # as stress/cgen.py chooses
[ -f "$source" ] || source=$here/../cgen.c
gcc -O2 -pthread -o "$loadgen" "$source" || exit 1
cd "$tree" || exit 1
if [ "$what" = syscalls ]; then
  coproc SRV { exec $cmd 2>/dev/null; }
else
  coproc SRV { exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.out" $cmd 2>/dev/null; }
fi
read -r line <&"${SRV[0]}"; port=${line#READY }; pid=$SRV_PID
"$loadgen" -p "$port" -c "$conns" -n 2000 -d 120 >/dev/null  # warm-up: connections open, caches filled
if [ "$what" = syscalls ]; then
  strace -c -f -o "$work/strace.out" -p "$pid" 2>/dev/null & tracer=$!
  sleep 0.5
  "$loadgen" -p "$port" -c "$conns" -n "$n" -d 300 >"$work/lg.out"
  kill -INT $tracer; wait $tracer
else
  callgrind_control -i on "$pid" >/dev/null 2>&1
  "$loadgen" -p "$port" -c "$conns" -n "$n" -d 300 >"$work/lg.out"
  callgrind_control -i off "$pid" >/dev/null 2>&1
fi
kill -TERM "$pid"; wait "$pid" 2>/dev/null
reqs=$(grep -o 'requests=[0-9]*' "$work/lg.out" | cut -d= -f2)
python3 - "$reqs" "$work" "$what" "$server" <<'PY'
import collections, re, subprocess, sys
n, work, what, server = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
if what == "syscalls":
    print(f"{server}: {n} requests; syscalls per request")
    for line in open(f"{work}/strace.out"):
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            calls = int(parts[3])
            print(f"{calls / n:8.4f}  {parts[-1]}")
    raise SystemExit
out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=99", f"{work}/cg.out"], capture_output=True, text=True).stdout
costs, total = collections.Counter(), 0
for line in out.splitlines():
    if "PROGRAM TOTALS" in line:
        total = int(line.split()[0].replace(",", ""))
        continue
    m = re.match(r"\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*)$", line)
    if m:
        name = m.group(2).split(":")[-1].split(" [")[0] if ":" in m.group(2) else m.group(2)
        costs[name] += int(m.group(1).replace(",", ""))
print(f"{server}: {n} requests, {total / n:.0f} instructions per request")
for name, cost in costs.most_common(int(__import__("os").environ.get("TOP", "28"))):
    print(f"{cost / n:8.0f}  {name}")
PY

#!/bin/bash
# The saturated echo benchmark's server, counted: instructions (callgrind) or syscalls (strace)
# per request of one real echo server process under the C load generator (100 connections,
# 64-byte echo, request/response), counting only while the measured load runs.
#
# usage: bash stress/callgrind/base_echo.sh [server] [tree] [N] [conns] [what]
#   server: threadswoole-base (default) | asyncio | epoll (bare loop) | uvloop (the peer virtualenv's, stress.peers)
#   tree:   the checkout whose stress/servers/ and threadswoole/ run (default: this one)
#   what:   instructions (default) | syscalls | sched
#   sched: the server at full speed; user and system CPU microseconds per request, the server's
#   voluntary/involuntary context switches and the generator's sleeps (its voluntary switches,
#   from wait4's rusage) per request. Each generator sleep is a wake-up the server's write pays
#   for in the kernel, so these explain system-time differences that the syscall counts do not.
#   SPIN=K with uvloop/asyncio: K turns of an empty Python loop per data_received (asyncio_echo --spin).
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
[ -n "$SPIN" ] && case $server in asyncio|uvloop) cmd="$cmd --spin $SPIN" ;; esac
work=$(mktemp -d /tmp/base-echo.XXXXXX); [ -n "$KEEP" ] && echo "keeping $work" >&2 || trap 'rm -rf "$work"' EXIT
loadgen=$work/loadgen
source=${THREADSWOOLE_LOADGEN_C:-$here/../../../shared/tools/loadgen.c}  # as stress/cgen.py chooses
[ -f "$source" ] || source=$here/../cgen.c
gcc -O2 -pthread -o "$loadgen" "$source" || exit 1
cd "$tree" || exit 1
if [ "$what" = syscalls ] || [ "$what" = sched ]; then
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
elif [ "$what" = sched ]; then
  LG_OUT="$work/lg.out" python3 - "$pid" "$loadgen" "$port" "$conns" "$n" >"$work/sched.out" <<'PY'
import os, subprocess, sys
pid, loadgen, port, conns, n = sys.argv[1:]
def server():  # (user ticks, system ticks, voluntary, involuntary) over all its threads
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    vol = invol = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches"):
                    vol += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    invol += int(line.split()[1])
    return int(fields[11]), int(fields[12]), vol, invol
before = server()
with open(os.environ["LG_OUT"], "w") as out:
    gen = subprocess.Popen([loadgen, "-p", port, "-c", conns, "-n", n, "-d", "300"], stdout=out)
    _, status, usage = os.wait4(gen.pid, 0)
after = server()
tick = os.sysconf("SC_CLK_TCK")
print(*(b - a for a, b in zip(before, after)), tick, usage.ru_nvcsw, usage.ru_nivcsw)
PY
else
  callgrind_control -i on "$pid" >/dev/null 2>&1
  "$loadgen" -p "$port" -c "$conns" -n "$n" -d 300 >"$work/lg.out"
  callgrind_control -i off "$pid" >/dev/null 2>&1
fi
kill -TERM "$pid"; wait "$pid" 2>/dev/null
reqs=$(grep -o 'requests=[0-9]*' "$work/lg.out" | cut -d= -f2)
[ -n "$reqs" ] || { echo "the load generator counted no requests:" >&2; cat "$work/lg.out" >&2; exit 1; }
python3 - "$reqs" "$work" "$what" "$server" <<'PY'
import collections, re, subprocess, sys
n, work, what, server = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
if what == "sched":
    user, system, vol, invol, tick, gen_vol, gen_invol = map(int, open(f"{work}/sched.out").read().split())
    print(f"{server}: {n} requests at full speed; per request:")
    print(f"{user / tick / n * 1e6:8.2f}  user us")
    print(f"{system / tick / n * 1e6:8.2f}  system us")
    print(f"{vol / n:8.4f}  server sleeps (voluntary context switches)")
    print(f"{invol / n:8.4f}  server preemptions (involuntary context switches)")
    print(f"{gen_vol / n:8.4f}  generator sleeps (each one a wake-up paid in the server's write)")
    print(f"{gen_invol / n:8.4f}  generator preemptions")
    raise SystemExit
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

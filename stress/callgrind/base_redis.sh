#!/bin/bash
# redis.Server BASE per-command instructions by function: callgrind(N) - callgrind(0), divided by N,
# one command per round trip (redis-benchmark -P 1), for each of redis-benchmark's four tests.
# usage: bash stress/callgrind/base_redis.sh [tree] [N] [commands]   (tree: a checkout, default this one;
#        commands: default "ping_inline ping_mbulk set get"; TOP=n functions listed, default 20)
here=$(cd "$(dirname "$0")" && pwd); tree=${1:-$(cd "$here/../.." && pwd)}; n=${2:-5000}
commands=${3:-ping_inline ping_mbulk set get}
PY=${PYTHON:-$(pyenv which python3 2>/dev/null || command -v python3)}  # the interpreter itself, not a shim
tag=$(basename $tree)
for command in $commands; do
  valgrind --tool=callgrind --callgrind-out-file=/tmp/cgr.$tag.$command.0 $PY "$here/base_redis.py" $tree run 0 $command >/dev/null 2>&1
  valgrind --tool=callgrind --callgrind-out-file=/tmp/cgr.$tag.$command.n $PY "$here/base_redis.py" $tree run $n $command >/dev/null 2>&1
  python3 - "$n" "/tmp/cgr.$tag.$command" "$command" "${TOP:-20}" <<'PY'
import subprocess, re, sys, collections
n = int(sys.argv[1]); base = sys.argv[2]; command = sys.argv[3]; top = int(sys.argv[4])
def load(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", path], capture_output=True, text=True).stdout
    costs = collections.Counter(); total = 0
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        if "PROGRAM TOTALS" in line:
            total = int(m.group(1).replace(",", "")); continue
        name = m.group(2).split(":")[-1].split(" [")[0] if ":" in m.group(2) else m.group(2)
        costs[name] += int(m.group(1).replace(",", ""))
    return costs, total
(a, ta), (b, tb) = load(base + ".0"), load(base + ".n")
d = collections.Counter({k: (b[k] - a.get(k, 0)) / n for k in b})
print(f"{command}: total {(tb - ta) / n:.0f} instructions per round trip")
for k, v in d.most_common(top):
    print(f"{v:8.0f}  {k}")
PY
done

#!/bin/bash
# HTTP BASE per-request instructions by function: callgrind(N) - callgrind(0), divided by N
# usage: bash stress/callgrind/base_http.sh [tree] [N]   (tree: a checkout, default this one)
here=$(cd "$(dirname "$0")" && pwd); tree=${1:-$(cd "$here/../.." && pwd)}; n=${2:-5000}
PY=${PYTHON:-$(pyenv which python3 2>/dev/null || command -v python3)}  # the interpreter itself, not a shim
tag=$(basename $tree)
valgrind --tool=callgrind --callgrind-out-file=/tmp/cgh.$tag.0 $PY "$here/base_http.py" $tree run 0 >/dev/null 2>&1
valgrind --tool=callgrind --callgrind-out-file=/tmp/cgh.$tag.n $PY "$here/base_http.py" $tree run $n >/dev/null 2>&1
python3 - "$n" "$tag" <<'PY'
import subprocess, re, sys, collections
n = int(sys.argv[1]); tag = sys.argv[2]
def load(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", path], capture_output=True, text=True).stdout
    costs = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*)$", line)
        if m and "PROGRAM TOTALS" not in line:
            name = m.group(2).split(":")[-1].split(" [")[0] if ":" in m.group(2) else m.group(2)
            costs[name] += int(m.group(1).replace(",", ""))
    return costs
a, b = load(f"/tmp/cgh.{tag}.0"), load(f"/tmp/cgh.{tag}.n")
d = collections.Counter({k: (b[k] - a.get(k, 0)) / n for k in b})
total = sum(v for v in d.values() if v > 0)
print(f"total {total:.0f} instructions per request")
for k, v in d.most_common(28):
    print(f"{v:8.0f}  {k}")
PY

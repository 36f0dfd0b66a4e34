#!/bin/bash
# PROCESS-mode HTTP per-request instructions, whole process tree (master + reactor thread,
# manager, worker): callgrind(N) - callgrind(0), divided by N. One keep-alive connection,
# `batch` requests per write (1: one at a time).
# usage: bash stress/callgrind/process_http.sh [tree] [N] [batch] [port]
# (process_http_conns.sh runs this with CGP_CLIENT, CGP_WORKERS and CGP_KIND set: many
# connections with one request each instead of one connection with `batch` per write)
here=$(cd "$(dirname "$0")" && pwd); tree=${1:-$(cd "$here/../.." && pwd)}; n=${2:-2000}; batch=${3:-1}; port=${4:-18931}
client=${CGP_CLIENT:-process_http_client.py}; workers=${CGP_WORKERS:-}; kind=${CGP_KIND:-b}
PY=${PYTHON:-$(pyenv which python3 2>/dev/null || command -v python3)}  # the interpreter itself, not a shim
tag=$(basename $tree).$kind$batch
rm -f /tmp/cgp.$tag.*
for count in 0 $n; do
  valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=/tmp/cgp.$tag.$count.%p \
    $PY "$here/process_http_server.py" $tree $port $workers >/tmp/cgp.$tag.$count.log 2>&1 &
  vpid=$!
  python3 "$here/$client" $port $count $batch $vpid
  wait $vpid
done
python3 - "$n" "$tag" <<'PY'
import subprocess, re, sys, collections, glob
n = int(sys.argv[1]); tag = sys.argv[2]
def load(count):
    costs = collections.Counter(); total = 0
    for path in glob.glob(f"/tmp/cgp.{tag}.{count}.*"):
        if path.endswith(".log"): continue
        out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", path], capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.match(r"\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*)$", line)
            if not m: continue
            if "PROGRAM TOTALS" in line:
                total += int(m.group(1).replace(",", "")); continue
            name = m.group(2).split(":")[-1].split(" [")[0] if ":" in m.group(2) else m.group(2)
            costs[name] += int(m.group(1).replace(",", ""))
    return total, costs
ta, a = load(0); tb, b = load(n)
print(f"files: {len(glob.glob(f'/tmp/cgp.{tag}.{n}.*'))-1}; total {(tb-ta)/n:.0f} instructions per request ({tag}: b = requests per write, c = connections)")
d = collections.Counter({k: (b[k] - a.get(k, 0)) / n for k in b})
for k, v in d.most_common(30):
    print(f"{v:8.0f}  {k}")
PY

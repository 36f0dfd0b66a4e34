#!/bin/bash
# serve WSGI per-request instructions: callgrind(N) - callgrind(0), divided by N
# usage: bash stress/callgrind/serve_wsgi.sh [tree] [N]   (tree: a checkout, default this one)
here=$(cd "$(dirname "$0")" && pwd); tree=${1:-$(cd "$here/../.." && pwd)}; n=${2:-2000}
PY=${PYTHON:-$(pyenv which python3 2>/dev/null || command -v python3)}  # the interpreter itself, not a shim
tag=$(basename $tree)
valgrind --tool=callgrind --callgrind-out-file=/tmp/cgs.$tag.0 $PY "$here/serve_wsgi.py" $tree 0 >/dev/null 2>&1
valgrind --tool=callgrind --callgrind-out-file=/tmp/cgs.$tag.n $PY "$here/serve_wsgi.py" $tree $n >/dev/null 2>&1
total() { callgrind_annotate "$1" | grep "PROGRAM TOTALS" | awk '{print $1}' | tr -d ,; }
a=$(total /tmp/cgs.$tag.0); b=$(total /tmp/cgs.$tag.n)
echo "total $(( (b - a) / n )) instructions per request"
rm -f /tmp/cgs.$tag.0 /tmp/cgs.$tag.n

#!/bin/bash
# Instructions per Table operation (callgrind): N operations minus none, divided by N.
# usage: bash stress/callgrind/table_ops.sh [tree] [N] [ops...]
#   PYTHON=~/.local/pyft/bin/python3.13t PYTHON_GIL=0 bash ... for the free-threaded build;
#   TOP=20 also prints the functions that take the most (self cost, over the N-operation run).
here=$(cd "$(dirname "$0")" && pwd); tree=${1:-$(cd "$here/../.." && pwd)}; n=${2:-20000}; shift 2 2>/dev/null
ops=${*:-set get get_field incr exists}
PY=${PYTHON:-$(pyenv which python3 2>/dev/null || command -v python3)}  # the interpreter itself, not a shim
work=$(mktemp -d /tmp/table-ops.XXXXXX); trap 'rm -rf "$work"' EXIT
total() { callgrind_annotate "$1" 2>/dev/null | grep "PROGRAM TOTALS" | awk '{gsub(",", "", $1); print $1}'; }
version=$("$PY" -c 'import sys; print(sys.version.split()[0] + (" free-threaded" if not getattr(sys, "_is_gil_enabled", lambda: True)() else ""))')
for op in $ops; do
  valgrind --tool=callgrind --callgrind-out-file="$work/$op.n" "$PY" "$here/table_ops.py" "$tree" "$op" "$n" 2>/dev/null
  valgrind --tool=callgrind --callgrind-out-file="$work/$op.0" "$PY" "$here/table_ops.py" "$tree" "$op" 0 2>/dev/null
  echo "$op: $(( ($(total "$work/$op.n") - $(total "$work/$op.0")) / n )) instructions per operation (Python $version)"
  [ -n "$TOP" ] && callgrind_annotate --inclusive=no "$work/$op.n" 2>/dev/null | grep -E "^ *[0-9,]+ +\(" | head -"$TOP"
done

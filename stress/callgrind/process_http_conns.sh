#!/bin/bash
# PROCESS-mode HTTP per-request instructions, whole process tree (master + reactor thread,
# manager, workers), as process_http.sh counts them, but with `conns` keep-alive connections,
# each with one request in flight (as wrk drives the benchmark); worker_num=2 as in stress.bench.
# usage: bash stress/callgrind/process_http_conns.sh [tree] [N] [conns] [port]
here=$(cd "$(dirname "$0")" && pwd)
CGP_CLIENT=process_http_conns_client.py CGP_WORKERS=2 CGP_KIND=c exec bash "$here/process_http.sh" "${1:-}" "${2:-2000}" "${3:-100}" "${4:-18932}"

"""A PROCESS-mode hello-world http.Server for callgrind (process_http.sh, process_http_conns.sh):
argv tree port [worker_num (1)]."""
import sys
sys.path.insert(0, sys.argv[1])
from threadswoole import http, SWOOLE_PROCESS
server = http.Server("127.0.0.1", int(sys.argv[2]), SWOOLE_PROCESS)
server.set({"worker_num": int(sys.argv[3]) if len(sys.argv) > 3 else 1, "reactor_num": 1, "log_level": 5})
server.on("request", lambda req, resp: resp.end(b"Hello, World!"))
server.start()

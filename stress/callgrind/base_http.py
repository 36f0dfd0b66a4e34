"""Per-request cost of the real BASE HTTP path, in-process (a socketpair, one GET per call)."""
import os, socket, sys, timeit, select
sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else __import__("os").path.join(__import__("os").path.dirname(__import__("os").path.abspath(__file__)), "..", ".."))
from threadswoole import http, SWOOLE_BASE
from threadswoole.server.startup import make_driver
from threadswoole.workers.event_worker import EventWorker, WorkerWiring
from threadswoole.connections.acceptor import Acceptor, Placement
server = http.Server("127.0.0.1", 0, SWOOLE_BASE)
server.set({"worker_num": 1})
server.on("request", lambda req, resp: resp.end(b"Hello, World!"))
driver = make_driver(server, server._settings, server._callbacks)
server._phase = "running"
state = driver.create_state(acceptors=1, capacity=1024)
worker = EventWorker(driver.config, state, 0, WorkerWiring(), driver)
worker.bind_context()
a, b = socket.socketpair(); b.setblocking(False)
acc = Acceptor(state, 0, worker.reactor, worker.counters, max_connection=100, live_count=lambda: 0, place=lambda *x: Placement(0, 0, worker.host))
session = acc.allocate(); port = server.ports[0]
acc.publish(session, b, port, ("127.0.0.1", 1), 0, 0)
conn = worker.host.adopt(b, session, port, ("127.0.0.1", 1))
handler = worker.reactor._handlers[b.fileno()]
REQ = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
def ours():
    a.send(REQ); handler(select.EPOLLIN); a.recv(65536)
ours(); print(a.recv(1) if False else "", end="")
if len(sys.argv) > 3:
    for _ in range(int(sys.argv[3])): ours()
    raise SystemExit
if len(sys.argv) > 2 and sys.argv[2] == "ops":
    from opcode_count import print_opcodes  # (this script's own directory is first on sys.path)
    print_opcodes(ours)
    raise SystemExit
N = 20000
print(f"{min(timeit.repeat(ours, number=N, repeat=5))/N*1e6:.2f} us per request")

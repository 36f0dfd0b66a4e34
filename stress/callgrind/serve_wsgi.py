"""Per-request cost of `threadswoole serve`'s WSGI path, in-process: a `WsgiProtocol` port, the
worker's own handler and send path, one keep-alive ``GET /`` per call over a socketpair.
usage: python3 stress/callgrind/serve_wsgi.py [tree] [time|ops|N]  (N: run N requests, for callgrind)"""
import os, socket, sys, timeit, select, functools
tree = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, tree)
from threadswoole import Server, SWOOLE_BASE
from threadswoole.server.startup import make_driver
from threadswoole.workers.event_worker import EventWorker, WorkerWiring
from threadswoole.connections.acceptor import Acceptor, Placement
from threadswoole.serve.wsgi import WsgiProtocol
from threadswoole.serve.options import ServeOptions
BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
server = Server("127.0.0.1", 0, SWOOLE_BASE)
options = ServeOptions(root_path="", multithread=True, multiprocess=False, send_timeout=60, body_timeout=60,
                       graceful_timeout=5, ws_max_size=1 << 24, lifespan="off")
server.set({"worker_num": 1})
server.ports[0].set({"application_protocol": functools.partial(WsgiProtocol, app=app, options=options), "open_tcp_nodelay": True})
server.on("worker_start", options.worker_start)
driver = make_driver(server, server._settings, server._callbacks)
server._phase = "running"
state = driver.create_state(acceptors=1, capacity=1024)
worker = EventWorker(driver.config, state, 0, WorkerWiring(), driver)
worker.bind_context()
options.worker_start(server, 0)
a, b = socket.socketpair(); b.setblocking(False)
acc = Acceptor(state, 0, worker.reactor, worker.counters, max_connection=100, live_count=lambda: 0, place=lambda *x: Placement(0, 0, worker.host))
session = acc.allocate(); port = server.ports[0]
acc.publish(session, b, port, ("127.0.0.1", 1), 0, 0)
conn = worker.host.adopt(b, session, port, ("127.0.0.1", 1))
handler = worker.reactor._handlers[b.fileno()]
REQ = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
def ours():
    a.send(REQ); handler(select.EPOLLIN); a.recv(65536)
ours()
a.send(REQ); handler(select.EPOLLIN); r = a.recv(65536); assert r.startswith(b"HTTP/1.1 200") and r.endswith(BODY), r
mode = sys.argv[2] if len(sys.argv) > 2 else "time"
if mode.isdigit():
    for _ in range(int(mode)): ours()
    raise SystemExit
if mode == "ops":
    from opcode_count import print_opcodes  # (this script's own directory is first on sys.path)
    print_opcodes(ours, top=45)
    raise SystemExit
N = 20000
print(f"{min(timeit.repeat(ours, number=N, repeat=5))/N*1e6:.2f} us per request")

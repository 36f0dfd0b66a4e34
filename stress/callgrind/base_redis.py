"""Per-command cost of the real BASE redis.Server path, in-process: examples/redis_kv.py's handlers,
one command per round trip over a socketpair (as redis-benchmark -P 1), both ends in the figure.

    python3 stress/callgrind/base_redis.py [tree] run N COMMAND   N round trips (callgrind counts them)
    python3 stress/callgrind/base_redis.py [tree] ops COMMAND     Python opcodes per round trip, by function
    python3 stress/callgrind/base_redis.py [tree] time COMMAND    microseconds per round trip (noisy)

COMMAND: ping_inline, ping_mbulk, set, get (redis-benchmark's exact bytes, below).
"""
import os, select, socket, sys, timeit

tree = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, tree)
sys.path.insert(0, os.path.join(tree, "examples"))
from threadswoole import SWOOLE_BASE, redis
from threadswoole.connections.acceptor import Acceptor, Placement
from threadswoole.server.startup import make_driver
from threadswoole.workers.event_worker import EventWorker, WorkerWiring
import redis_kv

COMMANDS = {  # what redis-benchmark -t ping,set,get -P 1 writes, byte for byte
    "ping_inline": b"PING\r\n",
    "ping_mbulk": b"*1\r\n$4\r\nPING\r\n",
    "set": b"*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n",
    "get": b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n",
}
REPLIES = {"ping_inline": b"+PONG\r\n", "ping_mbulk": b"+PONG\r\n", "set": b"+OK\r\n", "get": b"$3\r\nxxx\r\n"}

mode = sys.argv[2] if len(sys.argv) > 2 else "time"
name = sys.argv[-1] if len(sys.argv) > 3 else "get"
REQ = COMMANDS[name]

server = redis.Server("127.0.0.1", 0, SWOOLE_BASE)
server.set({"worker_num": 1})
# the store examples/redis_kv.py --mode base --workers 1 makes (trees before make_store: the default one)
store = redis_kv.make_store("base", 1) if hasattr(redis_kv, "make_store") else redis_kv.KeyValueStore()
redis_kv.register(server, store)
store.set(server, 1, [b"key:__rand_int__", b"xxx"])  # GET finds its key, as after redis-benchmark's SET test
driver = make_driver(server, server._settings, server._callbacks)
server._phase = "running"
state = driver.create_state(acceptors=1, capacity=1024)
worker = EventWorker(driver.config, state, 0, WorkerWiring(), driver)
worker.bind_context()
a, b = socket.socketpair()
b.setblocking(False)
acc = Acceptor(state, 0, worker.reactor, worker.counters, max_connection=100, live_count=lambda: 0,
               place=lambda *x: Placement(0, 0, worker.host))
session = acc.allocate()
port = server.ports[0]
acc.publish(session, b, port, ("127.0.0.1", 1), 0, 0)
conn = worker.host.adopt(b, session, port, ("127.0.0.1", 1))
handler = worker.reactor._handlers[b.fileno()]


def round_trip():
    a.send(REQ)
    handler(select.EPOLLIN)
    a.recv(65536)


a.send(REQ)
handler(select.EPOLLIN)
assert a.recv(65536) == REPLIES[name], "unexpected reply"
if mode == "run":
    for _ in range(int(sys.argv[3])):
        round_trip()
elif mode == "ops":
    from opcode_count import print_opcodes  # (this script's own directory is first on sys.path)
    print_opcodes(round_trip)
else:
    N = 20000
    print(f"{name}: {min(timeit.repeat(round_trip, number=N, repeat=5)) / N * 1e6:.2f} us per round trip")

"""Which transport for task_ipc_mode 2/3: SysV message queues (ctypes) or datagram mailboxes?

``python -m stress.task_ipc_bench [-n 200000]`` measures, for 90-byte messages (a 64-byte task
plus the 26-byte mailbox header):

- ``pair``: one process sends and receives each message (the per-message cost of each API);
- ``compete``: one producer, two consumer processes taking from one queue (task_ipc_mode 3),
  wall time and CPU of the three processes for all messages.

The decision it informed is in threadswoole/modes/task_wiring.py (datagram mailboxes: faster
per message, and a socket can be watched by the task worker's epoll loop; a SysV queue cannot).
"""
from __future__ import annotations

import argparse
import os
import resource
import socket
import time

from threadswoole.process import sysv

PAYLOAD = b"t" * 90
KEY = 0x5453_0B01  # private to this benchmark; removed at the end


def _pair(n: int) -> tuple[float, float]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    started = time.perf_counter()
    for _ in range(n):
        a.send(PAYLOAD)
        b.recv(65536)
    dgram = (time.perf_counter() - started) / n
    a.close()
    b.close()
    queue = sysv.MessageQueue(KEY)
    try:
        started = time.perf_counter()
        for _ in range(n):
            queue.send(PAYLOAD, 1, nowait=False)
            queue.receive(65536, 0, nowait=True)
        message_queue = (time.perf_counter() - started) / n
    finally:
        queue.remove()
    return dgram, message_queue


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _compete(n: int, kind: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all three processes) to move n messages to 2 consumers."""
    stop = b"!"
    if kind == "dgram":
        inbox, post = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in (inbox, post):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        receive = lambda: inbox.recv(65536)  # noqa: E731
        send = post.send
        queue = None
    else:
        queue = sysv.MessageQueue(KEY)
        receive = lambda: queue.receive(65536, 0, nowait=False)  # noqa: E731
        send = lambda data: queue.send(data, 1, nowait=False)  # noqa: E731
    cpu0, self0 = _children_cpu(), _self_cpu()
    started = time.perf_counter()
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            while receive() != stop:
                pass
            os._exit(0)
        children.append(pid)
    for _ in range(n):
        send(PAYLOAD)
    for _ in children:
        send(stop)
    for pid in children:
        os.waitpid(pid, 0)
    wall = time.perf_counter() - started
    cpu = _children_cpu() - cpu0 + _self_cpu() - self0
    if queue is not None:
        queue.remove()
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m stress.task_ipc_bench")
    ap.add_argument("-n", type=int, default=200_000)
    a = ap.parse_args()
    dgram, sysv = _pair(a.n)
    print(f"pair    datagram send+recv {dgram * 1e6:6.2f} us   SysV msgsnd+msgrcv {sysv * 1e6:6.2f} us   ratio {sysv / dgram:.1f}x")
    for kind in ("dgram", "sysv"):
        wall, cpu = _compete(a.n, kind)
        print(f"compete {kind:5}: {a.n / wall:9,.0f} msg/s   {a.n / cpu:9,.0f} msg per CPU-second (producer + 2 consumers)")


if __name__ == "__main__":
    main()

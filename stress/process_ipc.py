"""Round trips through a Process pipe and a SysV queue, against raw socket calls on the same pair.

    python3 -m stress.process_ipc [--count 20000] [--size 1024]

Seed 003 quotes 1M round trips of 1 KiB in 1.02 s for Swoole's C implementation; this prints
ours, and the same loop on the bare socketpair (so the wrapper's own cost shows as a ratio on
a noisy machine).
"""

from __future__ import annotations

import argparse
import os
import random
import time

from threadswoole import Process


def _echo_pipe(process: Process) -> None:
    while data := process.read(65536):
        process.write(data)


def pipe_round_trips(count: int, size: int, raw: bool) -> float:
    proc = Process(_echo_pipe, pipe_type=2)
    proc.start()
    payload = b"x" * size
    sock = proc.export_socket()
    began = time.perf_counter()
    if raw:
        for _ in range(count):
            sock.send(payload)
            sock.recv(65536)
    else:
        for _ in range(count):
            proc.write(payload)
            proc.read(65536)
    elapsed = time.perf_counter() - began
    proc.close()
    Process.wait()
    return elapsed


def queue_one_way(count: int, size: int) -> float:
    """`count` messages pushed by the parent and popped by a child (mode 2, blocking)."""
    key = random.randrange(0x10000000, 0x7FFFFFFF)

    def consume(process: Process) -> None:
        for _ in range(count):
            process.pop(size)

    proc = Process(consume, pipe_type=0)
    proc.use_queue(key, 2)
    payload = b"x" * size
    began = time.perf_counter()
    pid = proc.start()
    for _ in range(count):
        proc.push(payload)
    os.waitpid(pid, 0)
    elapsed = time.perf_counter() - began
    proc.free_queue()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    for label, run in (
        ("Process.write/read round trip", lambda: pipe_round_trips(options.count, options.size, raw=False)),
        ("socket.send/recv round trip (same pair)", lambda: pipe_round_trips(options.count, options.size, raw=True)),
        ("Process.push -> pop, one way", lambda: queue_one_way(options.count, options.size)),
    ):
        best = min(run() for _ in range(options.repeat))
        print(f"{label:42s} {options.count / best:10.0f} /s  ({best * 1e6 / options.count:.1f} us each, best of {options.repeat})")


if __name__ == "__main__":
    main()

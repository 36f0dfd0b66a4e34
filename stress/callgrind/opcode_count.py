"""Python opcodes per call of a workload, by function: the `ops` mode of the in-process scripts here."""
from __future__ import annotations

import collections
import sys
from typing import Callable


def print_opcodes(call: Callable[[], object], *, warmup: int = 50, calls: int = 100, top: int = 40) -> None:
    """Run `call` `warmup` times, then `calls` times under an opcode trace; print opcodes per call."""
    counts: collections.Counter[str] = collections.Counter()

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        frame.f_trace_opcodes = True
        if event == "opcode":
            counts[f"{frame.f_code.co_name}:{frame.f_code.co_filename.split('/')[-1]}"] += 1
        return tracer

    for _ in range(warmup):
        call()
    sys.settrace(tracer)
    for _ in range(calls):
        call()
    sys.settrace(None)
    for name, count in counts.most_common(top):
        print(f"{count / calls:6.1f}  {name}")
    print("total", sum(counts.values()) / calls)

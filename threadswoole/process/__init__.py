"""`threadswoole.Process` (contract §11): a child process (or, in THREAD mode, a thread) with a
pipe, SysV message queues, signals and alarm.

`child.py` is the Process class and its fork/exec life cycle, `message_queue.py` its SysV queue
methods (on `sysv.py`, SysV message queues through ctypes), `signal_handlers.py` its signal and
alarm handlers. A public package: it may import everything below the public API, and nothing
below imports it.
"""

from threadswoole.process.child import ExecCallback, Process, set_process_name

__all__ = ["Process", "ExecCallback", "set_process_name"]

"""Task payloads: a pickled copy in every mode, spilled to `task_tmpdir` above 8 KiB (seeds).

`task()`, `task_wait*` and `finish()` pickle their data here (contract R4: the receiver gets a
copy, THREAD mode included); data that cannot be pickled raises TypeError at the call, before
anything is sent. Between processes, a pickle bigger than SPILL_THRESHOLD is written to a
temporary file in `task_tmpdir` and only its path travels (Swoole's task temp files, seed 003);
the reader loads and unlinks it. Between threads the bytes are passed as they are (contract §7:
"with threads, just pass the bytes"). Either way a pickle bigger than `package_max_length` is
still delivered, with SwooleWarning("task package is too big") and a log line (seed 000/002).

A file is named `threadswoole-task-<master pid>-<random>`; files whose reader died before
reading them (kill -9) are removed when the master stops (`sweep_spilled`).
"""

from __future__ import annotations

import glob
import logging
import os
import pickle
import tempfile
import warnings
from typing import Any

from threadswoole.errors import SwooleWarning

log = logging.getLogger("threadswoole")

SPILL_THRESHOLD = 8192  # seed 003: "task data > 8192 bytes" goes through a temp file

# Task flags: the `port` field of a T_TASK / T_FINISH message.
F_WAIT = 1  # a task_wait / task_wait_multi / task_co task: results go to the sender's reply box
F_ONE_WAY = 2  # sent by the master, the manager or a user process: results are discarded
F_SPILLED = 4  # the payload is the path of a temp file holding the pickle


def _prefix(master_pid: int) -> str:
    return f"threadswoole-task-{master_pid}-"


class PayloadCodec:
    """Pickles and unpickles task data for one server (`spill`: process modes)."""

    def __init__(self, settings: Any, master_pid: int, *, spill: bool) -> None:
        self.tmpdir = os.fspath(settings.get("task_tmpdir") or "/tmp")
        self.max_length = int(settings.get("package_max_length") or 0)
        self.spill = spill
        self.prefix = _prefix(master_pid)

    def encode(self, data: Any, what: str) -> tuple[bytes, int]:
        """(payload, flags) for `data`; TypeError when it cannot be pickled."""
        try:
            raw = pickle.dumps(data, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # PicklingError, TypeError, AttributeError (local objects)...
            raise TypeError(f"{what}(): the data must be picklable (it crosses to another worker as a copy): {exc}") from exc
        if self.max_length and len(raw) > self.max_length:
            message = f"task package is too big: {what}() data of {len(raw)} bytes is over package_max_length ({self.max_length}); delivered anyway"
            log.warning(message)
            warnings.warn(message, SwooleWarning, stacklevel=5)  # the caller of Server.task()/finish()
        if self.spill and len(raw) > SPILL_THRESHOLD:
            return self._write(raw), F_SPILLED
        return raw, 0

    def _write(self, raw: bytes) -> bytes:
        fd, path = tempfile.mkstemp(prefix=self.prefix, dir=self.tmpdir)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        return path.encode()

    def decode(self, payload: bytes, flags: int) -> Any:
        """The data of a message; a spilled file is read and removed."""
        if flags & F_SPILLED:
            path = payload.decode()
            try:
                with open(path, "rb") as file:
                    payload = file.read()
            finally:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        return pickle.loads(payload)

    def discard(self, payload: bytes, flags: int) -> None:
        """A payload that will never be decoded (expired result, failed send): remove its file."""
        if flags & F_SPILLED:
            try:
                os.unlink(payload.decode())
            except OSError:
                pass


def sweep_spilled(tmpdir: str, master_pid: int) -> int:
    """Remove the temp files of a server's tasks that nobody read (their reader was killed)."""
    removed = 0
    for path in glob.glob(os.path.join(glob.escape(os.fspath(tmpdir)), _prefix(master_pid) + "*")):
        try:
            os.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed

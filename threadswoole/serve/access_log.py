"""``--access-log``: one line per request in the combined log format (Apache's, nginx's default).

    127.0.0.1 - - [01/Dec/2026:10:16:52 +0000] "GET / HTTP/1.1" 200 13 "-" "curl/8.5.0"

The file (or ``-``, standard output) is opened in append mode in the master before start(),
so every worker (forked or thread) writes to the same descriptor; each line is one
``os.write`` on an ``O_APPEND`` descriptor, so lines from different workers never interleave.
The time stamp is formatted once per second.
"""

from __future__ import annotations

import os
import time
from typing import Any

__all__ = ["AccessLog", "combined_line"]


def _quote(value: str) -> str:
    """A request-line or header field inside double quotes: escape what would break the line."""
    if value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return value.encode("unicode_escape").decode("ascii").replace('"', '\\"')


def combined_line(remote: str, stamp: str, request_line: str, status: int, size: int, referer: str, agent: str) -> str:
    return (f'{remote or "-"} - - [{stamp}] "{_quote(request_line)}" {status} {size if size else "-"} '
            f'"{_quote(referer) if referer else "-"}" "{_quote(agent) if agent else "-"}"\n')


class AccessLog:
    """The access-log descriptor and its line format."""

    def __init__(self, target: str) -> None:
        self.target = target
        if target == "-":
            self.fd = 1
            self._owned = False
        else:
            self.fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._owned = True
        self._second = -1
        self._stamp = ""

    def _stamp_for(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
            self._second = second
        return self._stamp

    def write(self, now: float, remote: str, request_line: str, status: int, size: int, headers: Any) -> None:
        """One request; `headers` maps lower-case names to values (the codec's dict)."""
        line = combined_line(remote, self._stamp_for(now), request_line, status, size,
                             headers.get("referer", ""), headers.get("user-agent", ""))
        try:
            os.write(self.fd, line.encode("utf-8", "backslashreplace"))
        except OSError:
            pass  # a full disk or a closed pipe must not fail the request

    def close(self) -> None:
        if self._owned:
            try:
                os.close(self.fd)
            except OSError:
                pass

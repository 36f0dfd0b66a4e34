"""``Set-Cookie`` values in the exact shape PHP's ``setcookie`` and Swoole produce.

``name=value; expires=Thu, 01-Jan-2026 00:00:00 GMT; Max-Age=60; path=/; domain=x; secure; HttpOnly``.
An empty value deletes the cookie (``name=deleted; expires=<1970>; Max-Age=0``).
"""

from __future__ import annotations

import time
from urllib.parse import quote

__all__ = ["format_set_cookie", "ILLEGAL_COOKIE_CHARACTERS"]

#: Characters a cookie name, a raw value, a path or a domain may not contain (PHP's list).
ILLEGAL_COOKIE_CHARACTERS = frozenset(",; \t\r\n\x0b\x0c")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _cookie_date(timestamp: int) -> str:
    """PHP's ``D, d-M-Y H:i:s T`` in GMT."""
    t = time.gmtime(timestamp)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def _check(what: str, value: str, extra: str = "") -> None:
    if not isinstance(value, str):
        raise TypeError(f"cookie {what} must be str, not {type(value).__name__}")
    bad = ILLEGAL_COOKIE_CHARACTERS.union(extra).intersection(value)
    if bad:
        raise ValueError(f"cookie {what} {value[:40]!r} contains {''.join(sorted(bad))!r}")


def format_set_cookie(key: str, value: str = "", expire: int = 0, path: str = "/", domain: str = "",
                      secure: bool = False, httponly: bool = False, *, encode: bool = True,
                      now: float | None = None) -> str:
    """The value of one ``Set-Cookie`` header. `encode` percent-encodes `value` (``cookie``);
    ``raw_cookie`` passes False and `value` must then hold no illegal character.

    Raises ValueError for an empty key or illegal characters (header injection is impossible),
    TypeError for non-str text arguments or a non-int `expire`.
    """
    _check("name", key, "=")
    if not key:
        raise ValueError("cookie name must not be empty")
    if isinstance(expire, bool) or not isinstance(expire, int):
        raise TypeError(f"cookie expire must be int, not {type(expire).__name__}")
    if not isinstance(value, str):
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("latin-1")
        else:
            raise TypeError(f"cookie value must be str, not {type(value).__name__}")
    if not value:
        parts = [f"{key}=deleted; expires={_cookie_date(1)}; Max-Age=0"]
    else:
        if encode:
            value = quote(value, safe="")
        else:
            _check("value", value)
        parts = [f"{key}={value}"]
        if expire > 0:
            current = time.time() if now is None else now
            parts.append(f"; expires={_cookie_date(expire)}; Max-Age={max(0, int(expire - current))}")
    if path:
        _check("path", path)
        parts.append(f"; path={path}")
    if domain:
        _check("domain", domain)
        parts.append(f"; domain={domain}")
    if secure:
        parts.append("; secure")
    if httponly:
        parts.append("; HttpOnly")
    return "".join(parts)

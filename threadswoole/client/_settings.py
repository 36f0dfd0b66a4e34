"""`Client.set()` keys: Swoole's client settings, checked the way `Server.set()` checks its own (R8)."""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Mapping

from threadswoole.errors import ConfigError, UnknownSettingWarning
from threadswoole.protocol import LENGTH_TYPES, make_framer


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, int)):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return bool(value)


def _int(low: int, high: int | None = None) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if value < low or (high is not None and value > high):
            raise ConfigError(f"{name} must be in {low}..{high if high is not None else 'inf'}, got {value}")
        return value

    return check


def _path(name: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or a path, not {type(value).__name__}")
    return os.fspath(value)


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value


def _eof(name: str, value: Any) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes or str, not {type(value).__name__}")
    value = bytes(value)
    if not 1 <= len(value) <= 8:
        raise ConfigError(f"{name} must be 1 to 8 bytes long, got {len(value)}")
    return value


def _length_type(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if value not in LENGTH_TYPES:
        raise ConfigError(f"{name} must be one of {''.join(LENGTH_TYPES)}, got {value!r}")
    return value


def _callable(name: str, value: Any) -> Any:
    if not callable(value):
        raise TypeError(f"{name} must be callable, not {type(value).__name__}")
    return value


CHECKS: dict[str, Callable[[str, Any], Any]] = {
    # framing: the server's keys, cut by the same framers (threadswoole.protocol)
    "open_eof_check": _bool,
    "open_eof_split": _bool,
    "package_eof": _eof,
    "open_length_check": _bool,
    "package_length_type": _length_type,
    "package_length_offset": _int(0),
    "package_body_offset": _int(0),
    "package_length_func": _callable,
    "package_max_length": _int(1),
    # the socket
    "socket_buffer_size": _int(1),
    "open_tcp_nodelay": _bool,
    "bind_address": _str,
    "bind_port": _int(0, 65535),
    # TLS (SWOOLE_SSL): a client certificate, and checking the server's (not in seeds: Swoole's names)
    "ssl_cert_file": _path,
    "ssl_key_file": _path,
    "ssl_verify_peer": _bool,
    "ssl_cafile": _path,
    "ssl_capath": _path,
    "ssl_host_name": _str,
    "ssl_ciphers": _str,
}


def validate(current: Mapping[str, Any], settings: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """`current` merged with the new keys, each checked; ConfigError if the framing they ask for is impossible."""
    merged = dict(current)
    for source in (settings or {}, kwargs):
        if not isinstance(source, Mapping):
            raise TypeError(f"settings must be a mapping, not {type(source).__name__}")
        for name, value in source.items():
            check = CHECKS.get(name)
            if check is None:
                warnings.warn(f"unknown client setting {name!r} (stored, but it has no effect)", UnknownSettingWarning, stacklevel=3)
                merged[name] = value
            else:
                merged[name] = check(name, value)
    try:
        make_framer(merged)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return merged

"""The `set()` schema (contract R8, §5.7): every key's type, default, scope and validation in one table.

A key of the wrong type raises TypeError, a bad value raises ConfigError, an unknown key warns
(UnknownSettingWarning) and is stored anyway, as Swoole ignores unknown keys.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from threadswoole.constants import SWOOLE_CPU_NUM, SSLMethod
from threadswoole.errors import ConfigError, UnknownSettingWarning

MIB = 1024 * 1024

# Scopes: "server" keys belong to the whole server; "port" keys may also be set per listener.
SERVER = "server"
PORT = "port"


@dataclass(frozen=True)
class Key:
    """One settings key: how to check it, its default (None = unset) and its scope."""

    name: str
    check: Callable[[str, Any], Any]
    default: Any = None
    scope: str = SERVER
    noop: bool = False


def _type_error(name: str, expected: str, value: Any) -> TypeError:
    return TypeError(f"setting {name!r} must be {expected}, not {type(value).__name__}")


def _int(low: int | None = None, high: int | None = None) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(name, "an int", value)
        if low is not None and value < low:
            raise ConfigError(f"setting {name!r} must be >= {low}, got {value}")
        if high is not None and value > high:
            raise ConfigError(f"setting {name!r} must be <= {high}, got {value}")
        return value

    return check


def _number(low: float = 0.0, strict: bool = False) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(name, "a number", value)
        if value < low or (strict and value == low):
            raise ConfigError(f"setting {name!r} must be {'>' if strict else '>='} {low}, got {value}")
        return value

    return check


def _bool(name: str, value: Any) -> bool:
    # PHP configs say 1/0 as often as true/false; accept ints but nothing else.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _type_error(name, "a bool", value)


def _str(name: str, value: Any) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise _type_error(name, "a str or path", value)
    return value


def _callable(name: str, value: Any) -> Any:
    if not callable(value):
        raise _type_error(name, "callable", value)
    return value


def _eof(name: str, value: Any) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, (bytes, bytearray)):
        raise _type_error(name, "bytes or str", value)
    if not 1 <= len(value) <= 8:
        raise ConfigError(f"setting {name!r} must be 1 to 8 bytes long, got {len(value)}")
    return bytes(value)


def _length_type(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _type_error(name, "a str", value)
    if len(value) != 1 or value not in "cCsSnNlLvV":
        raise ConfigError(f"setting {name!r} must be one of c C s S n N l L v V, got {value!r}")
    return value


def _ssl_method(name: str, value: Any) -> int:
    value = _int()(name, value)
    try:
        method = SSLMethod(value)
    except ValueError:
        raise ConfigError(f"setting {name!r}: unknown SSL method {value}") from None
    if method in (SSLMethod.SWOOLE_SSLv3_METHOD, SSLMethod.SWOOLE_SSLv3_SERVER_METHOD, SSLMethod.SWOOLE_SSLv3_CLIENT_METHOD):
        raise ConfigError("SSLv3 is not supported by modern OpenSSL")
    return value


def _str_list(name: str, value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _type_error(name, "a list of str", value)
    return list(value)


def _int_list(name: str, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _type_error(name, "a list of ints", value)
    return list(value)


def _http2(name: str, value: Any) -> bool:
    if _bool(name, value):
        raise ConfigError("open_http2_protocol: HTTP/2 is not supported (the standard library has no HTTP/2)")
    return False


def _any(name: str, value: Any) -> Any:
    return value


_KEYS = [
    # processes and threads
    Key("reactor_num", _int(1, SWOOLE_CPU_NUM * 4), SWOOLE_CPU_NUM),
    Key("worker_num", _int(1, SWOOLE_CPU_NUM * 1000), SWOOLE_CPU_NUM),
    Key("max_request", _int(0), 0),
    Key("max_request_grace", _int(0), 0),
    Key("task_max_request", _int(0), 0),
    Key("max_connection", _int(1)),
    Key("task_worker_num", _int(0), 0),
    Key("task_ipc_mode", _int(1, 3), 1),
    Key("task_tmpdir", _str, "/tmp"),
    Key("task_enable_coroutine", _bool, False),  # accepted: there is no coroutine runtime (no effect)
    Key("message_queue_key", _int()),
    Key("dispatch_mode", _int(1, 5), 2),
    Key("dispatch_func", _callable),
    Key("enable_unsafe_event", _bool, False),
    Key("discard_timeout_request", _bool, True),
    Key("daemonize", _bool, False),
    Key("log_file", _str),
    Key("log_level", _int(0, 5)),
    Key("pid_file", _str),
    Key("user", _str),
    Key("group", _str),
    Key("chroot", _str),
    Key("open_cpu_affinity", _bool, False),
    Key("cpu_affinity_ignore", _int_list),
    Key("reload_async", _bool, False),
    Key("max_wait_time", _number(0.0, strict=True), 3.0),
    Key("enable_reuse_port", _bool, False),
    Key("buffer_output_size", _int(1), 2 * MIB),
    Key("socket_buffer_size", _int(1), 2 * MIB),
    Key("heartbeat_check_interval", _number(0.0)),
    Key("heartbeat_idle_time", _number(0.0), scope=PORT),
    Key("enable_coroutine", _bool, False),
    Key("send_yield", _bool, False),
    # HTTP, WebSocket and Redis servers (per listener: an added port inherits the main port's
    # protocol and these, on a protocol server, until its own set() overrides them)
    Key("document_root", _str, None, PORT),
    Key("enable_static_handler", _bool, False, PORT),
    Key("static_handler_locations", _str_list, None, PORT),
    Key("http_index_files", _str_list, None, PORT),
    Key("http_autoindex", _bool, False, PORT),
    Key("upload_tmp_dir", _str, None, PORT),
    Key("upload_max_filesize", _int(0), 4 * MIB, PORT),
    Key("http_parse_post", _bool, True, PORT),
    Key("http_parse_cookie", _bool, True, PORT),
    Key("http_parse_files", _bool, True, PORT),
    Key("http_compression", _bool, True, PORT),
    Key("http_compression_level", _int(1, 9), 1, PORT),
    Key("compression_min_length", _int(0), 20, PORT),
    Key("websocket_subprotocol", _str, None, PORT),
    Key("websocket_compression", _bool, False, PORT),
    Key("open_websocket_close_frame", _bool, False, PORT),
    Key("open_websocket_ping_frame", _bool, False, PORT),
    Key("open_websocket_pong_frame", _bool, False, PORT),
    Key("open_redis_protocol", _bool, False, PORT),
    # a protocol of the application's own (threadswoole serve: WSGI, ASGI, /metrics): a
    # callable settings -> ApplicationProtocol, called once per listener at start()
    Key("application_protocol", _callable, None, PORT),
    # per listener
    Key("backlog", _int(0), 512, PORT),
    Key("open_tcp_nodelay", _bool, False, PORT),
    Key("tcp_defer_accept", _int(0), 0, PORT),
    Key("enable_delay_receive", _bool, False, PORT),
    Key("open_eof_check", _bool, False, PORT),
    Key("open_eof_split", _bool, False, PORT),
    Key("package_eof", _eof, b"\r\n\r\n", PORT),
    Key("open_length_check", _bool, False, PORT),
    Key("package_length_type", _length_type, "N", PORT),
    Key("package_length_offset", _int(0), 0, PORT),
    Key("package_body_offset", _int(0), 0, PORT),
    Key("package_length_func", _callable, None, PORT),
    Key("package_max_length", _int(1), 2 * MIB, PORT),
    Key("buffer_high_watermark", _int(0), 0, PORT),
    Key("buffer_low_watermark", _int(0), 0, PORT),
    Key("open_http_protocol", _bool, False, PORT),
    Key("open_http2_protocol", _http2, False, PORT),
    Key("open_websocket_protocol", _bool, False, PORT),
    Key("ssl_cert_file", _str, None, PORT),
    Key("ssl_key_file", _str, None, PORT),
    Key("ssl_ciphers", _str, "EECDH+AESGCM:EDH+AESGCM:AES256+EECDH:AES256+EDH", PORT),
    Key("ssl_method", _ssl_method, 0, PORT),
    Key("ssl_verify_peer", _bool, False, PORT),
    Key("ssl_client_cert_file", _str, None, PORT),
    Key("ssl_allow_self_signed", _bool, False, PORT),
    # documented no-ops (legacy or undefined in the seeds)
    Key("pipe_buffer_size", _any, noop=True),
    Key("debug_mode", _any, noop=True),
    Key("max_coroutine", _any, noop=True),
    Key("tcp_fastopen", _any, noop=True),
    Key("request_slowlog_file", _any, noop=True),
    Key("open_mqtt_protocol", _any, noop=True),
    Key("wait_for_bind", _any, noop=True),
]

SCHEMA: dict[str, Key] = {key.name: key for key in _KEYS}
SPELLINGS = {"max_conn": "max_connection"}
PORT_KEYS = frozenset(key.name for key in _KEYS if key.scope == PORT)
UNSUPPORTED_PROTOCOLS: tuple[str, ...] = ()


def validate(settings: Mapping[str, Any] | None, kwargs: Mapping[str, Any], *, port: bool = False) -> dict[str, Any]:
    """Check a `set()` call and return the normalised values to merge."""
    if settings is not None and not isinstance(settings, Mapping):
        raise TypeError(f"set() takes a mapping, not {type(settings).__name__}")
    merged: dict[str, Any] = dict(settings or {})
    merged.update(kwargs)
    out: dict[str, Any] = {}
    for raw_name, value in merged.items():
        if not isinstance(raw_name, str):
            raise TypeError(f"setting names are str, not {type(raw_name).__name__}")
        name = SPELLINGS.get(raw_name, raw_name)
        key = SCHEMA.get(name)
        if key is None:
            warnings.warn(f"unknown setting {raw_name!r} (stored, but it has no effect)", UnknownSettingWarning, stacklevel=3)
            out[name] = value
            continue
        if port and key.scope != PORT:
            raise ConfigError(f"{raw_name!r} is a server setting; pass it to Server.set(), not Port.set()")
        out[name] = key.check(raw_name, value)
    return out


def default(name: str) -> Any:
    """The default value of a known key (None when the key has no default)."""
    return SCHEMA[name].default


def default_max_connection() -> int:
    """Swoole's default: the open-files limit, capped at 100,000."""
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 100_000
    return max(1, min(soft, 100_000))


def port_defaults() -> dict[str, Any]:
    """Defaults of the per-listener keys."""
    return {name: SCHEMA[name].default for name in PORT_KEYS}

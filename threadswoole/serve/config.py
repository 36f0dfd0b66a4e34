"""The `serve` options in one table: each is a command-line flag, a TOML key and a variable.

Sources, lowest first: the defaults below, the TOML file (``--config FILE`` or
``THREADSWOOLE_CONFIG``; stdlib `tomllib`; keys are the flag names with ``_`` for ``-``, e.g.
``max_requests = 1000``, ``bind = ["127.0.0.1:8000", "unix:/run/app.sock"]``), the environment
(``THREADSWOOLE_WORKERS=4``; lists space- or comma-separated, booleans 1/0, true/false, yes/no,
on/off), the command line. A value of the wrong type or out of range is a `ConfigError` naming
its source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from threadswoole.errors import ConfigError

__all__ = ["Option", "OPTIONS", "ServeConfig", "resolve", "ENV_PREFIX"]

ENV_PREFIX = "THREADSWOOLE_"
MODES = ("base", "process", "thread")
INTERFACES = ("auto", "wsgi", "asgi")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LIFESPAN = ("auto", "on", "off")


@dataclass(frozen=True)
class Option:
    """One option: its name (the TOML key), type, default, help and flag details."""

    name: str
    kind: type
    default: Any
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    many: bool = False  # repeatable flag / list value
    short: str | None = None
    group: str = "server"
    minimum: float | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    # the application
    Option("interface", str, "auto", "application interface: wsgi, asgi, or auto (an `async def` app is ASGI)",
           choices=INTERFACES, group="application"),
    Option("factory", bool, False, "ATTR is a factory: call it (no arguments) to get the application",
           group="application"),
    Option("app_dir", str, ".", "directory put first on sys.path before importing MODULE", metavar="DIR",
           group="application"),
    Option("root_path", str, "", "mount point of the application (WSGI SCRIPT_NAME, ASGI root_path)",
           metavar="PATH", group="application"),
    Option("lifespan", str, "auto", "ASGI lifespan events: auto (if the app supports them), on, off",
           choices=LIFESPAN, group="application"),
    # where and how it listens
    Option("bind", str, None, "listen on HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N (repeatable; "
           "default 127.0.0.1:8000, or the sockets systemd passes in LISTEN_FDS)", metavar="ADDRESS",
           many=True, short="-b", group="listening"),
    Option("fd", int, None, "listen on an inherited listening socket, file descriptor N (repeatable)",
           metavar="N", many=True, group="listening", minimum=0),
    Option("backlog", int, 2048, "listen backlog of every socket", metavar="N", group="listening", minimum=1),
    Option("ssl_certfile", str, None, "TLS certificate (PEM) for every TCP listener", metavar="FILE",
           group="listening"),
    Option("ssl_keyfile", str, None, "TLS private key (PEM)", metavar="FILE", group="listening"),
    Option("metrics_bind", str, None, "serve /metrics (Prometheus) and /stats (JSON) on HOST:PORT",
           metavar="ADDRESS", group="listening"),
    # workers
    Option("mode", str, "base", "base: prefork workers; process: sockets in the master (connections "
           "survive worker restarts); thread: worker threads in one process", choices=MODES, short="-m",
           group="workers"),
    Option("workers", int, 1, "number of workers (processes, or threads in thread mode)", metavar="N",
           short="-w", group="workers", minimum=1),
    Option("reactors", int, 0, "process mode: reactor threads in the master (0: one per CPU)", metavar="N",
           group="workers", minimum=0),
    Option("max_requests", int, 0, "restart a worker after this many requests (0: never)", metavar="N",
           group="workers", minimum=0),
    Option("max_requests_jitter", int, 0, "add 0..N to max-requests per worker, so they do not restart "
           "together", metavar="N", group="workers", minimum=0),
    Option("graceful_timeout", float, 30.0, "seconds a stopping worker may take before it is killed",
           metavar="SECONDS", group="workers", minimum=0.001),
    Option("limit_request_body", int, 1 << 30, "largest request body accepted (larger: 413)", metavar="BYTES",
           group="workers", minimum=1),
    Option("send_timeout", float, 60.0, "drop a client that reads nothing of its response for this long",
           metavar="SECONDS", group="workers", minimum=0.001),
    Option("ws_max_size", int, 16 * 1024 * 1024, "largest WebSocket message accepted (ASGI)", metavar="BYTES",
           group="workers", minimum=1),
    # process and logging
    Option("access_log", str, None, "write an access log in the combined format to FILE, or - for "
           "standard output", metavar="FILE", group="logging"),
    Option("log_level", str, "info", "server log level", choices=LOG_LEVELS, group="logging"),
    Option("log_file", str, None, "server log to FILE (default: standard error)", metavar="FILE",
           group="logging"),
    Option("pid", str, None, "write the master's process id to FILE", metavar="FILE", group="process"),
    Option("daemon", bool, False, "detach from the terminal and run in the background", short="-D",
           group="process"),
)
BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


@dataclass
class ServeConfig:
    """The resolved options (attribute per option) plus the application reference."""

    app: str
    values: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None


def _boolean(text: str, where: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{where}: {text!r} is not a boolean (1/0, true/false, yes/no, on/off)")


def check(option: Option, value: Any, where: str) -> Any:
    """`value` as the option's type (a list for repeatable ones); ConfigError otherwise."""
    if option.many:
        items = value if isinstance(value, (list, tuple)) else [value]
        return [check_one(option, item, where) for item in items]
    return check_one(option, value, where)


def check_one(option: Option, value: Any, where: str) -> Any:
    kind = option.kind
    if kind is bool:
        if isinstance(value, str):
            return _boolean(value, where)
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {option.name} must be true or false, not {value!r}")
        return value
    if isinstance(value, str) and kind is not str:
        try:
            value = kind(value.strip())
        except ValueError:
            raise ConfigError(f"{where}: {option.name} must be a{'n int' if kind is int else ' number'}, not {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{where}: {option.name} must be {kind.__name__}, not {type(value).__name__}")
    if option.choices is not None and value not in option.choices:
        raise ConfigError(f"{where}: {option.name} must be one of {', '.join(option.choices)}, not {value!r}")
    if option.minimum is not None and value < option.minimum:
        raise ConfigError(f"{where}: {option.name} must be >= {option.minimum:g}, not {value!r}")
    return value


def from_toml(path: str) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name == "app":
            if not isinstance(value, str):
                raise ConfigError(f"{path}: app must be a string such as \"package.module:app\"")
            values["app"] = value
            continue
        option = BY_NAME.get(name)
        if option is None:
            raise ConfigError(f"{path}: unknown option {key!r} (known: app, {', '.join(BY_NAME)})")
        values[name] = check(option, value, path)
    return values


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for option in OPTIONS:
        text = environ.get(option.env)
        if text is None:
            continue
        value: Any = text.replace(",", " ").split() if option.many else text
        values[option.name] = check(option, value, option.env)
    if environ.get(ENV_PREFIX + "APP"):
        values["app"] = environ[ENV_PREFIX + "APP"]
    return values


def resolve(command_line: Mapping[str, Any], environ: Mapping[str, str] | None = None,
            loader: Callable[[str], dict[str, Any]] = from_toml) -> ServeConfig:
    """Merge defaults < config file < environment < command line (given options only)."""
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {option.name: option.default for option in OPTIONS}
    config_path = command_line.get("config") or environ.get(ENV_PREFIX + "CONFIG")
    if config_path:
        merged.update(loader(config_path))
    merged.update(from_environment(environ))
    for name, value in command_line.items():
        if name in BY_NAME and value is not None:
            merged[name] = check(BY_NAME[name], value, BY_NAME[name].flag)
    if command_line.get("app"):
        merged["app"] = command_line["app"]
    app = merged.pop("app", None)
    if not app:
        raise ConfigError("no application: give MODULE:ATTR (or `app = \"...\"` in the config file)")
    if bool(merged["ssl_certfile"]) != bool(merged["ssl_keyfile"]):
        raise ConfigError("TLS needs both --ssl-certfile and --ssl-keyfile")
    return ServeConfig(app, merged)

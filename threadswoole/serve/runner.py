"""Build and run the server of ``threadswoole serve``: load the application, open the
listeners, map the options to server settings, wire the callbacks and the signals.

The listeners are ports of a plain `threadswoole.Server` whose ``application_protocol``
setting builds the WSGI or ASGI protocol (the metrics listener gets its own), so the server
core neither knows nor imports this package. Signals: the mode driver turns SIGTERM into a
graceful stop, SIGINT into a stop and SIGUSR1 into a rolling reload of the workers; SIGHUP,
gunicorn's reload, is forwarded here as SIGUSR1 (the forwarding is installed before start()
and inherited by the manager and the workers, where it means the same or nothing).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import traceback
from typing import Any

from threadswoole import SWOOLE_BASE, SWOOLE_PROCESS, SWOOLE_THREAD, Server
from threadswoole.serve.binds import describe, listens_for, open_ports, parse_bind
from threadswoole.serve.config import ServeConfig
from threadswoole.serve.loader import AppLoadError, detect_interface, load
from threadswoole.serve.options import ServeOptions

log = logging.getLogger("threadswoole.serve")

__all__ = ["run", "build", "EXIT_APP_LOAD", "EXIT_STARTUP"]

MODES = {"base": SWOOLE_BASE, "process": SWOOLE_PROCESS, "thread": SWOOLE_THREAD}
SWOOLE_LOG_LEVELS = {"debug": 0, "info": 2, "warning": 4, "error": 5, "critical": 5}
EXIT_CONFIG = 2  # bad options (argparse's status)
EXIT_STARTUP = 3  # the server or the application's lifespan startup failed (uvicorn's status)
EXIT_APP_LOAD = 4  # MODULE:ATTR cannot be used (gunicorn's "app load error")


def settings_for(config: ServeConfig) -> dict[str, Any]:
    """The server settings the options stand for."""
    settings: dict[str, Any] = {
        "worker_num": config.workers,
        "max_request": config.max_requests,
        "max_request_grace": config.max_requests_jitter,
        "max_wait_time": config.graceful_timeout,
        "log_level": SWOOLE_LOG_LEVELS[config.log_level],
        "daemonize": config.daemon,
    }
    if config.mode == "process" and config.reactors:
        settings["reactor_num"] = config.reactors
    if config.log_file:
        settings["log_file"] = os.path.abspath(config.log_file)
    if config.pid:
        settings["pid_file"] = os.path.abspath(config.pid)
    return settings


def port_settings(config: ServeConfig, factory: Any, tls: bool) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "application_protocol": factory,
        "backlog": config.backlog,
        "package_max_length": config.limit_request_body,
        "open_tcp_nodelay": True,
    }
    if tls:
        settings["ssl_cert_file"] = os.path.abspath(config.ssl_certfile)
        settings["ssl_key_file"] = os.path.abspath(config.ssl_keyfile)
    return settings


def build(config: ServeConfig, app: Any, interface: str) -> tuple[Server, ServeOptions]:
    """The configured, unstarted server (listening already: the constructor binds)."""
    tls = bool(config.ssl_certfile)
    mode = MODES[config.mode]
    server, ports = open_ports(Server, listens_for(config.bind, config.fd, os.environ), mode, tls)
    options = ServeOptions(
        root_path=config.root_path, multithread=config.mode == "thread",
        multiprocess=config.mode != "thread" and config.workers > 1, send_timeout=config.send_timeout,
        body_timeout=config.send_timeout, graceful_timeout=config.graceful_timeout,
        ws_max_size=config.ws_max_size, lifespan=config.lifespan)
    if config.access_log:
        from threadswoole.serve.access_log import AccessLog

        options.access_log = AccessLog(config.access_log)
    if interface == "asgi":
        from threadswoole.serve.asgi import AsgiProtocol

        options.asgi_app = app
        factory = functools.partial(AsgiProtocol, app=app, options=options)
    else:
        from threadswoole.serve.wsgi import WsgiProtocol

        factory = functools.partial(WsgiProtocol, app=app, options=options)
    server.set(settings_for(config))
    for port in ports:
        port.set(port_settings(config, factory, tls))
    if config.metrics_bind:
        _add_metrics(server, config, options)
    server.on("worker_start", options.worker_start)
    server.on("worker_stop", options.worker_stop)
    addresses = [describe(port, tls) for port in ports]
    metrics_at = describe(server.ports[-1]) if config.metrics_bind else None

    def on_start(srv: Server) -> None:
        log.info("threadswoole serve %s (%s, %s mode, %d worker%s) listening at %s (pid %d)%s", config.app,
                 interface.upper(), config.mode, config.workers, "" if config.workers == 1 else "s",
                 ", ".join(addresses), os.getpid(), f"; metrics at {metrics_at}/metrics" if metrics_at else "")

    server.on("start", on_start)
    return server, options


def _add_metrics(server: Server, config: ServeConfig, options: ServeOptions) -> None:
    from threadswoole.serve.metrics import Metrics
    from threadswoole.serve.metrics_http import MetricsProtocol

    listen = parse_bind(config.metrics_bind)
    if listen.kind == "fd":
        raise AppLoadError("--metrics-bind takes HOST:PORT, [IPV6]:PORT or unix:PATH")
    port = server.add_listener(listen.host, listen.port, listen.sock_type)
    if port is False:
        raise OSError(server.get_last_error(), f"cannot listen on {config.metrics_bind} for metrics: "
                      f"{os.strerror(server.get_last_error())}")
    options.metrics = Metrics(config.workers)
    port.set({"application_protocol": functools.partial(MetricsProtocol, options=options), "open_tcp_nodelay": True})


def forward_sighup_as_reload(_signo: int, _frame: Any) -> None:
    """SIGHUP (gunicorn's reload) becomes SIGUSR1, the mode's rolling restart of the workers,
    but only while the mode's SIGUSR1 handler is in place: before the server has installed it
    (start-up) or after it restored it (shutdown), SIGUSR1's default action would kill the
    process, so the SIGHUP is logged and ignored instead."""
    if not callable(signal.getsignal(signal.SIGUSR1)):
        log.warning("SIGHUP ignored: the server is not running (it reloads only once started)")
        return
    os.kill(os.getpid(), signal.SIGUSR1)


def run(config: ServeConfig) -> int:
    """Load, build and run; the process exit status."""
    try:
        app = load(config.app, app_dir=config.app_dir, factory=config.factory)
    except AppLoadError as exc:
        if exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"threadswoole serve: error: {exc}", file=sys.stderr)
        return EXIT_APP_LOAD
    interface = detect_interface(app) if config.interface == "auto" else config.interface
    try:
        server, options = build(config, app, interface)
    except (OSError, ValueError, AppLoadError) as exc:
        print(f"threadswoole serve: error: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    startup_failed = None
    if interface == "asgi":
        from threadswoole.sharing.atomic import Atomic

        startup_failed = options.startup_failures = Atomic(0)
    previous = signal.signal(signal.SIGHUP, forward_sighup_as_reload)
    try:
        server.start()
    except Exception as exc:  # settings the server refuses at start() (a TLS file missing, ...)
        print(f"threadswoole serve: error: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    finally:
        signal.signal(signal.SIGHUP, previous)
        if options.access_log is not None:
            options.access_log.close()
    if startup_failed is not None and startup_failed.get():
        print("threadswoole serve: the application's lifespan startup failed", file=sys.stderr)
        return EXIT_STARTUP
    return 0

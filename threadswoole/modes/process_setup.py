"""What a master process sets up around a running server and tears down after it: logging
(the `threadswoole` logger, `log_file`, `log_level`), daemonizing, and the pid file."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

# Swoole's log levels: 0 DEBUG, 1 TRACE, 2 INFO, 3 NOTICE, 4 WARNING, 5 ERROR.
_LOG_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.INFO, 3: logging.INFO, 4: logging.WARNING, 5: logging.ERROR}
_FORMAT = "[%(asctime)s %(process)d %(threadName)s] %(levelname)s threadswoole: %(message)s"


def configure_logging(settings: dict[str, Any]) -> None:
    logger = logging.getLogger("threadswoole")
    level = settings.get("log_level")
    if level is not None:
        logger.setLevel(_LOG_LEVELS[level])
    elif logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    log_file = settings.get("log_file")
    if log_file:
        handler: logging.Handler = logging.FileHandler(log_file)
    elif not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
    else:
        return
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler._threadswoole = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False


def remove_logging() -> None:
    logger = logging.getLogger("threadswoole")
    for handler in list(logger.handlers):
        if getattr(handler, "_threadswoole", False):
            logger.removeHandler(handler)
            handler.close()
    logger.propagate = True


def daemonize(log_file: str | None) -> None:
    """Detach from the terminal: fork twice, new session, cwd '/', stdio to the log or /dev/null."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    sys.stdout.flush()
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if log_file else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)


def write_pid_file(path: str | None) -> None:
    if path:
        with open(path, "w") as file:
            file.write(f"{os.getpid()}\n")


def remove_pid_file(path: str | None) -> None:
    if path:
        try:
            with open(path) as file:
                if file.read().strip() != str(os.getpid()):
                    return  # another server owns it now
            os.unlink(path)
        except OSError:
            pass

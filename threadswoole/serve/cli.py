"""The ``serve`` subcommand's arguments: one flag per option of `config.OPTIONS`, grouped and
worded like gunicorn's and uvicorn's ``--help``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from threadswoole.errors import ConfigError
from threadswoole.serve.config import ENV_PREFIX, OPTIONS, resolve

__all__ = ["add_parser", "main"]

GROUPS = {
    "application": "application",
    "listening": "sockets",
    "workers": "workers",
    "logging": "logging",
    "process": "process",
}
DESCRIPTION = """\
Serve a WSGI or ASGI application (Flask, Django, FastAPI, Starlette, ...) with threadswoole.

MODULE:ATTR names the application: myproject.wsgi:application, app:app, main:create_app().
Modes: base (prefork workers, like gunicorn), process (sockets stay in the master, so
connections survive worker restarts), thread (one process, worker threads on every core on
free-threaded CPython).
"""
EPILOG = f"""\
Every option can also be set in a TOML file (--config, keys spelled like the options with
'_': max_requests = 1000) or in the environment ({ENV_PREFIX}WORKERS=4); the command line
wins over the environment, which wins over the file.

Signals: TERM graceful stop, INT stop, HUP or USR1 reload the workers one by one.

Examples:
  threadswoole serve myproject.wsgi:application --workers 4 --bind 0.0.0.0:8000
  threadswoole serve main:app --mode thread --workers 8 --access-log -
  threadswoole serve app:app --bind unix:/run/app.sock --metrics-bind 127.0.0.1:9100
"""


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = getattr(action, "real_default", None)
        if default not in (None, False, "", [], 0) and "%(default)" not in text:
            text += f" [default: {default}]"
        return text


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """The ``serve`` subparser on an ``add_subparsers()`` object."""
    parser = commands.add_parser(
        "serve", help="serve a WSGI or ASGI application", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=_Formatter, usage="threadswoole serve [OPTIONS] MODULE:ATTR")
    parser.add_argument("app", nargs="?", metavar="MODULE:ATTR", help="the application to serve")
    parser.add_argument("-c", "--config", metavar="FILE", help=f"read options from this TOML file (also {ENV_PREFIX}CONFIG)")
    groups = {name: parser.add_argument_group(title) for name, title in GROUPS.items()}
    for option in OPTIONS:
        flags = [option.flag] if option.short is None else [option.short, option.flag]
        group = groups[option.group]
        if option.kind is bool:
            action = group.add_argument(*flags, dest=option.name, action="store_const", const=True, default=None,
                                        help=option.help)
        else:
            action = group.add_argument(*flags, dest=option.name, default=None, metavar=option.metavar,
                                        choices=option.choices, action="append" if option.many else "store",
                                        help=option.help)
        action.real_default = option.default  # type: ignore[attr-defined]
    return parser


def run_arguments(arguments: argparse.Namespace) -> int:
    from threadswoole.serve.runner import EXIT_CONFIG, run

    given = {name: value for name, value in vars(arguments).items() if name != "command"}
    try:
        config = resolve(given)
    except ConfigError as exc:
        print(f"threadswoole serve: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return run(config)


def main(argv: list[str] | None = None) -> int:
    """``python -m threadswoole.serve.cli ...`` (the same as ``threadswoole serve ...``)."""
    parser = argparse.ArgumentParser(prog="threadswoole")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run_arguments(parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)]))

"""``MODULE:ATTR`` -> the application object, and which interface it speaks.

gunicorn's and uvicorn's conventions: ``package.module:app``; a dotted attribute path
(``module:site.app``); ``module`` alone means ``module:application`` (Django's ``wsgi.py``);
``module:create_app()`` or ``--factory`` calls a factory without arguments. The directory
given by ``--app-dir`` (default: the current one) comes first on ``sys.path``.

An application that does not import, an attribute that is missing, or an object that is not
callable is an `AppLoadError` whose message says which, with the import's traceback kept as
its cause (the CLI prints both and exits with status 4, gunicorn's "app load error").
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

__all__ = ["AppLoadError", "load", "detect_interface"]


class AppLoadError(Exception):
    """The application named on the command line cannot be used."""


def load(reference: str, *, app_dir: str = ".", factory: bool = False) -> Any:
    """Import `reference` (``MODULE:ATTR``) and return the application object."""
    if not isinstance(reference, str) or not reference.strip():
        raise AppLoadError("no application given: use MODULE:ATTR, e.g. myproject.wsgi:application")
    module_name, _, attribute = reference.strip().partition(":")
    attribute = attribute or "application"
    call = attribute.endswith("()")
    if call:
        attribute = attribute[:-2]
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise AppLoadError(f"{reference!r}: {module_name!r} is not a module name (use MODULE:ATTR)")
    if not all(part.isidentifier() for part in attribute.split(".")):
        raise AppLoadError(f"{reference!r}: {attribute!r} is not an attribute name (use MODULE:ATTR)")
    directory = os.path.abspath(app_dir)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name) and (module_name + ".").startswith(exc.name + "."):
            raise AppLoadError(f"cannot import {module_name!r}: no such module (searched {directory} and sys.path)") from exc
        raise AppLoadError(f"importing {module_name!r} failed: {exc}") from exc
    except BaseException as exc:  # SyntaxError, an exception at import time, even SystemExit
        raise AppLoadError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if call or factory:
        if not callable(target):
            raise AppLoadError(f"{reference}: the factory {attribute!r} is not callable")
        try:
            target = target()
        except Exception as exc:
            raise AppLoadError(f"{reference}: the factory {attribute!r} raised {type(exc).__name__}: {exc}") from exc
    if not callable(target):
        raise AppLoadError(f"{reference}: {type(target).__name__} object {attribute!r} is not callable, so not an application")
    return target


def detect_interface(app: Any) -> str:
    """"asgi" for an ``async def`` application (a coroutine function, or an object whose
    ``__call__`` is one: Starlette, FastAPI, Django's ASGIHandler), else "wsgi"."""
    if inspect.iscoroutinefunction(app):
        return "asgi"
    call = getattr(type(app), "__call__", None)
    if call is not None and inspect.iscoroutinefunction(call):
        return "asgi"
    wrapped = getattr(app, "__wrapped__", None)
    if wrapped is not None and wrapped is not app and inspect.iscoroutinefunction(wrapped):
        return "asgi"
    return "wsgi"

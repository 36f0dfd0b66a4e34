"""Build the framer a Swoole settings dict asks for."""

from __future__ import annotations

from typing import Any, Mapping

from threadswoole.protocol.framer import Framer
from threadswoole.protocol.eof import EofCheckFramer, EofSplitFramer
from threadswoole.protocol.length import LengthFramer, LengthFuncFramer

DEFAULT_PACKAGE_EOF = b"\r\n\r\n"
DEFAULT_PACKAGE_LENGTH_TYPE = "N"
DEFAULT_PACKAGE_MAX_LENGTH = 2 * 1024 * 1024


def make_framer(settings: Mapping[str, Any]) -> Framer | None:
    """Return the framer selected by ``settings``, or None for a raw (unframed) stream.

    Precedence follows Swoole: ``open_eof_split`` (which implies
    ``open_eof_check``) -> :class:`EofSplitFramer`; else ``open_eof_check`` ->
    :class:`EofCheckFramer`; else ``open_length_check`` ->
    :class:`LengthFuncFramer` when ``package_length_func`` is set, otherwise
    :class:`LengthFramer`.  ``package_length_func`` alone (without
    ``open_length_check``) does nothing, as in Swoole.  Raises ValueError for an
    unknown ``package_length_type`` or an empty / longer than 8 bytes ``package_eof``.
    """
    max_length = settings.get("package_max_length", DEFAULT_PACKAGE_MAX_LENGTH)
    if settings.get("open_eof_split"):
        return EofSplitFramer(settings.get("package_eof", DEFAULT_PACKAGE_EOF), max_length)
    if settings.get("open_eof_check"):
        return EofCheckFramer(settings.get("package_eof", DEFAULT_PACKAGE_EOF), max_length)
    if settings.get("open_length_check"):
        func = settings.get("package_length_func")
        if func is not None:
            return LengthFuncFramer(func, max_length)
        return LengthFramer(  # raises ValueError for an unknown package_length_type
            settings.get("package_length_type", DEFAULT_PACKAGE_LENGTH_TYPE),
            settings.get("package_length_offset", 0),
            settings.get("package_body_offset", 0),
            max_length,
        )
    return None

"""Swoole-spelled aliases (contract R2): one descriptor that resolves the primary name at lookup time."""

from __future__ import annotations

from typing import Any


class alias:  # noqa: N801 - reads like a keyword in class bodies: getClientInfo = alias("get_client_info")
    """Class attribute that forwards to `primary`, so a subclass override of the primary also applies."""

    def __init__(self, primary: str) -> None:
        self.primary = primary
        self.name = primary

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return getattr(objtype, self.primary)
        return getattr(obj, self.primary)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self.primary, value)

    def __repr__(self) -> str:
        return f"<alias {self.name} -> {self.primary}>"

"""Every HTTP setting the Request / Response / static-file / upload code reads, in one frozen record.

Built once per listener from the server settings (`HttpOptions.from_settings(port.setting)`),
so the hot path reads attributes instead of looking keys up in a settings mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["HttpOptions"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class HttpOptions:
    """HTTP behaviour switches and limits; field names and defaults are Swoole's settings keys."""

    http_parse_post: bool = True
    http_parse_cookie: bool = True
    http_parse_files: bool = True
    upload_tmp_dir: str = "/tmp"
    upload_max_filesize: int = 4 * MIB
    http_compression: bool = True
    http_compression_level: int = 1
    compression_min_length: int = 20
    buffer_output_size: int = 2 * MIB
    package_max_length: int = 2 * MIB
    enable_static_handler: bool = False
    document_root: str | None = None
    static_handler_locations: tuple[str, ...] = ()
    http_index_files: tuple[str, ...] = ()
    http_autoindex: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.http_compression_level <= 9:
            raise ValueError(f"http_compression_level must be 1..9, got {self.http_compression_level}")
        for name in ("upload_max_filesize", "compression_min_length", "buffer_output_size", "package_max_length"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "HttpOptions":
        """Pick the HTTP keys out of a server / port settings mapping (absent keys: defaults)."""
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name == "extra" or name not in settings or settings[name] is None:
                continue
            value = settings[name]
            if name in ("static_handler_locations", "http_index_files"):
                value = (value,) if isinstance(value, str) else tuple(value)
            elif name in ("upload_tmp_dir", "document_root"):
                value = str(value)
            values[name] = value
        return cls(**values)

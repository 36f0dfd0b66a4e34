"""The one exception the HTTP parser's parts raise internally; the codec turns it into ProtocolError."""

from __future__ import annotations


class MessageError(ValueError):
    """A request that can never be valid: answer `status` and close the connection.

    `reason` is short and machine-readable (``"bad_request_line"``, ``"obs_fold"``, ...) and is
    what `ProtocolError.reason` carries; `detail` says what was wrong, for logs.
    """

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(f"{status} {reason}: {detail}" if detail else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.detail = detail

"""`RequestBuilder`: from the codec's events to a `Request`, streaming uploads on the way.

The dispatcher makes one builder per `HttpRequest` event and feeds it the `HttpBodyChunk`
events that follow (none when the event is already `complete`):

    builder = RequestBuilder(event, options)
    ...
    builder.feed(chunk)                      # for each HttpBodyChunk of this request
    if builder.complete:
        if builder.rejected is not None:     # an upload over upload_max_filesize
            transport.send(builder.rejected); transport.close()   # 413; on_request not called
        else:
            request = builder.build(fd, remote_addr=..., ...)
            ...on_request(request, response)...; request.cleanup()

A multipart body that streams (it was longer than the codec's ``max_buffered_body``) is parsed
as it arrives, file parts going straight to their temp files. A complete multipart body is
parsed lazily by the Request -- unless it is longer than ``upload_max_filesize``, the only case
where one of its files could be too large: then it is parsed here, so that the 413 is known
before ``on_request``. The raw body is kept in both cases (``raw_content()``; its size is
bounded by ``package_max_length``). `abort()` deletes the temp files of a request whose
connection went away before it completed.
"""

from __future__ import annotations

from typing import Any

from threadswoole.http.options import HttpOptions
from threadswoole.http.request import FORM_METHODS, Request
from threadswoole.http.uploads import UploadSink, UploadTooLarge
from threadswoole.protocol.http.events import HttpBodyChunk, HttpRequest
from threadswoole.protocol.http.multipart import boundary_of

__all__ = ["RequestBuilder"]


class RequestBuilder:
    """Collects one request's body (see the module docstring)."""

    __slots__ = ("event", "options", "complete", "rejected", "_parts", "_sink")

    def __init__(self, event: HttpRequest, options: HttpOptions | None = None) -> None:
        self.event = event
        self.options = options = options or HttpOptions()
        self.complete = event.complete
        self.rejected: bytes | None = None
        self._parts: list[bytes] = [event.body] if event.body else []
        self._sink: UploadSink | None = None
        if event.method in FORM_METHODS and (options.http_parse_files or options.http_parse_post):
            streaming = not event.complete
            if streaming or len(event.body) > options.upload_max_filesize:
                boundary = boundary_of(event.headers.get("content-type", ""))
                if boundary is not None:
                    self._sink = UploadSink(boundary, tmp_dir=options.upload_tmp_dir,
                                            max_file_size=options.upload_max_filesize,
                                            keep_fields=options.http_parse_post,
                                            keep_files=options.http_parse_files)
                    self._feed_sink(event.body)
                    if event.complete:
                        self._finish_sink()

    def feed(self, chunk: HttpBodyChunk) -> bool:
        """Add the next body chunk; return True when the body is complete."""
        if self.complete:
            raise ValueError("the request body is already complete")
        if chunk.data:
            if self.rejected is None:
                self._parts.append(chunk.data)
            self._feed_sink(chunk.data)
        if chunk.final:
            self.complete = True
            if chunk.trailers:
                self.event.trailers = chunk.trailers
            self._finish_sink()
        return self.complete

    def build(self, fd: int = 0, **facts: Any) -> Request:
        """The Request (call once, when `complete` and not `rejected`); `facts` go to Request()."""
        if not self.complete:
            raise ValueError("the request body is not complete yet")
        if self.rejected is not None:
            raise ValueError("the request was rejected (send builder.rejected instead)")
        parts = self._parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._parts = []
        return Request(self.event, fd, body=body, uploads=self._sink, options=self.options, **facts)

    def abort(self) -> None:
        """The request will never be built (connection closed, 413 sent): delete its temp files."""
        self._parts = []
        if self._sink is not None:
            self._sink.cleanup()
            self._sink = None

    def _feed_sink(self, data: bytes) -> None:
        sink = self._sink
        if sink is None or self.rejected is not None or not data:
            return
        try:
            sink.feed(data)
        except UploadTooLarge as exc:
            self.rejected = exc.response
            self._parts = []  # nothing more is kept for a refused request
            self._sink = None

    def _finish_sink(self) -> None:
        if self._sink is not None and self.rejected is None:
            self._sink.finish()

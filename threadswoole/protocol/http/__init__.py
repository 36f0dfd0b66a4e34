"""HTTP/1.1 on the codec contract: the sans-IO request parser, its events and the writer half.

    from threadswoole.protocol.http import HttpCodec, HttpRequest, HttpBodyChunk
    codec = HttpCodec(max_body_size=2 * 1024 * 1024)
    events = codec.feed(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")

Modules: `parser` (HttpCodec), `head` (request line and header rules), `chunked` (chunked
bodies), `events`, `writer` (responses as bytes), `forms` (query strings, cookies,
header parameters), `multipart` (incremental multipart/form-data parser).
"""

from threadswoole.protocol.http.errors import MessageError
from threadswoole.protocol.http.events import HttpBodyChunk, HttpRequest
from threadswoole.protocol.http.parser import HttpCodec

__all__ = ["HttpCodec", "HttpRequest", "HttpBodyChunk", "MessageError"]

"""``threadswoole.http``: Swoole's HTTP server (api.md §8).

`Server` is a `threadswoole.Server` whose main port speaks HTTP/1.1; `Request` and `Response`
are what ``on_request(request, response)`` receives. `RequestBuilder` turns the codec's
events into a Request, `StaticFiles` serves ``document_root``, `HttpOptions` gathers the HTTP
settings, `Transport` is what a Response writes to.
"""

from threadswoole.http.builder import RequestBuilder
from threadswoole.http.options import HttpOptions
from threadswoole.http.request import Request
from threadswoole.http.response import Response
from threadswoole.http.server import Server
from threadswoole.http.static import StaticFiles
from threadswoole.http.transport import Transport

__all__ = ["Server", "Request", "Response", "RequestBuilder", "StaticFiles", "HttpOptions", "Transport"]

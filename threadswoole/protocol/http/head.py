"""Parse and validate one request head (request line + header fields) into an `HttpRequest`.

The head is decoded once as latin-1 (one C call, lossless) and checked by two compiled
regular expressions that validate whole lines in C: the request line, and the header fields,
where every field must start right after a CRLF, so that the number of matches equals the
number of lines only if every line is a valid field. A head that fails is then examined
slowly, only to name what is wrong (`_diagnose_fields`).

Choices (each one is a corpus entry in tests/corpus/http/invalid):

* Line endings are CRLF only. A bare LF or bare CR anywhere in the head is 400: RFC 9112 §2.2
  lets a server accept a bare LF, but a front proxy that reads the same bytes differently is
  exactly how requests get smuggled.
* No obs-fold (a line starting with SP/HT), no whitespace before the colon, field names are
  RFC 9110 tokens, field values hold no NUL or other control byte except HT.
* Field names with ``_`` are kept as they are, distinct from the ``-`` spelling
  (``x_forwarded_for`` and ``x-forwarded-for`` are two different keys), as Swoole's
  ``$request->header`` does. Whoever maps headers to CGI-style names (a WSGI adapter) must drop
  the ``_`` names, as gunicorn and nginx do, or one header could pose as the other.
* ``Content-Length``: exactly one field of 1*DIGIT. A repeated field or a list (``5, 5``) is
  400 even when the values agree: RFC 9112 §6.3 allows accepting identical values, but refusing
  them costs nothing and can never desynchronise us from a proxy.
* ``Transfer-Encoding`` (HTTP/1.1 only; 400 in HTTP/1.0) must end in ``chunked``, which must
  appear once; with ``Content-Length`` too it is 400. Codings before ``chunked`` (``gzip,
  chunked``, also ``identity, chunked``) are 501: this server does not decode them.
* Methods: RFC 9110 tokens without lower-case letters or ``#``, 3 to 20 characters (all IANA
  methods fit). ``CONNECT`` is 501 (this is not a proxy).
* Targets: origin-form (``/path?query``), absolute-form with ``http``/``https`` and no userinfo,
  ``*`` only with OPTIONS; anything else is 400. Non-ASCII bytes in the target are accepted and
  decoded as UTF-8 (invalid sequences kept by ``surrogateescape``); a fragment is dropped from
  `path`/`query`.
* ``HTTP/1.0`` and ``HTTP/1.1``; ``HTTP/1.2``-``1.9`` are read as 1.1 (RFC 9110 §2.5); other
  ``HTTP/d.d`` (0.9, 2.0, ...) are 505; anything else is 400.
* ``Host``: HTTP/1.1 requires exactly one (RFC 9112 §3.2); an empty value is allowed (the RFC
  allows it when the target has no authority); characters outside RFC 3986's authority are 400.
"""

from __future__ import annotations

import re
import threading

from threadswoole.protocol.http.errors import MessageError
from threadswoole.protocol.http.events import HttpRequest

__all__ = ["HeadParser", "parse_head", "parse_fields", "BARE_LINE_ENDING", "FORBIDDEN_TRAILERS"]

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_METHOD = r"[!$%&'*+\-.^_`|~0-9A-Z]{3,20}"
# target: any byte but controls, space and DEL (non-ASCII bytes are latin-1 characters here)
_REQUEST_LINE = re.compile(r"(" + _METHOD + r") ([^\x00-\x20\x7f]+) HTTP/([0-9])\.([0-9])\r\n")
# One header field. The lookbehind pins every match to the start of a CRLF-delimited line, so
# that len(matches) == number of lines proves that every line matched (see the module doc).
_FIELD = re.compile(r"(?<=\r\n)(" + _TOKEN + r"+):[\t ]*([\t\x20-\x7e\x80-\xff]*)\r\n")
_TOKEN_RE = re.compile(_TOKEN + r"+")
_HOST = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%]*")
_ABSOLUTE = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*)://([^/?#]*)(.*)", re.S)
_LOOSE_REQUEST_LINE = re.compile(r"(\S+) (\S+) (\S+)")
#: A line ending that is not CRLF, in bytes: found early in a head or trailer still arriving.
BARE_LINE_ENDING = re.compile(rb"(?<!\r)\n|\r(?=[^\n])")

#: Fields that a trailer section must not carry: they would change framing or routing.
FORBIDDEN_TRAILERS = frozenset({
    "content-length", "transfer-encoding", "host", "connection", "keep-alive", "upgrade",
    "te", "trailer", "expect", "proxy-connection",
})


class HeadParser:
    """Parses request heads into `HttpRequest` events with fixed limits (see the module doc).

    Two caches, because parsing is a pure function of the bytes and the limits: whole heads
    (a client repeating the same request: benchmarks, polling, health checks) and header
    blocks, everything after the request line (browsers and API clients on keep-alive
    connections send the same header bytes again and again while the path varies). Every
    event gets its own copy of the headers dict, so no caller can change what the next request
    sees. Both caches are bounded (entries, size) and simply cleared when full. One parser is
    shared by every codec with the same limits *in one thread* (`shared`). Not across threads:
    on free-threaded CPython a dict that two threads read at once, holding values another thread
    made, takes its lock on every lookup and the readers spin (sched_yield) on it; THREAD mode
    with two workers lost 75 sched_yield calls per request to this cache and `serve`'s header
    cache (docs/serve.md). Each thread has its own, so a worker only ever reads what it cached.
    """

    __slots__ = ("max_headers", "max_body_size", "require_host", "_blocks", "_heads")

    CACHE_ENTRIES = 256
    CACHE_MAX_BLOCK = 2048

    def __init__(self, max_headers: int = 100, max_body_size: int = 2 * 1024 * 1024, require_host: bool = True) -> None:
        self.max_headers = max_headers
        self.max_body_size = max_body_size
        self.require_host = require_host
        self._blocks: dict[str, tuple] = {}  # header block text -> what _parse_block found
        self._heads: dict[bytes, tuple] = {}  # whole head -> the HttpRequest fields it gave

    @classmethod
    def shared(cls, max_headers: int, max_body_size: int, require_host: bool) -> "HeadParser":
        """This thread's parser for these limits (so the codecs a thread runs share one cache)."""
        key = (max_headers, max_body_size, require_host)
        parsers = getattr(_PER_THREAD, "parsers", None)
        if parsers is None:
            parsers = _PER_THREAD.parsers = {}
        parser = parsers.get(key)
        if parser is None:
            parser = parsers[key] = cls(max_headers, max_body_size, require_host)
        return parser

    def parse(self, head: bytes) -> HttpRequest:
        """Parse `head` (request line + fields + blank line, ending in CRLF CRLF).

        The event is `complete` with an empty body; `content_length` says what body follows
        (n bytes, -1 chunked). Raises MessageError for anything invalid, including a
        Content-Length above `max_body_size` (checked before any body is read).
        """
        request = self.known(head)  # the same request again (benchmarks, polling, health checks)
        if request is not None:
            return request
        fields = self._parse(head)
        if len(head) <= self.CACHE_MAX_BLOCK:
            if len(self._heads) >= self.CACHE_ENTRIES:
                self._heads.clear()
            self._heads[head] = fields
        method, target, path, query, version, headers, keep_alive, expect_continue, upgrade, length = fields
        return HttpRequest(method, target, path, query, version, headers.copy(), head, b"", keep_alive, True,
                           expect_continue, upgrade, length, None)

    def known(self, data: bytes) -> HttpRequest | None:
        """`parse(data)` when `data` is a head parsed before with these limits, else None.

        Only valid heads are remembered, so a hit also proves that `data` is exactly one whole
        request head (one CRLF CRLF, at its end, no leading CRLF): the codec tries this first
        and skips its own scan of the bytes.
        """
        fields = self._heads.get(data)
        if fields is None:
            return None
        # HttpRequest(...) without the call: a class call with 14 arguments packs them into a
        # tuple for its __init__ frame; filling the slots here is about 1,100 instructions less
        # per request (callgrind, cghttp.sh). The same fields as HttpRequest.__init__ sets.
        request = _new_request(HttpRequest)
        (request.method, request.target, request.path, request.query, request.version, headers,
         request.keep_alive, request.expect_continue, request.upgrade, request.content_length) = fields
        request.headers = headers.copy()
        request.head = data
        request.body = b""
        request.complete = True
        request.trailers = None
        return request

    def _parse(self, head: bytes) -> tuple:
        """The HttpRequest fields of `head`, with the cached (never handed out) headers dict."""
        try:
            text = head.decode("latin-1")
            match = _REQUEST_LINE.match(text)
            if match is None:
                raise _request_line_error(text[:text.find("\r\n")])
            method, target, major, minor = match.groups()
            if major != "1":
                raise MessageError(505, "http_version_not_supported", f"HTTP/{major}.{minor}")
            http11 = minor != "0"

            block_start = match.end() - 2
            if block_start + 4 == len(text):
                facts = _NO_FIELDS
            else:
                block = text[block_start:]
                facts = self._blocks.get(block)
                if facts is None:
                    facts = self._parse_block(block)
                    if len(block) <= self.CACHE_MAX_BLOCK:
                        if len(self._blocks) >= self.CACHE_ENTRIES:
                            self._blocks.clear()
                        self._blocks[block] = facts
            headers, content_length, te, has_host, close, keep_alive_token, upgrade_token, expect_100 = facts

            if target[0] == "/":
                if not target.isascii():
                    target = target.encode("latin-1").decode("utf-8", "surrogateescape")
                path, _, query = target.partition("?")
                if "#" in target:
                    path, query = _drop_fragment(path, query)
            else:
                path, query = _other_target(method, target)
                if not target.isascii():
                    target = target.encode("latin-1").decode("utf-8", "surrogateescape")
                    path = path.encode("latin-1").decode("utf-8", "surrogateescape")
                    query = query.encode("latin-1").decode("utf-8", "surrogateescape")
            if method == "CONNECT":
                raise MessageError(501, "connect_not_supported", "CONNECT: this server is not a proxy")
            if te is not None:
                content_length = _check_transfer_encoding(te, headers.get("content-length"), http11)
            if http11:
                if not has_host and self.require_host:
                    raise MessageError(400, "missing_host", "an HTTP/1.1 request needs a Host header")
                return (method, target, path, query, "1.1", headers, not close, expect_100, upgrade_token,
                        content_length)
            return (method, target, path, query, "1.0", headers, keep_alive_token, False, False, content_length)
        except MessageError as err:
            # A bare CR/LF is reported in preference to anything else wrong in the head: it is
            # what the codec sees first while the head is still arriving byte by byte.
            if err.reason != "bare_line_ending" and BARE_LINE_ENDING.search(head):
                raise MessageError(400, "bare_line_ending", "bare CR or LF in the request head") from None
            raise

    def _parse_block(self, block: str) -> tuple:
        """Validate and parse the fields of a head (`block` starts with the request line's CRLF).

        Returns the facts the request line does not change: ``(headers, content_length,
        transfer_encoding, has_host, connection_close, connection_keep_alive, upgrade,
        expect_100_continue)`` -- what the cache keeps.
        """
        crlf = block.count("\r\n")
        fields = _FIELD.findall(block)
        if len(fields) != crlf - 2:
            raise _diagnose_fields(block, 2)
        if len(fields) > self.max_headers:
            raise MessageError(400, "too_many_headers", f"{len(fields)} header fields > {self.max_headers}")
        if " \r\n" in block or "\t\r\n" in block:  # rare: trailing whitespace to strip
            fields = [(name, value.rstrip(" \t")) for name, value in fields]
        headers = {name.lower(): value for name, value in fields}
        if len(headers) != len(fields):
            headers = _merge(fields)
        host = headers.get("host")
        if host is not None and _HOST.fullmatch(host) is None:
            raise MessageError(400, "bad_host", f"invalid Host {host[:64]!r}")
        content_length = 0
        cl = headers.get("content-length")
        if cl is not None:
            if not (cl.isdigit() and cl.isascii()):
                raise MessageError(400, "bad_content_length", f"Content-Length {cl[:40]!r} is not 1*DIGIT")
            if len(cl) > 18 or int(cl) > self.max_body_size:
                raise MessageError(400, "body_too_large", f"Content-Length {cl[:40]} > package_max_length {self.max_body_size}")
            content_length = int(cl)
        connection = headers.get("connection")
        tokens = [token.strip(" \t") for token in connection.lower().split(",")] if connection else ()
        expect = headers.get("expect")
        return (headers, content_length, headers.get("transfer-encoding"), host is not None, "close" in tokens,
                "keep-alive" in tokens, "upgrade" in tokens and "upgrade" in headers,
                expect is not None and expect.lower() == "100-continue")


_new_request = HttpRequest.__new__
_NO_FIELDS: tuple = ({}, 0, None, False, False, False, False, False)


_PER_THREAD = threading.local()  # .parsers: (limits) -> the HeadParser of that thread


def parse_head(head: bytes, max_headers: int = 100, max_body_size: int = 2 * 1024 * 1024,
               require_host: bool = True) -> HttpRequest:
    """Parse one head with these limits (a convenience over `HeadParser.shared(...).parse`)."""
    return HeadParser.shared(max_headers, max_body_size, require_host).parse(head)


def parse_fields(block: bytes, *, max_fields: int = 100) -> dict[str, str]:
    """Parse a trailer section (``name: value CRLF ... CRLF``) with the same rules as headers.

    Fields that would change framing or routing (`FORBIDDEN_TRAILERS`) are 400.
    """
    text = "\r\n" + block.decode("latin-1")
    crlf = text.count("\r\n")
    fields = [(name, value.rstrip(" \t")) for name, value in _FIELD.findall(text)]
    if len(fields) != crlf - 2:
        if BARE_LINE_ENDING.search(block):
            raise MessageError(400, "bare_line_ending", "bare CR or LF in the trailer section")
        raise _diagnose_fields(text, 2, "trailer")
    if len(fields) > max_fields:
        raise MessageError(400, "too_many_trailers", f"{len(fields)} trailer fields > {max_fields}")
    trailers: dict[str, str] = {}
    for name, value in fields:
        name = name.lower()
        if name in FORBIDDEN_TRAILERS:
            raise MessageError(400, "forbidden_trailer", f"{name!r} is not allowed in a trailer")
        old = trailers.get(name)
        trailers[name] = value if old is None else f"{old}, {value}"
    return trailers


def _merge(fields: list[tuple[str, str]]) -> dict[str, str]:
    """Headers with repeated names: join values with ", " ("; " for cookie); refuse the dangerous ones."""
    headers: dict[str, str] = {}
    for name, value in fields:
        name = name.lower()
        old = headers.get(name)
        if old is None:
            headers[name] = value
        elif name == "cookie":
            headers[name] = f"{old}; {value}"
        elif name == "host":
            raise MessageError(400, "duplicate_host", "more than one Host header")
        elif name == "content-length":
            raise MessageError(400, "duplicate_content_length", f"Content-Length {old!r} and {value!r}")
        else:
            headers[name] = f"{old}, {value}"
    return headers


def _check_transfer_encoding(te: str, cl: str | None, http11: bool) -> int:
    """Validate Transfer-Encoding; return -1 (chunked) or raise MessageError."""
    if cl is not None:
        raise MessageError(400, "content_length_with_transfer_encoding",
                           "Content-Length and Transfer-Encoding together")
    if not http11:
        raise MessageError(400, "transfer_encoding_in_http10", "Transfer-Encoding in an HTTP/1.0 request")
    codings = [coding.strip(" \t").lower() for coding in te.split(",")]
    for coding in codings:
        if _TOKEN_RE.fullmatch(coding) is None:
            raise MessageError(400, "bad_transfer_encoding", f"Transfer-Encoding {te[:60]!r}")
    if codings[-1] != "chunked":
        raise MessageError(400, "chunked_not_last", f"Transfer-Encoding {te[:60]!r} does not end in chunked")
    if codings.count("chunked") > 1:
        raise MessageError(400, "chunked_twice", f"Transfer-Encoding {te[:60]!r}")
    if len(codings) > 1:
        raise MessageError(501, "unsupported_transfer_coding", f"Transfer-Encoding {te[:60]!r}")
    return -1


def _drop_fragment(path: str, query: str) -> tuple[str, str]:
    if "#" in path:
        return path.partition("#")[0], ""
    return path, query.partition("#")[0]


def _other_target(method: str, target: str) -> tuple[str, str]:
    """Path and query of a target that is not origin-form (asterisk- or absolute-form)."""
    if target == "*":
        if method != "OPTIONS":
            raise MessageError(400, "bad_target", "'*' is only valid with OPTIONS")
        return "*", ""
    if method == "CONNECT":
        return "", ""
    match = _ABSOLUTE.fullmatch(target)
    if match is None:
        raise MessageError(400, "bad_target", f"target {target[:80]!r} is not origin-form or absolute-form")
    scheme, authority, rest = match.groups()
    if scheme.lower() not in ("http", "https"):
        raise MessageError(400, "bad_target", f"scheme {scheme!r} in the target")
    if "@" in authority or not authority or _HOST.fullmatch(authority) is None:
        raise MessageError(400, "bad_target", f"authority {authority[:80]!r} in the target")
    path, _, query = rest.partition("?")
    path, query = _drop_fragment(path, query)
    return path or "/", query


def _request_line_error(line: str) -> MessageError:
    """Name what is wrong with a request line that did not match."""
    if "\n" in line or "\r" in line:
        return MessageError(400, "bare_line_ending", "bare CR or LF in the request line")
    match = _LOOSE_REQUEST_LINE.fullmatch(line)
    if match is None:
        return MessageError(400, "bad_request_line", f"{line[:80]!r}")
    method, target, version = match.groups()
    if re.fullmatch(r"HTTP/[0-9]\.[0-9]", version) is None:
        return MessageError(400, "bad_version", f"{version[:40]!r}")
    if re.fullmatch(_METHOD, method) is None:
        return MessageError(400, "bad_method", f"{method[:40]!r}")
    return MessageError(400, "bad_target", f"{target[:80]!r}")


def _diagnose_fields(text: str, start: int, what: str = "header") -> MessageError:
    """Name the first invalid line of a field block (slow; only runs for bad input)."""
    block = text[start:]
    lines = block.split("\r\n")
    for line in lines[:-2]:
        if "\n" in line or "\r" in line:
            return MessageError(400, "bare_line_ending", f"bare CR or LF in a {what} line")
        if line[:1] in (" ", "\t"):
            return MessageError(400, "obs_fold", f"{what} line starts with whitespace (obsolete line folding)")
        name, colon, value = line.partition(":")
        if not colon:
            return MessageError(400, "bad_header", f"{what} line without a colon: {line[:60]!r}")
        if name[-1:] in (" ", "\t"):
            return MessageError(400, "space_before_colon", f"whitespace between {what} name and colon")
        if _TOKEN_RE.fullmatch(name) is None:
            return MessageError(400, "bad_header_name", f"invalid {what} name {name[:60]!r}")
        if re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value):
            return MessageError(400, "bad_header_value", f"control character in the value of {name[:60]!r}")
    return MessageError(400, "bad_header", f"malformed {what} section")

"""Query strings, urlencoded bodies, Cookie headers and header parameters, parsed the PHP way.

* `parse_query` / `parse_urlencoded`: ``a=1&b=x+y&c=%C3%A9`` -> ``{"a": "1", "b": "x y", "c": "é"}``.
  At most `limit` (128, Swoole's hash-DoS cap) pairs are read, the rest dropped; a repeated
  key keeps its last value; pairs with an empty name are skipped. ``a[]=1`` keeps the key
  ``"a[]"`` literally (values are `str`, not nested arrays). Percent-escapes decode as UTF-8
  (invalid sequences become U+FFFD).
* `parse_cookie`: ``a=1; b="two"`` -> ``{"a": "1", "b": "two"}``; values are percent-decoded
  (but ``+`` stays ``+``: base64 cookies survive); a repeated name keeps its first value
  (RFC 6265 sends the most specific cookie first); at most `limit` cookies.
* `parse_options`: ``multipart/form-data; boundary="x y"`` -> ``("multipart/form-data",
  {"boundary": "x y"})``, with quoted-string unescaping.
"""

from __future__ import annotations

from urllib.parse import unquote, unquote_plus

__all__ = ["MAX_VARS", "parse_query", "parse_urlencoded", "parse_cookie", "parse_options"]

#: Swoole's cap on GET / POST / cookie entries (protection against hash-collision DoS).
MAX_VARS = 128


def _decode_plus(piece: str) -> str:
    if "%" in piece or "+" in piece:
        return unquote_plus(piece, errors="replace")
    return piece


def parse_query(query: str, limit: int = MAX_VARS) -> dict[str, str]:
    """Parse an ``application/x-www-form-urlencoded`` string (a query string) into a dict."""
    result: dict[str, str] = {}
    if not query:
        return result
    count = 0
    pairs = query.split("&", limit * 4)  # bounded: a 2 MiB body of "&&&..." costs little
    if len(pairs) > limit * 4:
        pairs.pop()  # the unsplit remainder: beyond what we read anyway
    for pair in pairs:
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if not name:
            continue
        if count == limit:
            break
        count += 1
        result[_decode_plus(name)] = _decode_plus(value)
    return result


def parse_urlencoded(body: bytes, limit: int = MAX_VARS) -> dict[str, str]:
    """`parse_query` for a request body (raw non-ASCII bytes are read as UTF-8)."""
    if not body:
        return {}
    return parse_query(body.decode("utf-8", "replace"), limit)


def parse_cookie(header: str, limit: int = MAX_VARS) -> dict[str, str]:
    """Parse a ``Cookie`` header value into a dict (see the module docstring)."""
    result: dict[str, str] = {}
    if not header:
        return result
    items = header.split(";", limit * 4)
    if len(items) > limit * 4:
        items.pop()
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip(" \t")
        if not name or not eq:
            continue
        if name in result:
            continue
        if len(result) == limit:
            break
        value = value.strip(" \t")
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        result[unquote(name, errors="replace") if "%" in name else name] = (
            unquote(value, errors="replace") if "%" in value else value
        )
    return result


def parse_options(value: str) -> tuple[str, dict[str, str]]:
    """Split ``main; name=value; name="quoted"`` into the lower-cased main value and its parameters.

    Parameter names are lower-cased; quoted values are unescaped (``\\"`` -> ``"``); a ``;``
    inside quotes does not split. Malformed parameters are skipped.
    """
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    i = 0
    n = len(rest)
    while i < n:
        # name
        j = rest.find("=", i)
        k = rest.find(";", i)
        if j < 0 or (0 <= k < j):
            i = n if k < 0 else k + 1
            continue
        name = rest[i:j].strip(" \t").lower()
        i = j + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            chars = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(rest[i])
                i += 1
            param = "".join(chars)
            i += 1  # closing quote
            k = rest.find(";", i)
            i = n if k < 0 else k + 1
        else:
            k = rest.find(";", i)
            end = n if k < 0 else k
            param = rest[i:end].strip(" \t")
            i = end + 1
        if name and name not in params:
            params[name] = param
    return main.strip(" \t").lower(), params

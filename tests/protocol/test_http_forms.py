"""Query strings, urlencoded bodies, cookies and header parameters (the PHP rules)."""

from __future__ import annotations

import pytest

from threadswoole.protocol.http.forms import MAX_VARS, parse_cookie, parse_options, parse_query, parse_urlencoded

pytestmark = pytest.mark.timeout(30)


def test_query_basics() -> None:
    assert parse_query("") == {}
    assert parse_query("a=1&b=x+y&c=%C3%A9&d&=e&&f=") == {"a": "1", "b": "x y", "c": "é", "d": "", "f": ""}
    assert parse_query("a=1&a=2") == {"a": "2"}  # last wins
    assert parse_query("a[]=1&a[]=2&m[k]=v") == {"a[]": "2", "m[k]": "v"}  # flat keys, str values
    assert parse_query("bad=%ZZ%C3") == {"bad": "%ZZ\ufffd"}
    assert parse_query("k%3D=v%26") == {"k=": "v&"}


def test_query_keeps_at_most_128_pairs() -> None:
    query = "&".join(f"k{i}=v{i}" for i in range(200))
    result = parse_query(query)
    assert len(result) == MAX_VARS == 128 and list(result)[-1] == "k127"
    assert len(parse_query(query, limit=3)) == 3
    # a flood of separators costs a bounded split and yields nothing
    assert parse_query("&" * 100000 + "a=1") == {}


def test_urlencoded_body() -> None:
    assert parse_urlencoded(b"name=Jos%C3%A9&city=S\xc3\xa3o+Paulo") == {"name": "José", "city": "São Paulo"}
    assert parse_urlencoded(b"") == {}


def test_cookie_header() -> None:
    assert parse_cookie("a=1; b=\"two\"; c=x%20y+z;bad; =x; a=3") == {"a": "1", "b": "two", "c": "x y+z"}
    assert parse_cookie("") == {}
    assert len(parse_cookie("; ".join(f"c{i}=1" for i in range(300)))) == 128


def test_options() -> None:
    assert parse_options('multipart/form-data; boundary="a;b \\"c\\""; charset=UTF-8') == (
        "multipart/form-data", {"boundary": 'a;b "c"', "charset": "UTF-8"})
    assert parse_options("Text/HTML") == ("text/html", {})
    assert parse_options("form-data; name=field; filename=\"x.txt\"; junk; name=dup") == (
        "form-data", {"name": "field", "filename": "x.txt"})

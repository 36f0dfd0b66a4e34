"""Accept-Encoding negotiation (q-values) and the zlib compressors."""

from __future__ import annotations

import gzip
import zlib

import pytest

from threadswoole.http.compression import StreamCompressor, choose_encoding, compress

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("header,expected", [
    (None, None),
    ("", None),
    ("gzip", "gzip"),
    ("GZip, deflate, br", "gzip"),
    ("deflate", "deflate"),
    ("x-gzip", "gzip"),
    ("br, zstd", None),
    ("gzip;q=0, deflate", "deflate"),
    ("gzip;q=0.2, deflate;q=0.9", "deflate"),
    ("deflate;q=0.5, gzip;q=0.5", "gzip"),  # tie: gzip
    ("*", "gzip"),
    ("*;q=0.1, gzip;q=0", "deflate"),
    ("identity", None),
    ("gzip;q=bogus", None),
    ("gzip;q=2", None),
    ("gzip ; q=0.001", "gzip"),
])
def test_choose_encoding(header: str | None, expected: str | None) -> None:
    assert choose_encoding(header) == expected


def test_absent_header_means_any_for_explicit_gzip() -> None:
    assert choose_encoding(None, absent_means_any=True) == "gzip"
    assert choose_encoding("deflate", absent_means_any=True) == "deflate"


def test_compressors_round_trip() -> None:
    data = b"hello world " * 100
    assert gzip.decompress(compress(data, "gzip", 1)) == data
    assert zlib.decompress(compress(data, "deflate", 9)) == data
    stream = StreamCompressor("deflate", 5)
    decoder = zlib.decompressobj()
    out = b""
    for piece in (b"abc", b"def" * 50, b"g"):
        compressed = stream.compress(piece)
        out += decoder.decompress(compressed)
    out += decoder.decompress(stream.finish())
    assert out == b"abc" + b"def" * 50 + b"g"


def test_options_validation_and_from_settings() -> None:
    from threadswoole.http import HttpOptions

    with pytest.raises(ValueError):
        HttpOptions(http_compression_level=0)
    with pytest.raises(ValueError):
        HttpOptions(upload_max_filesize=-1)
    options = HttpOptions.from_settings({"http_compression": False, "upload_tmp_dir": None,
                                         "package_max_length": 1024, "unrelated": 1})
    assert not options.http_compression and options.upload_tmp_dir == "/tmp" and options.package_max_length == 1024

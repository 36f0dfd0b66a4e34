"""Table columns: types and sizes, the byte layout of a row's data, and value checking and encoding.

A row's data is the columns packed in the order they were declared, little-endian, with 8-byte
int and float columns aligned to 8 bytes (so `incr` reads and writes them as one word) and no
other padding: int columns take 1, 2, 4 or 8 bytes (signed), float columns 8 (a C double), a string column
4 bytes of length (bit 31 set when the value was `bytes`, so it comes back as `bytes`, and as a
`str` otherwise: api.md §18.11; a column never set reads as "") followed by `size` bytes. Values are checked and packed to bytes *before* the row lock is
taken, so a bad value never leaves a row half-written.
"""

from __future__ import annotations

import struct
from typing import Any, Mapping

TYPE_INT, TYPE_FLOAT, TYPE_STRING = 1, 2, 3
TYPE_NAMES = {TYPE_INT: "int", TYPE_FLOAT: "float", TYPE_STRING: "string"}
_INT_FORMATS = {1: "b", 2: "h", 4: "i", 8: "q"}
_BYTES_FLAG = 1 << 31
_LENGTH_MASK = _BYTES_FLAG - 1
_LENGTH = struct.Struct("<I")
MAX_STRING_SIZE = 1 << 24  # 16 MiB per value: far beyond a sensible row, and the length field's limit is 2**31


class Column:
    """One declared column and where its bytes are in a row's data."""

    __slots__ = ("name", "type", "size", "offset", "codec", "raw", "low", "high", "word", "read_format")

    def __init__(self, name: str, type_: int, size: int, offset: int) -> None:
        self.name = name
        self.type = type_
        self.size = size  # bytes of an int, 8 for a float, the capacity of a string
        self.offset = offset
        if type_ == TYPE_INT:
            self.codec = struct.Struct("<" + _INT_FORMATS[size])
            self.high = (1 << (8 * size - 1)) - 1
            self.low = -self.high - 1
        elif type_ == TYPE_FLOAT:
            self.codec = struct.Struct("<d")
            self.low = self.high = 0
        else:
            self.codec = struct.Struct(f"<I{size}s")
            self.low = self.high = 0
        self.raw = struct.Struct(f"{self.codec.size}s")  # writes encode()'s bytes in one call
        self.read_format = f"i{size}s" if type_ == TYPE_STRING else self.codec.format[1:]
        self.word = self.codec.size == 8 and offset % 8 == 0 and type_ != TYPE_STRING  # an aligned int64/double

    @property
    def width(self) -> int:
        return self.codec.size

    def check(self, value: Any) -> Any:
        """The value as it is stored (int, float, or (length word, bytes)); TypeError/ValueError."""
        if self.type == TYPE_INT:
            if not isinstance(value, int):
                raise TypeError(f"column {self.name!r} holds ints, not {type(value).__name__}")
            if not self.low <= value <= self.high:
                raise ValueError(f"{value} is out of range for column {self.name!r} (int{8 * self.size}: {self.low}..{self.high})")
            return int(value)
        if self.type == TYPE_FLOAT:
            if not isinstance(value, (int, float)):
                raise TypeError(f"column {self.name!r} holds floats, not {type(value).__name__}")
            try:
                return float(value)
            except OverflowError:
                raise ValueError(f"{value} is out of range for float column {self.name!r}") from None
        if isinstance(value, str):
            data, flag = value.encode("utf-8"), 0
        elif isinstance(value, (bytes, bytearray, memoryview)):
            data, flag = bytes(value), _BYTES_FLAG
        else:
            raise TypeError(f"column {self.name!r} holds str or bytes, not {type(value).__name__}")
        if len(data) > self.size:
            raise ValueError(f"a value of {len(data)} bytes does not fit string column {self.name!r} (size {self.size})")
        return (len(data) | flag, data)

    def encode(self, value: Any) -> bytes:
        stored = self.check(value)
        return self.codec.pack(*stored) if self.type == TYPE_STRING else self.codec.pack(stored)

    def decode(self, fields: tuple) -> Any:
        """The value from this column's unpacked fields."""
        return _text(*fields) if self.type == TYPE_STRING else fields[0]


class Schema:
    """The columns of a table, in declaration order; `freeze()` when the table is created."""

    def __init__(self) -> None:
        self.columns: dict[str, Column] = {}
        self.order: list[Column] = []
        self.data_size = 0
        self.data_format = ""
        self.read_format = ""  # the same layout, a string's length word signed (see _decoder_source)
        self._format = ""  # struct format of the data: a string column is two fields (length, bytes)
        self.row_codec = struct.Struct("<")
        self.encode_full: Any = None
        self.decode_row: Any = None
        self.decode_read: Any = None

    def add(self, name: Any, type_: Any, size: Any) -> None:
        if not isinstance(name, str):
            raise TypeError(f"a column name is a str, not {type(name).__name__}")
        if not name:
            raise ValueError("a column name must not be empty")
        if name in self.columns:
            raise ValueError(f"column {name!r} is already defined")
        if not isinstance(type_, int) or isinstance(type_, bool):
            raise TypeError(f"the column type is Table.TYPE_INT, TYPE_FLOAT or TYPE_STRING, not {type(type_).__name__}")
        if type_ not in TYPE_NAMES:
            raise ValueError(f"unknown column type {type_} (Table.TYPE_INT=1, TYPE_FLOAT=2, TYPE_STRING=3)")
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError(f"the column size is an int, not {type(size).__name__}")
        if type_ == TYPE_INT:
            size = size or 8
            if size not in _INT_FORMATS:
                raise ValueError(f"an int column is 1, 2, 4 or 8 bytes, not {size}")
        elif type_ == TYPE_FLOAT:
            if size not in (0, 8):
                raise ValueError(f"a float column is 8 bytes (size 0 or 8), not {size}")
            size = 8
        elif not 1 <= size <= MAX_STRING_SIZE:
            raise ValueError(f"a string column holds 1 to {MAX_STRING_SIZE} bytes, not {size}")
        padding = -self.data_size % 8 if type_ != TYPE_STRING and size == 8 else 0
        self._format += f"{padding}x" if padding else ""
        self.data_size += padding
        column = Column(name, type_, size, self.data_size)
        self._format += column.codec.format[1:]
        self.read_format += f"{padding}x" if padding else ""
        self.read_format += column.read_format
        self.columns[name] = column
        self.order.append(column)
        self.data_size += column.width

    def freeze(self) -> None:
        """Build the row codec and the whole-row encoder and decoder. They are generated as one
        straight-line function each (as dataclasses and namedtuple do): a loop over the columns
        costs about twice as much per row, and these run on every set and get."""
        self.row_codec = struct.Struct("<" + self._format)
        self.data_format = self._format
        names = [column.name for column in self.order]
        encode = [f"    v{index} = row[{name!r}]" for index, name in enumerate(names)]  # cheaper than an itemgetter's tuple
        fields = []
        decoders = ""
        for start, name in ((0, "decode_row"), (2, "decode_read")):
            decoders += self._decoder_source(name, start, signed=bool(start))
        for position, column in enumerate(self.order):
            if column.type == TYPE_STRING:
                encode += [
                    f"    if type(v{position}) is str:",
                    f"        d{position} = v{position}.encode(); h{position} = len(d{position})",
                    f"    elif isinstance(v{position}, _BINARY):",
                    f"        d{position} = bytes(v{position}); h{position} = len(d{position}) | {_BYTES_FLAG}",
                    "    else:",
                    f"        _order[{position}].check(v{position})",  # raises the TypeError
                    f"    if len(d{position}) > {column.size}:",
                    f"        _order[{position}].check(v{position})",  # raises the ValueError
                ]
                fields += [f"h{position}", f"d{position}"]
            else:
                fields.append(f"v{position}")
        functions = "def encode_full(row, _pack=_pack, _order=_order, _BINARY=_BINARY, type=type, len=len, isinstance=isinstance, bytes=bytes, str=str):\n" + "\n".join(encode) + f"\n    return _pack({', '.join(fields)})\n" + decoders
        # Every name they use is a default argument, builtins included: free-threaded 3.13 does
        # not specialise LOAD_GLOBAL, and a builtin there is two dict searches (~300 instructions
        # each; a 3-column set made five: ~1 400 of its ~5 700); and a closure cell would be
        # read under a critical section that two threads on one table contend for. Callers
        # pass only the first argument.
        source = (
            "def _make(_pack, _order, _BINARY, type, len, isinstance, bytes, str, UnicodeDecodeError):\n"
            + "".join(f"    {line}\n" for line in functions.splitlines())
            + "    return encode_full, decode_row, decode_read\n"
        )
        namespace: dict[str, Any] = {}
        exec(compile(source, "<threadswoole.Table row codec>", "exec"), namespace)  # noqa: S102 - names are repr()'d
        self.encode_full, self.decode_row, self.decode_read = namespace["_make"](
            self.row_codec.pack, self.order, (bytes, bytearray, memoryview), type, len, isinstance, bytes, str, UnicodeDecodeError
        )

    def _decoder_source(self, name: str, index: int, signed: bool) -> str:
        """`def name(f)`: the row dict from the unpacked fields `f`, the data's first at `f[index]`
        (decode_row: the data alone; decode_read: after a row's link and key, see table_paths,
        unpacked with `read_format`: a string's length word signed, negative for bytes, so that
        telling the two apart is a comparison of small ints, not a bitwise and of a 2-digit one)."""
        unpack, decoded = [], []
        for position, column in enumerate(self.order):
            if column.type == TYPE_STRING and signed:
                unpack += [
                    f"    h{position} = f[{index}]",
                    f"    if h{position} >= 0:",
                    "        try:",
                    f"            r{position} = f[{index + 1}][:h{position}].decode()",
                    "        except UnicodeDecodeError:",
                    f"            r{position} = f[{index + 1}][:h{position}].decode('utf-8', 'replace')",
                    "    else:",
                    f"        r{position} = f[{index + 1}][:h{position} + {_BYTES_FLAG}]",
                ]
                decoded.append(f"{column.name!r}: r{position}")
                index += 2
            elif column.type == TYPE_STRING:
                unpack += [f"    h{position} = f[{index}]; r{position} = f[{index + 1}][:h{position} & {_LENGTH_MASK}]"]
                decoded.append(f"{column.name!r}: r{position} if h{position} & {_BYTES_FLAG} else r{position}.decode('utf-8', 'replace')")
                index += 2
            else:
                decoded.append(f"{column.name!r}: f[{index}]")
                index += 1
        return f"def {name}(f, UnicodeDecodeError=UnicodeDecodeError):\n" + "".join(line + "\n" for line in unpack) + "    return {" + ", ".join(decoded) + "}\n"

    def column(self, name: Any) -> Column:
        try:
            return self.columns[name]
        except (KeyError, TypeError):
            raise ValueError(f"the table has no column {name!r}") from None

    def encode_row(self, values: Any) -> tuple[bytes | None, list[tuple[Column, bytes]]]:
        """(all the row's data bytes, []) when `values` names every column, else (None, the
        (column, bytes) of each column named). Unknown names and bad values raise first."""
        if type(values) is not dict and not isinstance(values, Mapping):
            raise TypeError(f"a row is a mapping of column name to value, not {type(values).__name__}")
        if len(values) == len(self.order):
            try:
                return self.encode_full(values), []  # struct checks the numbers' types and ranges
            except KeyError:
                pass  # as many names as columns but not the same names: reported below
            except (struct.error, OverflowError):
                for column in self.order:  # find the culprit for a precise error
                    column.check(values[column.name])
                raise
        parts = []
        for name, value in values.items():
            column = self.column(name)
            parts.append((column, column.encode(value)))
        return None, parts


def read_text(length: int, data: bytes) -> str | bytes:
    """A string column's value from its two fields as `read_format` unpacks them."""
    if length >= 0:
        try:
            return data[:length].decode()
        except UnicodeDecodeError:
            return data[:length].decode("utf-8", "replace")
    return data[: length + _BYTES_FLAG]


def _text(length: int, data: bytes) -> str | bytes:
    """A string column's value from its two fields."""
    raw = data[: length & _LENGTH_MASK]
    return raw if length & _BYTES_FLAG else raw.decode("utf-8", "replace")

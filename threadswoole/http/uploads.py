"""Multipart form data -> ``request.post`` fields and ``request.files`` temp files.

`UploadSink` is fed the body of a ``multipart/form-data`` request (all at once, or chunk by
chunk as it arrives) and writes each file part to ``upload_tmp_dir/swoole.upfile.XXXXXXXX``
as its bytes arrive, so that a file is never held in memory whole. ``files[name]`` is PHP's
``$_FILES`` entry: ``{"name", "type", "tmp_name", "error", "size"}``.

* A file part larger than ``upload_max_filesize`` refuses the whole request: `UploadTooLarge`
  (the server answers 413 and closes; ``on_request`` is not called). api.md §5.7 asks for the
  413; PHP's alternative (``error = UPLOAD_ERR_INI_SIZE`` and carry on) would still have
  made the client send the whole body for nothing.
* A part with an empty file name (a file input left empty) is ``error = UPLOAD_ERR_NO_FILE``.
* A temp file that can not be created is ``UPLOAD_ERR_NO_TMP_DIR`` (the directory is missing)
  or ``UPLOAD_ERR_CANT_WRITE``; a body cut short leaves the part being written as
  ``UPLOAD_ERR_PARTIAL``. The request still reaches ``on_request`` in these cases.
* At most 128 file parts and 128 fields are kept (Swoole's cap); extra parts are skipped.
* `cleanup()` deletes every temp file still in place (one the application moved away is
  simply gone); the server calls it after ``on_request``, and the Request's finaliser too.
"""

from __future__ import annotations

import errno
import os
import tempfile

from threadswoole.protocol.http.forms import MAX_VARS
from threadswoole.protocol.http.multipart import MultipartError, MultipartParser, PartBegin, PartEnd
from threadswoole.protocol.http.writer import error_response

__all__ = [
    "UploadSink", "UploadTooLarge", "UPLOAD_ERR_OK", "UPLOAD_ERR_INI_SIZE", "UPLOAD_ERR_PARTIAL",
    "UPLOAD_ERR_NO_FILE", "UPLOAD_ERR_NO_TMP_DIR", "UPLOAD_ERR_CANT_WRITE", "TMP_PREFIX",
]

UPLOAD_ERR_OK = 0
UPLOAD_ERR_INI_SIZE = 1
UPLOAD_ERR_PARTIAL = 3
UPLOAD_ERR_NO_FILE = 4
UPLOAD_ERR_NO_TMP_DIR = 6
UPLOAD_ERR_CANT_WRITE = 7
TMP_PREFIX = "swoole.upfile."


class UploadTooLarge(Exception):
    """A file part exceeded ``upload_max_filesize``; `response` is the 413 answer (closes)."""

    def __init__(self, name: str, limit: int) -> None:
        super().__init__(f"upload {name!r} exceeds upload_max_filesize {limit}")
        self.response = error_response(413)


class UploadSink:
    """Receives one multipart body; fills `post`, `files` and `tmp_names` (see the module doc)."""

    __slots__ = ("tmp_dir", "max_file_size", "keep_fields", "keep_files", "post", "files", "tmp_names",
                 "_parser", "_part", "_fd", "_size", "_field", "_skip", "_broken", "_entry")

    def __init__(self, boundary: bytes, *, tmp_dir: str = "/tmp", max_file_size: int = 4 * 1024 * 1024,
                 keep_fields: bool = True, keep_files: bool = True) -> None:
        self.tmp_dir = tmp_dir
        self.max_file_size = max_file_size
        self.keep_fields = keep_fields
        self.keep_files = keep_files
        self.post: dict[str, str] = {}
        self.files: dict[str, dict] = {}
        self.tmp_names: list[str] = []
        self._parser = MultipartParser(boundary)
        self._part: PartBegin | None = None
        self._fd = -1
        self._size = 0
        self._field: list[bytes] | None = None
        self._skip = False
        self._broken = False  # the multipart body is malformed: stop reading it
        self._entry: dict | None = None

    def feed(self, data: bytes) -> None:
        """Consume a piece of the body. Raises UploadTooLarge (after deleting the temp files)."""
        if self._broken or not data:
            return
        try:
            events = self._parser.feed(data)
        except MultipartError:
            self._broken = True
            self._close_part(UPLOAD_ERR_PARTIAL)
            return
        try:
            for event in events:
                if type(event) is bytes:
                    self._data(event)
                elif type(event) is PartBegin:
                    self._begin(event)
                else:
                    assert type(event) is PartEnd
                    self._close_part(UPLOAD_ERR_OK)
        except UploadTooLarge:
            self._broken = True
            self.cleanup()
            raise

    def finish(self) -> None:
        """The body is complete: a part still open was cut short (UPLOAD_ERR_PARTIAL)."""
        if not self._broken and not self._parser.done:
            self._close_part(UPLOAD_ERR_PARTIAL)
        self._broken = True

    def _begin(self, part: PartBegin) -> None:
        self._part = part
        self._size = 0
        self._skip = False
        if part.filename is None:
            self._field = [] if self.keep_fields and len(self.post) < MAX_VARS else None
            return
        self._field = None
        if not self.keep_files or len(self.files) >= MAX_VARS:
            self._skip = True
            return
        entry = {"name": part.filename, "type": part.content_type, "tmp_name": "", "error": UPLOAD_ERR_OK, "size": 0}
        self._entry = entry
        self.files[part.name] = entry
        if not part.filename:
            entry["error"] = UPLOAD_ERR_NO_FILE
            self._skip = True
            return
        try:
            fd, path = tempfile.mkstemp(prefix=TMP_PREFIX, dir=self.tmp_dir)
        except OSError as exc:
            entry["error"] = UPLOAD_ERR_NO_TMP_DIR if exc.errno in (errno.ENOENT, errno.ENOTDIR) else UPLOAD_ERR_CANT_WRITE
            self._skip = True
            return
        self._fd = fd
        self.tmp_names.append(path)
        entry["tmp_name"] = path

    def _data(self, data: bytes) -> None:
        part = self._part
        if part is None:
            return
        if self._field is not None:
            self._field.append(data)
            return
        if part.filename is None or self._skip:
            return
        self._size += len(data)
        if self._size > self.max_file_size:
            raise UploadTooLarge(part.filename, self.max_file_size)
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            assert self._entry is not None
            self._entry["error"] = UPLOAD_ERR_CANT_WRITE
            self._skip = True
            self._close_fd()

    def _close_part(self, error: int) -> None:
        part = self._part
        if part is None:
            return
        self._part = None
        if self._field is not None:
            if part.name:
                self.post[part.name] = b"".join(self._field).decode("utf-8", "replace")
            self._field = None
            return
        entry = self._entry
        self._entry = None
        if entry is None:
            return
        if self._fd >= 0:
            self._close_fd()
            entry["size"] = self._size
            if error:
                entry["error"] = error

    def _close_fd(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            finally:
                self._fd = -1

    def cleanup(self) -> None:
        """Delete every temp file this sink created that is still there."""
        self._close_fd()
        names, self.tmp_names = self.tmp_names, []
        for path in names:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # moved away by the application (move_uploaded_file)

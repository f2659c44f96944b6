"""A streaming multipart/form-data reader for downloads (`GET /1.0/images/<fp>/export` of a
split image). Bytes are fed as they arrive and each part's body goes straight to the file
its opener returns: no part is ever held in memory, only a delimiter's length of look-behind.
Pure (no I/O of its own), so it is unit-tested with every possible chunking.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import re
from collections.abc import Callable
from typing import BinaryIO

from cli.errors import CliError

MAX_HEADER_BYTES = 16 * 1024
MAX_PARTS = 8
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]")

# opener(name, filename) -> where the part's body goes
Opener = Callable[[str, str], BinaryIO]


def boundary_of(content_type: str) -> str:
    """The boundary of a `multipart/form-data` Content-Type (CliError if it has none)."""
    message = email.message.Message()
    message["content-type"] = content_type
    boundary = message.get_param("boundary")
    if message.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) \
            or not _BOUNDARY.fullmatch(boundary):
        raise CliError(f"Expected a multipart/form-data response, got {content_type!r}")
    return boundary


class MultipartReader:
    """Feed with write(); call close() at the end of the body: it checks the closing
    delimiter came. `parts` lists (name, filename, size) as they complete."""

    def __init__(self, boundary: str, opener: Opener) -> None:
        self._delimiter = b"\r\n--" + boundary.encode("ascii")
        self._opener = opener
        # The body opens with the delimiter minus its CRLF: pretend a CRLF came first.
        self._buf = bytearray(b"\r\n")
        self._state = "preamble"
        self._out: BinaryIO | None = None
        self._size = 0
        self._current: tuple[str, str] = ("", "")
        self.parts: list[tuple[str, str, int]] = []

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buf += data
        while self._step():
            pass
        return len(data)

    def close(self) -> None:
        if self._state != "epilogue":
            raise CliError("The multipart response ended before its last part was complete")

    def _step(self) -> bool:
        """Advance by one state transition if the buffer allows; False to wait for more."""
        if self._state in ("preamble", "body"):
            return self._scan()
        if self._state == "after-delimiter":
            return self._after_delimiter()
        if self._state == "headers":
            return self._headers()
        self._buf.clear()  # epilogue: ignored
        return False

    def _scan(self) -> bool:
        at = self._buf.find(self._delimiter)
        keep = len(self._delimiter) - 1  # a delimiter may start in the last bytes
        end = at if at >= 0 else max(0, len(self._buf) - keep)
        if self._state == "body" and end:
            with memoryview(self._buf) as view, view[:end] as piece:
                self._emit(piece)
        if at < 0:
            del self._buf[:end]
            return False
        del self._buf[:at + len(self._delimiter)]
        if self._state == "body":
            self._finish_part()
        self._state = "after-delimiter"
        return True

    def _after_delimiter(self) -> bool:
        stripped = self._buf.lstrip(b" \t")  # transport padding (RFC 2046)
        if len(stripped) < 2:
            return False
        if stripped.startswith(b"--"):
            self._state = "epilogue"
        elif stripped.startswith(b"\r\n"):
            self._state = "headers"
            del stripped[:2]
        else:
            raise CliError("Malformed multipart response: junk after a boundary")
        self._buf = stripped
        return True

    def _headers(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEADER_BYTES:
                raise CliError("Malformed multipart response: part headers too long")
            return False
        text = bytes(self._buf[:end]).decode("utf-8", "replace")
        del self._buf[:end + 4]
        if len(self.parts) >= MAX_PARTS:
            raise CliError(f"Malformed multipart response: more than {MAX_PARTS} parts")
        headers = email.parser.HeaderParser(policy=email.policy.HTTP).parsestr(text)
        name = headers.get_param("name", "", header="content-disposition")
        filename = headers.get_filename("")
        self._current = (str(name), str(filename))
        self._out = self._opener(*self._current)
        self._size = 0
        self._state = "body"
        return True

    def _emit(self, data: memoryview) -> None:
        assert self._out is not None
        self._out.write(data)  # copies: the view is released before the buffer shrinks
        self._size += len(data)

    def _finish_part(self) -> None:
        self.parts.append((*self._current, self._size))
        self._out = None

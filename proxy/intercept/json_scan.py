"""A structural cursor over JSON *bytes*: where each value starts and ends, parsing only what is asked.

The proxy changes a few bytes of a point write (metadata in each payload, an inference object
replaced by its vector) and must not pay for the rest: the vectors are ~95 % of an upsert's
bytes, and parsing them into Python floats and printing them again cost 70x a pass-through
per point (``docs/proxy.md``, write path). So this cursor walks the structure the codec needs
(objects, keys, arrays of points) over the client's bytes as received, and, for a flat numeric
array such as a dense vector, only finds its closing bracket (``bytes.find`` runs at memory
speed). The body is never decoded as a whole (an 8.7 MB str per 1,024-point upsert, and a page
fault per 4 KiB of it): small values it must read (ids, payloads, inference objects) are
decoded from a window of bytes around them and parsed by the standard library's C scanner,
which keeps integers of any size exactly (:func:`scan_value`). Nothing is re-encoded: the codec
splices its edits into the client's own bytes, so every byte it does not change reaches Qdrant
as the client sent it. All positions are byte offsets.

The cursor is permissive where the upstream is strict: it reports a malformed or surprising
text (not UTF-8 where it reads, not JSON) as :class:`ScanError`, and the caller then forwards
the client's bytes untouched so the client gets Qdrant's own error. A misread can only happen
on a body Qdrant refuses anyway (e.g. a string inside a vector, bytes that are not UTF-8 inside
a vector), never on a valid one.
"""

from __future__ import annotations

import json
import json.decoder
import re
from collections.abc import Callable
from typing import Any, TypeVar

#: The standard library's C string scanner: ``scanstring(text, index after the quote) -> (str, end)``.
scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
#: The standard library's C scanner: ``scan_once(text, index) -> (value, end)``.
scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_WS = b" \t\n\r"
_NUMBER_START = b"-0123456789"
#: What may follow a complete JSON value in a valid text (a window's cut is never one of these
#: for a value the window holds whole: see :func:`scan_value`).
_AFTER_VALUE = frozenset(" \t\n\r,]}:")
#: A key without escapes, and its colon (the common case, one C call).
_PLAIN_KEY = re.compile(rb'"([^"\\\x00-\x1f]*)"[ \t\n\r]*:[ \t\n\r]*')
_FIRST_WINDOW = 1024
#: What :meth:`Cursor.flat_array` returns for a flat array it did not count.
UNMEASURED = -1


T = TypeVar("T")


class ScanError(ValueError):
    """The text is not JSON, or not the shape the codec reads: forward it untouched."""


def scan_value(data: bytes, pos: int, string: bool = False) -> tuple[Any, int]:
    """Parse the JSON value at byte ``pos`` (a string whose quote is at ``pos`` when
    ``string``): ``(value, byte index just past it)``.

    Only a window of bytes is decoded, grown (x8) while the value does not end inside it, so a
    small value costs a small decode whatever the body's size. A value is taken from a window
    only when the window holds what follows it too (whitespace or ``, ] } :``): a number cut by
    the window's end (``1.`` of ``1.5``) would otherwise parse as a shorter one. The window ends
    on a character boundary; bytes that are not UTF-8 inside it are a :class:`ScanError`.
    """
    size, total = _FIRST_WINDOW, len(data)
    while True:
        end = pos + size
        if end >= total:
            end = total
        else:
            while end > pos and data[end] & 0xC0 == 0x80:  # not inside a UTF-8 sequence
                end -= 1
        try:
            text = data[pos:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScanError(f"not UTF-8 at {pos}: {exc}") from exc
        try:
            value, stop = scanstring(text, 1) if string else scan_once(text, 0)
        except (StopIteration, ValueError) as exc:
            if end == total:
                if isinstance(exc, StopIteration):
                    raise ScanError(f"expected a value at {pos}") from exc
                raise ScanError(f"bad value at {pos}: {exc}") from exc
            size *= 8
            continue
        except RecursionError as exc:
            raise ScanError(f"value at {pos} nested too deep") from exc
        if end != total and (stop >= len(text) or text[stop] not in _AFTER_VALUE):
            size *= 8  # the value may go on past the window
            continue
        if len(text) != end - pos:  # not ASCII: character offsets are not byte offsets
            stop = len(text[:stop].encode("utf-8"))
        return value, pos + stop


class Cursor:
    """A byte position in ``data``; every method advances it past what it read (whitespace too)."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.end = pos  # just past the last value read (before its trailing whitespace)
        self.skip_ws()

    def skip_ws(self) -> None:
        data, pos = self.data, self.pos
        while pos < len(data) and data[pos] in _WS:
            pos += 1
        self.pos = pos

    def peek(self) -> bytes:
        """The byte here, as a one-byte ``bytes`` (``b""`` at the end)."""
        return self.data[self.pos:self.pos + 1]

    def take(self, char: bytes) -> None:
        if self.peek() != char:
            raise ScanError(f"expected {char!r} at {self.pos}")
        self.pos += 1
        self.skip_ws()

    def opens(self, char: bytes, close: bytes) -> bool:
        """Take ``char`` (``{`` or ``[``); False when the container is empty (and taken whole,
        ``end`` then being just past ``close``)."""
        self.take(char)
        if self.peek() == close:
            self.pos += 1
            self.end = self.pos
            self.skip_ws()
            return False
        return True

    def more(self, close: bytes) -> bool:
        """After a member or element: True at a ``,`` (taken), False at ``close`` (taken)."""
        char = self.peek()
        self.pos += 1
        if char == b",":
            self.skip_ws()
            return True
        if char == close:
            self.end = self.pos
            self.skip_ws()
            return False
        raise ScanError(f"expected ',' or {close!r} at {self.pos - 1}")

    def items(self, read: Callable[[], T]) -> list[T]:
        """The elements of the array at the cursor, each read by ``read`` (which leaves the
        cursor after its element), the array taken whole."""
        out: list[T] = []
        if self.opens(b"[", b"]"):
            while True:
                out.append(read())
                if not self.more(b"]"):
                    break
        return out

    def key(self) -> str:
        """An object key and its colon."""
        plain = _PLAIN_KEY.match(self.data, self.pos)
        if plain is not None:
            try:
                key = plain.group(1).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ScanError(f"key at {self.pos} is not UTF-8") from exc
            self.pos = plain.end()
            return key
        if self.peek() != b'"':
            raise ScanError(f"expected a key at {self.pos}")
        key, self.pos = scan_value(self.data, self.pos, string=True)
        self.skip_ws()
        self.take(b":")
        return str(key)

    def value(self) -> Any:
        """Parse the value here (C scanner; integers of any size kept exactly)."""
        value, self.pos = scan_value(self.data, self.pos)
        self.end = self.pos
        self.skip_ws()
        return value

    def flat_array(self, measure: bool) -> int | None:
        """Skip a flat array of numbers here without parsing it: its length when ``measure``,
        else :data:`UNMEASURED` (counting the commas is another pass over the bytes).

        ``None`` (nothing taken) when the array is not flat and numeric: the caller reads it
        another way. The closing bracket is the first one after the opening bracket, and no
        string may stand between them (strings are the only place a bracket could hide).
        """
        data, start = self.data, self.pos
        first = start + 1
        while first < len(data) and data[first] in _WS:
            first += 1
        if first < len(data) and data[first] == 0x5D:  # "]"
            self.pos = self.end = first + 1
            self.skip_ws()
            return 0
        if first >= len(data) or data[first] not in _NUMBER_START:
            return None
        end = data.find(b"]", first)
        if end < 0 or data.find(b'"', first, end) >= 0:
            return None
        self.pos = self.end = end + 1
        self.skip_ws()
        return data.count(b",", first, end) + 1 if measure else UNMEASURED


def parse_exact(raw: bytes) -> Any:
    """``raw`` parsed exactly, or ``None`` when it is not JSON: orjson first, the stdlib
    ``json`` when orjson refuses (integers beyond 64 bits, which ``json`` keeps exact)."""
    import orjson

    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None

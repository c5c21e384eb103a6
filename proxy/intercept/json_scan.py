"""A structural cursor over a JSON text: where each value starts and ends, parsing only what is asked.

The proxy changes a few bytes of a point write (metadata in each payload, an inference object
replaced by its vector) and must not pay for the rest: the vectors are ~95 % of an upsert's
bytes, and parsing them into Python floats and printing them again cost 70x a pass-through
per point (``docs/proxy.md``, write path). So this cursor walks the structure the codec needs
(objects, keys, arrays of points) and, for a flat numeric array such as a dense vector, only
finds its closing bracket (``str.find`` runs at memory speed); small values it must read
(ids, payloads, inference objects) are parsed by the standard library's C scanner, which
keeps integers of any size exactly. Nothing is re-encoded: the codec splices its edits into
the client's own text, so every byte it does not change reaches Qdrant as the client sent it.

The cursor is permissive where the upstream is strict: it reports a malformed or surprising
text as :class:`ScanError`, and the caller then forwards the client's bytes untouched so the
client gets Qdrant's own error. A misread can only happen on a body Qdrant refuses anyway
(e.g. a string inside a vector), never on a valid one.
"""

from __future__ import annotations

import json
import json.decoder
from collections.abc import Callable
from typing import Any

#: The standard library's C string scanner: ``scanstring(text, index after the quote) -> (str, end)``.
scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
#: The standard library's C scanner: ``scan_once(text, index) -> (value, end)``.
scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_WS = " \t\n\r"
_NUMBER_START = "-0123456789"
#: What :meth:`Cursor.flat_array` returns for a flat array it did not count.
UNMEASURED = -1


class ScanError(ValueError):
    """The text is not JSON, or not the shape the codec reads: forward it untouched."""


class Cursor:
    """A position in ``text``; every method advances it past what it read (whitespace too)."""

    __slots__ = ("text", "pos", "end")

    def __init__(self, text: str, pos: int = 0) -> None:
        self.text = text
        self.pos = pos
        self.end = pos  # just past the last value read (before its trailing whitespace)
        self.skip_ws()

    def skip_ws(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        self.pos = pos

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self, char: str) -> None:
        if self.peek() != char:
            raise ScanError(f"expected {char!r} at {self.pos}")
        self.pos += 1
        self.skip_ws()

    def opens(self, char: str, close: str) -> bool:
        """Take ``char`` (``{`` or ``[``); False when the container is empty (and taken whole,
        ``end`` then being just past ``close``)."""
        self.take(char)
        if self.peek() == close:
            self.pos += 1
            self.end = self.pos
            self.skip_ws()
            return False
        return True

    def more(self, close: str) -> bool:
        """After a member or element: True at a ``,`` (taken), False at ``close`` (taken)."""
        char = self.peek()
        self.pos += 1
        if char == ",":
            self.skip_ws()
            return True
        if char == close:
            self.end = self.pos
            self.skip_ws()
            return False
        raise ScanError(f"expected ',' or {close!r} at {self.pos - 1}")

    def key(self) -> str:
        """An object key and its colon."""
        if self.peek() != '"':
            raise ScanError(f"expected a key at {self.pos}")
        try:
            key, self.pos = scanstring(self.text, self.pos + 1)
        except ValueError as exc:
            raise ScanError(str(exc)) from exc
        self.skip_ws()
        self.take(":")
        return str(key)

    def value(self) -> Any:
        """Parse the value here (C scanner; integers of any size kept exactly)."""
        try:
            value, self.pos = scan_once(self.text, self.pos)
            self.end = self.pos
        except StopIteration as exc:
            raise ScanError(f"expected a value at {self.pos}") from exc
        except (ValueError, RecursionError) as exc:
            raise ScanError(f"bad value at {self.pos}: {exc}") from exc
        self.skip_ws()
        return value

    def flat_array(self, measure: bool) -> int | None:
        """Skip a flat array of numbers here without parsing it: its length when ``measure``,
        else :data:`UNMEASURED` (counting the commas is another pass over the bytes).

        ``None`` (nothing taken) when the array is not flat and numeric: the caller reads it
        another way. The closing bracket is the first one after the opening bracket, and no
        string may stand between them (strings are the only place a bracket could hide).
        """
        text, start = self.text, self.pos
        first = start + 1
        while first < len(text) and text[first] in _WS:
            first += 1
        if first < len(text) and text[first] == "]":
            self.pos = self.end = first + 1
            self.skip_ws()
            return 0
        if first >= len(text) or text[first] not in _NUMBER_START:
            return None
        end = text.find("]", first)
        if end < 0 or text.find('"', first, end) >= 0:
            return None
        self.pos = self.end = end + 1
        self.skip_ws()
        return text.count(",", first, end) + 1 if measure else UNMEASURED

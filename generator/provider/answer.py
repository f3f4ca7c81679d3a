"""The provider's answer read in pieces, so that its images never sit in memory whole.

An answer with inline images is mostly their base64 text: 50 MB of it used to cost
1.3 GiB of worker memory, read into chunks, joined, parsed into one string per image
and decoded in one piece. `AnswerReader` is fed the body as it arrives. A long string
under a key that carries image data (b64_json, image_base64, or url for a data: URI) goes
to a temporary file of its own as `InlineData`; everything else, a few hundred bytes in
any documented shape, is kept and parsed with json as before, so the answer means what
it always meant and every malformed one fails the same way.
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
from collections.abc import Callable
from typing import IO

# The keys whose long values are image data (aimlapi.md §5; url holds fal's data: URIs).
IMAGE_KEYS = frozenset({b"b64_json", b"image_base64", b"url"})
# Shorter strings are kept as they are: an image this small costs nothing to hold.
INLINE_MIN_BYTES = 64 * 1024
# What a key can be compared with; longer strings are never remembered.
KEY_BYTES = 16
# Files one answer may hold open (the parser refuses more than 16 images anyway); the
# strings of an answer that lists more stay in memory, as every string used to.
MAX_INLINE_FILES = 32
_SPECIAL = re.compile(rb'["\\]')
# Plain ASCII with no escape: the file's bytes are the string's characters.
_NOT_PLAIN = re.compile(rb"[^\x20-\x7e]|\\")
_COPY_BYTES = 1024 * 1024


class InlineData:
    """A long string of the answer (an inline image's base64 text), kept in a temporary
    file. Its characters are plain ASCII; `len` counts them."""

    def __init__(self, file: IO[bytes], length: int) -> None:
        self._file = file
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return f"<InlineData {self._length} characters>"

    def open(self) -> IO[bytes]:
        """The file, read from its start."""
        self._file.seek(0)
        return self._file

    def startswith(self, prefix: str) -> bool:
        return self.open().read(len(prefix)).decode("ascii") == prefix

    def text(self) -> str:
        """The whole string, in memory: only for what is not an image."""
        return self.open().read().decode("ascii")

    def close(self) -> None:
        self._file.close()


class AnswerReader:
    """Takes the answer's bytes in any pieces (`feed`) and parses it at the end (`load`)."""

    def __init__(self) -> None:
        self.kept = bytearray()
        self.inline: list[InlineData] = []
        # Never in a real answer: NUL, then a token nobody could guess.
        self.marker = f"\x00inline-{secrets.token_hex(8)}-"
        self.started = False
        self.lifting = True  # off for a body json would read as UTF-16 or UTF-32
        self.in_string = False
        self.escaped = False  # the piece before ended in an unescaped backslash
        self.key: bytearray | None = bytearray()  # the string being read, while short
        self.last: bytes | None = None  # the last string read, if short
        self.since: bytes = b""  # significant bytes since that string
        self.candidate = False  # this string is an image key's value
        self.pending = bytearray()  # a candidate's characters, until they are many
        self.spill: IO[bytes] | None = None
        self.plain = True
        self.length = 0

    def feed(self, data: bytes) -> None:
        if not self.started and data:
            self.started = True
            # json.detect_encoding: UTF-16 and UTF-32 put a NUL in the first four bytes.
            self.lifting = b"\x00" not in data[:4] and not data.startswith(
                (b"\xff\xfe", b"\xfe\xff")
            )
        if not self.lifting:
            self.kept += data
            return
        position, size = 0, len(data)
        while position < size:
            if not self.in_string:
                quote = data.find(b'"', position)
                end = size if quote < 0 else quote
                outside = data[position:end].translate(None, b" \t\r\n")
                self.since = (self.since + outside)[-2:]
                if quote < 0:
                    self.kept += data[position:]
                    return
                self.kept += data[position:quote]
                self._open_string()
                position = quote + 1
                continue
            if self.escaped:
                self.escaped = False
                self._take(data[position : position + 1], escape=True)
                position += 1
                continue
            match = _SPECIAL.search(data, position)
            if match is None:
                self._take(data[position:])
                return
            at = match.start()
            if data[at] == 0x5C:  # a backslash: what follows it is part of the string
                self._take(data[position : at + 1], escape=True)
                if at + 1 < size:
                    self._take(data[at + 1 : at + 2], escape=True)
                    position = at + 2
                else:
                    self.escaped = True
                    position = size
                continue
            self._take(data[position:at])
            self._close_string()
            position = at + 1

    def _open_string(self) -> None:
        self.in_string = True
        self.candidate = (
            self.since == b":" and self.last in IMAGE_KEYS and len(self.inline) < MAX_INLINE_FILES
        )
        self.key = bytearray()
        if not self.candidate:
            self.kept += b'"'

    def _take(self, piece: bytes, *, escape: bool = False) -> None:
        if self.key is not None:
            self.key += piece
            if len(self.key) > KEY_BYTES:
                self.key = None
        if not self.candidate:
            self.kept += piece
            return
        if self.plain and (escape or _NOT_PLAIN.search(piece)):
            self.plain = False
        self.length += len(piece)
        if self.spill is None:
            self.pending += piece
            if len(self.pending) >= INLINE_MIN_BYTES:
                self.spill = tempfile.TemporaryFile()
                self.spill.write(self.pending)
                self.pending = bytearray()
        else:
            self.spill.write(piece)

    def _close_string(self) -> None:
        self.in_string = False
        self.last = bytes(self.key) if self.key is not None else None
        self.since = b""
        if not self.candidate:
            self.kept += b'"'
            return
        if self.spill is not None and self.plain:
            self.kept += json.dumps(f"{self.marker}{len(self.inline)}").encode()
            self.inline.append(InlineData(self.spill, self.length))
        else:
            # Short, or with escapes or other than ASCII: json reads it as before.
            self.kept += b'"'
            if self.spill is not None:
                self.spill.seek(0)
                while piece := self.spill.read(_COPY_BYTES):
                    self.kept += piece
                self.spill.close()
            self.kept += self.pending + b'"'
        self.candidate, self.pending, self.spill, self.plain, self.length = (
            False, bytearray(), None, True, 0,
        )  # fmt: skip

    def load(self, parse_constant: Callable[[str], object]) -> object:
        """The answer as json reads it, with each kept image string as its InlineData.

        Raises what json.loads raises for the answer as it came.
        """
        if self.in_string:
            # Unterminated: json says so, whatever part of it went to a file.
            if self.candidate:
                self.kept += b'"' + self.pending
            if self.spill is not None:
                self.spill.close()
        if not self.inline:
            return json.loads(bytes(self.kept), parse_constant=parse_constant)
        marker, inline = self.marker, self.inline

        def restore(pairs: list[tuple[str, object]]) -> dict:
            result = {}
            for name, value in pairs:
                if isinstance(value, str) and value.startswith(marker):
                    value = inline[int(value[len(marker) :])]
                result[name] = value
            return result

        return json.loads(
            bytes(self.kept), parse_constant=parse_constant, object_pairs_hook=restore
        )

    def close(self) -> None:
        if self.spill is not None:
            self.spill.close()
        for data in self.inline:
            data.close()
